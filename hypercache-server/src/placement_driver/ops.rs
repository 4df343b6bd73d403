//! The steps the placement driver asks a node to carry out, and how the node carries them out.
//!
//! Each step is small and idempotent, so the driver can simply resend it on its next round when
//! an answer is lost: opening an open replica, initializing an initialized shard, adding a
//! learner that is already one, or asking for voters the shard already has all succeed.
//! Membership steps go to the shard's leader (openraft changes membership there); `Open`,
//! `Close` and `Elect` go to the node whose replica they concern.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hypercache_proto::raft::v1::placement_client::PlacementClient;
use hypercache_proto::raft::v1::raft_client::RaftClient;
use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::lease_renewal::renewing;
use crate::network::peer_call::{self, PeerCallError};
use crate::network::PeerPool;
use crate::raft_types::TypeConfig;
use crate::replica::{ReplicaError, ReplicaHost};
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
    /// On a caught-up follower: start an election now. What drivers sent for leader balancing
    /// before openraft 0.10's leadership transfer; still carried out for them.
    Elect,
    /// Stop this node's replica and delete its data (it is no longer in the shard's membership).
    Close,
    /// On the leader: hand leadership to voter `to` (leader balancing, and a leaving leader's
    /// hand-off). Last, so the earlier variants keep their encoding.
    TransferLeader { to: NodeId },
}

/// How long a node may take to carry out a step (membership steps wait for a commit).
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a step failed. The driver logs it and resends the step on a later round, so the variants
/// say where it failed (here, on the way, or on the node asked) for the operator reading the log.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("the meta group is not placed by the driver")]
    MetaNotPlaced,
    #[error("this node hosts no replica of shard {0}")]
    NoReplica(ShardId),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    // openraft's errors are large; boxed so that every `Result` carrying an `OpError` stays small.
    #[error(transparent)]
    Initialize(#[from] Box<RaftError<TypeConfig, InitializeError<TypeConfig>>>),
    #[error(transparent)]
    Membership(#[from] Box<RaftError<TypeConfig, ClientWriteError<TypeConfig>>>),
    #[error(transparent)]
    Elect(#[from] Box<Fatal<TypeConfig>>),
    /// The node gave up waiting for the step; it may still complete (and the resent step then
    /// finds it done).
    #[error("shard {shard}: {op:?} did not finish within {} s", limit.as_secs())]
    TimedOut { shard: ShardId, op: ShardOp, limit: Duration },
    /// The step did not reach the node, or its answer did not come back.
    #[error(transparent)]
    Call(#[from] PeerCallError),
    /// The node carried the step out and it failed there: its message, as it sent it.
    #[error("{addr}: {message}")]
    Remote { addr: String, message: String },
}

/// A node's answer to a step, as it travels. Only the message text crosses the wire: postcard
/// encodes this exactly as the `Result<(), String>` that nodes have always exchanged (variant 0
/// with nothing, or variant 1 with the text), so nodes of either version understand each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpReply {
    Done,
    Failed(String),
}

impl From<&Result<(), OpError>> for OpReply {
    fn from(result: &Result<(), OpError>) -> Self {
        match result {
            Ok(()) => OpReply::Done,
            Err(e) => OpReply::Failed(e.to_string()),
        }
    }
}

/// Carries out `op` on this node.
pub async fn apply(host: &ReplicaHost, shard: ShardId, op: ShardOp) -> Result<(), OpError> {
    if shard.is_meta() {
        return Err(OpError::MetaNotPlaced);
    }
    let replica = || host.shards.get(shard).ok_or(OpError::NoReplica(shard));
    match op {
        ShardOp::Open => {
            host.open(shard).await?;
        }
        ShardOp::Close => host.close(shard).await?,
        ShardOp::Initialize { voters } => match replica()?.raft.initialize(voters).await {
            Ok(()) => {}
            // Already initialized (the step was resent): the shard exists, which is the point.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(Box::new(e).into()),
        },
        // A quiet leader refuses changes once its lease ran out: `renewing` renews and asks again.
        ShardOp::AddLearner { id, node } => {
            let raft = &replica()?.raft;
            renewing(raft, || raft.add_learner(id, node.clone(), false)).await.map_err(Box::new)?;
        }
        ShardOp::SetVoters { voters } => {
            let raft = &replica()?.raft;
            renewing(raft, || raft.change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false))
                .await
                .map_err(Box::new)?;
        }
        ShardOp::RemoveLearners { ids } => {
            let raft = &replica()?.raft;
            renewing(raft, || raft.change_membership(ChangeMembers::RemoveNodes(ids.clone()), false))
                .await
                .map_err(Box::new)?;
        }
        ShardOp::Elect => replica()?.raft.trigger().elect(false).await.map_err(Box::new)?,
        // Ignored by openraft when this node no longer leads: the driver sees the leader in its
        // next poll and decides again.
        ShardOp::TransferLeader { to } => replica()?.raft.trigger().transfer_leader(to).await.map_err(Box::new)?,
    }
    Ok(())
}

/// Carries out a step another node's driver sent, within [`OP_TIMEOUT`], and makes the answer.
pub async fn serve(host: &ReplicaHost, shard: ShardId, op: ShardOp) -> OpReply {
    let result = match tokio::time::timeout(OP_TIMEOUT, apply(host, shard, op.clone())).await {
        Ok(r) => r,
        Err(_) => Err(OpError::TimedOut { shard, op: op.clone(), limit: OP_TIMEOUT }),
    };
    if let Err(e) = &result {
        tracing::info!(shard = %shard, op = ?op, error = %e, "placement step failed");
    }
    OpReply::from(&result)
}

/// Sends `op` for `shard` to the node at `addr` over the shared peer connection (its Placement
/// service, or the Raft service's old path on a node of an earlier version).
pub async fn send(pool: &PeerPool, addr: &str, shard: ShardId, op: &ShardOp) -> Result<(), OpError> {
    // A second more than the node allows itself, so its own timeout answer arrives first.
    let limit = OP_TIMEOUT + Duration::from_secs(1);
    let reply = peer_call::call(
        pool,
        addr,
        shard,
        op,
        limit,
        |ch, msg| async move { PlacementClient::new(ch).shard_op(msg).await },
        |ch, msg| async move { RaftClient::new(ch).shard_op(msg).await },
    )
    .await?;
    match reply {
        OpReply::Done => Ok(()),
        OpReply::Failed(message) => Err(OpError::Remote { addr: addr.to_string(), message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::codec;

    /// Nodes before `OpReply` send and expect `Result<(), String>`; the bytes must not change.
    #[test]
    fn a_reply_is_encoded_as_the_result_older_nodes_exchange() {
        let old_done: Result<(), String> = Ok(());
        let old_failed: Result<(), String> = Err("shard 3: no".into());
        let encode = |r: &OpReply| codec::encode(r).expect("encodes");
        assert_eq!(encode(&OpReply::Done), codec::encode(&old_done).expect("encodes"));
        assert_eq!(encode(&OpReply::Failed("shard 3: no".into())), codec::encode(&old_failed).expect("encodes"));
        let back: Result<(), String> = codec::decode(&encode(&OpReply::Failed("x".into()))).expect("decodes");
        assert_eq!(back, Err("x".to_string()));
        let reply: OpReply = codec::decode(&codec::encode(&old_failed).expect("encodes")).expect("decodes");
        assert_eq!(reply, OpReply::Failed("shard 3: no".into()));
    }

    /// A node of an earlier version has no Placement service: the step goes by the Raft
    /// service's old path, and its answer is read as before.
    #[tokio::test]
    async fn a_step_reaches_a_node_that_serves_only_the_old_path() {
        let refused = OpReply::Failed("shard 3: old node says no".into());
        let addr = crate::network::old_peer::serve(codec::encode(&refused).unwrap().into(), Default::default()).await;
        let pool = PeerPool::new(Duration::from_secs(1), 4 << 20);
        match send(&pool, &addr, ShardId(3), &ShardOp::Open).await {
            Err(OpError::Remote { message, .. }) => assert_eq!(message, "shard 3: old node says no"),
            other => panic!("expected the old node's refusal, got {other:?}"),
        }
    }
}
