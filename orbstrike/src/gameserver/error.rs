//! Errors of the game server, typed by what the caller (an orchestrator) does next, and the one
//! place they become gRPC statuses.
//!
//! | Error            | gRPC code          | caller's next step                                  |
//! |------------------|--------------------|-----------------------------------------------------|
//! | `NotHere`        | NOT_FOUND          | "MOVED:": the board left; wait for a newer epoch    |
//! | `NotServed`      | NOT_FOUND          | not (yet) assigned or loaded here; look up, retry   |
//! | `Stopped`        | UNAVAILABLE        | "MOVED:": the board stopped here; re-route          |
//! | `Draining`       | UNAVAILABLE        | "MOVED:": the server hands its boards over; re-route |
//! | `Loading`        | UNAVAILABLE        | retry here shortly                                  |
//! | `Broken`         | FAILED_PRECONDITION| operator: the board's checkpoint cannot be served   |
//! | `Full`           | RESOURCE_EXHAUSTED | the game is full (max_players or no free spawn)     |
//! | `UnknownPlayer`  | NOT_FOUND          | the player is not (or no longer) on the board       |
//! | `InvalidArgument`| INVALID_ARGUMENT   | fix the request                                     |
//!
//! Every message starting "MOVED:" means "this server served the board and stopped": the board
//! leaves at that epoch for good (a server never resumes a board at an epoch it stopped at; it
//! releases it instead), so a newer epoch is coming. The orchestrator re-routes on it, whatever
//! the code.

use tonic::Status;

use crate::rules::{JoinError, PlayerId};

/// Prefix of every message that tells the orchestrator to re-route.
pub const MOVED_PREFIX: &str = "MOVED:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GameError {
    #[error("MOVED: board {board} is no longer served by game server {server}")]
    NotHere { board: String, server: String },
    #[error("board {board} is not served by game server {server} (not assigned here, or not loaded yet)")]
    NotServed { board: String, server: String },
    #[error("MOVED: board {board} stopped on game server {server}: {why}")]
    Stopped { board: String, server: String, why: String },
    #[error("MOVED: game server {server} is draining; board {board} is being handed over")]
    Draining { board: String, server: String },
    #[error("board {board} is loading on game server {server}; retry shortly")]
    Loading { board: String, server: String },
    #[error("board {board} cannot be served by game server {server}: {why}")]
    Broken { board: String, server: String, why: String },
    #[error("board {board}: {error}")]
    Join { board: String, error: JoinError },
    #[error("player {player} is not on board {board}")]
    UnknownPlayer { board: String, player: PlayerId },
    #[error("{0}")]
    InvalidArgument(String),
}

impl From<GameError> for Status {
    fn from(e: GameError) -> Status {
        let message = e.to_string();
        match e {
            GameError::NotHere { .. } | GameError::NotServed { .. } | GameError::UnknownPlayer { .. } => {
                Status::not_found(message)
            }
            GameError::Stopped { .. } | GameError::Draining { .. } | GameError::Loading { .. } => {
                Status::unavailable(message)
            }
            GameError::Broken { .. } => Status::failed_precondition(message),
            GameError::Join { error: JoinError::InvalidName(_), .. } | GameError::InvalidArgument(_) => {
                Status::invalid_argument(message)
            }
            GameError::Join { .. } => Status::resource_exhausted(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::NameError;
    use tonic::Code;

    #[test]
    fn moved_errors_start_with_the_prefix_and_codes_follow_the_table() {
        let (board, server) = ("g1".to_string(), "gs-1".to_string());
        let cases = [
            (GameError::NotHere { board: board.clone(), server: server.clone() }, Code::NotFound, true),
            (GameError::NotServed { board: board.clone(), server: server.clone() }, Code::NotFound, false),
            (
                GameError::Stopped { board: board.clone(), server: server.clone(), why: "fenced".into() },
                Code::Unavailable,
                true,
            ),
            (GameError::Draining { board: board.clone(), server: server.clone() }, Code::Unavailable, true),
            (GameError::Loading { board: board.clone(), server: server.clone() }, Code::Unavailable, false),
            (
                GameError::Join { board: board.clone(), error: JoinError::Full { max: 2 } },
                Code::ResourceExhausted,
                false,
            ),
            (
                GameError::Join { board: board.clone(), error: JoinError::InvalidName(NameError::Empty) },
                Code::InvalidArgument,
                false,
            ),
            (GameError::UnknownPlayer { board, player: PlayerId(3) }, Code::NotFound, false),
        ];
        for (error, code, moved) in cases {
            let status = Status::from(error.clone());
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(status.message().starts_with(MOVED_PREFIX), moved, "{error}");
        }
    }
}
