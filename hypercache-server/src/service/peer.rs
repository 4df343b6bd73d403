//! The peer service (`hypercache.raft.v1`), what other nodes call on this one: inbound Raft RPCs
//! (decode, route to the shard's `Raft` by shard id, encode the result, including errors the Raft
//! returned, which the sender turns into `RemoteError`), the placement driver's steps for this
//! node's replicas ([`crate::placement::ops`]) and lease-home queries ([`crate::lease_home`]).
//! It sits here, above placement and the lease homes, so that `network/` (the transport) needs
//! neither.
//!
//! `AppendBatch` carries several shards' AppendEntries (see [`super::batch`]). Its messages are
//! handed to their shards all at once, so their log writes share a flush, and each answer is
//! streamed back as soon as its shard gives it: a heartbeat does not wait for another shard's flush.

use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use hypercache_proto::raft::v1::raft_server::Raft as RaftRpc;
use hypercache_proto::raft::v1::{RaftBatch, RaftMessage, RaftReply};
use openraft::error::RaftError;
use openraft::Raft;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::identity::Stamp;
use crate::lease_home::{self, LeaseEndsReply};
use crate::network::admit::Admission;
use crate::network::batch::to_reply;
use crate::network::codec;
use crate::placement::ops::{self, ShardOp};
use crate::raft_types::TypeConfig;
use crate::replica::ReplicaHost;
use crate::shard::Shards;
use crate::types::{LeaseId, NodeId, ShardId};

pub struct RaftService {
    shards: Arc<Shards>,
    host: Arc<ReplicaHost>,
    admission: Arc<Admission>,
    /// Observes the AppendEntries messages per call (`hypercache_raft_append_messages_per_call`).
    append_messages: prometheus::Histogram,
}

impl RaftService {
    pub fn new(
        shards: Arc<Shards>,
        host: Arc<ReplicaHost>,
        stamp: Arc<Stamp>,
        append_messages: prometheus::Histogram,
    ) -> Self {
        RaftService { shards, host, admission: Arc::new(Admission::new(stamp)), append_messages }
    }

    fn raft(&self, shard_id: u32) -> Result<Raft<TypeConfig>, Status> {
        raft_of(&self.shards, shard_id)
    }
}

fn raft_of(shards: &Shards, shard_id: u32) -> Result<Raft<TypeConfig>, Status> {
    shards
        .get(ShardId(shard_id))
        .map(|s| s.raft.clone())
        .ok_or_else(|| Status::not_found(format!("this node hosts no replica of shard {shard_id}")))
}

fn decode<T: serde::de::DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    codec::decode(&msg.payload)
        .map_err(|e| Status::invalid_argument(format!("shard {}: malformed raft payload: {e}", msg.shard_id)))
}

/// Encodes the Raft's answer. A stopped Raft is reported as UNAVAILABLE (the sender treats the
/// peer as unreachable and backs off) rather than as a remote error from a live peer.
fn encode_result<T: serde::Serialize, E: serde::Serialize + std::error::Error>(
    shard_id: u32,
    result: &Result<T, RaftError<NodeId, E>>,
) -> Result<bytes::Bytes, Status> {
    if let Err(RaftError::Fatal(f)) = result {
        return Err(Status::unavailable(format!("shard {shard_id}: raft is stopped: {f}")));
    }
    Ok(codec::encode(result).map_err(|e| Status::internal(e.to_string()))?.into())
}

fn reply<T: serde::Serialize, E: serde::Serialize + std::error::Error>(
    shard_id: u32,
    result: &Result<T, RaftError<NodeId, E>>,
) -> Result<Response<RaftMessage>, Status> {
    let payload = encode_result(shard_id, result)?;
    Ok(Response::new(RaftMessage { shard_id, payload, ..Default::default() }))
}

/// Message `index` of an `AppendBatch`: what `AppendEntries` would have answered, as a reply.
async fn append_one(shards: Arc<Shards>, admission: Arc<Admission>, index: u32, msg: RaftMessage) -> RaftReply {
    let shard_id = msg.shard_id;
    let result = async {
        admission.check(&msg).await?;
        let raft = raft_of(&shards, shard_id)?;
        let result = raft.append_entries(decode(&msg)?).await;
        encode_result(shard_id, &result)
    }
    .instrument(raft_span("AppendBatch", shard_id))
    .await;
    to_reply(index, shard_id, result)
}

/// The span of one inbound peer call (level DEBUG, so free unless enabled: see
/// docs/operations.md).
fn raft_span(rpc: &'static str, shard: u32) -> tracing::Span {
    tracing::debug_span!("peer", rpc, shard)
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.append_messages.observe(1.0);
        let msg = request.into_inner();
        let span = raft_span("AppendEntries", msg.shard_id);
        async {
            self.admission.check(&msg).await?;
            let raft = self.raft(msg.shard_id)?;
            let result = raft.append_entries(decode(&msg)?).await;
            reply(msg.shard_id, &result)
        }
        .instrument(span)
        .await
    }

    type AppendBatchStream = Pin<Box<dyn Stream<Item = Result<RaftReply, Status>> + Send + 'static>>;

    async fn append_batch(&self, request: Request<RaftBatch>) -> Result<Response<Self::AppendBatchStream>, Status> {
        let messages = request.into_inner().messages;
        self.append_messages.observe(messages.len() as f64);
        // Polled together: the first poll hands every shard its message, so their appends reach
        // the group-commit flusher together; answers leave in the order they complete.
        let replies: FuturesUnordered<_> = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                append_one(self.shards.clone(), self.admission.clone(), u32::try_from(i).unwrap_or(u32::MAX), m)
            })
            .collect();
        Ok(Response::new(Box::pin(replies.map(Ok))))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let span = raft_span("Vote", msg.shard_id);
        async {
            self.admission.check(&msg).await?;
            let raft = self.raft(msg.shard_id)?;
            let result = raft.vote(decode(&msg)?).await;
            reply(msg.shard_id, &result)
        }
        .instrument(span)
        .await
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let span = raft_span("InstallSnapshot", msg.shard_id);
        async {
            self.admission.check(&msg).await?;
            let raft = self.raft(msg.shard_id)?;
            let result = raft.install_snapshot(decode(&msg)?).await;
            reply(msg.shard_id, &result)
        }
        .instrument(span)
        .await
    }

    async fn shard_op(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let span = raft_span("ShardOp", msg.shard_id);
        async {
            let op: ShardOp = decode(&msg)?;
            let reply = ops::serve(&self.host, ShardId(msg.shard_id), op).await;
            let payload = codec::encode(&reply).map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(RaftMessage { shard_id: msg.shard_id, payload: payload.into(), ..Default::default() }))
        }
        .instrument(span)
        .await
    }

    async fn lease_ends(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let span = raft_span("LeaseEnds", msg.shard_id);
        async {
            let ids: Vec<LeaseId> = decode(&msg)?;
            let reply = match self.shards.get(ShardId(msg.shard_id)) {
                Some(shard) => match lease_home::ended_here(&shard, &ids).await {
                    Ok(ended) => LeaseEndsReply::Ended(ended),
                    Err(e) => LeaseEndsReply::Failed(e.to_string()),
                },
                None => LeaseEndsReply::Failed(format!("this node hosts no replica of shard {}", msg.shard_id)),
            };
            let payload = codec::encode(&reply).map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(RaftMessage { shard_id: msg.shard_id, payload: payload.into(), ..Default::default() }))
        }
        .instrument(span)
        .await
    }
}
