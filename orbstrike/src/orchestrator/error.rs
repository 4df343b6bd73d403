//! Orchestrator errors, typed by what the caller does next, and the one mapping to gRPC codes.
//!
//! | Variant             | gRPC code            | Caller's next step                          |
//! |---------------------|----------------------|---------------------------------------------|
//! | `InvalidArgument`   | INVALID_ARGUMENT     | fix the request (message names the field)   |
//! | `NotFound`          | NOT_FOUND            | the game does not exist (any more)          |
//! | `ResourceExhausted` | RESOURCE_EXHAUSTED   | back off: rate limit, full game, no room    |
//! | `Unauthenticated`   | UNAUTHENTICATED      | join again for a fresh token                |
//! | `Unavailable`       | UNAVAILABLE          | retry later (no owner yet, shutting down)   |
//! | `Store`             | by the store's error | see `hypercache_client::Error`              |
//! | `GameServer`        | the game server's    | passed through unchanged                    |
//! | `Internal`, `Config`, `Io` | INTERNAL      | operator problem                            |

use tonic::{Code, Status};

use super::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("hypercache: {0}")]
    Store(#[from] hypercache_client::Error),
    /// A game server refused or failed a call; its status is passed on as is.
    #[error("game server {server}: {}", status.message())]
    GameServer { server: String, status: Status },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The gRPC code a client gets for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) | Error::Config(_) | Error::Io { .. } => Code::Internal,
            Error::GameServer { status, .. } => status.code(),
            Error::Store(e) => store_code(e),
        }
    }
}

fn store_code(e: &hypercache_client::Error) -> Code {
    use hypercache_client::Error as E;
    match e {
        E::InvalidArgument { .. } => Code::InvalidArgument,
        E::Rejected { code, .. } | E::Rpc { code, .. } => *code,
        E::NotLeader { .. } | E::Unavailable { .. } | E::DeadlineExceeded { .. } | E::OutcomeUnknown { .. } => {
            Code::Unavailable
        }
        E::UnknownShard { .. } | E::Internal { .. } | E::Config { .. } => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::GameServer { status, .. } => Status::new(status.code(), status.message().to_string()),
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_what_the_caller_does_next() {
        assert_eq!(Status::from(Error::InvalidArgument("name is empty".into())).code(), Code::InvalidArgument);
        let st = Status::from(Error::Unauthenticated("token expired".into()));
        assert_eq!((st.code(), st.message()), (Code::Unauthenticated, "token expired"));
        let unknown = Error::Store(hypercache_client::Error::OutcomeUnknown { message: "lost".into() });
        assert_eq!(unknown.code(), Code::Unavailable);
        let full = Error::GameServer { server: "gs-1".into(), status: Status::resource_exhausted("game is full (8)") };
        let st = Status::from(full);
        assert_eq!((st.code(), st.message()), (Code::ResourceExhausted, "game is full (8)"));
    }
}
