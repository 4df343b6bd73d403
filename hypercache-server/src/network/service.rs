//! Inbound Raft RPCs: decode, route to the shard's `Raft` by shard id, encode the result
//! (including errors the Raft returned, which the sender turns into `RemoteError`).

use std::sync::Arc;

use hypercache_proto::raft::v1::raft_server::Raft as RaftRpc;
use hypercache_proto::raft::v1::RaftMessage;
use openraft::error::RaftError;
use openraft::Raft;
use tonic::{Request, Response, Status};

use super::codec;
use crate::placement::ops::{self, ShardOp};
use crate::replica::ReplicaHost;
use crate::shard::Shards;
use crate::types::{NodeId, ShardId, TypeConfig};

pub struct RaftService {
    shards: Arc<Shards>,
    host: Arc<ReplicaHost>,
}

impl RaftService {
    pub fn new(shards: Arc<Shards>, host: Arc<ReplicaHost>) -> Self {
        RaftService { shards, host }
    }

    fn raft(&self, shard_id: u32) -> Result<Raft<TypeConfig>, Status> {
        self.shards
            .get(ShardId(shard_id))
            .map(|s| s.raft.clone())
            .ok_or_else(|| Status::not_found(format!("this node hosts no replica of shard {shard_id}")))
    }
}

fn decode<T: serde::de::DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    codec::decode(&msg.payload)
        .map_err(|e| Status::invalid_argument(format!("shard {}: malformed raft payload: {e}", msg.shard_id)))
}

/// Encodes the Raft's answer. A stopped Raft is reported as UNAVAILABLE (the sender treats the
/// peer as unreachable and backs off) rather than as a remote error from a live peer.
fn reply<T: serde::Serialize, E: serde::Serialize + std::error::Error>(
    shard_id: u32,
    result: &Result<T, RaftError<NodeId, E>>,
) -> Result<Response<RaftMessage>, Status> {
    if let Err(RaftError::Fatal(f)) = result {
        return Err(Status::unavailable(format!("shard {shard_id}: raft is stopped: {f}")));
    }
    let payload = codec::encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { shard_id, payload: payload.into() }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let raft = self.raft(msg.shard_id)?;
        let result = raft.append_entries(decode(&msg)?).await;
        reply(msg.shard_id, &result)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let raft = self.raft(msg.shard_id)?;
        let result = raft.vote(decode(&msg)?).await;
        reply(msg.shard_id, &result)
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let raft = self.raft(msg.shard_id)?;
        let result = raft.install_snapshot(decode(&msg)?).await;
        reply(msg.shard_id, &result)
    }

    async fn shard_op(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let op: ShardOp = decode(&msg)?;
        let shard = ShardId(msg.shard_id);
        let result = match tokio::time::timeout(ops::OP_TIMEOUT, ops::apply(&self.host, shard, op.clone())).await {
            Ok(r) => r,
            Err(_) => Err(format!("shard {shard}: {op:?} did not finish within {} s", ops::OP_TIMEOUT.as_secs())),
        };
        if let Err(e) = &result {
            tracing::info!(shard = %shard, op = ?op, error = %e, "placement step failed");
        }
        let payload = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftMessage { shard_id: msg.shard_id, payload: payload.into() }))
    }
}
