//! Client errors, typed by what the caller does next.
//!
//! | Variant            | Did the operation take effect?            | What to do                     |
//! |--------------------|-------------------------------------------|--------------------------------|
//! | `InvalidArgument`  | no                                        | fix the request                |
//! | `UnknownShard`     | no                                        | fix the shard id / routing     |
//! | `NotLeader`        | no (only from single-node calls)          | ask the leader it names        |
//! | `Unavailable`      | no                                        | retry later                    |
//! | `DeadlineExceeded` | no (nothing was in flight at the deadline) | retry later, or a longer deadline |
//! | `OutcomeUnknown`   | **maybe** (writes only)                   | read back before acting again  |
//! | `Internal`         | for writes: maybe                         | report; read back              |
//! | `Rpc`              | no (rejected outside HyperCache's model)  | inspect the gRPC code          |
//! | `Config`           | nothing was sent                          | fix the configuration          |

/// Everything a [`Client`](crate::Client) operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server rejected the request's contents. `reason` is the stable code (`EMPTY_KEY`,
    /// `KEY_TOO_LONG`, `VALUE_TOO_LARGE`, `INVALID_RANGE`, `INVALID_ARGUMENT`); `message` is the
    /// server's text, which names the limit.
    #[error("{message}")]
    InvalidArgument { reason: String, message: String },
    /// The addressed shard does not exist on the cluster.
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
    /// A write was sent but its result never came back: it may or may not have been applied.
    /// The client never retries such a write on its own.
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

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(leader) => format!(" (the leader is {leader})"),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into() }
    }

    /// True when trying the same operation again later may succeed *and* is safe: the failed
    /// attempt provably had no effect. `OutcomeUnknown` is deliberately not retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::DeadlineExceeded { .. } | Error::NotLeader { .. })
    }

    /// A short stable name for the variant (metrics, benchmark reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_no_effect_errors_are_retryable() {
        assert!(Error::Unavailable { message: "x".into() }.is_retryable());
        assert!(!Error::OutcomeUnknown { message: "x".into() }.is_retryable());
        assert!(Error::OutcomeUnknown { message: "x".into() }.may_have_been_applied());
        assert!(!Error::InvalidArgument { reason: "EMPTY_KEY".into(), message: "x".into() }.is_retryable());
    }

    #[test]
    fn invalid_argument_shows_the_server_message_verbatim() {
        let e = Error::InvalidArgument {
            reason: "EMPTY_KEY".into(),
            message: "key is empty; keys must be 1..=4096 bytes".into(),
        };
        assert_eq!(e.to_string(), "key is empty; keys must be 1..=4096 bytes");
    }
}
