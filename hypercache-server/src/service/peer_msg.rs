//! What the peer services share: a `RaftMessage` payload decoded, an answer encoded into one, and
//! the span of an inbound peer call. Payloads are postcard (`encoding/codec.rs`).

use std::future::Future;

use hypercache_proto::raft::v1::RaftMessage;
use tonic::{Response, Status};
use tracing::Instrument;

use crate::encoding::codec;
use crate::types::ShardId;

/// The request carried by `msg`; a payload that does not decode is the sender's error.
pub(super) fn decode<T: serde::de::DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    codec::decode(&msg.payload)
        .map_err(|e| Status::invalid_argument(format!("shard {}: malformed peer payload: {e}", msg.shard_id)))
}

/// Encodes an answer that is not a Raft result (a placement step's, a lease-home question's).
pub(super) fn encode<T: serde::Serialize>(reply: &T) -> Result<bytes::Bytes, Status> {
    Ok(codec::encode(reply).map_err(|e| Status::internal(e.to_string()))?.into())
}

/// `payload` as the answer to a call about `shard_id`.
pub(super) fn message(shard_id: u32, payload: bytes::Bytes) -> Response<RaftMessage> {
    Response::new(RaftMessage { shard_id, payload, ..Default::default() })
}

/// One inbound peer call that is not Raft's, in the span `rpc`: the request decoded, `answer`
/// asked with its shard, the reply encoded into the answer message.
pub(super) async fn serve<Req, Reply, F, Fut>(
    rpc: &'static str,
    msg: RaftMessage,
    answer: F,
) -> Result<Response<RaftMessage>, Status>
where
    Req: serde::de::DeserializeOwned,
    Reply: serde::Serialize,
    F: FnOnce(ShardId, Req) -> Fut,
    Fut: Future<Output = Reply>,
{
    async {
        let reply = answer(ShardId(msg.shard_id), decode(&msg)?).await;
        Ok(message(msg.shard_id, encode(&reply)?))
    }
    .instrument(peer_span(rpc, msg.shard_id))
    .await
}

/// The span of one inbound peer call (level DEBUG, so free unless enabled: see
/// docs/operations.md).
pub(super) fn peer_span(rpc: &'static str, shard: u32) -> tracing::Span {
    tracing::debug_span!("peer", rpc, shard)
}
