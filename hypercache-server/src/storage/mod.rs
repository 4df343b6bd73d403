//! Storage of a node: one sled `Db`, and per shard three trees and a snapshot file.
//!
//! | what | where | durability |
//! |---|---|---|
//! | Raft log | tree `shard-<id>/log`, key = big-endian index | flushed (group commit) before openraft is told |
//! | vote, committed, purge point | tree `shard-<id>/meta` | vote flushed before `save_vote` returns |
//! | rows + applied index + membership | tree `shard-<id>/sm` | one atomic batch per apply; flushed before log purge |
//! | latest snapshot | `snapshots/shard-<id>.snap` | fsync + atomic rename; never replaced by an older one |
//!
//! Every stored value is a checksummed record ([`record`]). The log is verified in full when a
//! shard opens, so corruption is a startup error naming the shard and index.

// openraft's `StorageError` (over 200 bytes) is the error type its storage traits prescribe; the
// helpers here return it so `?` works inside the trait methods. Boxing would only add conversions.
#![allow(clippy::result_large_err)]

mod flusher;
mod log_store;
mod reader;
pub mod record;
mod snapshot;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

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
}

/// Opens the node's sled database with a bounded page cache.
pub fn open_db(data_dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, OpenError> {
    Ok(sled::Config::new()
        .path(data_dir.join("sled"))
        .cache_capacity(cache_capacity_bytes)
        // Durability comes from our explicit flushes; sled's own timer flush adds nothing.
        .flush_every_ms(None)
        .open()?)
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
/// another node). Idempotent.
pub fn remove_shard(db: &sled::Db, data_dir: &Path, shard: ShardId) -> Result<(), OpenError> {
    for tree in ["log", "meta", "sm"] {
        db.drop_tree(format!("shard-{shard}/{tree}"))?;
    }
    let file = snapshot::SnapshotFile::new(data_dir, shard);
    match std::fs::remove_file(file.path()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OpenError::Other { shard, detail: format!("{}: {e}", file.path().display()) }),
    }
}

/// Everything one shard replica needs from storage.
pub struct ShardStorage {
    pub log: LogStore,
    pub state_machine: StateMachine,
    pub reader: KvReader,
    pub hub: Arc<WatchHub>,
    pub clock: Arc<LeaseClock>,
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
        let state_machine = StateMachine::new(
            shard,
            tree.clone(),
            snapshot_file,
            flusher,
            progress.clone(),
            hub.clone(),
            clock.clone(),
        )
        .map_err(|e| OpenError::Corrupt { shard, what: "state machine".into(), detail: e.to_string() })?;
        let reader = KvReader::new(shard, tree, progress);
        Ok(ShardStorage { log, state_machine, reader, hub, clock })
    }
}
