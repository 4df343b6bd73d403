//! What the peer services share: a `RaftMessage` payload decoded, an answer encoded into one, and
//! the span of an inbound peer call. Payloads are postcard (`encoding/codec.rs`).

use hypercache_proto::raft::v1::RaftMessage;
use tonic::{Response, Status};

use crate::encoding::codec;

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

/// The span of one inbound peer call (level DEBUG, so free unless enabled: see
/// docs/operations.md).
pub(super) fn peer_span(rpc: &'static str, shard: u32) -> tracing::Span {
    tracing::debug_span!("peer", rpc, shard)
}
