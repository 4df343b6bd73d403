//! `hypercache.v1.KV`: Get, Put, Delete, CompareAndSwap, Range.
//!
//! Writes become one-op transactions (CompareAndSwap: guards + put, with a read of the current
//! state on the failure branch, all at one revision). Reads are linearizable unless the request
//! asks for `serializable`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hypercache_proto::v1 as pb;
use hypercache_proto::v1::kv_server::Kv;
use tonic::{Request, Response, Status};

use super::validate::{Validator, RANGE_PAGE_BYTES};
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::shard::{Shard, Shards};
use crate::types::{Applied, Compare, CompareTarget, Op, OpResult, Txn};

pub struct KvService {
    shards: Arc<Shards>,
    validator: Validator,
    metrics: Arc<Metrics>,
}

impl KvService {
    pub fn new(shards: Arc<Shards>, validator: Validator, metrics: Arc<Metrics>) -> Self {
        KvService { shards, validator, metrics }
    }

    /// Runs one request, recording its latency and status code.
    async fn instrumented<T, F>(&self, method: &'static str, fut: F) -> Result<Response<T>, Status>
    where
        F: Future<Output = Result<T, ServiceError>>,
    {
        let started = Instant::now();
        let result = fut.await.map_err(ServiceError::into_status);
        let code = result.as_ref().map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code());
        self.metrics.observe(method, code, started.elapsed().as_secs_f64());
        result.map(Response::new)
    }

    fn header(shard: &Shard, revision: u64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            shard_id: shard.id.0,
            revision,
            node_id: shard.node_id,
            raft_term: shard.current_term(),
        })
    }

    async fn read_barrier(shard: &Shard, serializable: bool) -> Result<(), ServiceError> {
        if serializable {
            Ok(())
        } else {
            shard.read_barrier().await
        }
    }

    fn read_error(shard: &Shard, e: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal { shard: shard.id, detail: format!("reading the state machine: {e}") }
    }

    async fn get(&self, req: pb::GetRequest) -> Result<pb::GetResponse, ServiceError> {
        let shard = self.shards.lookup(req.shard_id)?;
        self.validator.key("key", &req.key)?;
        Self::read_barrier(shard, req.serializable).await?;
        let revision = shard.reader.revision();
        let kv = shard.reader.get(&req.key).map_err(|e| Self::read_error(shard, e))?;
        Ok(pb::GetResponse { header: Self::header(shard, revision), kv: kv.map(Into::into) })
    }

    async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, ServiceError> {
        let shard = self.shards.lookup(req.shard_id)?;
        self.validator.key("key", &req.key)?;
        self.validator.value("value", &req.value)?;
        let op = Op::Put { key: req.key, value: req.value, prev_kv: req.prev_kv };
        let Applied { revision, result } = shard.write(Txn { success: vec![op], ..Txn::default() }).await?;
        match result.results.into_iter().next() {
            Some(OpResult::Put { prev, kv }) => Ok(pb::PutResponse {
                header: Self::header(shard, revision),
                prev_kv: prev.map(Into::into),
                kv: Some(kv.into()),
            }),
            other => Err(unexpected(shard, "put", other)),
        }
    }

    async fn delete(&self, req: pb::DeleteRequest) -> Result<pb::DeleteResponse, ServiceError> {
        let shard = self.shards.lookup(req.shard_id)?;
        self.validator.key("key", &req.key)?;
        let op = Op::Delete { key: req.key, prev_kv: req.prev_kv };
        let Applied { revision, result } = shard.write(Txn { success: vec![op], ..Txn::default() }).await?;
        match result.results.into_iter().next() {
            Some(OpResult::Delete { deleted, prev }) => {
                Ok(pb::DeleteResponse { header: Self::header(shard, revision), deleted, prev_kv: prev.map(Into::into) })
            }
            other => Err(unexpected(shard, "delete", other)),
        }
    }

    async fn compare_and_swap(
        &self,
        req: pb::CompareAndSwapRequest,
    ) -> Result<pb::CompareAndSwapResponse, ServiceError> {
        let shard = self.shards.lookup(req.shard_id)?;
        self.validator.key("key", &req.key)?;
        self.validator.value("new_value", &req.new_value)?;
        if let Some(v) = &req.expected_value {
            self.validator.value("expected_value", v)?;
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
                "INVALID_ARGUMENT",
                "compare_and_swap needs expected_mod_revision and/or expected_value",
            ));
        }
        let txn = Txn {
            compares,
            success: vec![Op::Put { key: req.key.clone(), value: req.new_value, prev_kv: false }],
            failure: vec![Op::Get { key: req.key }],
        };
        let Applied { revision, result } = shard.write(txn).await?;
        let kv = match (result.succeeded, result.results.into_iter().next()) {
            (true, Some(OpResult::Put { kv, .. })) => Some(kv),
            (false, Some(OpResult::Get { kv })) => kv,
            (_, other) => return Err(unexpected(shard, "compare_and_swap", other)),
        };
        Ok(pb::CompareAndSwapResponse {
            header: Self::header(shard, revision),
            succeeded: result.succeeded,
            kv: kv.map(Into::into),
        })
    }

    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, ServiceError> {
        let shard = self.shards.lookup(req.shard_id)?;
        let range = self.validator.range(&req.prefix, &req.start, &req.end, &req.continuation)?;
        let limit = self.validator.limit(req.limit)?;
        Self::read_barrier(shard, req.serializable).await?;
        let revision = shard.reader.revision();
        let page = shard
            .reader
            .range(&range.start, range.end.as_deref(), limit, req.keys_only, RANGE_PAGE_BYTES)
            .map_err(|e| Self::read_error(shard, e))?;
        Ok(pb::RangeResponse {
            header: Self::header(shard, revision),
            kvs: page.kvs.into_iter().map(Into::into).collect(),
            continuation: page.next.unwrap_or_default(),
        })
    }
}

fn unexpected(shard: &Shard, op: &str, got: Option<OpResult>) -> ServiceError {
    ServiceError::Internal { shard: shard.id, detail: format!("{op}: unexpected transaction result {got:?}") }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.instrumented("Get", KvService::get(self, request.into_inner())).await
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.instrumented("Put", KvService::put(self, request.into_inner())).await
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        self.instrumented("Delete", KvService::delete(self, request.into_inner())).await
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        self.instrumented("CompareAndSwap", KvService::compare_and_swap(self, request.into_inner())).await
    }

    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        self.instrumented("Range", KvService::range(self, request.into_inner())).await
    }
}
