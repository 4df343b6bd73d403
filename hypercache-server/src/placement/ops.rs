//! The steps the placement driver asks a node to carry out, and how the node carries them out.
//!
//! Each step is small and idempotent, so the driver can simply resend it on its next round when
//! an answer is lost: opening an open replica, initializing an initialized shard, adding a
//! learner that is already one, or asking for voters the shard already has all succeed.
//! Membership steps go to the shard's leader (openraft changes membership there); `Open`,
//! `Close` and `Elect` go to the node whose replica they concern.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hypercache_proto::raft::v1::raft_client::RaftClient;
use hypercache_proto::raft::v1::RaftMessage;
use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::network::codec;
use crate::network::PeerPool;
use crate::replica::ReplicaHost;
use crate::types::{NodeId, NodeInfo, ShardId};

/// One placement step for one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardOp {
    /// Open (or create, empty) this node's replica of the shard.
    Open,
    /// Initialize a new shard with these voters (sent to `initial[0]`, or to another initial voter
    /// when `initial[0]` does not host it, once a majority of them have opened; always the same voters).
    Initialize { voters: BTreeMap<NodeId, NodeInfo> },
    /// On the leader: add a (non-voting) learner.
    AddLearner { id: NodeId, node: NodeInfo },
    /// On the leader: make exactly these the voters (one joint change); removed voters leave.
    SetVoters { voters: BTreeSet<NodeId> },
    /// On the leader: remove learners that are no longer wanted.
    RemoveLearners { ids: BTreeSet<NodeId> },
    /// On a caught-up follower: start an election now (leader balancing; openraft 0.9 has no
    /// leadership transfer).
    Elect,
    /// Stop this node's replica and delete its data (it is no longer in the shard's membership).
    Close,
}

/// How long a node may take to carry out a step (membership steps wait for a commit).
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Carries out `op` on this node.
pub async fn apply(host: &ReplicaHost, shard: ShardId, op: ShardOp) -> Result<(), String> {
    if shard.is_meta() {
        return Err("the meta group is not placed by the driver".into());
    }
    let replica = || host.shards.get(shard).ok_or_else(|| format!("this node hosts no replica of shard {shard}"));
    match op {
        ShardOp::Open => host.open(shard).await.map(|_| ()).map_err(|e| e.to_string()),
        ShardOp::Close => host.close(shard).await.map_err(|e| e.to_string()),
        ShardOp::Initialize { voters } => match replica()?.raft.initialize(voters).await {
            Ok(()) => Ok(()),
            // Already initialized (the step was resent): the shard exists, which is the point.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        ShardOp::AddLearner { id, node } => {
            replica()?.raft.add_learner(id, node, false).await.map(|_| ()).map_err(|e| e.to_string())
        }
        ShardOp::SetVoters { voters } => replica()?
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ShardOp::RemoveLearners { ids } => replica()?
            .raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ShardOp::Elect => replica()?.raft.trigger().elect().await.map_err(|e| e.to_string()),
    }
}

/// Sends `op` for `shard` to the node at `addr` over the shared peer connection.
pub async fn send(pool: &PeerPool, addr: &str, shard: ShardId, op: &ShardOp) -> Result<(), String> {
    let channel = pool.channel(addr).map_err(|e| e.to_string())?;
    let payload = codec::encode(op).map_err(|e| e.to_string())?;
    let mut client = RaftClient::new(channel);
    let msg = RaftMessage { shard_id: shard.0, payload: payload.into(), ..Default::default() };
    let call = client.shard_op(msg);
    let reply = tokio::time::timeout(OP_TIMEOUT + Duration::from_secs(1), call)
        .await
        .map_err(|_| format!("{addr} did not answer within {} s", OP_TIMEOUT.as_secs() + 1))?
        .map_err(|s| format!("{addr}: {}", s.message()))?;
    let result: Result<(), String> = codec::decode(&reply.into_inner().payload).map_err(|e| e.to_string())?;
    result.map_err(|e| format!("{addr}: {e}"))
}
