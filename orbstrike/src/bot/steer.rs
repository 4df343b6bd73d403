//! Plausible movement for a scripted player (pure; time and randomness are arguments).
//!
//! The player holds a random direction for 0.5-2 s, then picks another; now and then it
//! switches its ring on for 0.3-1 s (standing still, as the rules require). Near the edge
//! (beyond 75 % of the arena radius) it turns back toward the centre, so bots rarely die by
//! leaving the arena. World coordinates: up is +y, right is +x.

use std::f64::consts::FRAC_PI_4;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::proto::v1::Direction;

/// Fraction of the arena radius beyond which the player heads back.
pub const EDGE: f64 = 0.75;
/// Chance that a direction change also switches the ring on.
const RING_CHANCE: f64 = 0.15;

const MOVES: [Direction; 8] = [
    Direction::Right,
    Direction::UpRight,
    Direction::Up,
    Direction::UpLeft,
    Direction::Left,
    Direction::DownLeft,
    Direction::Down,
    Direction::DownRight,
];

/// The one of the eight directions closest to the vector (dx, dy); `None` for a zero vector.
pub fn toward(dx: f64, dy: f64) -> Direction {
    if dx == 0.0 && dy == 0.0 {
        return Direction::None;
    }
    let octant = (dy.atan2(dx) / FRAC_PI_4).round() as i64;
    MOVES[octant.rem_euclid(8) as usize]
}

#[derive(Debug, Clone)]
pub struct Steering {
    direction: Direction,
    next_change: Instant,
    ring_until: Option<Instant>,
}

impl Steering {
    pub fn new(now: Instant) -> Steering {
        Steering { direction: Direction::None, next_change: now, ring_until: None }
    }

    /// The intent to send at `now`, given the player's position if known.
    pub fn next(
        &mut self,
        position: Option<(f64, f64)>,
        arena_radius: f64,
        now: Instant,
        rng: &mut impl Rng,
    ) -> (Direction, bool) {
        if let Some(until) = self.ring_until {
            if now < until {
                return (self.direction, true);
            }
            self.ring_until = None;
        }
        if let Some((x, y)) = position {
            if x.hypot(y) > EDGE * arena_radius {
                self.direction = toward(-x, -y);
                self.next_change = now + Duration::from_millis(500);
                return (self.direction, false);
            }
        }
        if now >= self.next_change {
            self.direction = MOVES[rng.gen_range(0..MOVES.len())];
            self.next_change = now + Duration::from_millis(rng.gen_range(500..=2000));
            if rng.gen_bool(RING_CHANCE) {
                self.ring_until = Some(now + Duration::from_millis(rng.gen_range(300..=1000)));
                return (self.direction, true);
            }
        }
        (self.direction, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn toward_picks_the_nearest_of_eight() {
        assert_eq!(toward(1.0, 0.0), Direction::Right);
        assert_eq!(toward(0.0, 1.0), Direction::Up);
        assert_eq!(toward(-1.0, -1.0), Direction::DownLeft);
        assert_eq!(toward(-1.0, 0.01), Direction::Left);
        assert_eq!(toward(-1.0, -0.01), Direction::Left);
        assert_eq!(toward(0.3, -1.0), Direction::Down);
        assert_eq!(toward(0.0, 0.0), Direction::None);
    }

    #[test]
    fn near_the_edge_it_heads_home() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut s = Steering::new(now);
        assert_eq!(s.next(Some((900.0, 10.0)), 1000.0, now, &mut rng), (Direction::Left, false));
        assert_eq!(s.next(Some((-10.0, -800.0)), 1000.0, now, &mut rng), (Direction::Up, false));
    }

    #[test]
    fn it_changes_course_and_sometimes_rings() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let t0 = Instant::now();
        let mut s = Steering::new(t0);
        let mut directions = std::collections::HashSet::new();
        let mut rings = 0;
        for i in 0..600u64 {
            let (d, ring) = s.next(Some((0.0, 0.0)), 1000.0, t0 + Duration::from_millis(100 * i), &mut rng);
            directions.insert(d as i32);
            rings += usize::from(ring);
        }
        assert!(directions.len() >= 6, "{directions:?}");
        assert!(rings > 0 && rings < 300, "{rings}");
    }
}
