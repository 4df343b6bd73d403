//! The Raft service (`hypercache.raft.v1.Raft`), the Raft RPCs other nodes send this one: decode,
//! route to the shard's `Raft` by shard id, encode the result, including errors the Raft returned,
//! which the sender turns into `RemoteError`. Placement steps and lease-home questions have their
//! own services (`placement.rs`, `lease_home.rs`); this one still answers their old paths for
//! nodes of earlier versions.
//!
//! `AppendBatch` carries several shards' AppendEntries (see [`crate::network::batch`]). Its messages are
//! handed to their shards all at once, so their log writes share a flush, and each answer is
//! streamed back as soon as its shard gives it: a heartbeat does not wait for another shard's flush.

use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use hypercache_proto::raft::v1::raft_server::Raft as RaftRpc;
use hypercache_proto::raft::v1::{RaftBatch, RaftMessage, RaftReply};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::contact::LeaderContact;
use crate::identity::Stamp;
use crate::network::admit::Admission;
use crate::network::batch::to_reply;
use crate::network::{SnapshotHeader, SNAPSHOT_PIECE_BYTES};
use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;
use crate::replica::ReplicaHost;
use crate::shard::Shards;
use crate::storage::Snapshot;
use crate::types::ShardId;

use super::peer_msg::{decode, encode, message, peer_span};

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
}

fn raft_of(shards: &Shards, shard_id: u32) -> Result<ShardRaft, Status> {
    shards
        .get(ShardId(shard_id))
        .map(|s| s.raft.clone())
        .ok_or_else(|| Status::not_found(format!("this node hosts no replica of shard {shard_id}")))
}

/// Encodes the Raft's answer. A stopped Raft is reported as UNAVAILABLE (the sender treats the
/// peer as unreachable and backs off) rather than as a remote error from a live peer.
fn encode_result<T: serde::Serialize, E: serde::Serialize + std::error::Error>(
    shard_id: u32,
    result: &Result<T, RaftError<TypeConfig, E>>,
) -> Result<bytes::Bytes, Status> {
    if let Err(RaftError::Fatal(f)) = result {
        return Err(Status::unavailable(format!("shard {shard_id}: raft is stopped: {f}")));
    }
    encode(result)
}

/// One Raft RPC on `msg`, in the span `rpc`: admit the sender, find the shard's Raft, decode the
/// request, hand it to `call` (the Raft method) and encode its answer.
async fn serve_raft<Req, Resp, E, F, Fut>(
    rpc: &'static str,
    shards: &Shards,
    admission: &Admission,
    msg: &RaftMessage,
    call: F,
) -> Result<bytes::Bytes, Status>
where
    Req: serde::de::DeserializeOwned,
    Resp: serde::Serialize,
    E: serde::Serialize + std::error::Error,
    F: FnOnce(ShardRaft, Req) -> Fut,
    Fut: Future<Output = Result<Resp, RaftError<TypeConfig, E>>>,
{
    async {
        admission.check(msg).await?;
        let raft = raft_of(shards, msg.shard_id)?;
        let result = call(raft, decode(msg)?).await;
        encode_result(msg.shard_id, &result)
    }
    .instrument(peer_span(rpc, msg.shard_id))
    .await
}

/// AppendEntries on `raft`, recording contact with the leader when the sender is this replica's
/// leader (anything but a stale leader's message, which is answered `HigherVote`).
async fn append(
    contact: Option<Arc<LeaderContact>>,
    raft: ShardRaft,
    req: AppendEntriesRequest<TypeConfig>,
) -> Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>> {
    let result = raft.append_entries(req).await;
    if let (Some(contact), Ok(resp)) = (&contact, &result) {
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            contact.heard();
        }
    }
    result
}

fn contact_of(shards: &Shards, shard_id: u32) -> Option<Arc<LeaderContact>> {
    shards.get(ShardId(shard_id)).map(|s| s.contact.clone())
}

/// Message `index` of an `AppendBatch`: what `AppendEntries` would have answered, as a reply.
async fn append_one(shards: Arc<Shards>, admission: Arc<Admission>, index: u32, msg: RaftMessage) -> RaftReply {
    let contact = contact_of(&shards, msg.shard_id);
    let result = serve_raft("AppendBatch", &shards, &admission, &msg, |raft, req| append(contact, raft, req)).await;
    to_reply(index, msg.shard_id, result)
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.append_messages.observe(1.0);
        let msg = request.into_inner();
        let contact = contact_of(&self.shards, msg.shard_id);
        let call = |raft: ShardRaft, req| append(contact, raft, req);
        Ok(message(msg.shard_id, serve_raft("AppendEntries", &self.shards, &self.admission, &msg, call).await?))
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
        let call = |raft: ShardRaft, req| async move { raft.vote(req).await };
        Ok(message(msg.shard_id, serve_raft("Vote", &self.shards, &self.admission, &msg, call).await?))
    }

    async fn pre_vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let call = |raft: ShardRaft, req| async move { raft.pre_vote(req).await };
        Ok(message(msg.shard_id, serve_raft("PreVote", &self.shards, &self.admission, &msg, call).await?))
    }

    async fn transfer_leader(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let call = |raft: ShardRaft, req| async move {
            raft.handle_transfer_leader(req).await.map_err(RaftError::<TypeConfig>::Fatal)
        };
        Ok(message(msg.shard_id, serve_raft("TransferLeader", &self.shards, &self.admission, &msg, call).await?))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut pieces = request.into_inner();
        let first = pieces.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let shard_id = first.shard_id;
        async {
            self.admission.check(&first).await?;
            let raft = raft_of(&self.shards, shard_id)?;
            let header: SnapshotHeader = decode(&first)?;
            let len = usize::try_from(header.len)
                .map_err(|_| Status::invalid_argument(format!("shard {shard_id}: snapshot of {} bytes", header.len)))?;
            let mut data = Vec::with_capacity(len.min(64 * SNAPSHOT_PIECE_BYTES));
            while let Some(piece) = pieces.message().await? {
                if piece.shard_id != shard_id || data.len() + piece.payload.len() > len {
                    return Err(Status::invalid_argument(format!(
                        "shard {shard_id}: snapshot piece of shard {} with {} bytes after {} of {len}",
                        piece.shard_id,
                        piece.payload.len(),
                        data.len()
                    )));
                }
                data.extend_from_slice(&piece.payload);
            }
            if data.len() != len {
                return Err(Status::invalid_argument(format!(
                    "shard {shard_id}: snapshot stream ended after {} of {len} bytes",
                    data.len()
                )));
            }
            let snapshot = Snapshot { meta: header.meta, snapshot: Cursor::new(data) };
            let result =
                raft.install_full_snapshot(header.vote, snapshot).await.map_err(RaftError::<TypeConfig>::Fatal);
            if result.is_ok() {
                if let Some(contact) = contact_of(&self.shards, shard_id) {
                    contact.heard();
                }
            }
            Ok(message(shard_id, encode_result(shard_id, &result)?))
        }
        .instrument(peer_span("InstallSnapshot", shard_id))
        .await
    }

    /// The old path of `Placement.ShardOp`, for nodes of earlier versions.
    async fn shard_op(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        super::placement::serve(&self.host, request.into_inner()).await
    }

    /// The old path of `LeaseHome.LeaseEnds`, for nodes of earlier versions.
    async fn lease_ends(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        super::lease_home::serve(&self.shards, request.into_inner()).await
    }
}
