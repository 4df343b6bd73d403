//! Players: ids, directions, per-player state, and how a player leaves a board.

use std::fmt;

use crate::proto::v1 as pb;

/// A player's id on one board. Ids start at 1 and are never reused within a board (0 is never
/// handed out: the original game could produce id 0 and confuse it with "no player").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlayerId(pub u32);

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One of the eight movement directions, or none. World coordinates: `Up` is +y, `Right` is +x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    None,
    Up,
    Down,
    Left,
    Right,
    UpLeft,
    UpRight,
    DownLeft,
    DownRight,
}

impl Direction {
    /// The wire value, or `None` for a value outside the enum.
    pub fn from_wire(value: i32) -> Option<Direction> {
        Some(match pb::Direction::try_from(value).ok()? {
            pb::Direction::None => Direction::None,
            pb::Direction::Up => Direction::Up,
            pb::Direction::Down => Direction::Down,
            pb::Direction::Left => Direction::Left,
            pb::Direction::Right => Direction::Right,
            pb::Direction::UpLeft => Direction::UpLeft,
            pb::Direction::UpRight => Direction::UpRight,
            pb::Direction::DownLeft => Direction::DownLeft,
            pb::Direction::DownRight => Direction::DownRight,
        })
    }

    pub fn to_wire(self) -> pb::Direction {
        match self {
            Direction::None => pb::Direction::None,
            Direction::Up => pb::Direction::Up,
            Direction::Down => pb::Direction::Down,
            Direction::Left => pb::Direction::Left,
            Direction::Right => pb::Direction::Right,
            Direction::UpLeft => pb::Direction::UpLeft,
            Direction::UpRight => pb::Direction::UpRight,
            Direction::DownLeft => pb::Direction::DownLeft,
            Direction::DownRight => pb::Direction::DownRight,
        }
    }

    /// Unit vector of the direction (zero for `None`). Diagonals are normalized, so moving
    /// diagonally is exactly as fast as moving straight (the original game was sqrt(2) faster).
    pub fn unit(self) -> (f64, f64) {
        let d = std::f64::consts::FRAC_1_SQRT_2;
        match self {
            Direction::None => (0.0, 0.0),
            Direction::Up => (0.0, 1.0),
            Direction::Down => (0.0, -1.0),
            Direction::Left => (-1.0, 0.0),
            Direction::Right => (1.0, 0.0),
            Direction::UpLeft => (-d, d),
            Direction::UpRight => (d, d),
            Direction::DownLeft => (-d, -d),
            Direction::DownRight => (d, -d),
        }
    }
}

/// What the player last asked for; applied at every tick until a newer input replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Intent {
    pub direction: Direction,
    pub ring: bool,
}

/// One player on a board.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerState {
    pub id: PlayerId,
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub radius: f64,
    pub ring_radius: f64,
    /// 0xRRGGBB.
    pub color: u32,
    pub kills: u32,
    /// Whether the ring is on, as of the last tick.
    pub ring: bool,
    pub speed: f64,
    /// The latest input, applied from the next tick on. Not checkpointed: after a failover a
    /// player stands still until it sends its next input.
    pub intent: Intent,
    /// The highest input seq applied (0 before the first input).
    pub acked_seq: u64,
}

impl PlayerState {
    /// Distance between the centres of two players.
    pub fn distance_to(&self, other: &PlayerState) -> f64 {
        (self.x - other.x).hypot(self.y - other.y)
    }
}

impl From<&PlayerState> for pb::Player {
    fn from(p: &PlayerState) -> Self {
        pb::Player {
            id: p.id.0,
            name: p.name.clone(),
            x: p.x,
            y: p.y,
            radius: p.radius,
            ring_radius: p.ring_radius,
            color: p.color,
            kills: p.kills,
            ring: p.ring,
            speed: p.speed,
        }
    }
}

/// Why a player left the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// A ringed player's ring touched its body while its own ring was off.
    Killed { by: PlayerId },
    /// Its centre left the arena.
    LeftArena,
    /// It was removed on request (the player exited).
    Exited,
}

impl DeathReason {
    pub fn to_wire(self) -> pb::GameOver {
        let (reason, killer) = match self {
            DeathReason::Killed { by } => (pb::GameOverReason::Killed, by.0),
            DeathReason::LeftArena => (pb::GameOverReason::LeftArena, 0),
            DeathReason::Exited => (pb::GameOverReason::Exited, 0),
        };
        pb::GameOver { reason: reason as i32, killer_id: killer }
    }
}

/// A player that left the board, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Death {
    pub player: PlayerId,
    pub reason: DeathReason,
}

/// Longest player name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a player name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty; names are 1..={MAX_NAME_CHARS} printable characters")]
    Empty,
    #[error("name has {chars} characters; names are 1..={MAX_NAME_CHARS} printable characters")]
    TooLong { chars: usize },
    #[error("name contains a control character at position {position}; names are printable characters")]
    NotPrintable { position: usize },
}

/// Checks a player name: 1..=32 characters, none of them control characters.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars });
    }
    if let Some(position) = name.chars().position(char::is_control) {
        return Err(NameError::NotPrintable { position });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_direction_is_a_unit_vector_and_round_trips() {
        for wire in 0..=8 {
            let d = Direction::from_wire(wire).expect("known direction");
            assert_eq!(d.to_wire() as i32, wire);
            let (x, y) = d.unit();
            let len = x.hypot(y);
            if d == Direction::None {
                assert_eq!(len, 0.0);
            } else {
                assert!((len - 1.0).abs() < 1e-12, "{d:?} has length {len}");
            }
        }
        assert_eq!(Direction::from_wire(9), None);
        assert_eq!(Direction::from_wire(-1), None);
    }

    #[test]
    fn names() {
        assert!(validate_name("orb").is_ok());
        assert!(validate_name(&"é".repeat(32)).is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(33)), Err(NameError::TooLong { chars: 33 }));
        assert_eq!(validate_name("a\nb"), Err(NameError::NotPrintable { position: 1 }));
    }

    #[test]
    fn death_reasons_map_to_game_over() {
        let killed = DeathReason::Killed { by: PlayerId(7) }.to_wire();
        assert_eq!((killed.reason, killed.killer_id), (pb::GameOverReason::Killed as i32, 7));
        assert_eq!(DeathReason::LeftArena.to_wire().reason, pb::GameOverReason::LeftArena as i32);
        assert_eq!(DeathReason::Exited.to_wire().reason, pb::GameOverReason::Exited as i32);
    }
}
