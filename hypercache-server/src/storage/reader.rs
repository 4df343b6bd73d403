//! Reads of one shard's state machine that bypass openraft: point gets and ordered range pages.
//!
//! A point get is atomic against applies (each apply is one atomic sled batch), but a sled
//! iterator is not a snapshot: it takes the tree's lock per `next()`, so a scan that spans leaves
//! can show key `a` before a concurrent batch and key `z` after it. [`KvReader::range`] therefore
//! takes the watch hub's state as proof that the caller holds the hub lock, which the state
//! machine holds across every commit: under it the rows do not move and agree with
//! `HubState::revision`, the revision a response reports. The caller bounds the hold time (one
//! page) and runs the scan on a blocking thread (`service::ctx::under_hub_lock`).
//! Linearizability is the caller's job too: it runs the read-index barrier first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::encoding::record::unseal;
use crate::machine::overlay::{data_key, lease_key, LeaseRecord, DATA};
use crate::machine::rows::StoredValue;
use crate::types::{KeyValue, LeaseId, ShardId};
use crate::watch_hub::HubState;

#[derive(Debug, thiserror::Error)]
#[error("shard {shard}: {detail}")]
pub struct ReadError {
    shard: ShardId,
    detail: String,
}

/// One page of a range read.
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// Where the next page starts (inclusive), if more keys remain.
    pub next: Option<Bytes>,
}

/// How far the state machine has got: written by the state machine after each apply batch,
/// read by request handlers.
#[derive(Debug, Default)]
pub struct Progress {
    /// Highest log index applied.
    pub applied: AtomicU64,
    /// The shard's current revision (see `machine/command.rs`).
    pub revision: AtomicU64,
}

#[derive(Clone)]
pub struct KvReader {
    shard: ShardId,
    tree: sled::Tree,
    progress: Arc<Progress>,
}

impl KvReader {
    pub(super) fn new(shard: ShardId, tree: sled::Tree, progress: Arc<Progress>) -> Self {
        KvReader { shard, tree, progress }
    }

    /// The highest log index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        self.progress.applied.load(Ordering::Acquire)
    }

    /// The shard's current revision as applied on this node.
    pub fn revision(&self) -> u64 {
        self.progress.revision.load(Ordering::Acquire)
    }

    fn err(&self, detail: impl ToString) -> ReadError {
        ReadError { shard: self.shard, detail: detail.to_string() }
    }

    fn row(&self, key: &[u8], raw: &[u8]) -> Result<StoredValue, ReadError> {
        unseal(raw).map_err(|e| self.err(format!("row {:?} is corrupt: {e}", String::from_utf8_lossy(key))))
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, ReadError> {
        match self.tree.get(data_key(key)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(raw) => Ok(Some(self.row(key, &raw)?.to_kv(key))),
        }
    }

    /// Keys stored and the bytes of their keys and stored values (a full scan: for operators).
    pub fn size(&self) -> (u64, u64) {
        self.tree
            .scan_prefix([DATA])
            .filter_map(Result::ok)
            .fold((0, 0), |(n, bytes), (k, v)| (n + 1, bytes + (k.len() + v.len()) as u64))
    }

    pub fn lease(&self, id: LeaseId) -> Result<Option<LeaseRecord>, ReadError> {
        match self.tree.get(lease_key(id)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(raw) => unseal(&raw).map(Some).map_err(|e| self.err(format!("lease {id} is corrupt: {e}"))),
        }
    }

    /// Keys in `[start, end)` (`end = None`: unbounded), at most `limit` of them and stopping once
    /// about `max_bytes` of keys and values are collected: one snapshot at `_locked.revision`,
    /// since the caller holds this shard's hub lock (see the module comment). Blocking.
    pub fn range(
        &self,
        _locked: &HubState,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        keys_only: bool,
        max_bytes: usize,
    ) -> Result<RangePage, ReadError> {
        let lo = data_key(start);
        // The data prefix ends where the next prefix byte begins.
        let hi = end.map_or_else(|| vec![DATA + 1], data_key);
        let mut kvs = Vec::new();
        let mut bytes = 0usize;
        for item in self.tree.range(lo..hi) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let key = &k[1..];
            if kvs.len() >= limit || bytes >= max_bytes {
                return Ok(RangePage { kvs, next: Some(Bytes::copy_from_slice(key)) });
            }
            let mut kv = self.row(key, &v)?.to_kv(key);
            if keys_only {
                kv.value = Bytes::new();
            }
            bytes += kv.key.len() + kv.value.len();
            kvs.push(kv);
        }
        Ok(RangePage { kvs, next: None })
    }
}
