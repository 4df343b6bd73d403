//! Outbound Raft RPCs for one shard (openraft's `RaftNetworkV2`).
//!
//! Error mapping matters to openraft's retry behaviour: a transport failure is `Unreachable`
//! (openraft backs off before retrying, see [`PeerClient::backoff`]), an expired deadline is
//! `Timeout` (retried with the next heartbeat or append, no backoff). A peer whose Raft has
//! stopped answers UNAVAILABLE, which is a transport failure here too.
//!
//! openraft gives each AppendEntries only `heartbeat_interval` and cancels it after that. We
//! therefore send no gRPC deadline of our own: a server-side deadline arrives as `CANCELLED
//! "Timeout expired"`, which looked like a transport failure and cost a 500 ms backoff during
//! which the follower got nothing, a commit stall that showed up in every watch and write p99.
//!
//! AppendEntries (heartbeats included) do not go out on their own: they join the peer's
//! [`AppendBatcher`], shared by every shard of this node, which sends what is waiting as one
//! `AppendBatch` call. Votes, pre-votes, leadership transfers and snapshots are rare and go out
//! directly; a snapshot goes whole, as one client-streamed call of 1 MiB pieces.

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypercache_proto::raft::v1::raft_client::RaftClient;
use hypercache_proto::raft::v1::RaftMessage;
use openraft::error::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::batch::AppendBatcher;
use super::links::RaftRpc as Rpc;
use super::pool::{BadPeerAddr, PeerPool};
use crate::encoding::codec;
use crate::identity::Stamp;
use crate::raft_types::{SnapshotMeta, TypeConfig, Vote};
use crate::storage::Snapshot;
use crate::types::{Incarnation, NodeId, NodeInfo, ShardId};

/// The first message of an `InstallSnapshot` call: whose snapshot, what it covers, how long its
/// data is (the pieces that follow must add up to it).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub len: u64,
}

/// Snapshot data goes in pieces of at most this many bytes (far below any peer message limit).
pub const SNAPSHOT_PIECE_BYTES: usize = 1024 * 1024;

/// The Raft RPCs this client sends. `link` is the kind a test's link control blocks them by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Append,
    Vote,
    PreVote,
    TransferLeader,
}

impl Call {
    fn link(self) -> Rpc {
        match self {
            Call::Append => Rpc::Append,
            Call::Vote | Call::PreVote | Call::TransferLeader => Rpc::Vote,
        }
    }

    fn action(self) -> openraft::RPCTypes {
        match self {
            Call::Append => openraft::RPCTypes::AppendEntries,
            Call::Vote | Call::PreVote => openraft::RPCTypes::Vote,
            Call::TransferLeader => openraft::RPCTypes::TransferLeader,
        }
    }
}

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

fn unreachable(e: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::new(&TransportError(e.to_string()))
}

impl PeerClient {
    async fn call<Req, Resp>(&mut self, kind: Call, req: &Req, option: &RPCOption) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let result = self.call_once(kind, req, option).await;
        match &result {
            Ok(_) => self.failing_since = None,
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

    /// The envelope of one message to the target about this shard.
    fn message(&self, payload: bytes::Bytes) -> RaftMessage {
        RaftMessage {
            shard_id: self.shard.0,
            payload,
            to_node: self.target,
            to_incarnation: self.target_incarnation.0,
            cluster_id: self.stamp.cluster().map(|c| c.0).unwrap_or_default(),
        }
    }

    /// A gRPC client on the peer's connection, or why there is none.
    fn client(&self) -> Result<RaftClient<Channel>, Unreachable<TypeConfig>> {
        let channel = self.channel.as_ref().map_err(unreachable)?.clone();
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes))
    }

    fn blocked(&self, kind: Rpc) -> Option<Unreachable<TypeConfig>> {
        (!self.pool.links().allows(&self.addr, kind))
            .then(|| unreachable(format!("{kind:?} to node {} at {} blocked by test control", self.target, self.addr)))
    }

    async fn call_once<Req, Resp>(
        &mut self,
        kind: Call,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        if let Some(e) = self.blocked(kind.link()) {
            return Err(RPCError::Unreachable(e));
        }
        let payload = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = self.message(payload.into());
        let ttl: Duration = option.hard_ttl();
        let sent = match kind {
            Call::Append => {
                let appends = self.appends.as_ref().map_err(unreachable)?.clone();
                tokio::time::timeout(ttl, appends.send(msg, tokio::time::Instant::now() + ttl)).await
            }
            Call::Vote | Call::PreVote | Call::TransferLeader => {
                let mut client = self.client()?;
                let request = tonic::Request::new(msg);
                let fut = async {
                    let resp = match kind {
                        Call::Vote => client.vote(request).await,
                        Call::PreVote => client.pre_vote(request).await,
                        _ => client.transfer_leader(request).await,
                    };
                    resp.map(|r| r.into_inner().payload)
                };
                tokio::time::timeout(ttl, fut).await
            }
        };
        let resp = match sent {
            Err(_) => return Err(RPCError::Timeout(self.timeout(kind.action(), ttl))),
            Ok(Err(status)) if matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled) => {
                return Err(RPCError::Timeout(self.timeout(kind.action(), ttl)))
            }
            Ok(Err(status)) => return Err(RPCError::Unreachable(self.failed(kind, status))),
            Ok(Ok(payload)) => payload,
        };
        // The peer's Raft answers errors only when it has stopped, which its service turns into
        // UNAVAILABLE; one that still arrives here is the peer's failure all the same.
        let result: Result<Resp, RaftError<TypeConfig>> =
            codec::decode(&resp).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::Unreachable(unreachable(format!("node {}: {e}", self.target))))
    }

    fn failed(&self, kind: impl std::fmt::Debug, status: tonic::Status) -> Unreachable<TypeConfig> {
        unreachable(format!("shard {} {:?} to node {} at {}: {}", self.shard, kind, self.target, self.addr, status))
    }

    fn timeout(&self, action: openraft::RPCTypes, ttl: Duration) -> Timeout<TypeConfig> {
        Timeout { action, id: self.me, target: self.target, timeout: ttl }
    }

    /// Sends `snapshot` whole: a header, then its data in pieces, on one client-streamed call,
    /// given up when openraft closes the replication (`cancel`) or the option's deadline passes.
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: &RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        if let Some(e) = self.blocked(Rpc::Snapshot) {
            return Err(StreamingError::Unreachable(e));
        }
        let data = snapshot.snapshot.into_inner();
        let header = SnapshotHeader { vote, meta: snapshot.meta, len: data.len() as u64 };
        let header = codec::encode(&header).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let mut messages = vec![self.message(header.into())];
        let data = bytes::Bytes::from(data);
        let mut at = 0;
        while at < data.len() {
            let end = (at + SNAPSHOT_PIECE_BYTES).min(data.len());
            messages.push(self.message(data.slice(at..end)));
            at = end;
        }
        let mut client = self.client()?;
        let ttl = option.hard_ttl();
        let call =
            async { client.install_snapshot(tokio_stream::iter(messages)).await.map(|r| r.into_inner().payload) };
        let payload = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            sent = tokio::time::timeout(ttl, call) => match sent {
                Err(_) => return Err(StreamingError::Timeout(self.timeout(openraft::RPCTypes::InstallSnapshot, ttl))),
                Ok(Err(status)) => return Err(StreamingError::Unreachable(self.failed("InstallSnapshot", status))),
                Ok(Ok(payload)) => payload,
            },
        };
        let result: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> =
            codec::decode(&payload).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::Unreachable(unreachable(format!("node {}: {e}", self.target))))
    }
}

/// Backoff after `Unreachable`: 20 ms doubling to 500 ms. openraft's default is a flat 500 ms,
/// long enough to stall commits when one follower had a hiccup while the other is slow; a down
/// peer refuses connections cheaply, so retrying it sooner costs little.
fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    (0u32..).map(|n| Duration::from_millis(20u64.saturating_mul(1u64 << n.min(5)).min(500)))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Call::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Call::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Call::PreVote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let result = self.send_snapshot(vote, snapshot, cancel, &option).await;
        match &result {
            Ok(_) => self.failing_since = None,
            Err(StreamingError::Closed(_)) => {}
            Err(_) => self.note_failure(),
        }
        result
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Call::TransferLeader, &req, &option).await
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(unreachable_backoff()))
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
