//! Errors of the client-facing services, typed by what the caller does next, and the one place
//! they become gRPC statuses ([`ServiceError::into_status`]).
//!
//! Every status carries an [`ErrorInfo`] in its details. `not_applied = true` is a promise that
//! the request had no effect, which is what lets a client retry a write safely; anything the node
//! cannot promise (a proposal in flight when the node stopped) is reported with
//! `not_applied = false`, which clients surface as "outcome unknown".

use hypercache_proto::error_info::status_with_info;
use hypercache_proto::v1::ErrorInfo;
use hypercache_proto::Reason;
use tonic::Code;

use crate::machine::command::Rejection;
use crate::types::{NodeId, ShardId};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A field failed validation; `reason` is the stable code (EMPTY_KEY, KEY_TOO_LONG, ...).
    #[error("{message}")]
    InvalidArgument { reason: Reason, message: String },
    #[error("unknown shard {shard}: this node serves shards {known}")]
    UnknownShard { shard: u32, known: String },
    /// The key maps to another shard than the request named (the client's routing table is old).
    #[error("{key:?} lives in shard {actual}, not in shard {named}; refresh the routing table")]
    WrongShard { key: String, named: u32, actual: u32 },
    /// This node is not the shard leader. `maybe_applied`: the request had been proposed here
    /// and its entry was dropped from this node's log, which does not prove it is gone from the
    /// others' (a later leader may commit it); false when nothing was proposed.
    #[error("node {node} is not the leader of shard {shard}{}{}", leader_hint(.leader_id, .leader_endpoint), if *.maybe_applied { "; the write had been proposed and may still be applied" } else { "" })]
    NotLeader {
        node: NodeId,
        shard: ShardId,
        leader_id: Option<NodeId>,
        leader_endpoint: Option<String>,
        maybe_applied: bool,
    },
    /// No leader is known (election in progress); nothing was proposed.
    #[error("shard {shard} has no leader right now (election in progress); retry shortly")]
    NoLeader { shard: ShardId },
    /// This node hosts no replica of the shard yet (it has not been created here); another node
    /// can answer. Nothing happened.
    #[error("node {node} hosts no replica of shard {shard} yet; ask another node")]
    NoReplica { node: NodeId, shard: ShardId },
    #[error("node {node} is shutting down")]
    ShuttingDown { node: NodeId },
    /// A serializable read reached a replica that must not answer from its local state: a
    /// learner (still catching up, or being added) or a replica that has applied nothing (new,
    /// or on a wiped volume). Nothing happened; another replica or the leader can answer.
    #[error("node {node} does not serve local reads of shard {shard}: its replica is {why}; ask another replica")]
    NotServing { node: NodeId, shard: ShardId, why: &'static str },
    /// The write may or may not have been applied.
    #[error("outcome unknown for shard {shard}: {detail}")]
    OutcomeUnknown { shard: ShardId, detail: String },
    #[error("internal error on shard {shard}: {detail}")]
    Internal { shard: ShardId, detail: String },
    /// The state machine refused the request; nothing changed.
    #[error("{rejection}")]
    Rejected { shard: ShardId, revision: u64, rejection: Rejection },
    /// A watch asked for revisions this node no longer holds.
    #[error(
        "shard {shard}: revision {requested} is compacted on this node; the oldest available revision is {oldest}"
    )]
    Compacted { shard: ShardId, requested: u64, oldest: u64 },
    /// The watcher fell too far behind and was cut off; it can resume from `resume`.
    #[error("shard {shard}: watcher fell too far behind and was cut off; resume from revision {resume}")]
    WatcherTooSlow { shard: ShardId, resume: u64 },
    /// This replica installed a snapshot, so its event history restarted; resume (on any node)
    /// from `resume`.
    #[error("shard {shard}: this node's watch history was reset by a snapshot; resume from revision {resume}")]
    WatchReset { shard: ShardId, resume: u64 },
    /// A join or decommission was refused; membership is unchanged. `reason` is the stable code
    /// (MEMBER_CONFLICT, LAST_VOTER, LAST_REPLICA_HOLDER, UNKNOWN_NODE, MEMBERSHIP_BUSY,
    /// INCARNATION_MISMATCH, UNIDENTIFIED_NODE).
    #[error("{message}")]
    Membership { reason: Reason, message: String },
}

fn leader_hint(id: &Option<NodeId>, endpoint: &Option<String>) -> String {
    match (id, endpoint) {
        (Some(id), Some(ep)) => format!("; the leader is node {id} at {ep}"),
        (Some(id), None) => format!("; the leader is node {id}"),
        _ => String::new(),
    }
}

impl ServiceError {
    pub fn invalid(reason: Reason, message: impl Into<String>) -> Self {
        ServiceError::InvalidArgument { reason, message: message.into() }
    }

    /// The stable reason code carried in [`ErrorInfo::reason`].
    pub fn reason(&self) -> Reason {
        match self {
            ServiceError::InvalidArgument { reason, .. } => *reason,
            ServiceError::UnknownShard { .. } => Reason::UnknownShard,
            ServiceError::WrongShard { .. } => Reason::WrongShard,
            ServiceError::NotLeader { .. } => Reason::NotLeader,
            ServiceError::NoLeader { .. } => Reason::NoLeader,
            ServiceError::ShuttingDown { .. } => Reason::ShuttingDown,
            ServiceError::NotServing { .. } | ServiceError::NoReplica { .. } => Reason::ReplicaNotServing,
            ServiceError::OutcomeUnknown { .. } => Reason::OutcomeUnknown,
            ServiceError::Internal { .. } => Reason::Internal,
            ServiceError::Rejected { rejection, .. } => rejection_reason(rejection),
            ServiceError::Compacted { .. } => Reason::Compacted,
            ServiceError::WatcherTooSlow { .. } => Reason::WatcherTooSlow,
            ServiceError::WatchReset { .. } => Reason::WatchReset,
            ServiceError::Membership { reason, .. } => *reason,
        }
    }

    pub fn into_status(self) -> tonic::Status {
        let mut info = ErrorInfo { reason: self.reason().into(), not_applied: true, ..Default::default() };
        let code = match &self {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::UnknownShard { shard, .. } => {
                info.shard_id = *shard;
                Code::NotFound
            }
            ServiceError::WrongShard { named, .. } => {
                info.shard_id = *named;
                Code::FailedPrecondition
            }
            ServiceError::NotLeader { shard, leader_id, leader_endpoint, maybe_applied, .. } => {
                info.shard_id = shard.0;
                info.not_applied = !maybe_applied;
                info.leader_id = leader_id.unwrap_or(0);
                info.leader_endpoint = leader_endpoint.clone().unwrap_or_default();
                Code::FailedPrecondition
            }
            ServiceError::NoLeader { shard } => {
                info.shard_id = shard.0;
                Code::Unavailable
            }
            ServiceError::ShuttingDown { .. } => Code::Unavailable,
            ServiceError::NotServing { shard, .. } | ServiceError::NoReplica { shard, .. } => {
                info.shard_id = shard.0;
                Code::Unavailable
            }
            ServiceError::OutcomeUnknown { shard, .. } => {
                info.shard_id = shard.0;
                info.not_applied = false;
                Code::Unavailable
            }
            ServiceError::Internal { shard, .. } => {
                info.shard_id = shard.0;
                info.not_applied = false;
                Code::Internal
            }
            ServiceError::Rejected { shard, revision, rejection } => {
                info.shard_id = shard.0;
                info.revision = *revision;
                rejection_details(rejection, &mut info)
            }
            ServiceError::Compacted { shard, oldest, .. } => {
                info.shard_id = shard.0;
                info.oldest_revision = *oldest;
                Code::OutOfRange
            }
            ServiceError::WatcherTooSlow { shard, resume } => {
                info.shard_id = shard.0;
                info.revision = *resume;
                Code::ResourceExhausted
            }
            ServiceError::WatchReset { shard, resume } => {
                info.shard_id = shard.0;
                info.revision = *resume;
                Code::Unavailable
            }
            ServiceError::Membership { reason: Reason::UnknownNode, .. } => Code::NotFound,
            ServiceError::Membership { reason: Reason::MembershipBusy, .. } => Code::Unavailable,
            ServiceError::Membership { .. } => Code::FailedPrecondition,
        };
        status_with_info(code, self.to_string(), &info)
    }
}

fn rejection_reason(r: &Rejection) -> Reason {
    match r {
        Rejection::LeaseNotFound { .. } => Reason::LeaseNotFound,
        Rejection::InvalidTtl { .. } => Reason::InvalidTtl,
        Rejection::ServerNotFound { .. } => Reason::ServerNotFound,
        Rejection::StaleIncarnation { .. } => Reason::StaleIncarnation,
        Rejection::BoardExists { .. } => Reason::BoardExists,
        Rejection::BoardNotFound { .. } => Reason::BoardNotFound,
        Rejection::StaleEpoch { .. } => Reason::StaleEpoch,
        Rejection::StaleSeq { .. } => Reason::StaleSeq,
        Rejection::ServerNotLive { .. } => Reason::ServerNotLive,
        Rejection::NotOwner { .. } => Reason::NotOwner,
        Rejection::StaleTerm { .. } => Reason::StaleTerm,
        Rejection::NotElectionLeader { .. } => Reason::NotElectionLeader,
        Rejection::WriteSeqTooOld { .. } => Reason::WriteSeqTooOld,
        Rejection::TooManyClients { .. } => Reason::TooManyClients,
    }
}

/// The status code of a rejection, and the ErrorInfo fields that let a caller act on it.
fn rejection_details(r: &Rejection, info: &mut ErrorInfo) -> Code {
    match r {
        Rejection::LeaseNotFound { .. } | Rejection::ServerNotFound { .. } | Rejection::BoardNotFound { .. } => {
            Code::NotFound
        }
        Rejection::InvalidTtl { .. } => Code::InvalidArgument,
        Rejection::BoardExists { .. } => Code::AlreadyExists,
        Rejection::StaleIncarnation { current, .. } => {
            info.incarnation = current.0;
            Code::FailedPrecondition
        }
        Rejection::StaleEpoch { epoch, owner, .. } | Rejection::NotOwner { epoch, owner, .. } => {
            info.epoch = epoch.0;
            if let Some(o) = owner {
                info.owner = o.server_id.clone();
                info.incarnation = o.incarnation.0;
            }
            Code::FailedPrecondition
        }
        Rejection::StaleSeq { stored, .. } => {
            info.seq = stored.0;
            Code::FailedPrecondition
        }
        Rejection::ServerNotLive { .. } => Code::FailedPrecondition,
        Rejection::WriteSeqTooOld { .. } => {
            // This copy changed nothing, but the write it repeats may have been applied.
            info.not_applied = false;
            Code::FailedPrecondition
        }
        Rejection::TooManyClients { .. } => Code::ResourceExhausted,
        Rejection::StaleTerm { current, .. } | Rejection::NotElectionLeader { current, .. } => {
            if let Some(l) = current {
                info.term = l.term.0;
                info.leader = l.candidate.clone();
            }
            Code::FailedPrecondition
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        e.into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::game_ids::{Epoch, ServerIncarnation};
    use hypercache_proto::error_info::info_of;

    #[test]
    fn not_leader_carries_the_leader_and_promises_no_effect() {
        let st = ServiceError::NotLeader {
            node: 2,
            shard: ShardId(0),
            leader_id: Some(1),
            leader_endpoint: Some("n1:7001".into()),
            maybe_applied: false,
        }
        .into_status();
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert!(st.message().contains("leader is node 1 at n1:7001"), "{}", st.message());
        let info = info_of(&st).expect("details");
        assert_eq!(info.reason, "NOT_LEADER");
        assert!(info.not_applied);
        assert_eq!(info.leader_endpoint, "n1:7001");
    }

    #[test]
    fn not_leader_after_a_proposal_promises_nothing() {
        let st = ServiceError::NotLeader {
            node: 2,
            shard: ShardId(0),
            leader_id: Some(1),
            leader_endpoint: Some("n1:7001".into()),
            maybe_applied: true,
        }
        .into_status();
        let info = info_of(&st).expect("details");
        assert_eq!((info.reason.as_str(), info.leader_endpoint.as_str()), ("NOT_LEADER", "n1:7001"));
        assert!(!info.not_applied, "the truncated entry may be committed by another leader");
    }

    #[test]
    fn stale_epoch_names_the_current_owner_and_epoch() {
        let rejection = Rejection::StaleEpoch {
            board_id: "b".into(),
            given: Epoch(1),
            epoch: Epoch(2),
            owner: Some(crate::machine::game_records::Owner {
                server_id: "gs-b".into(),
                incarnation: ServerIncarnation(3),
            }),
        };
        let st = ServiceError::Rejected { shard: ShardId(0), revision: 9, rejection }.into_status();
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert!(st.message().contains("owned by gs-b"), "{}", st.message());
        let info = info_of(&st).expect("details");
        assert_eq!(
            (info.reason.as_str(), info.owner.as_str(), info.epoch, info.incarnation),
            ("STALE_EPOCH", "gs-b", 2, 3)
        );
        assert!(info.not_applied);
    }

    #[test]
    fn outcome_unknown_does_not_promise_anything() {
        let st = ServiceError::OutcomeUnknown { shard: ShardId(0), detail: "x".into() }.into_status();
        assert!(!info_of(&st).expect("details").not_applied);
    }
}
