//! Game parameters: the wire form (`pb::GameParams`) is checked once, at the edge, and turned
//! into [`Params`], which the rest of the rules trust.
//!
//! The limits are the ones in the proto comments. They keep every board playable and every
//! computation finite: a body fits four times across the arena radius, so there is always room
//! to spawn; a ring reaches at most four bodies out, so a ringed player cannot cover the arena.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::proto::v1 as pb;

/// Arena radius in world units.
pub const ARENA_RADIUS: RangeInclusive<f64> = 100.0..=10_000.0;
/// Players per board.
pub const MAX_PLAYERS: RangeInclusive<u32> = 1..=64;
/// Movement speed in world units per second.
pub const SPEED: RangeInclusive<f64> = 1.0..=1000.0;
/// Body radius (also below `arena_radius / 4`).
pub const PLAYER_RADIUS: RangeInclusive<f64> = 1.0..=100.0;
/// A ring reaches at most this many body radii from the centre.
pub const MAX_RING_FACTOR: f64 = 4.0;
/// Ticks per second (0 on the wire means the server default).
pub const TICK_HZ: RangeInclusive<u32> = 1..=120;

/// Validated game parameters. `tick_hz` is resolved (never 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub arena_radius: f64,
    pub max_players: u32,
    pub speed: f64,
    pub player_radius: f64,
    pub ring_radius: f64,
    pub tick_hz: u32,
}

impl Params {
    /// Seconds of game time per tick.
    pub fn dt(&self) -> f64 {
        1.0 / f64::from(self.tick_hz)
    }

    /// Wall-clock time between ticks.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_secs_f64(self.dt())
    }
}

/// Why a `GameParams` was refused; the message names the field and the limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    #[error("{field} must be a finite number, got {value}")]
    NotFinite { field: &'static str, value: f64 },
    #[error("{field} = {value} is out of range: must be within {min}..={max}")]
    OutOfRange { field: &'static str, value: f64, min: f64, max: f64 },
    #[error("player_radius = {player_radius} must be less than arena_radius / 4 = {limit}")]
    PlayerTooLarge { player_radius: f64, limit: f64 },
    #[error(
        "ring_radius = {ring_radius} must be greater than player_radius ({player_radius}) and at most \
         4 x player_radius ({max})"
    )]
    RingRadius { ring_radius: f64, player_radius: f64, max: f64 },
    #[error("tick_hz = {value} is out of range: must be 0 (server default) or within 1..=120")]
    TickHz { value: u32 },
    #[error("the server's default tick rate {value} is out of range: must be within 1..=120")]
    DefaultTickHz { value: u32 },
}

impl ParamsError {
    /// The `GameParams` field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ParamsError::NotFinite { field, .. } | ParamsError::OutOfRange { field, .. } => field,
            ParamsError::PlayerTooLarge { .. } => "player_radius",
            ParamsError::RingRadius { .. } => "ring_radius",
            ParamsError::TickHz { .. } | ParamsError::DefaultTickHz { .. } => "tick_hz",
        }
    }
}

fn finite_in(field: &'static str, value: f64, range: &RangeInclusive<f64>) -> Result<f64, ParamsError> {
    if !value.is_finite() {
        return Err(ParamsError::NotFinite { field, value });
    }
    if !range.contains(&value) {
        return Err(ParamsError::OutOfRange { field, value, min: *range.start(), max: *range.end() });
    }
    Ok(value)
}

/// Checks every limit of `p`; `tick_hz = 0` becomes `default_tick_hz` (which must itself be
/// within 1..=120).
pub fn validate_params(p: &pb::GameParams, default_tick_hz: u32) -> Result<Params, ParamsError> {
    let arena_radius = finite_in("arena_radius", p.arena_radius, &ARENA_RADIUS)?;
    if !MAX_PLAYERS.contains(&p.max_players) {
        return Err(ParamsError::OutOfRange {
            field: "max_players",
            value: f64::from(p.max_players),
            min: f64::from(*MAX_PLAYERS.start()),
            max: f64::from(*MAX_PLAYERS.end()),
        });
    }
    let speed = finite_in("speed", p.speed, &SPEED)?;
    let player_radius = finite_in("player_radius", p.player_radius, &PLAYER_RADIUS)?;
    let limit = arena_radius / 4.0;
    if player_radius >= limit {
        return Err(ParamsError::PlayerTooLarge { player_radius, limit });
    }
    if !p.ring_radius.is_finite() {
        return Err(ParamsError::NotFinite { field: "ring_radius", value: p.ring_radius });
    }
    let max_ring = MAX_RING_FACTOR * player_radius;
    if p.ring_radius <= player_radius || p.ring_radius > max_ring {
        return Err(ParamsError::RingRadius { ring_radius: p.ring_radius, player_radius, max: max_ring });
    }
    let tick_hz = match p.tick_hz {
        0 if TICK_HZ.contains(&default_tick_hz) => default_tick_hz,
        0 => return Err(ParamsError::DefaultTickHz { value: default_tick_hz }),
        hz if TICK_HZ.contains(&hz) => hz,
        hz => return Err(ParamsError::TickHz { value: hz }),
    };
    Ok(Params { arena_radius, max_players: p.max_players, speed, player_radius, ring_radius: p.ring_radius, tick_hz })
}

impl From<&Params> for pb::GameParams {
    fn from(p: &Params) -> Self {
        pb::GameParams {
            arena_radius: p.arena_radius,
            max_players: p.max_players,
            speed: p.speed,
            player_radius: p.player_radius,
            ring_radius: p.ring_radius,
            tick_hz: p.tick_hz,
        }
    }
}

#[cfg(test)]
pub(crate) fn test_params() -> Params {
    Params { arena_radius: 1000.0, max_players: 8, speed: 100.0, player_radius: 10.0, ring_radius: 30.0, tick_hz: 10 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> pb::GameParams {
        pb::GameParams::from(&test_params())
    }

    fn refused(p: pb::GameParams) -> ParamsError {
        validate_params(&p, 30).expect_err("must be refused")
    }

    #[test]
    fn valid_params_round_trip() {
        let p = validate_params(&wire(), 30).expect("valid");
        assert_eq!(p, test_params());
        assert_eq!(pb::GameParams::from(&p), wire());
        assert_eq!(p.tick_interval(), Duration::from_millis(100));
    }

    #[test]
    fn tick_hz_zero_takes_the_server_default() {
        let p = validate_params(&pb::GameParams { tick_hz: 0, ..wire() }, 30).expect("valid");
        assert_eq!(p.tick_hz, 30);
        let err = validate_params(&pb::GameParams { tick_hz: 0, ..wire() }, 0).expect_err("bad default");
        assert_eq!(err, ParamsError::DefaultTickHz { value: 0 });
    }

    #[test]
    fn arena_radius_limits() {
        assert!(validate_params(&pb::GameParams { arena_radius: 100.0, player_radius: 10.0, ..wire() }, 30).is_ok());
        assert!(validate_params(&pb::GameParams { arena_radius: 10_000.0, ..wire() }, 30).is_ok());
        let e = refused(pb::GameParams { arena_radius: 99.9, ..wire() });
        assert_eq!(e.field(), "arena_radius");
        assert!(e.to_string().contains("100..=10000"), "{e}");
        assert_eq!(refused(pb::GameParams { arena_radius: 10_000.5, ..wire() }).field(), "arena_radius");
    }

    #[test]
    fn max_players_limits() {
        assert!(validate_params(&pb::GameParams { max_players: 1, ..wire() }, 30).is_ok());
        assert!(validate_params(&pb::GameParams { max_players: 64, ..wire() }, 30).is_ok());
        let e = refused(pb::GameParams { max_players: 0, ..wire() });
        assert_eq!(e.to_string(), "max_players = 0 is out of range: must be within 1..=64");
        assert_eq!(refused(pb::GameParams { max_players: 65, ..wire() }).field(), "max_players");
    }

    #[test]
    fn speed_limits() {
        assert!(validate_params(&pb::GameParams { speed: 1.0, ..wire() }, 30).is_ok());
        assert!(validate_params(&pb::GameParams { speed: 1000.0, ..wire() }, 30).is_ok());
        assert_eq!(refused(pb::GameParams { speed: 0.5, ..wire() }).field(), "speed");
        assert_eq!(refused(pb::GameParams { speed: 1000.1, ..wire() }).field(), "speed");
    }

    #[test]
    fn player_radius_limits() {
        assert!(validate_params(&pb::GameParams { player_radius: 1.0, ring_radius: 2.0, ..wire() }, 30).is_ok());
        let e = refused(pb::GameParams { player_radius: 0.9, ..wire() });
        assert_eq!(e.field(), "player_radius");
        let e = refused(pb::GameParams { player_radius: 100.1, ring_radius: 200.0, ..wire() });
        assert!(matches!(e, ParamsError::OutOfRange { field: "player_radius", .. }), "{e}");
        // Below 100 but not below arena_radius / 4.
        let e = refused(pb::GameParams { arena_radius: 200.0, player_radius: 50.0, ring_radius: 60.0, ..wire() });
        assert_eq!(e, ParamsError::PlayerTooLarge { player_radius: 50.0, limit: 50.0 });
        assert!(e.to_string().contains("arena_radius / 4"), "{e}");
    }

    #[test]
    fn ring_radius_limits() {
        assert!(validate_params(&pb::GameParams { ring_radius: 40.0, ..wire() }, 30).is_ok());
        for bad in [10.0, 5.0, 40.01] {
            let e = refused(pb::GameParams { ring_radius: bad, ..wire() });
            assert_eq!(e.field(), "ring_radius", "{bad}");
            assert!(e.to_string().contains("4 x player_radius (40)"), "{e}");
        }
    }

    #[test]
    fn tick_hz_limits() {
        assert!(validate_params(&pb::GameParams { tick_hz: 1, ..wire() }, 30).is_ok());
        assert!(validate_params(&pb::GameParams { tick_hz: 120, ..wire() }, 30).is_ok());
        assert_eq!(refused(pb::GameParams { tick_hz: 121, ..wire() }), ParamsError::TickHz { value: 121 });
    }

    #[test]
    fn nan_and_infinity_are_refused_for_every_float() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let cases = [
                ("arena_radius", pb::GameParams { arena_radius: bad, ..wire() }),
                ("speed", pb::GameParams { speed: bad, ..wire() }),
                ("player_radius", pb::GameParams { player_radius: bad, ..wire() }),
                ("ring_radius", pb::GameParams { ring_radius: bad, ..wire() }),
            ];
            for (field, p) in cases {
                let e = refused(p);
                assert!(matches!(e, ParamsError::NotFinite { .. }), "{field}: {e}");
                assert_eq!(e.field(), field);
            }
        }
    }
}
