//! Checkpoints: a [`Board`] as the `pb::BoardCheckpoint` a game server writes with a fenced
//! `Boards.Sync`, and back.
//!
//! Decoding trusts nothing: a checkpoint is read from the store after a failover and may have
//! been written by another version of the server (or be corrupt), so every field is checked and
//! a bad one is a [`CheckpointError`], never a panic. What is not in a checkpoint: the RNG state
//! (a restored board gets a fresh seed) and the players' latest intents (a player stands still
//! after a failover until its next input; its acked seq is kept, so replayed inputs are ignored).

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use super::board::Board;
use super::params::{validate_params, ParamsError};
use super::player::{validate_name, Intent, NameError, PlayerId, PlayerState};
use crate::proto::v1 as pb;

/// Why a checkpoint could not be turned into a board.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is not a valid BoardCheckpoint message: {0}")]
    Malformed(String),
    #[error("checkpoint has no params")]
    MissingParams,
    #[error("checkpoint params are invalid: {0}")]
    InvalidParams(#[from] ParamsError),
    #[error("checkpoint holds {players} players, more than max_players = {max}")]
    TooManyPlayers { players: usize, max: u32 },
    #[error("checkpoint next_player_id is 0; ids start at 1")]
    NextIdZero,
    #[error("checkpoint player id {id} is invalid: ids are 1..next_player_id ({next})")]
    BadPlayerId { id: u32, next: u32 },
    #[error("checkpoint holds player {id} twice")]
    DuplicatePlayer { id: u32 },
    #[error("checkpoint player {id}: {field} = {value} is invalid ({why})")]
    BadPlayerField { id: u32, field: &'static str, value: f64, why: &'static str },
    #[error("checkpoint player {id} has an invalid name: {error}")]
    BadPlayerName { id: u32, error: NameError },
    #[error("checkpoint has an acked seq for player {id}, who is not on the board")]
    AckForUnknownPlayer { id: u32 },
}

impl Board {
    /// The board as a checkpoint message.
    pub fn to_checkpoint(&self) -> pb::BoardCheckpoint {
        pb::BoardCheckpoint {
            params: Some(pb::GameParams::from(&self.params)),
            tick: self.tick,
            players: self.players.values().map(pb::Player::from).collect(),
            next_player_id: self.next_player_id,
            acked_seq: self.players.values().filter(|p| p.acked_seq > 0).map(|p| (p.id.0, p.acked_seq)).collect(),
        }
    }

    /// The board as checkpoint bytes (prost encoding of [`to_checkpoint`](Self::to_checkpoint)).
    pub fn encode_checkpoint(&self) -> Bytes {
        Bytes::from(self.to_checkpoint().encode_to_vec())
    }

    /// Rebuilds a board from a checkpoint, checking every field. `default_tick_hz` resolves a
    /// `tick_hz` of 0; `seed` seeds the board's RNG.
    pub fn from_checkpoint(
        cp: &pb::BoardCheckpoint,
        default_tick_hz: u32,
        seed: u64,
    ) -> Result<Board, CheckpointError> {
        let params = validate_params(cp.params.as_ref().ok_or(CheckpointError::MissingParams)?, default_tick_hz)?;
        if cp.players.len() > params.max_players as usize {
            return Err(CheckpointError::TooManyPlayers { players: cp.players.len(), max: params.max_players });
        }
        // An initial checkpoint (params only) has next_player_id 0 on the wire: no ids handed out.
        let next = if cp.next_player_id == 0 && cp.players.is_empty() { 1 } else { cp.next_player_id };
        if next == 0 {
            return Err(CheckpointError::NextIdZero);
        }
        let mut players = BTreeMap::new();
        for p in &cp.players {
            if p.id == 0 || p.id >= next {
                return Err(CheckpointError::BadPlayerId { id: p.id, next });
            }
            let state = player_from_wire(p, cp.acked_seq.get(&p.id).copied().unwrap_or(0))?;
            if players.insert(state.id, state).is_some() {
                return Err(CheckpointError::DuplicatePlayer { id: p.id });
            }
        }
        if let Some(id) = cp.acked_seq.keys().find(|id| !players.contains_key(&PlayerId(**id))) {
            return Err(CheckpointError::AckForUnknownPlayer { id: *id });
        }
        Ok(Board::restore(params, cp.tick, players, next, seed))
    }

    /// Decodes checkpoint bytes (see [`from_checkpoint`](Self::from_checkpoint)).
    pub fn decode_checkpoint(data: &[u8], default_tick_hz: u32, seed: u64) -> Result<Board, CheckpointError> {
        let cp = pb::BoardCheckpoint::decode(data).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        Board::from_checkpoint(&cp, default_tick_hz, seed)
    }
}

fn player_from_wire(p: &pb::Player, acked_seq: u64) -> Result<PlayerState, CheckpointError> {
    let bad = |field: &'static str, value: f64, why: &'static str| CheckpointError::BadPlayerField {
        id: p.id,
        field,
        value,
        why,
    };
    for (field, value) in [("x", p.x), ("y", p.y)] {
        if !value.is_finite() {
            return Err(bad(field, value, "not a finite number"));
        }
    }
    for (field, value) in [("radius", p.radius), ("ring_radius", p.ring_radius), ("speed", p.speed)] {
        if !value.is_finite() || value <= 0.0 {
            return Err(bad(field, value, "must be a finite number above 0"));
        }
    }
    if p.color > 0xFF_FFFF {
        return Err(bad("color", f64::from(p.color), "must be 0xRRGGBB"));
    }
    validate_name(&p.name).map_err(|error| CheckpointError::BadPlayerName { id: p.id, error })?;
    Ok(PlayerState {
        id: PlayerId(p.id),
        name: p.name.clone(),
        x: p.x,
        y: p.y,
        radius: p.radius,
        ring_radius: p.ring_radius,
        color: p.color,
        kills: p.kills,
        ring: p.ring,
        speed: p.speed,
        intent: Intent { direction: Default::default(), ring: p.ring },
        acked_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::super::params::test_params;
    use super::super::player::Direction;
    use super::*;

    fn played_board() -> Board {
        let mut b = Board::new(test_params(), 5);
        let a = b.add_player("alice").unwrap();
        let c = b.add_player("carol").unwrap();
        let gone = b.add_player("gone").unwrap();
        b.remove_player(gone).unwrap();
        b.apply_input(a, 3, Direction::Up, false).unwrap();
        b.apply_input(c, 9, Direction::None, true).unwrap();
        for _ in 0..4 {
            b.step();
        }
        b
    }

    #[test]
    fn a_checkpoint_round_trips() {
        let b = played_board();
        let restored = Board::decode_checkpoint(&b.encode_checkpoint(), 30, 1).expect("valid checkpoint");
        assert_eq!(restored.tick(), 4);
        assert_eq!(restored.params(), b.params());
        assert_eq!(restored.next_player_id(), 4);
        assert_eq!(restored.to_checkpoint(), b.to_checkpoint());
        assert_eq!(restored.acked_seq(PlayerId(1)), 3);
        assert_eq!(restored.acked_seq(PlayerId(2)), 9);
        assert!(restored.player(PlayerId(2)).unwrap().ring, "the ring stays on across a restore");
        // Intents are not kept: the restored player stands still until its next input.
        let mut restored = restored;
        let before = restored.player(PlayerId(1)).unwrap().y;
        restored.step();
        assert_eq!(restored.player(PlayerId(1)).unwrap().y, before);
        assert!(restored.player(PlayerId(2)).unwrap().ring, "the restored intent keeps the ring on");
    }

    #[test]
    fn an_initial_checkpoint_with_only_params_is_a_new_game() {
        let cp = pb::BoardCheckpoint { params: Some(pb::GameParams::from(&test_params())), ..Default::default() };
        let b = Board::decode_checkpoint(&cp.encode_to_vec(), 30, 1).expect("initial checkpoint");
        assert_eq!((b.tick(), b.player_count(), b.next_player_id()), (0, 0, 1));
        let cp = pb::BoardCheckpoint {
            params: Some(pb::GameParams { tick_hz: 0, ..pb::GameParams::from(&test_params()) }),
            ..Default::default()
        };
        assert_eq!(Board::from_checkpoint(&cp, 25, 1).expect("valid").params().tick_hz, 25);
    }

    #[test]
    fn bad_checkpoints_are_typed_errors() {
        let good = played_board().to_checkpoint();
        let check = |mutate: &dyn Fn(&mut pb::BoardCheckpoint)| {
            let mut cp = good.clone();
            mutate(&mut cp);
            Board::from_checkpoint(&cp, 30, 1).expect_err("must be refused")
        };
        assert_eq!(
            Board::decode_checkpoint(b"\xff\xff\xff", 30, 1).map(|_| ()).unwrap_err().to_string().split(':').next(),
            Some("checkpoint is not a valid BoardCheckpoint message")
        );
        assert_eq!(Board::decode_checkpoint(&[], 30, 1).unwrap_err(), CheckpointError::MissingParams);
        assert_eq!(check(&|cp| cp.params = None), CheckpointError::MissingParams);
        assert!(matches!(
            check(&|cp| cp.params.as_mut().unwrap().speed = f64::NAN),
            CheckpointError::InvalidParams(ParamsError::NotFinite { field: "speed", .. })
        ));
        assert_eq!(
            check(&|cp| cp.params.as_mut().unwrap().max_players = 1),
            CheckpointError::TooManyPlayers { players: 2, max: 1 }
        );
        assert_eq!(check(&|cp| cp.next_player_id = 0), CheckpointError::NextIdZero);
        assert_eq!(check(&|cp| cp.players[0].id = 0), CheckpointError::BadPlayerId { id: 0, next: 4 });
        assert_eq!(check(&|cp| cp.players[0].id = 4), CheckpointError::BadPlayerId { id: 4, next: 4 });
        assert_eq!(check(&|cp| cp.players[1].id = 1), CheckpointError::DuplicatePlayer { id: 1 });
        assert!(matches!(
            check(&|cp| cp.players[0].x = f64::INFINITY),
            CheckpointError::BadPlayerField { id: 1, field: "x", .. }
        ));
        assert!(matches!(
            check(&|cp| cp.players[1].radius = 0.0),
            CheckpointError::BadPlayerField { id: 2, field: "radius", .. }
        ));
        assert!(matches!(
            check(&|cp| cp.players[0].color = 0x1_000_000),
            CheckpointError::BadPlayerField { field: "color", .. }
        ));
        assert!(matches!(check(&|cp| cp.players[0].name.clear()), CheckpointError::BadPlayerName { id: 1, .. }));
        assert_eq!(
            check(&|cp| {
                cp.acked_seq.insert(3, 1);
            }),
            CheckpointError::AckForUnknownPlayer { id: 3 }
        );
    }
}
