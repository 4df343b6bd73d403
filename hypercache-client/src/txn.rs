//! Multi-key transactions: compares, then one of two op lists, atomically at one revision.
//!
//! ```no_run
//! # async fn demo(client: hypercache_client::Client) -> Result<(), hypercache_client::Error> {
//! use hypercache_client::{Compare, Op, Txn};
//! let result = client
//!     .txn(Txn::new().when(Compare::mod_revision("k", 5)).then(Op::put("k", "v")).otherwise(Op::get("k")))
//!     .await?;
//! # let _ = result; Ok(()) }
//! ```
//!
//! All keys (of the compares and of both branches) must live in one shard: the client checks
//! this against the routing table before sending and refuses a transaction that spans shards
//! with [`Error::InvalidArgument`] (reason `CROSS_SHARD`), naming two keys and their shards.
//! Keys that share a hash tag (`{user:42}:balance`, `{user:42}:items`) always share a shard.
//! A transaction with a put or a
//! delete in either branch is a write (never blindly retried); one made of gets only is a read.
//! A failed comparison is not an error: `succeeded` is false and the `otherwise` ops ran.

use bytes::Bytes;
use hypercache_proto::v1 as pb;
use hypercache_proto::Reason;
use pb::compare::Target;
use pb::request_op::Op as WireOp;
use pb::response_op::Op as WireResult;

use crate::call::request;
use crate::client::Client;
use crate::error::Error;
use crate::ids::ShardId;
use crate::retry::OpKind;
use crate::target::{self, Route};
use crate::types::{revision, DeleteResult, KeyValue, LeaseId, PutOptions, PutResult};

/// One condition of a transaction. A missing key has version, mod_revision, create_revision
/// and lease 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare(pb::Compare);

impl Compare {
    fn new(key: impl Into<Bytes>, target: Target) -> Self {
        Compare(pb::Compare { key: key.into(), target: Some(target) })
    }

    /// The key exists and holds exactly `value`.
    pub fn value(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Compare::new(key, Target::Value(value.into()))
    }

    pub fn version(key: impl Into<Bytes>, version: u64) -> Self {
        Compare::new(key, Target::Version(version))
    }

    pub fn mod_revision(key: impl Into<Bytes>, revision: u64) -> Self {
        Compare::new(key, Target::ModRevision(revision))
    }

    pub fn create_revision(key: impl Into<Bytes>, revision: u64) -> Self {
        Compare::new(key, Target::CreateRevision(revision))
    }

    /// The key is attached to `lease` (`LeaseId(0)`: to no lease).
    pub fn lease(key: impl Into<Bytes>, lease: LeaseId) -> Self {
        Compare::new(key, Target::Lease(lease.0))
    }

    pub fn exists(key: impl Into<Bytes>) -> Self {
        Compare::new(key, Target::Exists(true))
    }

    pub fn missing(key: impl Into<Bytes>) -> Self {
        Compare::new(key, Target::Exists(false))
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op(OpSpec);

#[derive(Debug, Clone, PartialEq, Eq)]
enum OpSpec {
    Get(Bytes),
    Put(Bytes, Bytes, PutOptions),
    Delete(Bytes, bool),
}

impl Op {
    pub fn get(key: impl Into<Bytes>) -> Self {
        Op(OpSpec::Get(key.into()))
    }

    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Op::put_with(key, value, PutOptions::default())
    }

    /// A put with a lease, a TTL or `prev_kv` (validated when the transaction is sent).
    pub fn put_with(key: impl Into<Bytes>, value: impl Into<Bytes>, options: PutOptions) -> Self {
        Op(OpSpec::Put(key.into(), value.into(), options))
    }

    pub fn delete(key: impl Into<Bytes>) -> Self {
        Op(OpSpec::Delete(key.into(), false))
    }

    /// A delete that also returns the deleted key-value.
    pub fn delete_returning_prev(key: impl Into<Bytes>) -> Self {
        Op(OpSpec::Delete(key.into(), true))
    }

    fn is_read(&self) -> bool {
        matches!(self.0, OpSpec::Get(_))
    }

    fn key(&self) -> &Bytes {
        match &self.0 {
            OpSpec::Get(key) | OpSpec::Put(key, _, _) | OpSpec::Delete(key, _) => key,
        }
    }

    fn to_wire(&self, shard: ShardId) -> Result<pb::RequestOp, Error> {
        let op = match &self.0 {
            OpSpec::Get(key) => WireOp::Get(pb::GetOp { key: key.clone() }),
            OpSpec::Put(key, value, options) => {
                let mut put = options.to_request(shard, key.clone(), value.clone())?;
                // Inside a transaction the shard is the transaction's.
                put.shard_id = 0;
                WireOp::Put(put)
            }
            OpSpec::Delete(key, prev_kv) => {
                WireOp::Delete(pb::DeleteRequest { shard_id: 0, key: key.clone(), prev_kv: *prev_kv, write: None })
            }
        };
        Ok(pb::RequestOp { op: Some(op) })
    }
}

/// A transaction under construction: `when` compares, `then` ops if all hold, `otherwise` ops
/// if not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<Op>,
    failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }

    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    pub fn then(mut self, op: Op) -> Self {
        self.success.push(op);
        self
    }

    pub fn otherwise(mut self, op: Op) -> Self {
        self.failure.push(op);
        self
    }

    fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(Op::is_read)
    }

    /// Every key the transaction touches, compares first.
    fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.compares.iter().map(|c| &c.0.key).chain(self.success.iter().chain(&self.failure).map(Op::key))
    }

    /// The one key that decides the shard (`None` for a transaction without keys), or the
    /// refusal naming two keys in different shards.
    fn shard_key(&self, shard_of: impl Fn(&[u8]) -> ShardId) -> Result<Option<Bytes>, Error> {
        let mut keys = self.keys();
        let Some(first) = keys.next() else { return Ok(None) };
        let shard = shard_of(first);
        if let Some(other) = keys.find(|k| shard_of(k) != shard) {
            let (a, b) = (String::from_utf8_lossy(first), String::from_utf8_lossy(other));
            return Err(Error::InvalidArgument {
                reason: Reason::CrossShard,
                message: format!(
                    "a transaction's keys must live in one shard, but {a:?} is in shard {shard} and {b:?} is in \
                     shard {}; give the keys a common hash tag, e.g. \"{{user:42}}:balance\" and \
                     \"{{user:42}}:items\" both live in the shard of \"user:42\"",
                    shard_of(other)
                ),
            });
        }
        Ok(Some(first.clone()))
    }

    fn to_request(&self, shard: ShardId) -> Result<pb::TxnRequest, Error> {
        let ops = |ops: &[Op]| ops.iter().map(|op| op.to_wire(shard)).collect::<Result<Vec<_>, _>>();
        Ok(pb::TxnRequest {
            shard_id: shard.0,
            compares: self.compares.iter().map(|c| c.0.clone()).collect(),
            success: ops(&self.success)?,
            failure: ops(&self.failure)?,
            write: None,
        })
    }
}

/// The result of one op of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Get(Option<KeyValue>),
    /// `revision` is the transaction's.
    Put(PutResult),
    /// `revision` is the transaction's.
    Delete(DeleteResult),
}

/// Result of [`Client::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// True if every compare held and the `then` ops ran.
    pub succeeded: bool,
    /// The revision the transaction was applied at (the current one if it changed nothing).
    pub revision: u64,
    /// One per op of the branch that ran, in order.
    pub responses: Vec<OpResult>,
}

impl From<pb::TxnResponse> for TxnResult {
    fn from(r: pb::TxnResponse) -> Self {
        let revision = revision(r.header.as_ref());
        let responses = r
            .responses
            .into_iter()
            .filter_map(|op| op.op)
            .map(|op| match op {
                WireResult::Get(get) => OpResult::Get(get.kv),
                WireResult::Put(put) => OpResult::Put(PutResult { revision, kv: put.kv, prev_kv: put.prev_kv }),
                WireResult::Delete(del) => {
                    OpResult::Delete(DeleteResult { revision, deleted: del.deleted, prev_kv: del.prev_kv })
                }
            })
            .collect();
        TxnResult { succeeded: r.succeeded, revision, responses }
    }
}

impl Client {
    /// Runs `txn` atomically in the shard of its keys (a transaction without keys goes to the
    /// home shard). See the module documentation for the one-shard rule and retry rules.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, Error> {
        let mut msg = txn.to_request(ShardId(0))?;
        let table = self.routing().await?;
        let target = match txn.shard_key(|key| table.shard_of(key))? {
            Some(key) => target::Target::Key(key),
            None => target::Target::Home,
        };
        let pending = (!txn.is_read_only()).then(|| self.begin_write());
        msg.write = pending.as_ref().and_then(|p| p.id());
        let kind = if pending.is_some() { OpKind::Tracked } else { OpKind::Read };
        let response = self
            .execute("txn", kind, target, Route::Leader, |ch, shard, t| {
                let mut kv = self.kv(ch);
                let req = request(pb::TxnRequest { shard_id: shard.0, ..msg.clone() }, t);
                let seen = &self.inner.seen;
                async move { seen.check(shard, false, kv.txn(req).await) }
            })
            .await?;
        Ok(response.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_maps_to_the_wire() {
        let txn = Txn::new()
            .when(Compare::mod_revision("k", 5))
            .when(Compare::missing("other"))
            .then(Op::put_with("k", "v", PutOptions::lease(LeaseId(9))))
            .then(Op::delete("other"))
            .otherwise(Op::get("k"));
        assert!(!txn.is_read_only());
        let req = txn.to_request(ShardId(3)).expect("valid");
        assert_eq!(req.shard_id, 3);
        assert_eq!(req.compares[0].target, Some(Target::ModRevision(5)));
        assert_eq!(req.compares[1].target, Some(Target::Exists(false)));
        match &req.success[0].op {
            Some(WireOp::Put(put)) => assert_eq!((put.key.as_ref(), put.lease), (&b"k"[..], 9)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&req.failure[0].op, Some(WireOp::Get(g)) if g.key.as_ref() == b"k"));
        assert!(Txn::new().when(Compare::exists("k")).then(Op::get("k")).is_read_only());
        let bad = Txn::new().then(Op::put_with("k", "v", PutOptions::ttl(std::time::Duration::ZERO)));
        assert!(bad.to_request(ShardId(0)).is_err());
    }

    #[test]
    fn transactions_spanning_shards_are_refused_before_sending() {
        let router = hypercache_proto::routing::Router::new(8);
        let shard_of = |key: &[u8]| ShardId(router.shard_of(key));
        // "a" and "hello" live in different shards of 8 (pinned in proto's routing tests).
        let (a, b) = (shard_of(b"a"), shard_of(b"hello"));
        assert_ne!(a, b);
        let txn = Txn::new().when(Compare::exists("a")).then(Op::put("a", "1")).otherwise(Op::get("hello"));
        let err = txn.shard_key(shard_of).expect_err("two shards");
        assert!(err.is_reason(Reason::CrossShard), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("\"a\" is in shard {a}")), "{text}");
        assert!(text.contains(&format!("\"hello\" is in shard {b}")), "{text}");
        assert!(text.contains("hash tag"), "{text}");
        assert!(matches!(err, Error::InvalidArgument { .. }));

        let tagged = Txn::new().when(Compare::exists("{u1}:a")).then(Op::put("{u1}:b", "1")).otherwise(Op::get("u1"));
        assert_eq!(tagged.shard_key(shard_of).expect("one shard"), Some(Bytes::from_static(b"{u1}:a")));
        assert_eq!(Txn::new().shard_key(shard_of).expect("no keys"), None);
    }

    #[test]
    fn op_results_take_the_transaction_revision() {
        let response = pb::TxnResponse {
            header: Some(pb::ResponseHeader { revision: 12, ..Default::default() }),
            succeeded: false,
            responses: vec![
                pb::ResponseOp { op: Some(WireResult::Get(pb::GetResponse { header: None, kv: None })) },
                pb::ResponseOp {
                    op: Some(WireResult::Delete(pb::DeleteResponse { deleted: true, ..Default::default() })),
                },
            ],
        };
        let result = TxnResult::from(response);
        assert!(!result.succeeded);
        assert_eq!(result.responses[0], OpResult::Get(None));
        assert!(matches!(&result.responses[1], OpResult::Delete(d) if d.revision == 12 && d.deleted));
    }
}
