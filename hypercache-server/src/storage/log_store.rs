//! openraft's view of one shard's Raft log: the shard's part of the node's shared log
//! ([`super::wal::Wal`]).
//!
//! Appends are written at once and acknowledged to openraft only after the log's group-commit
//! [`Flusher`] has synced them; votes are synced before `save_vote` returns, and read back as not
//! committed, so no node resumes a leadership it remembers (see `read_vote`). The committed
//! index is written without a sync: losing it only means re-learning it from the next leader.
//! openraft purges only entries its stored snapshot covers, and the snapshot file is durable
//! before it does: after an unclean stop the state machine restarts from that file and the
//! entries after it (ADR 44).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};

use super::flusher::Flusher;
use super::wal::Wal;
use crate::encoding::record::seal;
use crate::raft_types::TypeConfig;
use crate::types::{NodeId, ShardId};

/// Log storage of one shard. Cloning shares it (the clone is openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    shard: ShardId,
    wal: Wal,
    /// Syncs the log (appends, votes).
    log_sync: Flusher,
    /// Highest index known committed, shared with the shard for status and readiness.
    committed: Arc<AtomicU64>,
}

fn io_err(e: impl ToString) -> AnyError {
    AnyError::error(e.to_string())
}

impl LogStore {
    /// The shard's log in `wal`, which has replayed and verified it (the shard must be open
    /// there: [`Wal::open_shard`]).
    pub fn new(shard: ShardId, wal: Wal, log_sync: Flusher) -> LogStore {
        let committed = wal.committed(shard).map_or(0, |c| c.index);
        LogStore { shard, wal, log_sync, committed: Arc::new(AtomicU64::new(committed)) }
    }

    /// The committed index this store has been told about (0 before any).
    pub fn committed_handle(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        // Positional reads of recent entries come from the page cache; like sled's reads before.
        self.wal.entries(self.shard, bounds).map_err(|e| StorageIOError::read_logs(io_err(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let (last_purged_log_id, last_log_id) = self.wal.log_state(self.shard);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.wal.set_vote(self.shard, vote).map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        self.log_sync.flush().await.map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    /// The stored vote, as *not committed* (ADR 41). openraft 0.9 restarts a node whose vote is
    /// its own committed one as the leader of that term at once, with the commit index it last
    /// stored; that index is saved without a sync, so after a power cut it can lag entries this
    /// leader had committed, applied and acknowledged (the log itself was synced first). Such a
    /// leader's read barrier (its first entry of the term, or that stale index) lets a
    /// linearizable read see the state before those writes until replication re-teaches it the
    /// commit index. Seen as stale reads right after whole-cluster power cuts
    /// (`jepsen/tests/chaos.rs`). An uncommitted vote keeps what a vote is for (this node still
    /// refuses another candidate of the same term, as two uncommitted votes of one term are
    /// incomparable) but grants no leadership: the node starts as a follower, and whoever wins
    /// the next term commits a no-op first, which covers every entry it holds.
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.wal.vote(self.shard).map(|v| Vote { committed: false, ..v }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.wal.set_committed(self.shard, committed).map_err(|e| StorageIOError::write(io_err(e)))?;
        self.committed.store(committed.map(|l| l.index).unwrap_or(0), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.wal.committed(self.shard))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut sealed = Vec::new();
        for entry in entries {
            let rec = seal(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, io_err(e)))?;
            sealed.push((entry.log_id, rec));
        }
        self.wal.append(self.shard, sealed).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        // The failpoint re-creates the bug the flusher exists against (see `failpoints`).
        if crate::failpoints::on(crate::failpoints::Failpoint::AckBeforeFlush) {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        self.log_sync.after_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(shard = %self.shard, %log_id, "truncating log");
        self.wal.truncate(self.shard, log_id.index).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(shard = %self.shard, %log_id, "purging log");
        self.wal.purge(self.shard, log_id).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}
