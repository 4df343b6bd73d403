//! Outbound Raft RPCs for one shard.
//!
//! Error mapping matters to openraft's retry behaviour: a transport failure is `Unreachable`
//! (openraft backs off before retrying, see [`PeerClient::backoff`]), an expired deadline is
//! `Timeout` (retried with the next heartbeat or append, no backoff), and an error the remote
//! Raft returned is `RemoteError`, decoded from the response payload.
//!
//! openraft 0.9 gives each AppendEntries only `heartbeat_interval` and cancels it after that. We
//! therefore send no gRPC deadline of our own: a server-side deadline arrives as `CANCELLED
//! "Timeout expired"`, which looked like a transport failure and cost a 500 ms backoff during
//! which the follower got nothing, a commit stall that showed up in every watch and write p99.
//!
//! AppendEntries (heartbeats included) do not go out on their own: they join the peer's
//! [`AppendBatcher`], shared by every shard of this node, which sends what is waiting as one
//! `AppendBatch` call. Votes and snapshot chunks are rare and go out directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hypercache_proto::raft::v1::raft_client::RaftClient;
use hypercache_proto::raft::v1::RaftMessage;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::batch::AppendBatcher;
use super::links::RaftRpc as Rpc;
use super::pool::{BadPeerAddr, PeerPool};
use crate::encoding::codec;
use crate::identity::Stamp;
use crate::raft_types::TypeConfig;
use crate::types::{Incarnation, NodeId, NodeInfo, ShardId};

/// Creates [`PeerClient`]s for one shard over the node-wide [`PeerPool`].
#[derive(Clone)]
pub struct NetworkFactory {
    shard: ShardId,
    me: NodeId,
    stamp: Arc<Stamp>,
    pool: PeerPool,
    max_message_bytes: usize,
}

impl NetworkFactory {
    pub fn new(shard: ShardId, stamp: Arc<Stamp>, pool: PeerPool, max_message_bytes: usize) -> Self {
        NetworkFactory { shard, me: stamp.node_id, stamp, pool, max_message_bytes }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        let channel = self.pool.channel(&node.addr).map_err(Arc::new);
        let appends = self.pool.appends(&node.addr).map_err(Arc::new);
        PeerClient {
            shard: self.shard,
            me: self.me,
            target,
            target_incarnation: node.incarnation,
            stamp: self.stamp.clone(),
            addr: node.addr.clone(),
            channel,
            appends,
            pool: self.pool.clone(),
            failing_since: None,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// Sends one shard's Raft messages to one peer.
pub struct PeerClient {
    shard: ShardId,
    me: NodeId,
    target: NodeId,
    /// The target's incarnation as the membership that created this client records it: the
    /// target refuses our messages if its data dir is another one now.
    target_incarnation: Incarnation,
    stamp: Arc<Stamp>,
    addr: String,
    /// An invalid address is reported on every call rather than panicking at creation (shared:
    /// the error is not `Clone` and every call reports it).
    channel: Result<Channel, Arc<BadPeerAddr>>,
    /// The peer's append queue, shared with the node's other shards.
    appends: Result<AppendBatcher, Arc<BadPeerAddr>>,
    pool: PeerPool,
    /// Start of the current run of failed calls; None after a success.
    failing_since: Option<Instant>,
    max_message_bytes: usize,
}

/// After this long without one successful call, the peer's connection is replaced by a new one.
/// A pod that came back under its name with a new IP leaves the old HTTP/2 connection pointing at
/// an address nobody answers; HTTP/2 keepalive would take 15 s to notice. A fresh connection
/// resolves the name again.
const RECONNECT_AFTER: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result = self.call_once(kind, req, option).await;
        match &result {
            Ok(_) | Err(RPCError::RemoteError(_)) => self.failing_since = None,
            Err(_) => self.note_failure(),
        }
        result
    }

    fn note_failure(&mut self) {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        if now.duration_since(since) >= RECONNECT_AFTER {
            tracing::info!(shard = %self.shard, peer = self.target, addr = %self.addr,
                "no answer from the peer for {} ms; reconnecting (the name is resolved again)",
                RECONNECT_AFTER.as_millis());
            self.pool.evict(&self.addr);
            self.channel = self.pool.channel(&self.addr).map_err(Arc::new);
            self.appends = self.pool.appends(&self.addr).map_err(Arc::new);
            self.failing_since = Some(now);
        }
    }

    async fn call_once<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if !self.pool.links().allows(&self.addr, kind) {
            let e =
                TransportError(format!("{kind:?} to node {} at {} blocked by test control", self.target, self.addr));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let payload = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage {
            shard_id: self.shard.0,
            payload: payload.into(),
            to_node: self.target,
            to_incarnation: self.target_incarnation.0,
            cluster_id: self.stamp.cluster().map(|c| c.0).unwrap_or_default(),
        };
        let ttl: Duration = option.hard_ttl();
        let sent = match kind {
            Rpc::Append => {
                let appends = match &self.appends {
                    Ok(a) => a.clone(),
                    Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&TransportError(e.to_string())))),
                };
                tokio::time::timeout(ttl, appends.send(msg, tokio::time::Instant::now() + ttl)).await
            }
            Rpc::Vote | Rpc::Snapshot => {
                let channel = match &self.channel {
                    Ok(ch) => ch.clone(),
                    Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&TransportError(e.to_string())))),
                };
                let mut client = RaftClient::new(channel)
                    .max_decoding_message_size(self.max_message_bytes)
                    .max_encoding_message_size(self.max_message_bytes);
                let request = tonic::Request::new(msg);
                let fut = async {
                    let resp = match kind {
                        Rpc::Vote => client.vote(request).await,
                        _ => client.install_snapshot(request).await,
                    };
                    resp.map(|r| r.into_inner().payload)
                };
                tokio::time::timeout(ttl, fut).await
            }
        };
        let resp = match sent {
            Err(_) => return Err(self.timeout(kind, ttl)),
            Ok(Err(status)) if matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled) => {
                return Err(self.timeout(kind, ttl))
            }
            Ok(Err(status)) => {
                let e = TransportError(format!(
                    "shard {} {:?} to node {} at {}: {}",
                    self.shard, kind, self.target, self.addr, status
                ));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Ok(payload)) => payload,
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&resp).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn timeout<E: std::error::Error>(
        &self,
        kind: Rpc,
        ttl: Duration,
    ) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
        let action = match kind {
            Rpc::Append => openraft::RPCTypes::AppendEntries,
            Rpc::Vote => openraft::RPCTypes::Vote,
            Rpc::Snapshot => openraft::RPCTypes::InstallSnapshot,
        };
        RPCError::Timeout(Timeout { action, id: self.me, target: self.target, timeout: ttl })
    }
}

/// Backoff after `Unreachable`: 20 ms doubling to 500 ms. openraft's default is a flat 500 ms,
/// long enough to stall commits when one follower had a hiccup while the other is slow; a down
/// peer refuses connections cheaply, so retrying it sooner costs little.
fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    (0u32..).map(|n| Duration::from_millis(20u64.saturating_mul(1u64 << n.min(5)).min(500)))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(unreachable_backoff())
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_20ms_and_caps_at_500ms() {
        let got: Vec<u64> = unreachable_backoff().take(8).map(|d| d.as_millis() as u64).collect();
        assert_eq!(got, vec![20, 40, 80, 160, 320, 500, 500, 500]);
    }
}
