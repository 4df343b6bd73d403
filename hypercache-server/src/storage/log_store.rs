//! openraft's view of one shard's Raft log: the shard's part of the node's shared log
//! ([`super::wal::Wal`]).
//!
//! Appends are written at once and acknowledged to openraft only after the log's group-commit
//! [`Flusher`] has synced them; votes are synced before `save_vote` returns (no node resumes a
//! leadership it remembers: see `read_vote`). The committed
//! index is written without a sync: losing it only means re-learning it from the next leader.
//! openraft purges only entries its stored snapshot covers, and the snapshot file is durable
//! before it does: after an unclean stop the state machine restarts from that file and the
//! entries after it (ADR 44).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::io;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};

use super::flusher::Flusher;
use super::wal::Wal;
use crate::encoding::record::seal;
use crate::raft_types::{Entry, LogId, TypeConfig, Vote};
use crate::types::ShardId;

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

fn io_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
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
    ) -> Result<Vec<Entry>, io::Error> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        // Positional reads of recent entries come from the page cache; like sled's reads before.
        self.wal.entries(self.shard, bounds).map_err(|e| io_err("reading log entries", e))
    }

    /// The stored vote, as it was saved. A restarted node does not resume a leadership it
    /// remembers: `raft_config.rs` turns openraft's leader restore off (ADR 41; under openraft
    /// 0.9 this read returned the vote as not committed instead, which 0.10's leader-bounded
    /// log reads and openraft's storage suite reject).
    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.wal.vote(self.shard))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let (last_purged_log_id, last_log_id) = self.wal.log_state(self.shard);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.wal.set_vote(self.shard, vote).map_err(|e| io_err("writing vote", e))?;
        self.log_sync.flush().await.map_err(|e| io_err("syncing vote", e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.wal.set_committed(self.shard, committed).map_err(|e| io_err("writing committed mark", e))?;
        self.committed.store(committed.map(|l| l.index).unwrap_or(0), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.wal.committed(self.shard))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut sealed = Vec::new();
        for entry in entries {
            let rec = seal(&entry).map_err(|e| io_err(&format!("encoding log entry {}", entry.log_id), e))?;
            sealed.push((entry.log_id, rec));
        }
        self.wal.append(self.shard, sealed).map_err(|e| io_err("appending log entries", e))?;
        // The failpoint re-creates the bug the flusher exists against (see `failpoints`).
        if crate::failpoints::on(crate::failpoints::Failpoint::AckBeforeFlush) {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        self.log_sync.after_flush(callback);
        Ok(())
    }

    /// Removes every entry after `last_log_id` (all of them when `None`).
    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let since = last_log_id.map_or(0, |l| l.index + 1);
        tracing::debug!(shard = %self.shard, since, "truncating log");
        self.wal.truncate(self.shard, since).map_err(|e| io_err("truncating log", e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        tracing::debug!(shard = %self.shard, %log_id, "purging log");
        self.wal.purge(self.shard, log_id).map_err(|e| io_err("purging log", e))
    }
}
