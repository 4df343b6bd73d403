//! The game rules of Orbstrike: pure, deterministic given a seed, no I/O and no clock.
//!
//! # The game
//!
//! Each player is an orb (a circle) in a circular arena centred at (0, 0). It moves in eight
//! directions, or switches on its **ring** (kill mode), which stops it moving. A ringed player
//! whose ring touches the body of an un-ringed player kills it and is credited with the kill.
//! A player whose centre leaves the arena dies. Dead players leave the board. That is the whole
//! game: the state is the parameters plus the players.
//!
//! # Model
//!
//! - [`validate_params`] checks the wire parameters once and yields [`Params`]; everything after
//!   that trusts them (the limits guarantee room to spawn and finite arithmetic).
//! - A [`Board`] is advanced by [`Board::step`], one fixed tick of `1 / tick_hz` seconds. Inputs
//!   ([`Board::apply_input`]) only set a player's latest intent (with its seq); the tick applies
//!   it. The server alone decides movement, deaths and kills: clients send intents, never hits.
//! - Every tick returns a [`StepOutcome`] (who changed, who left and why), which is exactly what
//!   a delta update needs.
//! - A board converts to and from the `BoardCheckpoint` message ([`Board::to_checkpoint`],
//!   [`Board::from_checkpoint`]); decoding validates everything and never panics.
//!
//! # Fixed defects of the original game
//!
//! Hits were reported by clients and only distance-checked; diagonal movement was sqrt(2)
//! faster; everybody spawned at (0, 0); player id 0 was possible. Here hits are computed on the
//! server against the ring radius, diagonals are normalized, spawns are random and free, and ids
//! start at 1 and are never reused within a board.
//!
//! # Not done (deliberately)
//!
//! - No collision between bodies (orbs pass through each other, as in the original).
//! - Movement is not swept: a player moves `speed * dt` per tick and can, at extreme speeds and
//!   low tick rates, jump past a ring within one tick. The limits (speed <= 1000, tick_hz >= 1,
//!   ring > body) bound how far.

mod board;
mod checkpoint;
mod params;
mod player;

pub use board::{Board, InputOutcome, JoinError, RemoveOutcome, StepOutcome, UnknownPlayer, SPAWN_ATTEMPTS};
pub use checkpoint::CheckpointError;
pub use params::{
    validate_params, Params, ParamsError, ARENA_RADIUS, MAX_PLAYERS, MAX_RING_FACTOR, PLAYER_RADIUS, SPEED, TICK_HZ,
};
pub use player::{
    validate_name, Death, DeathReason, Direction, Intent, NameError, PlayerId, PlayerState, MAX_NAME_CHARS,
};
