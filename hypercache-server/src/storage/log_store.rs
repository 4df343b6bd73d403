//! The Raft log of one shard, in the sled tree `shard-<id>/log`, plus its vote, committed index
//! and purge point in `shard-<id>/meta`.
//!
//! Keys are log indexes as big-endian u64 so sled's byte order is index order; values are
//! checksummed records (see [`super::record`]). Appends are inserted in one batch and acknowledged
//! to openraft only after the node's group-commit [`Flusher`] has made them durable; votes are
//! flushed before `save_vote` returns, and read back as not committed, so no node resumes a
//! leadership it remembers (see `read_vote`). The committed index is saved without a flush:
//! losing it only means re-learning it from the next leader.
//!
//! [`LogStore::open`] reads every entry once and refuses to start on a checksum or decode error,
//! naming the shard and index: a corrupted log is an operator problem, never a silent one.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, LogState, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote};

use super::flusher::Flusher;
use super::OpenError;
use crate::encoding::record::{seal, unseal, RecordError};
use crate::raft_types::TypeConfig;
use crate::types::{NodeId, ShardId};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Log storage of one shard. Cloning shares the trees (the clone is openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    shard: ShardId,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: Flusher,
    /// Highest index known committed, shared with the shard for status and readiness.
    committed: Arc<AtomicU64>,
}

/// Reading or writing one of the shard's meta rows (vote, committed index, last purged id).
#[derive(Debug, thiserror::Error)]
enum MetaError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
}

fn io_err(e: impl ToString) -> AnyError {
    AnyError::error(e.to_string())
}

impl LogStore {
    /// Opens the shard's log trees and verifies every stored entry.
    pub fn open(db: &sled::Db, shard: ShardId, flusher: Flusher) -> Result<LogStore, OpenError> {
        let log = db.open_tree(format!("shard-{shard}/log"))?;
        let meta = db.open_tree(format!("shard-{shard}/meta"))?;
        let store = LogStore { shard, log, meta, flusher, committed: Arc::new(AtomicU64::new(0)) };
        store.verify()?;
        if let Some(c) = store.get_meta::<Option<LogId<NodeId>>>(COMMITTED).map_err(|detail| OpenError::Corrupt {
            shard,
            what: "committed index".into(),
            detail: detail.to_string(),
        })? {
            store.committed.store(c.map(|l| l.index).unwrap_or(0), Ordering::Release);
        }
        Ok(store)
    }

    /// The committed index this store has been told about (0 before any).
    pub fn committed_handle(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn verify(&self) -> Result<(), OpenError> {
        let mut prev: Option<u64> = None;
        for item in self.log.iter() {
            let (k, v) = item?;
            let index = decode_index(&k).ok_or_else(|| OpenError::Corrupt {
                shard: self.shard,
                what: "log key".into(),
                detail: format!("key {:?} is not an 8-byte index", k.as_ref()),
            })?;
            let entry: Entry<TypeConfig> = unseal(&v).map_err(|e| OpenError::Corrupt {
                shard: self.shard,
                what: format!("log entry at index {index}"),
                detail: e.to_string(),
            })?;
            if entry.log_id.index != index {
                return Err(OpenError::Corrupt {
                    shard: self.shard,
                    what: format!("log entry at index {index}"),
                    detail: format!("entry claims index {}", entry.log_id.index),
                });
            }
            if let Some(p) = prev {
                if index != p + 1 {
                    return Err(OpenError::Corrupt {
                        shard: self.shard,
                        what: format!("log entry at index {index}"),
                        detail: format!("gap in the log: previous entry is {p}"),
                    });
                }
            }
            prev = Some(index);
        }
        for key in [VOTE, COMMITTED, LAST_PURGED] {
            if let Some(v) = self.meta.get(key)? {
                crate::encoding::record::verify(&v).map_err(|e| OpenError::Corrupt {
                    shard: self.shard,
                    what: String::from_utf8_lossy(key).into_owned(),
                    detail: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, MetaError> {
        match self.meta.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(unseal(&v)?)),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), MetaError> {
        let rec = seal(value)?;
        self.meta.insert(key, rec)?;
        Ok(())
    }

    fn read_entry(&self, key: &[u8], value: &[u8]) -> Result<Entry<TypeConfig>, StorageError<NodeId>> {
        let index = decode_index(key).unwrap_or(u64::MAX);
        unseal(value).map_err(|e| {
            StorageIOError::read_log_at_index(
                index,
                io_err(format!("shard {}: log entry at index {index} is corrupt: {e}", self.shard)),
            )
            .into()
        })
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StorageError<NodeId>> {
        match self.log.last().map_err(|e| StorageIOError::read_logs(io_err(e)))? {
            None => Ok(None),
            Some((k, v)) => self.read_entry(&k, &v).map(Some),
        }
    }

    /// Removes every log key in `range` in one batch (sled has no range delete).
    fn remove_range(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(range).keys() {
            batch.remove(key.map_err(|e| StorageIOError::write_logs(io_err(e)))?);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}

fn encode_index(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn decode_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn map_bound(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(encode_index(*i)),
        Bound::Excluded(i) => Bound::Excluded(encode_index(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let bounds = (map_bound(range.start_bound()), map_bound(range.end_bound()));
        let mut out = Vec::new();
        for item in self.log.range(bounds) {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            out.push(self.read_entry(&k, &v)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self
            .get_meta::<Option<LogId<NodeId>>>(LAST_PURGED)
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?
            .flatten();
        let last = self.last_entry()?.map(|e| *e.get_log_id());
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote).map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        self.flusher.flush().await.map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    /// The stored vote, as *not committed* (ADR 41). openraft 0.9 restarts a node whose vote is
    /// its own committed one as the leader of that term at once, with the commit index it last
    /// stored; that index is saved without a flush, so after a power cut it can lag entries this
    /// leader had committed, applied and acknowledged (the log itself was flushed first). Such a
    /// leader's read barrier (its first entry of the term, or that stale index) lets a
    /// linearizable read see the state before those writes until replication re-teaches it the
    /// commit index. Seen as stale reads right after whole-cluster power cuts
    /// (`jepsen/tests/chaos.rs`). An uncommitted vote keeps what a vote is for (this node still
    /// refuses another candidate of the same term, as two uncommitted votes of one term are
    /// incomparable) but grants no leadership: the node starts as a follower, and whoever wins
    /// the next term commits a no-op first, which covers every entry it holds.
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let vote: Option<Vote<NodeId>> = self.get_meta(VOTE).map_err(|e| StorageIOError::read_vote(io_err(e)))?;
        Ok(vote.map(|v| Vote { committed: false, ..v }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(COMMITTED, &committed).map_err(|e| StorageIOError::write(io_err(e)))?;
        self.committed.store(committed.map(|l| l.index).unwrap_or(0), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED).map_err(|e| StorageIOError::read(io_err(e)))?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let rec = seal(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, io_err(e)))?;
            batch.insert(&encode_index(entry.log_id.index), rec);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        // The failpoint re-creates the bug the flusher exists against (see `failpoints`).
        if crate::failpoints::on(crate::failpoints::Failpoint::AckBeforeFlush) {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        self.flusher.after_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(shard = %self.shard, %log_id, "truncating log");
        self.remove_range(encode_index(log_id.index)..)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(shard = %self.shard, %log_id, "purging log");
        // Record the purge point and make it, and the state machine that covers the purged
        // entries (same Db), durable before the entries disappear.
        self.put_meta(LAST_PURGED, &Some(log_id)).map_err(|e| StorageIOError::write(io_err(e)))?;
        self.flusher.flush().await.map_err(|e| StorageIOError::write(io_err(e)))?;
        self.remove_range(..=encode_index(log_id.index))
    }
}
