//! What the orchestrator stores about a game, and the checks at its public edge.
//!
//! A game is a HyperCache board whose id is the game id. The board's opaque `params` hold the
//! prost-encoded, validated `GameParams` (with `tick_hz` resolved, so the game ticks at the same
//! rate on every server it visits), which is what ListGames shows without reading checkpoints.
//! The initial checkpoint is an empty board at tick 0, encoded by the rules.
//!
//! Game ids are `g-` plus 96 random bits in hex: unguessable enough that ids are not a capability
//! leak, and well inside the store's id alphabet. Assignment request ids are random too, so a
//! retry of the *same* assignment reuses its id and a new decision never does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hypercache_client::Board;
use prost::Message;

use super::error::Error;
use crate::proto::v1 as pb;
use crate::rules;

/// Longest lifetime a game may ask for (the store's maximum lease TTL).
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Shortest lifetime a game may ask for.
pub const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// Longest game id accepted (the store's id limit).
pub const MAX_GAME_ID_LEN: usize = 128;

/// Validates wire parameters; the result is what gets stored and served.
pub fn validate_params(params: Option<&pb::GameParams>, default_tick_hz: u32) -> Result<rules::Params, Error> {
    let params = params.ok_or_else(|| Error::InvalidArgument("params are required".into()))?;
    rules::validate_params(params, default_tick_hz).map_err(|e| Error::InvalidArgument(format!("params.{e}")))
}

/// Validates a requested lifetime (`0` = none).
pub fn validate_lifetime(lifetime_ms: u64) -> Result<Option<Duration>, Error> {
    if lifetime_ms == 0 {
        return Ok(None);
    }
    let lifetime = Duration::from_millis(lifetime_ms);
    if lifetime < MIN_LIFETIME || lifetime > MAX_LIFETIME {
        return Err(Error::InvalidArgument(format!(
            "lifetime_ms = {lifetime_ms} is out of range: must be 0 (no limit) or within {}..={}",
            MIN_LIFETIME.as_millis(),
            MAX_LIFETIME.as_millis()
        )));
    }
    Ok(Some(lifetime))
}

/// Checks a game id's shape before it is used as a store key.
pub fn validate_game_id(game_id: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if game_id.is_empty() || game_id.len() > MAX_GAME_ID_LEN || !game_id.chars().all(ok_char) {
        return Err(Error::InvalidArgument(format!(
            "game_id {game_id:?} is invalid: use 1..={MAX_GAME_ID_LEN} characters from [A-Za-z0-9._:-]"
        )));
    }
    Ok(())
}

/// Checks a player name (1..=32 printable characters).
pub fn validate_name(name: &str) -> Result<(), Error> {
    rules::validate_name(name).map_err(|e| Error::InvalidArgument(e.to_string()))
}

pub fn new_game_id() -> String {
    let bits: u128 = rand::random();
    format!("g-{:024x}", bits >> 32)
}

pub fn new_request_id() -> String {
    format!("r-{:032x}", rand::random::<u128>())
}

/// The board `params` bytes for validated parameters.
pub fn encode_params(params: &rules::Params) -> Bytes {
    Bytes::from(pb::GameParams::from(params).encode_to_vec())
}

/// The checkpoint a new game starts from: no players, tick 0.
pub fn initial_checkpoint(params: &rules::Params) -> Bytes {
    rules::Board::new(*params, 0).encode_checkpoint()
}

/// ListGames' view of a board; params that do not decode are left unset.
pub fn summary(board: &Board) -> pb::GameSummary {
    pb::GameSummary {
        game_id: board.board_id.clone(),
        server_id: board.owner.as_ref().map(|o| o.server_id.clone()).unwrap_or_default(),
        epoch: board.epoch.0,
        params: pb::GameParams::decode(board.params.as_ref()).ok(),
    }
}

/// Wall-clock milliseconds since the Unix epoch (tokens travel between hosts).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> pb::GameParams {
        pb::GameParams {
            arena_radius: 1000.0,
            max_players: 8,
            speed: 100.0,
            player_radius: 10.0,
            ring_radius: 30.0,
            tick_hz: 0,
        }
    }

    #[test]
    fn params_errors_name_the_field() {
        let err = validate_params(Some(&pb::GameParams { max_players: 0, ..wire() }), 30).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().starts_with("params.max_players = 0"), "{err}");
        assert_eq!(validate_params(None, 30).unwrap_err().to_string(), "params are required");
        assert_eq!(validate_params(Some(&wire()), 30).unwrap().tick_hz, 30, "tick_hz resolved at creation");
    }

    #[test]
    fn stored_params_and_checkpoint_decode() {
        let params = validate_params(Some(&wire()), 30).unwrap();
        let stored = pb::GameParams::decode(encode_params(&params).as_ref()).unwrap();
        assert_eq!(stored, pb::GameParams { tick_hz: 30, ..wire() });
        let cp = pb::BoardCheckpoint::decode(initial_checkpoint(&params).as_ref()).unwrap();
        assert_eq!((cp.tick, cp.players.len(), cp.next_player_id), (0, 0, 1));
        assert_eq!(cp.params, Some(stored));
        let board = Board {
            board_id: "g-1".into(),
            params: encode_params(&params),
            epoch: hypercache_client::Epoch(3),
            ..Default::default()
        };
        let s = summary(&board);
        assert_eq!((s.game_id.as_str(), s.server_id.as_str(), s.epoch), ("g-1", "", 3));
        assert_eq!(s.params, Some(stored));
    }

    #[test]
    fn ids_and_limits() {
        let id = new_game_id();
        assert_eq!(id.len(), 26);
        validate_game_id(&id).unwrap();
        assert_ne!(id, new_game_id());
        assert!(validate_game_id("").is_err());
        assert!(validate_game_id("a/b").is_err());
        assert!(new_request_id().len() <= 128);
        assert_eq!(validate_lifetime(0).unwrap(), None);
        assert!(validate_lifetime(10).unwrap_err().to_string().contains("lifetime_ms = 10"));
        assert_eq!(validate_lifetime(60_000).unwrap(), Some(Duration::from_secs(60)));
        validate_name("Ann").unwrap();
        assert!(validate_name("").is_err());
        assert!(validate_name(&"x".repeat(33)).is_err());
        assert!(validate_name("a\u{7}").is_err());
    }
}
