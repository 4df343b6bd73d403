//! Errors of the client-facing services, typed by what the caller does next, and the one place
//! they become gRPC statuses ([`ServiceError::into_status`]).
//!
//! Every status carries an [`ErrorInfo`] in its details. `not_applied = true` is a promise that
//! the request had no effect, which is what lets a client retry a write safely; anything the node
//! cannot promise (a proposal in flight when the node stopped) is reported with
//! `not_applied = false`, which clients surface as "outcome unknown".

use hypercache_proto::error_info::status_with_info;
use hypercache_proto::v1::ErrorInfo;
use tonic::Code;

use crate::types::{NodeId, ShardId};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A field failed validation; `reason` is the stable code (EMPTY_KEY, KEY_TOO_LONG, ...).
    #[error("{message}")]
    InvalidArgument { reason: &'static str, message: String },
    #[error("unknown shard {shard}: this node serves shards {known}")]
    UnknownShard { shard: u32, known: String },
    /// This node is not the shard leader; nothing was proposed.
    #[error("node {node} is not the leader of shard {shard}{}", leader_hint(.leader_id, .leader_endpoint))]
    NotLeader { node: NodeId, shard: ShardId, leader_id: Option<NodeId>, leader_endpoint: Option<String> },
    /// No leader is known (election in progress); nothing was proposed.
    #[error("shard {shard} has no leader right now (election in progress); retry shortly")]
    NoLeader { shard: ShardId },
    #[error("node {node} is shutting down")]
    ShuttingDown { node: NodeId },
    /// The write may or may not have been applied.
    #[error("outcome unknown for shard {shard}: {detail}")]
    OutcomeUnknown { shard: ShardId, detail: String },
    #[error("internal error on shard {shard}: {detail}")]
    Internal { shard: ShardId, detail: String },
}

fn leader_hint(id: &Option<NodeId>, endpoint: &Option<String>) -> String {
    match (id, endpoint) {
        (Some(id), Some(ep)) => format!("; the leader is node {id} at {ep}"),
        (Some(id), None) => format!("; the leader is node {id}"),
        _ => String::new(),
    }
}

impl ServiceError {
    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        ServiceError::InvalidArgument { reason, message: message.into() }
    }

    /// The stable reason code carried in [`ErrorInfo::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            ServiceError::InvalidArgument { reason, .. } => reason,
            ServiceError::UnknownShard { .. } => "UNKNOWN_SHARD",
            ServiceError::NotLeader { .. } => "NOT_LEADER",
            ServiceError::NoLeader { .. } => "NO_LEADER",
            ServiceError::ShuttingDown { .. } => "SHUTTING_DOWN",
            ServiceError::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN",
            ServiceError::Internal { .. } => "INTERNAL",
        }
    }

    pub fn into_status(self) -> tonic::Status {
        let mut info = ErrorInfo { reason: self.reason().to_string(), not_applied: true, ..Default::default() };
        let code = match &self {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::UnknownShard { shard, .. } => {
                info.shard_id = *shard;
                Code::NotFound
            }
            ServiceError::NotLeader { shard, leader_id, leader_endpoint, .. } => {
                info.shard_id = shard.0;
                info.leader_id = leader_id.unwrap_or(0);
                info.leader_endpoint = leader_endpoint.clone().unwrap_or_default();
                Code::FailedPrecondition
            }
            ServiceError::NoLeader { shard } => {
                info.shard_id = shard.0;
                Code::Unavailable
            }
            ServiceError::ShuttingDown { .. } => Code::Unavailable,
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
        };
        status_with_info(code, self.to_string(), &info)
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
    use hypercache_proto::error_info::info_of;

    #[test]
    fn not_leader_carries_the_leader_and_promises_no_effect() {
        let st = ServiceError::NotLeader {
            node: 2,
            shard: ShardId(0),
            leader_id: Some(1),
            leader_endpoint: Some("n1:7001".into()),
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
    fn outcome_unknown_does_not_promise_anything() {
        let st = ServiceError::OutcomeUnknown { shard: ShardId(0), detail: "x".into() }.into_status();
        assert!(!info_of(&st).expect("details").not_applied);
    }
}
