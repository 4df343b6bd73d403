//! Client errors, typed by what the caller does next.
//!
//! | Variant            | Did the operation take effect?            | What to do                     |
//! |--------------------|-------------------------------------------|--------------------------------|
//! | `InvalidArgument`  | no                                        | fix the request                |
//! | `Rejected`         | no (a deterministic refusal)              | act on `reason()` / `info()`   |
//! | `UnknownShard`     | no                                        | fix the shard or lease id      |
//! | `NotLeader`        | no (only from single-node calls)          | ask the leader it names        |
//! | `Unavailable`      | no                                        | retry later                    |
//! | `DeadlineExceeded` | no (nothing was in flight at the deadline) | retry later, or a longer deadline |
//! | `OutcomeUnknown`   | **maybe** (writes only)                   | read back before acting again  |
//! | `Internal`         | for writes: maybe                         | report; read back              |
//! | `Rpc`              | no (rejected outside HyperCache's model)  | inspect the gRPC code          |
//! | `Config`           | nothing was sent                          | fix the configuration          |
//!
//! `Rejected` covers the typed refusals of the lease, watch and game services
//! (`FAILED_PRECONDITION`, `NOT_FOUND`, `ALREADY_EXISTS`, `OUT_OF_RANGE`, `RESOURCE_EXHAUSTED`
//! with an `ErrorInfo`). The server marks them `not_applied`, but they are never retried: the same
//! request would be refused the same way. The stable reasons are [`Reason`], declared once in
//! `hypercache-proto` for the server and the client; helpers such as [`Error::stale_epoch`]
//! decode the fields each reason carries. A reason this build does not know (a newer server's)
//! is outside its model: such a status surfaces as `Rpc` with its gRPC code and message.

use hypercache_proto::v1::ErrorInfo;
use hypercache_proto::Reason;

use crate::ids::{Epoch, Incarnation, Seq, Term};

/// Everything a [`Client`](crate::Client) operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server rejected the request's contents. `reason` is the stable code (`EMPTY_KEY`,
    /// `KEY_TOO_LONG`, `VALUE_TOO_LARGE`, `INVALID_RANGE`, `INVALID_ARGUMENT`, `INVALID_TTL`,
    /// `INVALID_ID`, ...); `message` is the server's text, which names the limit.
    #[error("{message}")]
    InvalidArgument { reason: Reason, message: String },
    /// The server refused the request because of the state it found (a stale epoch, a missing
    /// lease, a compacted revision...). Nothing was applied and repeating the request as is would
    /// be refused again. `message` is the server's text; `info` carries the fields the reason
    /// defines (see [`Reason`]).
    #[error("{message}")]
    Rejected { code: tonic::Code, reason: Reason, message: String, info: Box<ErrorInfo> },
    /// The addressed shard does not exist on the cluster (a shard id beyond the routing
    /// table's shard count, e.g. from a lease id minted by another cluster), or the one node
    /// asked directly hosts no replica of it. Requests routed by the client are re-routed, never
    /// failed, when a node does not host their shard.
    #[error("unknown shard: {message}")]
    UnknownShard { message: String },
    /// A node asked directly (no redirects) is not the leader.
    #[error("{endpoint} is not the leader{}: {message}", leader_hint(.leader_endpoint))]
    NotLeader { endpoint: String, leader_endpoint: Option<String>, message: String },
    /// No node could serve the request within the attempt budget (no leader, nodes down).
    /// The request had no effect.
    #[error("unavailable: {message}")]
    Unavailable { message: String },
    /// The request deadline passed with no attempt in flight, so nothing took effect.
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded { message: String },
    /// A write was sent but no attempt brought its result back before the deadline (or the
    /// shard no longer keeps it: `WRITE_SEQ_TOO_OLD`): it may or may not have been applied.
    /// Within the deadline the client retries such a write itself, with the same write id, so
    /// the shard applies it at most once; after the deadline it is the caller's to resolve.
    #[error("outcome unknown: {message}")]
    OutcomeUnknown { message: String },
    /// The server reported an internal failure. For a write this does not promise "no effect".
    #[error("internal server error: {message}")]
    Internal { message: String },
    /// A gRPC status outside HyperCache's error model (e.g. from a proxy, or an oversized
    /// message rejected by the transport); never retried.
    #[error("rpc failed with {code:?}: {message}")]
    Rpc { code: tonic::Code, message: String },
    /// The client configuration or an argument given to the client is invalid.
    #[error("configuration error: {message}")]
    Config { message: String },
}

/// The board's owner as the server reported it with `STALE_EPOCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentOwner {
    /// `None` when the board is unassigned.
    pub owner: Option<String>,
    pub incarnation: Incarnation,
    pub epoch: Epoch,
}

/// An election's state as the server reported it with `STALE_TERM` or `NOT_ELECTION_LEADER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentTerm {
    /// 0 when nobody leads.
    pub term: Term,
    /// `None` when nobody leads.
    pub leader: Option<String>,
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(leader) => format!(" (the leader is {leader})"),
        None => String::new(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into() }
    }

    /// True when trying the same operation again later may succeed *and* is safe: the failed
    /// attempt provably had no effect. `OutcomeUnknown` is deliberately not retryable, and
    /// neither is `Rejected` (the same request would be refused again).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::DeadlineExceeded { .. } | Error::NotLeader { .. })
    }

    /// A short stable name for the variant (metrics, benchmark reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::Rejected { .. } => "rejected",
            Error::UnknownShard { .. } => "unknown_shard",
            Error::NotLeader { .. } => "not_leader",
            Error::Unavailable { .. } => "unavailable",
            Error::DeadlineExceeded { .. } => "deadline_exceeded",
            Error::OutcomeUnknown { .. } => "outcome_unknown",
            Error::Internal { .. } => "internal",
            Error::Rpc { .. } => "rpc",
            Error::Config { .. } => "config",
        }
    }

    /// True when a write may have been applied even though it returned an error.
    pub fn may_have_been_applied(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. } | Error::Internal { .. })
    }

    /// The server's stable reason, for `InvalidArgument` and `Rejected`.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::InvalidArgument { reason, .. } | Error::Rejected { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// True when the server gave this stable reason.
    pub fn is_reason(&self, reason: Reason) -> bool {
        self.reason() == Some(reason)
    }

    /// The server's `ErrorInfo`, for `Rejected`.
    pub fn info(&self) -> Option<&ErrorInfo> {
        match self {
            Error::Rejected { info, .. } => Some(info),
            _ => None,
        }
    }

    /// The gRPC code of a `Rejected` error.
    pub fn rejected_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for a `NOT_FOUND` rejection (`LEASE_NOT_FOUND`, `BOARD_NOT_FOUND`,
    /// `SERVER_NOT_FOUND`).
    pub fn is_not_found(&self) -> bool {
        self.rejected_code() == Some(tonic::Code::NotFound)
    }

    fn info_for(&self, wanted: Reason) -> Option<&ErrorInfo> {
        self.info().filter(|_| self.is_reason(wanted))
    }

    /// For `STALE_EPOCH`: the board's current owner and epoch. The caller's ownership is over.
    pub fn stale_epoch(&self) -> Option<CurrentOwner> {
        self.info_for(Reason::StaleEpoch).map(|i| CurrentOwner {
            owner: non_empty(&i.owner),
            incarnation: Incarnation(i.incarnation),
            epoch: Epoch(i.epoch),
        })
    }

    /// For `STALE_SEQ`: the checkpoint seq the store holds.
    pub fn stale_seq(&self) -> Option<Seq> {
        self.info_for(Reason::StaleSeq).map(|i| Seq(i.seq))
    }

    /// For `STALE_INCARNATION`: the registration's current incarnation.
    pub fn stale_incarnation(&self) -> Option<Incarnation> {
        self.info_for(Reason::StaleIncarnation).map(|i| Incarnation(i.incarnation))
    }

    /// For `STALE_TERM` and `NOT_ELECTION_LEADER`: the election's current term and leader.
    pub fn current_term(&self) -> Option<CurrentTerm> {
        self.info_for(Reason::StaleTerm)
            .or_else(|| self.info_for(Reason::NotElectionLeader))
            .map(|i| CurrentTerm { term: Term(i.term), leader: non_empty(&i.leader) })
    }

    /// For `COMPACTED`: the oldest revision the serving node can still deliver.
    pub fn compacted(&self) -> Option<u64> {
        self.info_for(Reason::Compacted).map(|i| i.oldest_revision)
    }

    /// For `WATCHER_TOO_SLOW`: the revision to resume from.
    pub fn watcher_too_slow(&self) -> Option<u64> {
        self.info_for(Reason::WatcherTooSlow).map(|i| i.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(code: tonic::Code, info: ErrorInfo) -> Error {
        let reason = info.known_reason().expect("a known reason");
        Error::Rejected { code, reason, message: "server text".into(), info: Box::new(info) }
    }

    #[test]
    fn only_no_effect_errors_are_retryable() {
        assert!(Error::Unavailable { message: "x".into() }.is_retryable());
        assert!(!Error::OutcomeUnknown { message: "x".into() }.is_retryable());
        assert!(Error::OutcomeUnknown { message: "x".into() }.may_have_been_applied());
        assert!(!Error::InvalidArgument { reason: Reason::EmptyKey, message: "x".into() }.is_retryable());
        let stale = rejected(
            tonic::Code::FailedPrecondition,
            ErrorInfo { reason: Reason::StaleEpoch.into(), ..Default::default() },
        );
        assert!(!stale.is_retryable());
        assert!(!stale.may_have_been_applied());
    }

    #[test]
    fn invalid_argument_shows_the_server_message_verbatim() {
        let e = Error::InvalidArgument {
            reason: Reason::EmptyKey,
            message: "key is empty; keys must be 1..=4096 bytes".into(),
        };
        assert_eq!(e.to_string(), "key is empty; keys must be 1..=4096 bytes");
    }

    #[test]
    fn typed_helpers_decode_only_their_own_reason() {
        let info = ErrorInfo {
            reason: Reason::StaleEpoch.into(),
            owner: "srv-b".into(),
            epoch: 7,
            incarnation: 3,
            seq: 99,
            ..Default::default()
        };
        let e = rejected(tonic::Code::FailedPrecondition, info);
        assert_eq!(e.to_string(), "server text");
        assert!(e.is_reason(Reason::StaleEpoch));
        assert_eq!(
            e.stale_epoch(),
            Some(CurrentOwner { owner: Some("srv-b".into()), incarnation: Incarnation(3), epoch: Epoch(7) })
        );
        assert_eq!(e.stale_seq(), None, "seq belongs to STALE_SEQ only");
        assert!(!e.is_not_found());

        let unassigned = rejected(
            tonic::Code::FailedPrecondition,
            ErrorInfo { reason: Reason::StaleEpoch.into(), epoch: 8, ..Default::default() },
        );
        assert_eq!(unassigned.stale_epoch().and_then(|o| o.owner), None);

        let term = rejected(
            tonic::Code::FailedPrecondition,
            ErrorInfo { reason: Reason::NotElectionLeader.into(), term: 4, leader: "c2".into(), ..Default::default() },
        );
        assert_eq!(term.current_term(), Some(CurrentTerm { term: Term(4), leader: Some("c2".into()) }));

        let gone =
            rejected(tonic::Code::NotFound, ErrorInfo { reason: Reason::LeaseNotFound.into(), ..Default::default() });
        assert!(gone.is_not_found());
        let compacted = rejected(
            tonic::Code::OutOfRange,
            ErrorInfo { reason: Reason::Compacted.into(), oldest_revision: 40, ..Default::default() },
        );
        assert_eq!(compacted.compacted(), Some(40));
        assert_eq!(compacted.kind(), "rejected");
    }
}
