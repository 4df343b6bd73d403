//! Storage of a node: one Raft log shared by every shard ([`wal`]), one sled `Db` with a
//! state-machine tree per shard, and a snapshot file per shard.
//!
//! | what | where | durability |
//! |---|---|---|
//! | Raft log entries, vote, committed, purge point | `wal/<seq>.wal`, records of every shard | synced (group commit, [`Flusher`]) before openraft is told; vote synced before `save_vote` returns |
//! | rows + applied index + membership | tree `shard-<id>/sm` | written per apply, not synced; flushed (after the log) at a clean stop, and rebuilt from the snapshot file after any other |
//! | latest snapshot | `snapshots/shard-<id>.snap` | fsync + atomic rename; never replaced by an older one |
//! | removal of a closed replica | all of the above | synced before Close is acknowledged |
//!
//! After an unclean stop each state machine restarts from its snapshot file and openraft
//! re-applies the committed entries after it: the log is never purged past that file. Every stored value is checksummed; the log is
//! verified in full when the node opens, so corruption is a startup error naming the shard and
//! position.

// openraft's `StorageError` (over 200 bytes) is the error type its storage traits prescribe; the
// helpers here return it so `?` works inside the trait methods. Boxing would only add conversions.
#![allow(clippy::result_large_err)]

mod durable;
mod flusher;
mod log_store;
mod reader;
mod snapshot;
mod state_machine;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use hypercache_proto::poison::lock;

pub use durable::{DurableFlush, FlushError};
pub use flusher::{FlushObserver, Flusher, SyncFn};
pub use log_store::LogStore;
pub use reader::{KvReader, Progress, RangePage, ReadError};
pub use state_machine::{Snapshot, StateMachine};
pub use wal::Wal;

use crate::lease_clock::LeaseClock;
use crate::types::ShardId;
use crate::watch_hub::{HistoryLimits, WatchHub};

/// Why a node's storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("storage: sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage is corrupt: shard {shard}: {what}: {detail}")]
    Corrupt { shard: ShardId, what: String, detail: String },
    #[error("storage: shard {shard}: {detail}")]
    Other { shard: ShardId, detail: String },
    #[error("storage is corrupt: raft log {} at byte {offset}: {detail}", path.display())]
    CorruptLog { path: PathBuf, offset: u64, detail: String },
    #[error("storage: the data directory {} holds the previous storage format (each shard's Raft log in sled, before issue 19): {detail}", path.display())]
    OldFormat { path: PathBuf, detail: String },
    #[error("storage: making the database's files durable: {0}")]
    Files(String),
    #[error("storage: no raft log at {} (is this a node's data directory?)", .0.display())]
    NoLog(PathBuf),
}

/// sled's directory in a node's data dir.
fn sled_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sled")
}

/// Opens the node's sled database with a bounded page cache. Flush it with a [`DurableFlush`]:
/// sled's own `flush` does not survive a power cut.
pub fn open_db(data_dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, OpenError> {
    let dir = sled_dir(data_dir);
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(cache_capacity_bytes)
        // Durability comes from our explicit flushes; sled's own timer flush adds nothing.
        .flush_every_ms(None)
        .open()?;
    make_files_durable(data_dir, &dir).map_err(|e| OpenError::Files(format!("{}: {e}", dir.display())))?;
    Ok(db)
}

/// sled 0.34 writes its `conf` file without fsync and never syncs the directories it creates.
/// A power cut in the first seconds after a node's first start (before the filesystem commits
/// on its own: ext4 every 5 s) then left an empty `conf`, which sled reads as "no database"
/// (the chaos suite's `power` nemesis found it, with the missing data-file sync in
/// `durable.rs`). Syncing the file and the directories once at open closes that window.
fn make_files_durable(data_dir: &Path, sled_dir: &Path) -> std::io::Result<()> {
    let conf = sled_dir.join("conf");
    if conf.exists() {
        std::fs::File::open(&conf)?.sync_all()?;
    }
    for dir in [sled_dir, data_dir] {
        std::fs::File::open(dir)?.sync_all()?;
    }
    if let Some(parent) = data_dir.parent().filter(|p| p.is_dir()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The previous storage format kept each shard's Raft log in sled trees `shard-<id>/log` and
/// `shard-<id>/meta`. Its entries cannot be read by this version: refuse to start on it rather
/// than start empty beside them.
fn refuse_old_format(db: &sled::Db, data_dir: &Path) -> Result<(), OpenError> {
    let old = db.tree_names().into_iter().find_map(|name| {
        let name = String::from_utf8(name.to_vec()).ok()?;
        (name.starts_with("shard-") && (name.ends_with("/log") || name.ends_with("/meta"))).then_some(name)
    });
    match old {
        None => Ok(()),
        Some(tree) => Err(OpenError::OldFormat {
            path: data_dir.to_owned(),
            detail: format!(
                "found the sled tree `{tree}`. Empty the data directory and start the node again: it rejoins \
                 as a new incarnation and its replicas are copied from the other members"
            ),
        }),
    }
}

/// A node's storage, opened once and shared by its replicas. Clones share it.
#[derive(Clone)]
pub struct NodeStore {
    pub db: sled::Db,
    pub wal: Wal,
    pub data_dir: PathBuf,
    /// Syncs the Raft log: appends and votes wait for it.
    pub log_sync: Flusher,
    /// Syncs the log, then makes the state machines durable. Its last flush, once every
    /// state machine is gone, marks a clean stop ([`CLEAN_STOP`]).
    pub sm_flush: Flusher,
    /// The previous stop was clean: sled's state machines are as the last applies left them.
    /// Otherwise each is rebuilt from its snapshot file when it opens (ADR 44).
    pub clean_start: bool,
}

/// The file whose presence says the node stopped cleanly: written after the last flush of the
/// state machines, deleted at start before anything is applied.
pub const CLEAN_STOP: &str = "clean-stop";

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Whether the last stop was clean; removes the mark (durably) so a crash from now on is not.
fn take_clean_mark(data_dir: &Path) -> Result<bool, OpenError> {
    let mark = data_dir.join(CLEAN_STOP);
    let files = |e: std::io::Error| OpenError::Files(format!("{}: {e}", mark.display()));
    match std::fs::remove_file(&mark) {
        Ok(()) => {
            sync_dir(data_dir).map_err(files)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(files(e)),
    }
}

fn put_clean_mark(data_dir: &Path) -> std::io::Result<()> {
    let mark = data_dir.join(CLEAN_STOP);
    std::fs::File::create(&mark)?.sync_all()?;
    sync_dir(data_dir)
}

/// What a node's storage sizes come from.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// sled's page cache.
    pub cache_capacity_bytes: u64,
    /// Size at which the Raft log moves on to a new segment file.
    pub segment_bytes: u64,
}

impl NodeStore {
    /// Opens the data dir's database and Raft log (replaying and verifying it) and spawns their
    /// flushers on the current runtime. The returned tasks end once every clone of the store
    /// (and of its flushers) is dropped, after a last flush: awaiting them tells that the data
    /// dir may be opened again. `observe` sees each log sync's duration.
    pub fn open(
        data_dir: &Path,
        limits: StoreLimits,
        observe: Option<FlushObserver>,
    ) -> Result<(NodeStore, StoreTasks), OpenError> {
        let db = open_db(data_dir, limits.cache_capacity_bytes)?;
        refuse_old_format(&db, data_dir)?;
        let clean_start = take_clean_mark(data_dir)?;
        let wal = Wal::open(&wal::wal_dir(data_dir), limits.segment_bytes)?;
        let durable = DurableFlush::new(&db, data_dir).map_err(|e| OpenError::Files(e.to_string()))?;
        let log = wal.clone();
        let (log_sync, log_task) = Flusher::spawn(Arc::new(move || log.sync().map_err(FlushError::from)), observe);
        let log = wal.clone();
        let sync_then_flush: SyncFn = Arc::new(move || {
            log.sync()?;
            durable.flush()
        });
        let (sm_flush, sm_task) = Flusher::spawn(sync_then_flush, None);
        let store = NodeStore { db, wal, data_dir: data_dir.to_owned(), log_sync, sm_flush, clean_start };
        Ok((store, StoreTasks { log_task, sm_task, data_dir: data_dir.to_owned() }))
    }

    /// The data shards with a replica in the log (the meta group excluded): the replicas this
    /// node hosted when it stopped, reopened at startup.
    pub fn stored_data_shards(&self) -> Vec<ShardId> {
        self.wal.shards().into_iter().filter(|id| *id != ShardId::META).collect()
    }

    /// Deletes a replica's log, state-machine tree and snapshot file, after its Raft has stopped
    /// (the replica moved to another node). Idempotent. Blocking: call from a blocking thread.
    ///
    /// Durable when it returns: without the sync, a SIGKILL right after the Close was
    /// acknowledged brought the whole replica back at the next start (its log and vote
    /// included), a voter the shard no longer counts on but which would campaign and answer as
    /// if it had never left.
    pub fn remove_shard(&self, shard: ShardId) -> Result<(), OpenError> {
        // The log goes first: once its Drop is durable the replica is never reopened, and a
        // snapshot file or state machine a crash leaves behind is discarded when the shard next
        // opens here (`ShardStorage::open`). The other order could leave a purged log without
        // the snapshot file the state machine is rebuilt from after an unclean stop.
        let log_err = |e: wal::WalError| OpenError::Other { shard, detail: e.to_string() };
        self.wal.drop_shard(shard).map_err(log_err)?;
        self.wal.sync().map_err(log_err)?;
        remove_snapshot_file(&self.data_dir, shard)?;
        self.db.drop_tree(sm_tree(shard))?;
        let durable = DurableFlush::new(&self.db, &self.data_dir).map_err(|e| OpenError::Files(e.to_string()))?;
        durable.flush().map_err(|e| OpenError::Other { shard, detail: e.to_string() })?;
        Ok(())
    }
}

/// The flusher tasks of a [`NodeStore`].
pub struct StoreTasks {
    log_task: JoinHandle<bool>,
    sm_task: JoinHandle<bool>,
    data_dir: PathBuf,
}

impl StoreTasks {
    /// Waits (at most `timeout`) until the store is closed: every handle dropped and the last
    /// flushes done; if they succeeded, marks the stop clean. False if it was still in use.
    pub async fn closed(self, timeout: Duration) -> bool {
        let data_dir = self.data_dir;
        let (log_task, sm_task) = (self.log_task, self.sm_task);
        let done = tokio::time::timeout(timeout, async move {
            let log_ok = log_task.await.unwrap_or(false);
            let sm_ok = sm_task.await.unwrap_or(false);
            log_ok && sm_ok
        })
        .await;
        match done {
            Ok(true) => {
                match tokio::task::spawn_blocking(move || put_clean_mark(&data_dir)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not mark the stop clean: the next start rebuilds"),
                    Err(e) => tracing::warn!(error = %e, "could not mark the stop clean: the next start rebuilds"),
                }
                true
            }
            Ok(false) => true,
            Err(_) => false,
        }
    }
}

fn sm_tree(shard: ShardId) -> String {
    format!("shard-{shard}/sm")
}

fn remove_snapshot_file(data_dir: &Path, shard: ShardId) -> Result<(), OpenError> {
    let file = snapshot::SnapshotFile::new(data_dir, shard);
    let io = |e: std::io::Error| OpenError::Other { shard, detail: format!("{}: {e}", file.path().display()) };
    match std::fs::remove_file(file.path()) {
        Ok(()) => {
            let dir = file.path().parent().unwrap_or(Path::new("."));
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// Whether a replica has been closed, shared by its close and its snapshot writers.
///
/// openraft builds snapshots in a task of its own that outlives `Raft::shutdown`, so a build
/// that started before a Close could write the snapshot file after the Close deleted it, and a
/// later replica of the shard on this node would start with that stale file. Every snapshot
/// write runs under this lock and only while the replica is open; closing takes the lock, so it
/// also waits for a write in progress to finish before the files are deleted.
#[derive(Clone, Default)]
pub struct Retired(Arc<std::sync::Mutex<bool>>);

/// A write to a replica that was closed.
#[derive(Debug, thiserror::Error)]
#[error("shard {0}: the replica was closed; its storage is not written any more")]
pub struct ReplicaClosed(pub ShardId);

impl Retired {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        // The flag is one bool: a panic while holding the lock cannot leave it half-written.
        lock(&self.0)
    }

    /// Holds the replica open for a write: Err once it was closed; a Close waits until the
    /// returned guard is dropped. Blocking.
    pub(crate) fn hold(&self, shard: ShardId) -> Result<std::sync::MutexGuard<'_, bool>, ReplicaClosed> {
        let closed = self.lock();
        if *closed {
            return Err(ReplicaClosed(shard));
        }
        Ok(closed)
    }

    /// Marks the replica closed, once any write in progress has finished. Blocking.
    pub fn close(&self) {
        *self.lock() = true;
    }
}

/// Everything one shard replica needs from storage.
pub struct ShardStorage {
    pub log: LogStore,
    pub state_machine: StateMachine,
    pub reader: KvReader,
    pub hub: Arc<WatchHub>,
    pub clock: Arc<LeaseClock>,
    pub retired: Retired,
}

impl ShardStorage {
    /// Opens (or creates) the shard's storage, verifying the stored snapshot.
    pub fn open(store: &NodeStore, shard: ShardId, history: HistoryLimits) -> Result<Self, OpenError> {
        let data_dir = store.data_dir.as_path();
        let new = store.wal.open_shard(shard).map_err(|e| OpenError::Other { shard, detail: e.to_string() })?;
        if new {
            // A state machine or snapshot without a log is what a crash in the middle of an
            // earlier close of this shard left: never start a new replica on it.
            if store.db.drop_tree(sm_tree(shard))? {
                tracing::warn!(%shard, "discarded a state machine left without a log by an interrupted close");
            }
            remove_snapshot_file(data_dir, shard)?;
        }
        let log = LogStore::new(shard, store.wal.clone(), store.log_sync.clone());
        let tree = store.db.open_tree(sm_tree(shard))?;
        let snapshot_file = snapshot::SnapshotFile::new(data_dir, shard);
        snapshot_file
            .remove_leftovers()
            .map_err(|e| OpenError::Other { shard, detail: format!("removing temporary snapshot files: {e}") })?;
        let stored = snapshot_file.load().map_err(|e| OpenError::Corrupt {
            shard,
            what: format!("snapshot {}", snapshot_file.path().display()),
            detail: e.to_string(),
        })?;
        if !store.clean_start && !new {
            // sled's rows are whatever its own recovery kept of unsynced, non-atomic applies:
            // start from the snapshot file, and openraft re-applies the log after it.
            let at = stored.as_ref().and_then(|(meta, _)| meta.last_log_id);
            state_machine::rebuild(&tree, stored).map_err(|e| OpenError::Corrupt {
                shard,
                what: "state machine rebuild".into(),
                detail: e.to_string(),
            })?;
            tracing::info!(%shard, snapshot = ?at, "after an unclean stop: state machine rebuilt from its snapshot file");
        }
        let progress = Arc::new(Progress::default());
        let hub = Arc::new(WatchHub::new(0, history));
        let clock = LeaseClock::new();
        let retired = Retired::default();
        let state_machine = StateMachine::new(
            shard,
            tree.clone(),
            (snapshot_file, retired.clone()),
            store.sm_flush.clone(),
            progress.clone(),
            hub.clone(),
            clock.clone(),
        )
        .map_err(|e| OpenError::Corrupt { shard, what: "state machine".into(), detail: e.to_string() })?;
        // openraft cannot re-apply entries the log no longer holds: refuse by name rather than
        // let it fail deep inside (the invariant is that purges never pass the stored snapshot).
        let applied = progress.applied.load(std::sync::atomic::Ordering::Acquire);
        if let (Some(purged), _) = store.wal.log_state(shard) {
            if applied < purged.index {
                return Err(OpenError::Corrupt {
                    shard,
                    what: "state machine".into(),
                    detail: format!(
                        "it has applied up to index {applied} but the log was purged up to {}: the entries in \
                         between are gone (a missing or older snapshot file?)",
                        purged.index
                    ),
                });
            }
        }
        let reader = KvReader::new(shard, tree, progress);
        Ok(ShardStorage { log, state_machine, reader, hub, clock, retired })
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

    use super::*;

    fn limits() -> StoreLimits {
        StoreLimits { cache_capacity_bytes: 4 << 20, segment_bytes: 1 << 20 }
    }

    /// Opens a data dir closed a moment ago: sled's I/O threads can hold its file lock a little
    /// after the last `Db` handle is gone, so a lock refusal is retried (up to 5 s).
    fn reopen(dir: &Path) -> (NodeStore, StoreTasks) {
        for _ in 0..50 {
            match NodeStore::open(dir, limits(), None) {
                Ok(opened) => return opened,
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("open store: {e}"),
            }
        }
        panic!("sled's lock on {} was never released", dir.display());
    }

    #[tokio::test]
    async fn a_snapshot_build_that_outlives_a_close_writes_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _tasks) = NodeStore::open(dir.path(), limits(), None).expect("open store");
        let history = HistoryLimits { events: 100, bytes: 1 << 20 };
        let shard = ShardId(3);
        let mut s = ShardStorage::open(&store, shard, history.clone()).expect("open shard storage");
        // openraft took the builder (rows captured), then the replica was closed.
        let mut builder = s.state_machine.get_snapshot_builder().await;
        s.retired.close();
        store.remove_shard(shard).expect("remove");
        let built = builder.build_snapshot().await;
        assert!(built.is_err(), "a build after the close must fail, got a snapshot");
        let file = snapshot::SnapshotFile::new(dir.path(), shard);
        assert!(!file.path().exists(), "the closed replica's snapshot file was written after the close");
        // An open replica still builds its snapshot file.
        let mut s = ShardStorage::open(&store, ShardId(4), history).expect("open shard storage");
        s.state_machine.get_snapshot_builder().await.build_snapshot().await.expect("build");
        assert!(snapshot::SnapshotFile::new(dir.path(), ShardId(4)).path().exists());
    }

    /// A put of `key` as entry `index` of shard 0.
    fn put_entry(index: u64, key: &str) -> crate::raft_types::Entry {
        use crate::machine::command::{Command, Op, Request, Txn};
        let put = Op::Put {
            key: bytes::Bytes::from(key.to_string()),
            value: bytes::Bytes::from_static(b"v"),
            prev_kv: false,
            attach: Default::default(),
        };
        openraft::Entry {
            log_id: crate::raft_types::LogId::new(crate::raft_types::CommittedLeaderId { term: 1, node_id: 1 }, index),
            payload: openraft::EntryPayload::Normal(Command::Batch(vec![Request::Txn(Txn {
                success: vec![put],
                ..Txn::default()
            })])),
        }
    }

    #[tokio::test]
    async fn after_an_unclean_stop_the_state_machine_restarts_from_its_snapshot_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = HistoryLimits { events: 100, bytes: 1 << 20 };
        let shard = ShardId(0);
        let applied = |s: &ShardStorage| s.reader.get(b"after").expect("read").is_some();
        {
            let (store, tasks) = NodeStore::open(dir.path(), limits(), None).expect("open store");
            let mut s = ShardStorage::open(&store, shard, history.clone()).expect("open shard");
            s.state_machine.apply_batch(&[put_entry(1, "before")]).expect("apply");
            s.state_machine.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
            s.state_machine.apply_batch(&[put_entry(2, "after")]).expect("apply");
            assert!(applied(&s));
            drop((s, store));
            assert!(tasks.closed(Duration::from_secs(5)).await);
        }
        // A clean stop: the rows are as the applies left them.
        {
            let (store, tasks) = reopen(dir.path());
            assert!(store.clean_start);
            let s = ShardStorage::open(&store, shard, history.clone()).expect("open shard");
            assert!(applied(&s), "a clean stop keeps the applied rows");
            drop((s, store));
            assert!(tasks.closed(Duration::from_secs(5)).await);
        }
        // A stop without the mark is what a SIGKILL or a power cut leaves.
        std::fs::remove_file(dir.path().join(CLEAN_STOP)).expect("a clean stop left its mark");
        let (store, _tasks) = reopen(dir.path());
        assert!(!store.clean_start);
        let mut s = ShardStorage::open(&store, shard, history).expect("open shard");
        assert!(!applied(&s), "after an unclean stop the rows are the snapshot's, the log replays the rest");
        assert!(s.reader.get(b"before").expect("read").is_some());
        let (last, _) = s.state_machine.applied_state().await.expect("applied state");
        assert_eq!(last.map(|l| l.index), Some(1));
    }

    #[tokio::test]
    async fn a_log_purged_past_the_rebuilt_state_machine_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = HistoryLimits { events: 100, bytes: 1 << 20 };
        let shard = ShardId(0);
        {
            let (store, tasks) = NodeStore::open(dir.path(), limits(), None).expect("open store");
            let mut s = ShardStorage::open(&store, shard, history.clone()).expect("open shard");
            s.state_machine.apply_batch(&[put_entry(1, "a"), put_entry(2, "b")]).expect("apply");
            // Purged with no snapshot file behind it (the invariant broken on purpose).
            store
                .wal
                .purge(
                    shard,
                    crate::raft_types::LogId::new(crate::raft_types::CommittedLeaderId { term: 1, node_id: 1 }, 2),
                )
                .expect("purge");
            drop((s, store));
            assert!(tasks.closed(Duration::from_secs(5)).await);
        }
        std::fs::remove_file(dir.path().join(CLEAN_STOP)).expect("a clean stop left its mark");
        let (store, _tasks) = reopen(dir.path());
        let err = match ShardStorage::open(&store, shard, history) {
            Ok(_) => panic!("a state machine behind the purge point must not open"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("shard 0") && err.contains("purged up to 2"), "{err}");
    }

    #[test]
    fn a_data_dir_of_the_previous_format_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Checked on the same open Db: reopening right after a drop can find sled's file lock
        // still held by its I/O threads (seen once in a loaded CI run).
        let db = open_db(dir.path(), 4 << 20).expect("open sled");
        refuse_old_format(&db, dir.path()).expect("a new data dir is accepted");
        db.open_tree("shard-0/log").expect("tree").insert(1u64.to_be_bytes(), &b"x"[..]).expect("insert");
        let err = match refuse_old_format(&db, dir.path()) {
            Ok(()) => panic!("a data dir of the previous format must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("previous storage format") && err.contains("shard-0/log"), "{err}");
    }
}
