//! `hypercache.v1.KV`: Get, Put, Delete, CompareAndSwap, Range, Txn, Watch.
//!
//! Writes become transactions (CompareAndSwap: guards + put, with a read of the current state on
//! the failure branch, all at one revision). Reads are linearizable unless the request asks for
//! `serializable`. Keys beginning with 0xff (the game services' records) can be read and watched
//! but not written here.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::v1 as pb;
use hypercache_proto::v1::kv_server::Kv;
use hypercache_proto::Reason;
use tonic::{Request, Response, Status};

use super::ctx::{header, read_barrier, read_error, read_snapshot, unexpected, Ctx};
use super::game_common::rejected;
use super::stream::{forward, Convert, Out};
use super::validate::{MAX_TXN_OPS, RANGE_PAGE_BYTES};
use super::wire::write_id;
use crate::error::ServiceError;
use crate::machine::command::{
    Attach, Compare, CompareTarget, Op, OpResult, Rejection, Reply, Request as SmRequest, Txn, TxnResult,
};
use crate::machine::overlay::{Event, EventKind};
use crate::shard::Shard;
use crate::types::{home_of, LeaseId, ShardId};
use crate::watch_hub::KeyFilter;

/// Progress notification period when the request leaves it at 0.
const DEFAULT_PROGRESS_MS: u32 = 1000;

pub struct KvService {
    ctx: Ctx,
}

impl KvService {
    pub fn new(ctx: Ctx) -> Self {
        KvService { ctx }
    }

    async fn run_txn(
        &self,
        shard: &Shard,
        write: Option<pb::WriteId>,
        txn: Txn,
    ) -> Result<(u64, TxnResult), ServiceError> {
        self.check_lease_homes(shard, &txn).await?;
        match shard.submit_once(write_id(write)?, SmRequest::Txn(txn)).await? {
            (revision, Reply::Txn(result)) => Ok((revision, result)),
            (_, other) => Err(unexpected(shard, "txn", other)),
        }
    }

    /// A put may attach its key to a lease of another shard (the lease's home). The state
    /// machine cannot see that shard, so the lease is checked there first: a lease gone at home
    /// is LEASE_NOT_FOUND, as for a lease of this shard. One that ends between this check and
    /// the commit is caught by this shard's poll of the home (`lease_home.rs`). Every lease a
    /// transaction names is checked, whichever branch runs.
    async fn check_lease_homes(&self, shard: &Shard, txn: &Txn) -> Result<(), ServiceError> {
        let mut by_home: BTreeMap<ShardId, Vec<LeaseId>> = BTreeMap::new();
        for op in txn.success.iter().chain(&txn.failure) {
            if let Op::Put { attach: Attach::Lease(id), .. } = op {
                let home = home_of(*id);
                if home != shard.id {
                    by_home.entry(home).or_default().push(*id);
                }
            }
        }
        if !by_home.is_empty() {
            // Only the leader can propose the put: a follower fails fast, as without a lease.
            shard.leader_term()?;
        }
        for (home, ids) in by_home {
            if let Some(&id) = self.ctx.homes.ended(home, &ids).await?.first() {
                return Err(rejected(shard, Rejection::LeaseNotFound { id }));
            }
        }
        Ok(())
    }

    fn attach(&self, lease: u64, ttl_ms: u64) -> Result<Attach, ServiceError> {
        match (lease, ttl_ms) {
            (0, 0) => Ok(Attach::None),
            (id, 0) => Ok(Attach::Lease(LeaseId(id))),
            (0, ttl) => Ok(Attach::Ttl(self.ctx.validator.ttl("ttl_ms", i64::try_from(ttl).unwrap_or(i64::MAX))?)),
            _ => Err(ServiceError::invalid(Reason::InvalidArgument, "give either lease or ttl_ms, not both")),
        }
    }

    fn put_op(&self, req: pb::PutRequest) -> Result<Op, ServiceError> {
        self.ctx.validator.writable_key("key", &req.key)?;
        self.ctx.validator.value("value", &req.value)?;
        let attach = self.attach(req.lease, req.ttl_ms)?;
        Ok(Op::Put { key: req.key, value: req.value, prev_kv: req.prev_kv, attach })
    }

    async fn get(&self, req: pb::GetRequest) -> Result<pb::GetResponse, ServiceError> {
        let shard = self.ctx.keyed_shard(req.shard_id, &req.key)?;
        self.ctx.validator.key("key", &req.key)?;
        read_barrier(&shard, req.serializable).await?;
        let revision = shard.reader.revision();
        let kv = shard.reader.get(&req.key).map_err(|e| read_error(&shard, e))?;
        Ok(pb::GetResponse { header: header(&shard, revision), kv: kv.map(Into::into) })
    }

    async fn put(&self, mut req: pb::PutRequest) -> Result<pb::PutResponse, ServiceError> {
        let shard = self.ctx.keyed_shard(req.shard_id, &req.key)?;
        let write = req.write.take();
        let op = self.put_op(req)?;
        let (revision, result) = self.run_txn(&shard, write, Txn { success: vec![op], ..Txn::default() }).await?;
        match result.results.into_iter().next() {
            Some(OpResult::Put { prev, kv }) => Ok(pb::PutResponse {
                header: header(&shard, revision),
                prev_kv: prev.map(Into::into),
                kv: Some(kv.into()),
            }),
            other => Err(unexpected(&shard, "put", other)),
        }
    }

    async fn delete(&self, req: pb::DeleteRequest) -> Result<pb::DeleteResponse, ServiceError> {
        let shard = self.ctx.keyed_shard(req.shard_id, &req.key)?;
        self.ctx.validator.writable_key("key", &req.key)?;
        let op = Op::Delete { key: req.key, prev_kv: req.prev_kv };
        let (revision, result) = self.run_txn(&shard, req.write, Txn { success: vec![op], ..Txn::default() }).await?;
        match result.results.into_iter().next() {
            Some(OpResult::Delete { deleted, prev }) => {
                Ok(pb::DeleteResponse { header: header(&shard, revision), deleted, prev_kv: prev.map(Into::into) })
            }
            other => Err(unexpected(&shard, "delete", other)),
        }
    }

    async fn compare_and_swap(
        &self,
        req: pb::CompareAndSwapRequest,
    ) -> Result<pb::CompareAndSwapResponse, ServiceError> {
        let shard = self.ctx.keyed_shard(req.shard_id, &req.key)?;
        self.ctx.validator.writable_key("key", &req.key)?;
        self.ctx.validator.value("new_value", &req.new_value)?;
        if let Some(v) = &req.expected_value {
            self.ctx.validator.value("expected_value", v)?;
        }
        let mut compares = Vec::new();
        if let Some(rev) = req.expected_mod_revision {
            compares.push(Compare { key: req.key.clone(), target: CompareTarget::ModRevision(rev) });
        }
        if let Some(v) = req.expected_value {
            compares.push(Compare { key: req.key.clone(), target: CompareTarget::Value(v) });
        }
        if compares.is_empty() {
            return Err(ServiceError::invalid(
                Reason::InvalidArgument,
                "compare_and_swap needs expected_mod_revision and/or expected_value",
            ));
        }
        let txn = Txn {
            compares,
            success: vec![Op::Put { key: req.key.clone(), value: req.new_value, prev_kv: false, attach: Attach::None }],
            failure: vec![Op::Get { key: req.key }],
        };
        let (revision, result) = self.run_txn(&shard, req.write, txn).await?;
        let kv = match (result.succeeded, result.results.into_iter().next()) {
            (true, Some(OpResult::Put { kv, .. })) => Some(kv),
            (false, Some(OpResult::Get { kv })) => kv,
            (_, other) => return Err(unexpected(&shard, "compare_and_swap", other)),
        };
        Ok(pb::CompareAndSwapResponse {
            header: header(&shard, revision),
            succeeded: result.succeeded,
            kv: kv.map(Into::into),
        })
    }

    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let range = self.ctx.validator.range(&req.prefix, &req.start, &req.end, &req.continuation)?;
        let limit = self.ctx.validator.limit(req.limit)?;
        read_barrier(&shard, req.serializable).await?;
        let keys_only = req.keys_only;
        let (page, revision) = read_snapshot(&shard, move |s, locked| {
            s.reader
                .range(locked, &range.start, range.end.as_deref(), limit, keys_only, RANGE_PAGE_BYTES)
                .map_err(|e| read_error(s, e))
        })
        .await?;
        Ok(pb::RangeResponse {
            header: header(&shard, revision),
            kvs: page.kvs.into_iter().map(Into::into).collect(),
            continuation: page.next.unwrap_or_default(),
        })
    }

    fn compare(&self, c: pb::Compare) -> Result<Compare, ServiceError> {
        use pb::compare::Target;
        self.ctx.validator.key("compare.key", &c.key)?;
        let target = match c.target {
            Some(Target::Exists(b)) => CompareTarget::Exists(b),
            Some(Target::Value(v)) => {
                self.ctx.validator.value("compare.value", &v)?;
                CompareTarget::Value(v)
            }
            Some(Target::Version(v)) => CompareTarget::Version(v),
            Some(Target::ModRevision(r)) => CompareTarget::ModRevision(r),
            Some(Target::CreateRevision(r)) => CompareTarget::CreateRevision(r),
            Some(Target::Lease(l)) => CompareTarget::Lease(LeaseId(l)),
            None => return Err(ServiceError::invalid(Reason::InvalidArgument, "a compare needs a target")),
        };
        Ok(Compare { key: c.key, target })
    }

    fn ops(&self, branch: &str, ops: Vec<pb::RequestOp>) -> Result<Vec<Op>, ServiceError> {
        use pb::request_op::Op as P;
        if ops.len() > MAX_TXN_OPS {
            return Err(ServiceError::invalid(
                Reason::InvalidArgument,
                format!("{branch} has {} ops; the limit is {MAX_TXN_OPS}", ops.len()),
            ));
        }
        ops.into_iter()
            .map(|op| match op.op {
                Some(P::Get(g)) => {
                    self.ctx.validator.key("get.key", &g.key)?;
                    Ok(Op::Get { key: g.key })
                }
                Some(P::Put(p)) => self.put_op(p),
                Some(P::Delete(d)) => {
                    self.ctx.validator.writable_key("delete.key", &d.key)?;
                    Ok(Op::Delete { key: d.key, prev_kv: d.prev_kv })
                }
                None => Err(ServiceError::invalid(Reason::InvalidArgument, format!("an op in {branch} is empty"))),
            })
            .collect()
    }

    async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let compares = req.compares.into_iter().map(|c| self.compare(c)).collect::<Result<Vec<_>, _>>()?;
        let success = self.ops("success", req.success)?;
        let failure = self.ops("failure", req.failure)?;
        let keys = compares.iter().map(|c| c.key.as_ref()).chain(success.iter().chain(&failure).map(|op| match op {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key, .. } => key.as_ref(),
        }));
        if let Some(router) = self.ctx.router() {
            crate::routing::check_single_shard(router, req.shard_id, keys)?;
        }
        let (revision, result) = self.run_txn(&shard, req.write, Txn { compares, success, failure }).await?;
        let responses = result
            .results
            .into_iter()
            .map(|r| pb::ResponseOp {
                op: Some(match r {
                    OpResult::Get { kv } => {
                        pb::response_op::Op::Get(pb::GetResponse { header: None, kv: kv.map(Into::into) })
                    }
                    OpResult::Put { prev, kv } => pb::response_op::Op::Put(pb::PutResponse {
                        header: None,
                        prev_kv: prev.map(Into::into),
                        kv: Some(kv.into()),
                    }),
                    OpResult::Delete { deleted, prev } => pb::response_op::Op::Delete(pb::DeleteResponse {
                        header: None,
                        deleted,
                        prev_kv: prev.map(Into::into),
                    }),
                }),
            })
            .collect();
        Ok(pb::TxnResponse { header: header(&shard, revision), succeeded: result.succeeded, responses })
    }

    fn watch_filter(&self, req: &pb::WatchRequest) -> Result<KeyFilter, ServiceError> {
        let given = [!req.key.is_empty(), !req.prefix.is_empty(), !req.start.is_empty() || !req.end.is_empty()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ServiceError::invalid(Reason::InvalidRange, "give exactly one of key, prefix or start/end"));
        }
        if !req.key.is_empty() {
            self.ctx.validator.key("key", &req.key)?;
            return Ok(KeyFilter::key(req.key.clone()));
        }
        let range = self.ctx.validator.range(&req.prefix, &req.start, &req.end, b"")?;
        Ok(KeyFilter { start: Bytes::from(range.start), end: range.end.map(Bytes::from) })
    }

    fn watch(&self, req: pb::WatchRequest) -> Result<Out<pb::WatchResponse>, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let filter = self.watch_filter(&req)?;
        let every = match req.progress_interval_ms {
            0 => DEFAULT_PROGRESS_MS,
            ms => ms.clamp(10, 3_600_000),
        };
        let sub = shard.subscribe(filter, req.start_revision)?;
        let convert = WatchConvert { prev_kv: req.prev_kv };
        Ok(forward(shard, sub, None, convert, Duration::from_millis(u64::from(every))))
    }
}

struct WatchConvert {
    prev_kv: bool,
}

impl Convert<pb::WatchResponse> for WatchConvert {
    fn events(&mut self, shard: &Shard, events: &[Event]) -> Result<Option<pb::WatchResponse>, ServiceError> {
        let Some(last) = events.last() else { return Ok(None) };
        let events = events
            .iter()
            .map(|e| pb::Event {
                r#type: match e.kind {
                    EventKind::Put => pb::event::Type::Put as i32,
                    EventKind::Delete => pb::event::Type::Delete as i32,
                },
                kv: Some(e.kv.clone().into()),
                prev_kv: if self.prev_kv { e.prev.clone().map(Into::into) } else { None },
            })
            .collect();
        Ok(Some(pb::WatchResponse { header: header(shard, last.revision), events, progress: false }))
    }

    fn progress(&mut self, shard: &Shard, revision: u64) -> Option<pb::WatchResponse> {
        Some(pb::WatchResponse { header: header(shard, revision), events: Vec::new(), progress: true })
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    type WatchStream = Out<pb::WatchResponse>;

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.ctx.instrumented("Get", KvService::get(self, request.into_inner())).await
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.ctx.instrumented("Put", KvService::put(self, request.into_inner())).await
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        self.ctx.instrumented("Delete", KvService::delete(self, request.into_inner())).await
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        self.ctx.instrumented("CompareAndSwap", KvService::compare_and_swap(self, request.into_inner())).await
    }

    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        self.ctx.instrumented("Range", KvService::range(self, request.into_inner())).await
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.ctx.instrumented("Txn", KvService::txn(self, request.into_inner())).await
    }

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        self.ctx.instrumented("Watch", async { KvService::watch(self, request.into_inner()) }).await
    }
}
