//! Storage of a node: one sled `Db`, and per shard three trees and a snapshot file.
//!
//! | what | where | durability |
//! |---|---|---|
//! | Raft log | tree `shard-<id>/log`, key = big-endian index | flushed (group commit, [`DurableFlush`]) before openraft is told |
//! | vote, committed, purge point | tree `shard-<id>/meta` | vote flushed before `save_vote` returns |
//! | rows + applied index + membership | tree `shard-<id>/sm` | one atomic batch per apply; flushed before log purge |
//! | latest snapshot | `snapshots/shard-<id>.snap` | fsync + atomic rename; never replaced by an older one |
//! | removal of a closed replica | all of the above | flushed + directory fsync before Close is acknowledged |
//!
//! Every stored value is a checksummed record ([`crate::encoding::record`]). The log is verified in full when a
//! shard opens, so corruption is a startup error naming the shard and index.

// openraft's `StorageError` (over 200 bytes) is the error type its storage traits prescribe; the
// helpers here return it so `?` works inside the trait methods. Boxing would only add conversions.
#![allow(clippy::result_large_err)]

mod durable;
mod flusher;
mod log_store;
mod reader;
mod snapshot;
mod state_machine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hypercache_proto::poison::lock;

pub use durable::{DurableFlush, FlushError};
pub use flusher::{FlushObserver, Flusher};
pub use log_store::LogStore;
pub use reader::{KvReader, Progress, RangePage, ReadError};
pub use state_machine::StateMachine;

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
    #[error("storage: making the database's files durable: {0}")]
    Files(String),
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

/// The data shards that have a Raft log in `db` (the meta group excluded): the replicas this
/// node hosted when it stopped, reopened at startup.
pub fn stored_data_shards(db: &sled::Db) -> Vec<ShardId> {
    let mut shards: Vec<ShardId> = db
        .tree_names()
        .iter()
        .filter_map(|name| {
            let name = std::str::from_utf8(name).ok()?;
            name.strip_prefix("shard-")?.strip_suffix("/log")?.parse::<u32>().ok()
        })
        .filter(|id| *id != ShardId::META.0)
        .map(ShardId)
        .collect();
    shards.sort();
    shards
}

/// Deletes a replica's trees and snapshot file, after its Raft has stopped (the replica moved to
/// another node). Idempotent. Blocking: call from a blocking thread.
///
/// Durable when it returns: sled keeps a dropped tree only in its in-memory log buffer until the
/// next flush, so without one a SIGKILL right after the Close was acknowledged brings the whole
/// replica back at the next start (its log and vote included), a voter the shard no longer
/// counts on but which would campaign and answer as if it had never left. The directory is
/// fsynced after the unlink for the same reason on power loss.
pub fn remove_shard(db: &sled::Db, data_dir: &Path, shard: ShardId) -> Result<(), OpenError> {
    // The file goes first: a crash in between leaves trees without a snapshot file, which the
    // next start reopens and the driver closes again, never a stale file under a fresh replica.
    let file = snapshot::SnapshotFile::new(data_dir, shard);
    let io = |e: std::io::Error| OpenError::Other { shard, detail: format!("{}: {e}", file.path().display()) };
    match std::fs::remove_file(file.path()) {
        Ok(()) => {
            let dir = file.path().parent().unwrap_or(Path::new("."));
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    for tree in ["log", "meta", "sm"] {
        db.drop_tree(format!("shard-{shard}/{tree}"))?;
    }
    let durable = DurableFlush::new(db, data_dir).map_err(|e| OpenError::Files(e.to_string()))?;
    durable.flush().map_err(|e| OpenError::Other { shard, detail: e.to_string() })?;
    Ok(())
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
    /// Opens (or creates) the shard's trees, verifying the log and the stored snapshot.
    pub fn open(
        db: &sled::Db,
        data_dir: &Path,
        shard: ShardId,
        flusher: Flusher,
        history: HistoryLimits,
    ) -> Result<Self, OpenError> {
        let log = LogStore::open(db, shard, flusher.clone())?;
        let tree = db.open_tree(format!("shard-{shard}/sm"))?;
        let snapshot_file = snapshot::SnapshotFile::new(data_dir, shard);
        snapshot_file
            .remove_leftovers()
            .map_err(|e| OpenError::Other { shard, detail: format!("removing temporary snapshot files: {e}") })?;
        snapshot_file.load().map_err(|e| OpenError::Corrupt {
            shard,
            what: format!("snapshot {}", snapshot_file.path().display()),
            detail: e.to_string(),
        })?;
        let progress = Arc::new(Progress::default());
        let hub = Arc::new(WatchHub::new(0, history));
        let clock = LeaseClock::new();
        let retired = Retired::default();
        let state_machine = StateMachine::new(
            shard,
            tree.clone(),
            (snapshot_file, retired.clone()),
            flusher,
            progress.clone(),
            hub.clone(),
            clock.clone(),
        )
        .map_err(|e| OpenError::Corrupt { shard, what: "state machine".into(), detail: e.to_string() })?;
        let reader = KvReader::new(shard, tree, progress);
        Ok(ShardStorage { log, state_machine, reader, hub, clock, retired })
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

    use super::*;

    #[tokio::test]
    async fn a_snapshot_build_that_outlives_a_close_writes_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path(), 4 << 20).expect("open sled");
        let (flusher, _task) = Flusher::spawn(DurableFlush::new(&db, dir.path()).expect("data file"), None);
        let history = HistoryLimits { events: 100, bytes: 1 << 20 };
        let shard = ShardId(3);
        let mut s = ShardStorage::open(&db, dir.path(), shard, flusher, history).expect("open shard storage");
        // openraft took the builder (rows captured), then the replica was closed.
        let mut builder = s.state_machine.get_snapshot_builder().await;
        s.retired.close();
        remove_shard(&db, dir.path(), shard).expect("remove");
        let built = builder.build_snapshot().await;
        assert!(built.is_err(), "a build after the close must fail, got a snapshot");
        let file = snapshot::SnapshotFile::new(dir.path(), shard);
        assert!(!file.path().exists(), "the closed replica's snapshot file was written after the close");
        // An open replica still builds its snapshot file.
        let (flusher, _task) = Flusher::spawn(DurableFlush::new(&db, dir.path()).expect("data file"), None);
        let history = HistoryLimits { events: 100, bytes: 1 << 20 };
        let mut s = ShardStorage::open(&db, dir.path(), ShardId(4), flusher, history).expect("open shard storage");
        s.state_machine.get_snapshot_builder().await.build_snapshot().await.expect("build");
        assert!(snapshot::SnapshotFile::new(dir.path(), ShardId(4)).path().exists());
    }
}
