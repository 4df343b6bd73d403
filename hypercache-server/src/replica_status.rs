//! What one replica of a shard says about itself: its Raft role, term and leader, how far its
//! log has gone, and the membership it sees (on a leader also how far each member matched).
//!
//! The shard produces it (`Shard::status`); the `Cluster.LocalShards` RPC carries it to other
//! nodes as protobuf, and the placement driver reads it back into this type where it polls, so
//! the placement decisions work on a role enum and typed ids, never on wire strings.
//!
//! Role names are part of the wire protocol (`ReplicaStatus.role`, `StatusResponse.role`): their
//! one table is `hypercache_proto::role`, shared with every reader of a status; both conversions
//! of the status to and from `hypercache.v1.ReplicaStatus` are here, so the two ends cannot
//! drift apart.

use std::collections::BTreeMap;

use hypercache_proto::v1 as pb;
use openraft::ServerState;

use crate::types::{Incarnation, NodeId, ShardId};

pub use hypercache_proto::role::{Role, UnknownRole};

/// The role of a replica in openraft's `state` (a function: both types are foreign here).
pub fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// One replica's report (the meaning of each field is documented on the protobuf message
/// `hypercache.v1.ReplicaStatus`, which carries it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub shard: ShardId,
    pub role: Role,
    pub term: u64,
    /// The leader this replica knows of, if any.
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// The effective membership's voters and learners, in the order openraft lists them.
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Keys and bytes stored; zero unless the report was asked for with sizes.
    pub keys: u64,
    pub size_bytes: u64,
    /// On a leader: the log index each replica has matched (0: nothing yet).
    pub matched: BTreeMap<NodeId, u64>,
    pub ready: bool,
    /// The voters and learners come from a membership change not applied yet, so possibly not
    /// committed: the placement driver takes no membership step on such a view.
    pub membership_pending: bool,
    /// The data-dir incarnation the membership records for each member.
    pub member_incarnations: BTreeMap<NodeId, Incarnation>,
}

/// Builds `$to` from `$from` with the fields that cross the wire as they are, plus the ones
/// the caller converts: one list of the shared fields for both directions.
macro_rules! with_shared_fields {
    ($($to:ident)::+, $from:ident { $($converted:tt)* }) => {
        $($to)::+ {
            $($converted)*
            term: $from.term,
            commit_index: $from.commit_index,
            applied_index: $from.applied_index,
            last_log_index: $from.last_log_index,
            voters: $from.voters,
            learners: $from.learners,
            keys: $from.keys,
            size_bytes: $from.size_bytes,
            matched: $from.matched.into_iter().collect(),
            ready: $from.ready,
            membership_pending: $from.membership_pending,
        }
    };
}

impl From<ReplicaStatus> for pb::ReplicaStatus {
    fn from(r: ReplicaStatus) -> Self {
        with_shared_fields!(
            pb::ReplicaStatus,
            r {
                shard_id: r.shard.0,
                role: r.role.name().to_string(),
                leader_id: r.leader.unwrap_or(0),
                member_incarnations: r.member_incarnations.iter().map(|(id, inc)| (*id, inc.0)).collect(),
            }
        )
    }
}

impl TryFrom<pb::ReplicaStatus> for ReplicaStatus {
    type Error = UnknownRole;

    /// A peer's report; the wire's 0 for "no leader known" becomes `None`.
    fn try_from(r: pb::ReplicaStatus) -> Result<Self, UnknownRole> {
        Ok(with_shared_fields!(
            ReplicaStatus,
            r {
                shard: ShardId(r.shard_id),
                role: Role::from_name(&r.role)?,
                leader: (r.leader_id != 0).then_some(r.leader_id),
                member_incarnations: r.member_incarnations.iter().map(|(id, inc)| (*id, Incarnation(*inc))).collect(),
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of openraft's states maps to the role of the same meaning (the name table itself is
    /// tested in `hypercache_proto::role`).
    #[test]
    fn every_raft_state_has_its_own_role() {
        let pairs = [
            (ServerState::Leader, Role::Leader, "leader"),
            (ServerState::Follower, Role::Follower, "follower"),
            (ServerState::Candidate, Role::Candidate, "candidate"),
            (ServerState::Learner, Role::Learner, "learner"),
            (ServerState::Shutdown, Role::Shutdown, "shutdown"),
        ];
        for (state, role, name) in pairs {
            assert_eq!(role_of(state), role, "{state:?}");
            assert_eq!(role_of(state).name(), name);
        }
    }

    #[test]
    fn a_status_reads_back_from_the_wire_unchanged() {
        let status = ReplicaStatus {
            shard: ShardId(7),
            role: Role::Learner,
            term: 3,
            leader: Some(2),
            commit_index: 10,
            applied_index: 9,
            last_log_index: 11,
            voters: vec![2, 1, 3],
            learners: vec![4],
            keys: 5,
            size_bytes: 6,
            matched: [(4, 8)].into(),
            ready: true,
            membership_pending: true,
            member_incarnations: [(1, Incarnation(21)), (4, Incarnation(24))].into(),
        };
        let wire = pb::ReplicaStatus::from(status.clone());
        assert_eq!((wire.shard_id, wire.role.as_str(), wire.leader_id), (7, "learner", 2));
        assert_eq!(ReplicaStatus::try_from(wire), Ok(status.clone()));
        let leaderless = ReplicaStatus { leader: None, ..status };
        assert_eq!(pb::ReplicaStatus::from(leaderless.clone()).leader_id, 0);
        assert_eq!(ReplicaStatus::try_from(pb::ReplicaStatus::from(leaderless.clone())), Ok(leaderless));
        let unknown = pb::ReplicaStatus { role: "observer".into(), ..Default::default() };
        assert_eq!(ReplicaStatus::try_from(unknown), Err(UnknownRole("observer".into())));
    }
}
