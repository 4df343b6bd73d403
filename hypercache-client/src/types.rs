//! Results and options of the KV operations, converted from the wire types at the edge.

use bytes::Bytes;
use hypercache_proto::v1 as pb;

/// A key with its metadata (`create_revision`, `mod_revision`, `version`).
pub use pb::KeyValue;

/// Result of [`Client::put`](crate::Client::put).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// Revision the write was applied at.
    pub revision: u64,
    /// The key as written.
    pub kv: Option<KeyValue>,
    /// The key before the write, if it existed.
    pub prev_kv: Option<KeyValue>,
}

/// Result of [`Client::delete`](crate::Client::delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    pub revision: u64,
    /// False when the key did not exist (still a success).
    pub deleted: bool,
    pub prev_kv: Option<KeyValue>,
}

/// Result of [`Client::compare_and_swap`](crate::Client::compare_and_swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasResult {
    pub succeeded: bool,
    pub revision: u64,
    /// On success the key as written; on failure its current state (`None` if missing).
    pub kv: Option<KeyValue>,
}

/// What [`Client::range`](crate::Client::range) reads: a prefix, or `[start, end)` (an empty
/// `end` means "to the end of the keyspace"); everything when all three are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    pub prefix: Bytes,
    pub start: Bytes,
    pub end: Bytes,
    /// Keys per page; 0 means the server default (1000); at most 10000.
    pub limit: u32,
    /// `RangePage::continuation` of the previous page, to resume after it.
    pub continuation: Option<Bytes>,
    pub serializable: bool,
    pub keys_only: bool,
}

impl RangeOptions {
    /// All keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        RangeOptions { prefix: prefix.into(), ..Self::default() }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        RangeOptions { start: start.into(), end: end.into(), ..Self::default() }
    }

    pub(crate) fn to_request(&self, shard_id: u32) -> pb::RangeRequest {
        pb::RangeRequest {
            shard_id,
            prefix: self.prefix.clone(),
            start: self.start.clone(),
            end: self.end.clone(),
            limit: self.limit,
            continuation: self.continuation.clone().unwrap_or_default(),
            serializable: self.serializable,
            keys_only: self.keys_only,
        }
    }
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// `Some` when more keys remain: pass it as [`RangeOptions::continuation`].
    pub continuation: Option<Bytes>,
    /// The serving node's applied revision.
    pub revision: u64,
}

fn revision(header: Option<&pb::ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.revision)
}

impl From<pb::PutResponse> for PutResult {
    fn from(r: pb::PutResponse) -> Self {
        PutResult { revision: revision(r.header.as_ref()), kv: r.kv, prev_kv: r.prev_kv }
    }
}

impl From<pb::DeleteResponse> for DeleteResult {
    fn from(r: pb::DeleteResponse) -> Self {
        DeleteResult { revision: revision(r.header.as_ref()), deleted: r.deleted, prev_kv: r.prev_kv }
    }
}

impl From<pb::CompareAndSwapResponse> for CasResult {
    fn from(r: pb::CompareAndSwapResponse) -> Self {
        CasResult { succeeded: r.succeeded, revision: revision(r.header.as_ref()), kv: r.kv }
    }
}

impl From<pb::RangeResponse> for RangePage {
    fn from(r: pb::RangeResponse) -> Self {
        RangePage {
            revision: revision(r.header.as_ref()),
            kvs: r.kvs,
            continuation: (!r.continuation.is_empty()).then_some(r.continuation),
        }
    }
}
