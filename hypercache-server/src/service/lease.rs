//! `hypercache.v1.Lease`: Grant, Revoke, KeepAlive (stream and unary), TimeToLive.
//!
//! Grant and Revoke are replicated requests. KeepAlive and TimeToLive are answered by the shard
//! leader from its lease clock after a read barrier (see `lease_clock.rs` for why that makes a
//! renewal safe); a follower answers NOT_LEADER like any write.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use hypercache_proto::v1 as pb;
use hypercache_proto::v1::lease_server::Lease;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::ctx::{header, read_error, unexpected, Ctx};
use super::game_common::rejected;
use super::wire::write_id;
use crate::error::ServiceError;
use crate::lease_clock::Renewal;
use crate::machine::command::{LeaseOp, Rejection, Reply, Request as SmRequest};
use crate::types::LeaseId;

pub struct LeaseService {
    ctx: Ctx,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LeaseService {
    pub fn new(ctx: Ctx) -> Self {
        LeaseService { ctx }
    }

    async fn grant(&self, req: pb::LeaseGrantRequest) -> Result<pb::LeaseGrantResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let ttl_ms = self.ctx.validator.ttl("ttl_ms", req.ttl_ms)?;
        match shard.submit_once(write_id(req.write)?, SmRequest::Lease(LeaseOp::Grant { ttl_ms })).await? {
            (revision, Reply::LeaseGranted { id, ttl_ms }) => Ok(pb::LeaseGrantResponse {
                header: header(&shard, revision),
                id: id.0,
                ttl_ms: i64::try_from(ttl_ms).unwrap_or(i64::MAX),
            }),
            (_, other) => Err(unexpected(&shard, "grant", other)),
        }
    }

    async fn revoke(&self, req: pb::LeaseRevokeRequest) -> Result<pb::LeaseRevokeResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        match shard.submit_once(write_id(req.write)?, SmRequest::Lease(LeaseOp::Revoke { id: LeaseId(req.id) })).await?
        {
            (revision, Reply::LeasesEnded { deleted_keys }) => {
                Ok(pb::LeaseRevokeResponse { header: header(&shard, revision), deleted_keys })
            }
            (_, other) => Err(unexpected(&shard, "revoke", other)),
        }
    }

    async fn keep_alive_once(
        &self,
        req: pb::LeaseKeepAliveRequest,
    ) -> Result<pb::LeaseKeepAliveResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let ttl_ms = match shard.keep_alive(LeaseId(req.id)).await? {
            Renewal::Renewed { ttl } => ms(ttl),
            Renewal::Gone => 0,
        };
        Ok(pb::LeaseKeepAliveResponse { header: header(&shard, shard.reader.revision()), id: req.id, ttl_ms })
    }

    async fn time_to_live(&self, req: pb::LeaseTimeToLiveRequest) -> Result<pb::LeaseTimeToLiveResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        shard.read_barrier().await?;
        let term = shard.leader_term()?;
        let revision = shard.reader.revision();
        let record = shard.reader.lease(LeaseId(req.id)).map_err(|e| read_error(&shard, e))?;
        let (Some(record), Some((ttl, left))) = (record, shard.clock.time_to_live(LeaseId(req.id), term)) else {
            return Err(rejected(&shard, Rejection::LeaseNotFound { id: LeaseId(req.id) }));
        };
        Ok(pb::LeaseTimeToLiveResponse {
            header: header(&shard, revision),
            id: req.id,
            granted_ttl_ms: ms(ttl),
            remaining_ms: ms(left),
            keys: if req.keys { record.keys.into_iter().collect() } else { Vec::new() },
        })
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    type KeepAliveStream = KeepAliveStream;

    async fn grant(&self, request: Request<pb::LeaseGrantRequest>) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.ctx.instrumented("LeaseGrant", LeaseService::grant(self, request.into_inner())).await
    }

    async fn revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.ctx.instrumented("LeaseRevoke", LeaseService::revoke(self, request.into_inner())).await
    }

    async fn keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let this = LeaseService { ctx: self.ctx.clone() };
        let mut input = request.into_inner();
        // One response per request, in order; an error (NOT_LEADER, ...) ends the stream and the
        // client reconnects to the leader.
        let output = async_stream_like(move |tx| async move {
            loop {
                let item = tokio::select! {
                    item = input.next() => item,
                    _ = this.ctx.stopped() => {
                        let node = this.ctx.shards.iter().next().map_or(0, |s| s.node_id);
                        let _ = tx.send(Err(ServiceError::ShuttingDown { node }.into_status())).await;
                        return;
                    }
                };
                let Some(item) = item else { return };
                let reply = match item {
                    Ok(req) => this.keep_alive_once(req).await.map_err(ServiceError::into_status),
                    Err(status) => Err(status),
                };
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(output))
    }

    async fn keep_alive_once(
        &self,
        request: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        self.ctx.instrumented("LeaseKeepAlive", LeaseService::keep_alive_once(self, request.into_inner())).await
    }

    async fn time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.ctx.instrumented("LeaseTimeToLive", LeaseService::time_to_live(self, request.into_inner())).await
    }
}

/// Runs `body` in a task that feeds a bounded channel, and returns the channel as a stream.
fn async_stream_like<T, F, Fut>(body: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
