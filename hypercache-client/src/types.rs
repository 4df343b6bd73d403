//! Results and options of the KV operations (and the lease id they name), converted from the wire
//! types at the edge. A leaf: every operation module uses these, so this file uses none of them.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::v1 as pb;

use crate::error::Error;
use crate::ids::ShardId;

/// A key with its metadata (`create_revision`, `mod_revision`, `version`, and `lease`: the lease
/// it is attached to, 0 for none).
pub use pb::KeyValue;

/// A lease id as the server hands it out (never 0; 0 on the wire means "no lease"). The top 16
/// bits are the shard that granted it (`shard << 48 | n`), so every lease operation is routed by
/// id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

impl LeaseId {
    /// The shard that granted the lease: it keeps it alive and decides its end.
    pub fn shard(self) -> ShardId {
        ShardId(hypercache_proto::keys::lease_shard(self.0))
    }
}

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for LeaseId {
    fn from(id: u64) -> Self {
        LeaseId(id)
    }
}

/// Options of [`Client::put_with`](crate::Client::put_with) and [`Op::put_with`](crate::Op::put_with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Attach the key to this existing lease: it is deleted when the lease ends.
    pub lease: Option<LeaseId>,
    /// Give the key a lease of its own with this TTL (rounded up to whole milliseconds). A later
    /// put without a TTL removes it. Mutually exclusive with `lease`.
    pub ttl: Option<Duration>,
    /// Return the previous key-value.
    pub prev_kv: bool,
}

impl PutOptions {
    /// Attach the key to `lease`.
    pub fn lease(lease: LeaseId) -> Self {
        PutOptions { lease: Some(lease), ..Self::default() }
    }

    /// Give the key its own TTL.
    pub fn ttl(ttl: Duration) -> Self {
        PutOptions { ttl: Some(ttl), ..Self::default() }
    }

    /// Checks what only the client can check (a zero TTL would silently mean "no TTL" on the
    /// wire); the server validates everything else.
    pub(crate) fn to_request(self, shard: ShardId, key: Bytes, value: Bytes) -> Result<pb::PutRequest, Error> {
        if self.lease.is_some() && self.ttl.is_some() {
            return Err(Error::config("put: give either a lease or a TTL, not both"));
        }
        let ttl_ms = match self.ttl {
            Some(ttl) if ttl.is_zero() => return Err(Error::config("put: a TTL must be at least 1 ms")),
            Some(ttl) => millis_ceil(ttl),
            None => 0,
        };
        Ok(pb::PutRequest {
            shard_id: shard.0,
            key,
            value,
            prev_kv: self.prev_kv,
            lease: self.lease.map_or(0, |l| l.0),
            ttl_ms: u64::try_from(ttl_ms).unwrap_or(u64::MAX),
            write: None,
        })
    }
}

/// `d` in whole milliseconds, rounded up (so a sub-millisecond TTL is not 0 = "none"), saturated.
pub(crate) fn millis_ceil(d: Duration) -> i64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A wire TTL in milliseconds as a duration; negative values are zero.
pub(crate) fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

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
/// `end` means "to the end of the keyspace"); everything when all three are empty. Unless the
/// prefix holds a complete hash tag, the keys are spread over every shard and the client merges
/// the shards' pages (see `Client::range`).
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

    pub(crate) fn to_request(&self, shard: ShardId) -> pb::RangeRequest {
        pb::RangeRequest {
            shard_id: shard.0,
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

/// One page of a range read, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// `Some` when more keys remain: pass it as [`RangeOptions::continuation`].
    pub continuation: Option<Bytes>,
    /// When one shard served the page: its revision on the serving node. 0 when the page was
    /// merged from several shards (revisions are per shard; see `revisions`).
    pub revision: u64,
    /// Every shard that served the page, with its revision on the serving node.
    pub revisions: BTreeMap<ShardId, u64>,
}

pub(crate) fn revision(header: Option<&pb::ResponseHeader>) -> u64 {
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

impl RangePage {
    /// The page one shard served.
    pub(crate) fn from_shard(shard: ShardId, r: pb::RangeResponse) -> Self {
        let revision = revision(r.header.as_ref());
        RangePage {
            revision,
            revisions: BTreeMap::from([(shard, revision)]),
            kvs: r.kvs,
            continuation: (!r.continuation.is_empty()).then_some(r.continuation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_options_map_to_the_wire_and_reject_ambiguity() {
        let req =
            PutOptions::ttl(Duration::from_micros(1500)).to_request(ShardId(0), "k".into(), "v".into()).expect("valid");
        assert_eq!((req.ttl_ms, req.lease), (2, 0), "rounded up, never 0");
        let req = PutOptions::lease(LeaseId(7)).to_request(ShardId(0), "k".into(), "v".into()).expect("valid");
        assert_eq!((req.ttl_ms, req.lease), (0, 7));
        assert!(PutOptions::ttl(Duration::ZERO).to_request(ShardId(0), "k".into(), "v".into()).is_err());
        let both = PutOptions { lease: Some(LeaseId(1)), ttl: Some(Duration::from_secs(1)), prev_kv: false };
        assert!(both.to_request(ShardId(0), "k".into(), "v".into()).is_err());
        assert_eq!(millis_ceil(Duration::MAX), i64::MAX);
        assert_eq!(duration_ms(-5), Duration::ZERO);
    }

    #[test]
    fn lease_ids_carry_their_shard() {
        assert_eq!(LeaseId(7).shard(), ShardId(0), "legacy ids are shard 0");
        assert_eq!(LeaseId(3 << 48 | 42).shard(), ShardId(3));
        assert_eq!(LeaseId(u64::MAX).shard(), ShardId(0xffff));
    }
}
