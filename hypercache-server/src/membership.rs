//! Membership changes driven by the shard leader: joins (learner first), promotion of caught-up
//! learners to voters, and explicit decommission.
//!
//! Rules (docs/operations.md, "Membership"):
//! - A node joins as a learner. The leader promotes it to voter only once it has caught up, so a
//!   joining node never counts toward a quorum it cannot serve yet. The leader drives promotion
//!   itself ([`Membership::run_promoter`]): a joiner that restarts halfway still ends up a voter.
//! - A node that stops is never removed because it stopped; only [`Membership::decommission`]
//!   removes one, and never the last voter.
//! - A member asking to join with a new data-dir incarnation lost its data (a pod recreated on
//!   an empty volume keeps its id): its old entry is removed first (a committed change without
//!   it), then it is added again as a learner under the new incarnation and promoted once caught
//!   up, like any joiner. Until then it refuses every Raft message meant for its old incarnation
//!   (`network/admit.rs`), so it never votes or counts toward a quorum with the log it lost.
//!
//! Every change here is one openraft membership change at a time; the lock serializes ours, and
//! openraft's own "in progress" refusal is reported as MEMBERSHIP_BUSY (retryable).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::Reason;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tokio::sync::{watch, Mutex};

use crate::error::ServiceError;
use crate::raft_types::TypeConfig;
use crate::shard::Shard;
use crate::types::{NodeId, NodeInfo};

/// How often the leader looks for learners to promote.
const PROMOTE_EVERY: Duration = Duration::from_millis(300);
/// A learner whose replicated log is within this many entries of the leader's counts as caught up.
const CAUGHT_UP_WITHIN: u64 = 64;

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Added as a learner now.
    Added,
    /// Already a learner or voter with the same name, endpoint and incarnation.
    AlreadyMember,
    /// A member that came back with a new incarnation (its data dir was recreated): its old entry
    /// was removed and it was added again as a learner.
    Replaced,
}

/// One member as membership records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: NodeId,
    pub node: NodeInfo,
    pub voter: bool,
}

pub struct Membership {
    shard: Arc<Shard>,
    /// Serializes this node's membership changes (openraft allows one at a time).
    lock: Mutex<()>,
}

fn refused(reason: Reason, message: String) -> ServiceError {
    ServiceError::Membership { reason, message }
}

impl Membership {
    pub fn new(shard: Arc<Shard>) -> Arc<Membership> {
        Arc::new(Membership { shard, lock: Mutex::new(()) })
    }

    /// Every member with its role, by id.
    pub fn members(&self) -> Vec<MemberView> {
        let m = self.shard.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| MemberView { id: *id, node: node.clone(), voter: voters.contains(id) })
            .collect()
    }

    /// Adds `id` as a learner (the leader promotes it later). Only the leader accepts.
    pub async fn join(&self, id: NodeId, node: NodeInfo) -> Result<JoinOutcome, ServiceError> {
        let _guard = self.lock.lock().await;
        self.shard.leader_term()?;
        let members = self.members();
        for member in &members {
            if member.id == id {
                if !member.node.same_endpoint(&node) {
                    return Err(refused(
                        Reason::MemberConflict,
                        format!(
                            "node id {id} is already a member as {}; a node id is never reused for another node",
                            member.node
                        ),
                    ));
                }
                if member.node.incarnation == node.incarnation {
                    return Ok(JoinOutcome::AlreadyMember);
                }
                return self.replace(member, node, &members).await;
            }
            if member.node.addr == node.addr || member.node.name == node.name {
                return Err(refused(
                    Reason::MemberConflict,
                    format!("{} is already a member as node id {}; it cannot join again as id {id}", node, member.id),
                ));
            }
        }
        self.shard.raft.add_learner(id, node.clone(), false).await.map_err(|e| self.change_error(e))?;
        tracing::info!(shard = %self.shard.id, node = id, name = %node, "added a learner");
        Ok(JoinOutcome::Added)
    }

    /// Replaces `old`'s entry by `node` (the same node with a new data-dir incarnation): removes
    /// the old entry, then adds the node as a learner. The removal commits on the other voters
    /// alone; with too few of them reachable it does not commit, and the node stays out (correct:
    /// the data it lost may exist nowhere else). Called under the membership lock.
    async fn replace(
        &self,
        old: &MemberView,
        node: NodeInfo,
        members: &[MemberView],
    ) -> Result<JoinOutcome, ServiceError> {
        let id = old.id;
        if old.voter && members.iter().filter(|m| m.voter).count() <= 1 {
            return Err(refused(
                Reason::LastVoter,
                format!(
                    "node {} (id {id}) came back with a new data dir (incarnation {}, was {}) but it is the last \
                     voter: the cluster's data is gone with it",
                    node, node.incarnation, old.node.incarnation
                ),
            ));
        }
        tracing::warn!(shard = %self.shard.id, node = id, name = %node, old = %old.node.incarnation,
            new = %node.incarnation, voter = old.voter,
            "a member came back with a new data dir (its volume was lost): replacing its old entry by a learner");
        let change = if old.voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.shard.raft.change_membership(change, false).await.map_err(|e| self.change_error(e))?;
        self.shard.raft.add_learner(id, node.clone(), false).await.map_err(|e| self.change_error(e))?;
        tracing::info!(shard = %self.shard.id, node = id, name = %node, "re-added under its new incarnation as a learner");
        Ok(JoinOutcome::Replaced)
    }

    /// The member named `name`, if it may be removed: UNKNOWN_NODE for a name no member has,
    /// LAST_VOTER for the last voter.
    pub fn removable(&self, name: &str) -> Result<MemberView, ServiceError> {
        let members = self.members();
        let Some(target) = members.iter().find(|m| m.node.name == name) else {
            let known: Vec<&str> = members.iter().map(|m| m.node.name.as_str()).collect();
            return Err(refused(
                Reason::UnknownNode,
                format!("no member is named {name:?}; members: {}", known.join(", ")),
            ));
        };
        if target.voter && members.iter().filter(|m| m.voter).count() <= 1 {
            return Err(refused(
                Reason::LastVoter,
                format!("{name} is the last voter; decommissioning it would leave the data with no replica"),
            ));
        }
        Ok(target.clone())
    }

    /// Removes the member named `name` from membership. Only the leader accepts.
    pub async fn decommission(&self, name: &str) -> Result<NodeId, ServiceError> {
        let _guard = self.lock.lock().await;
        self.shard.leader_term()?;
        let target = self.removable(name)?;
        let change = if target.voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([target.id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([target.id]))
        };
        // retain = false: a removed voter does not stay on as a learner.
        self.shard.raft.change_membership(change, false).await.map_err(|e| self.change_error(e))?;
        tracing::info!(shard = %self.shard.id, node = target.id, name, "decommissioned");
        Ok(target.id)
    }

    /// While this node leads, promotes every caught-up learner to voter. Runs until `stop`.
    pub async fn run_promoter(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROMOTE_EVERY) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let ready = self.caught_up_learners();
            if ready.is_empty() {
                continue;
            }
            let _guard = self.lock.lock().await;
            let change = ChangeMembers::AddVoterIds(ready.clone());
            match self.shard.raft.change_membership(change, false).await {
                Ok(_) => {
                    tracing::info!(shard = %self.shard.id, nodes = ?ready, "promoted caught-up learners to voters")
                }
                Err(e) => tracing::info!(shard = %self.shard.id, nodes = ?ready, error = %e, "promotion deferred"),
            }
        }
    }

    /// Learners whose replicated log is close to the leader's; empty unless this node leads and
    /// no membership change is pending.
    fn caught_up_learners(&self) -> BTreeSet<NodeId> {
        let m = self.shard.metrics();
        if m.state != ServerState::Leader {
            return BTreeSet::new();
        }
        let stored = &m.membership_config;
        // A joint config still being committed: wait, one change at a time.
        if stored.membership().get_joint_config().len() > 1 {
            return BTreeSet::new();
        }
        let Some(replication) = &m.replication else { return BTreeSet::new() };
        let last = m.last_log_index.unwrap_or(0);
        stored
            .membership()
            .learner_ids()
            .filter(|id| {
                let matched = replication.get(id).and_then(|l| l.as_ref()).map(|l| l.index).unwrap_or(0);
                matched > 0 && matched + CAUGHT_UP_WITHIN >= last
            })
            .collect()
    }

    fn change_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ServiceError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                self.shard.leader_term().err().unwrap_or(ServiceError::NoLeader { shard: self.shard.id })
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e))) => {
                refused(
                    Reason::MembershipBusy,
                    format!("another membership change is in progress ({e}); retry shortly"),
                )
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                refused(Reason::MemberConflict, e.to_string())
            }
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                self.shard.leader_term().err().unwrap_or(ServiceError::NoLeader { shard: self.shard.id })
            }
            RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
                ServiceError::Internal { shard: self.shard.id, detail: format!("membership change: {e}") }
            }
            RaftError::Fatal(e) => {
                ServiceError::OutcomeUnknown { shard: self.shard.id, detail: format!("membership change: {e}") }
            }
        }
    }
}
