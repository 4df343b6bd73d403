//! One call of a peer service other than Raft (a placement step, a lease-home question): the
//! request encoded into a `RaftMessage` for its shard, sent on the peer's shared connection to
//! the service that now answers it, and again on the Raft service's old path if the peer answers
//! UNIMPLEMENTED (a node of a version before that service), all within one time limit; the
//! answer decoded. The callers' own errors add what the answer said.

use std::future::Future;
use std::time::Duration;

use hypercache_proto::raft::v1::RaftMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use super::pool::{BadPeerAddr, PeerPool};
use crate::encoding::codec::{self, CodecError};
use crate::types::ShardId;

/// Where a peer call failed before the peer could answer it.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    #[error(transparent)]
    BadAddr(#[from] BadPeerAddr),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{addr} did not answer within {} ms", limit.as_millis())]
    NoAnswer { addr: String, limit: Duration },
    /// The call failed on the way (connection refused, unknown RPC, ...).
    #[error("{addr}: {code:?}: {message}")]
    Transport { addr: String, code: Code, message: String },
}

/// Sends `request` about `shard` to `addr` with `call` (the service's client method), or with
/// `old_path` if the peer does not have that service, and decodes the answer.
pub async fn call<Req, Resp, New, NewFut, Old, OldFut>(
    pool: &PeerPool,
    addr: &str,
    shard: ShardId,
    request: &Req,
    limit: Duration,
    call: New,
    old_path: Old,
) -> Result<Resp, PeerCallError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
    New: FnOnce(Channel, RaftMessage) -> NewFut,
    NewFut: Future<Output = Result<Response<RaftMessage>, Status>>,
    Old: FnOnce(Channel, RaftMessage) -> OldFut,
    OldFut: Future<Output = Result<Response<RaftMessage>, Status>>,
{
    let channel = pool.channel(addr)?;
    let msg = RaftMessage { shard_id: shard.0, payload: codec::encode(request)?.into(), ..Default::default() };
    let both = async {
        match call(channel.clone(), msg.clone()).await {
            Err(s) if s.code() == Code::Unimplemented => old_path(channel, msg).await,
            answer => answer,
        }
    };
    let reply = tokio::time::timeout(limit, both)
        .await
        .map_err(|_| PeerCallError::NoAnswer { addr: addr.to_string(), limit })?
        .map_err(|s| PeerCallError::Transport {
            addr: addr.to_string(),
            code: s.code(),
            message: s.message().to_string(),
        })?;
    Ok(codec::decode(&reply.into_inner().payload)?)
}
