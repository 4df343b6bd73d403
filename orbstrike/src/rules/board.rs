//! [`Board`]: one game's state and the tick that advances it.
//!
//! A tick ([`Board::step`]) runs these phases in order, each on the state the previous one left:
//!
//! 1. **Intents.** Every player's ring becomes what its latest input asked for.
//! 2. **Movement.** Players whose ring is off move `speed * dt` along their latest direction
//!    (diagonals normalized). A ringed player does not move.
//! 3. **Arena.** A player whose *centre* is farther than `arena_radius` from (0, 0) dies
//!    (`LeftArena`). The centre rule is the original game's: half a body may hang over the edge.
//! 4. **Kills.** An un-ringed player dies (`Killed`) when the ring circle of a ringed player
//!    touches its body: `distance <= killer.ring_radius + victim.radius`. All kills of a tick are
//!    decided on the same positions; a victim touched by several rings is credited to the nearest
//!    killer (then the lowest id). Ringed players never kill each other, and a victim is never a
//!    killer in the same tick (it is un-ringed), so the order of players cannot matter.
//!
//! Hits are decided here only; clients never report them (the original trusted client-reported
//! hits).
//!
//! Inputs ([`Board::apply_input`]) only record the latest intent and its seq: an input whose seq
//! is not above the last applied one is ignored, so inputs replayed after a re-route or a
//! failover cannot move a player backwards in its own input history.
//!
//! The board collects what changed (players added, moved, ringed, credited with a kill) and who
//! left, and hands both out with the next tick's [`StepOutcome`], so the server can build deltas
//! without diffing.
//!
//! Randomness (spawn positions, colours) comes from a seeded [`StdRng`]: a board is a pure
//! function of its seed, its checkpoint and its inputs.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::params::Params;
use super::player::{validate_name, Death, DeathReason, Direction, Intent, NameError, PlayerId, PlayerState};

/// Random positions tried before a join is refused for lack of space.
pub const SPAWN_ATTEMPTS: u32 = 256;

/// Bright colours that read well on a dark arena; players get one at random.
const PALETTE: [u32; 12] = [
    0xE6194B, 0x3CB44B, 0xFFE119, 0x4363D8, 0xF58231, 0x911EB4, 0x46F0F0, 0xF032E6, 0xBCF60C, 0xFABEBE, 0x008080,
    0xE6BEFF,
];

/// Why a player could not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the board is full: {max} players is its max_players")]
    Full { max: u32 },
    #[error("no free spawn position found in {attempts} attempts: the arena is crowded")]
    NoFreeSpace { attempts: u32 },
    #[error("invalid player name: {0}")]
    InvalidName(#[from] NameError),
    #[error("player ids of this board are exhausted")]
    IdsExhausted,
}

/// The player is not on the board (and, for removal, never was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("player {0} is not on this board")]
pub struct UnknownPlayer(pub PlayerId);

/// What [`Board::apply_input`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOutcome {
    /// The input is now the player's intent.
    Applied,
    /// Ignored: its seq is not above `acked`, the last applied one.
    Stale { acked: u64 },
}

/// What [`Board::remove_player`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// Removed now; the next tick reports it as `Exited`.
    Removed,
    /// The player was on this board once but has already left (died or exited).
    AlreadyGone,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// The tick just completed.
    pub tick: u64,
    /// Players that appeared or changed since the previous tick (and are still on the board),
    /// in id order.
    pub changed: Vec<PlayerId>,
    /// Players that left since the previous tick, with the reason.
    pub removed: Vec<Death>,
}

/// One game: parameters, tick counter and players.
#[derive(Debug, Clone)]
pub struct Board {
    pub(super) params: Params,
    pub(super) tick: u64,
    pub(super) players: BTreeMap<PlayerId, PlayerState>,
    pub(super) next_player_id: u32,
    rng: StdRng,
    changed: BTreeSet<PlayerId>,
    removed: Vec<Death>,
}

impl Board {
    /// An empty board at tick 0.
    pub fn new(params: Params, seed: u64) -> Board {
        Board::restore(params, 0, BTreeMap::new(), 1, seed)
    }

    pub(super) fn restore(
        params: Params,
        tick: u64,
        players: BTreeMap<PlayerId, PlayerState>,
        next_player_id: u32,
        seed: u64,
    ) -> Board {
        Board {
            params,
            tick,
            players,
            next_player_id,
            rng: StdRng::seed_from_u64(seed),
            changed: BTreeSet::new(),
            removed: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The last completed tick (0 before the first).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    pub fn player(&self, id: PlayerId) -> Option<&PlayerState> {
        self.players.get(&id)
    }

    /// Players in id order.
    pub fn players(&self) -> impl Iterator<Item = &PlayerState> {
        self.players.values()
    }

    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The id the next player will get.
    pub fn next_player_id(&self) -> u32 {
        self.next_player_id
    }

    /// True if `id` was handed out by this board (whether or not the player is still on it).
    pub fn ever_had(&self, id: PlayerId) -> bool {
        id.0 != 0 && id.0 < self.next_player_id
    }

    /// Moves the tick counter forward to `tick` (no-op if it is already there). Used when the
    /// store holds a checkpoint newer than this board's tick, so the next checkpoint's seq is
    /// above it.
    pub fn advance_tick_to(&mut self, tick: u64) {
        self.tick = self.tick.max(tick);
    }

    /// Spawns a player at a random free position: inside the arena with a margin of two body
    /// radii, with no other player's ring able to reach its body and its ring unable to reach
    /// anyone else's body (so nobody dies or kills on the tick it joins).
    pub fn add_player(&mut self, name: &str) -> Result<PlayerId, JoinError> {
        validate_name(name)?;
        let max = self.params.max_players;
        if self.players.len() >= max as usize {
            return Err(JoinError::Full { max });
        }
        if self.next_player_id == u32::MAX {
            return Err(JoinError::IdsExhausted);
        }
        let (x, y) = self.free_position().ok_or(JoinError::NoFreeSpace { attempts: SPAWN_ATTEMPTS })?;
        let id = PlayerId(self.next_player_id);
        self.next_player_id += 1;
        let color = PALETTE[self.rng.gen_range(0..PALETTE.len())];
        let player = PlayerState {
            id,
            name: name.to_string(),
            x,
            y,
            radius: self.params.player_radius,
            ring_radius: self.params.ring_radius,
            color,
            kills: 0,
            ring: false,
            speed: self.params.speed,
            intent: Intent::default(),
            acked_seq: 0,
        };
        self.players.insert(id, player);
        self.changed.insert(id);
        Ok(id)
    }

    fn free_position(&mut self) -> Option<(f64, f64)> {
        let p = self.params;
        // Params guarantee player_radius < arena_radius / 4, so this is above arena_radius / 2.
        let spawn_radius = p.arena_radius - 2.0 * p.player_radius;
        for _ in 0..SPAWN_ATTEMPTS {
            // Uniform over the disc: the radius goes with the square root.
            let r = spawn_radius * self.rng.gen::<f64>().sqrt();
            let theta = self.rng.gen::<f64>() * std::f64::consts::TAU;
            let (x, y) = (r * theta.cos(), r * theta.sin());
            let free = self.players.values().all(|o| {
                let d = (o.x - x).hypot(o.y - y);
                d > o.ring_radius + p.player_radius && d > p.ring_radius + o.radius
            });
            if free {
                return Some((x, y));
            }
        }
        None
    }

    /// Removes a player on request; the next tick reports it as `Exited`.
    pub fn remove_player(&mut self, id: PlayerId) -> Result<RemoveOutcome, UnknownPlayer> {
        if self.players.remove(&id).is_some() {
            self.changed.remove(&id);
            self.removed.push(Death { player: id, reason: DeathReason::Exited });
            Ok(RemoveOutcome::Removed)
        } else if self.ever_had(id) {
            Ok(RemoveOutcome::AlreadyGone)
        } else {
            Err(UnknownPlayer(id))
        }
    }

    /// Records a player's latest input. The latest input wins and keeps applying every tick;
    /// one whose `seq` is not above the last applied seq is ignored (so seq must start at 1).
    pub fn apply_input(
        &mut self,
        id: PlayerId,
        seq: u64,
        direction: Direction,
        ring: bool,
    ) -> Result<InputOutcome, UnknownPlayer> {
        let player = self.players.get_mut(&id).ok_or(UnknownPlayer(id))?;
        if seq <= player.acked_seq {
            return Ok(InputOutcome::Stale { acked: player.acked_seq });
        }
        player.acked_seq = seq;
        player.intent = Intent { direction, ring };
        Ok(InputOutcome::Applied)
    }

    /// The highest input seq applied for `id` (0 if none, or if the player is gone).
    pub fn acked_seq(&self, id: PlayerId) -> u64 {
        self.players.get(&id).map_or(0, |p| p.acked_seq)
    }

    /// Advances one tick (see the module documentation for the phases).
    pub fn step(&mut self) -> StepOutcome {
        self.tick += 1;
        let dt = self.params.dt();
        for p in self.players.values_mut() {
            let mut changed = false;
            if p.ring != p.intent.ring {
                p.ring = p.intent.ring;
                changed = true;
            }
            if !p.ring && p.intent.direction != Direction::None {
                let (ux, uy) = p.intent.direction.unit();
                p.x += ux * p.speed * dt;
                p.y += uy * p.speed * dt;
                changed = true;
            }
            if changed {
                self.changed.insert(p.id);
            }
        }

        let mut deaths: Vec<Death> = self
            .players
            .values()
            .filter(|p| p.x.hypot(p.y) > self.params.arena_radius)
            .map(|p| Death { player: p.id, reason: DeathReason::LeftArena })
            .collect();
        for d in &deaths {
            self.players.remove(&d.player);
        }

        let mut kills: Vec<(PlayerId, PlayerId)> = Vec::new();
        for victim in self.players.values().filter(|p| !p.ring) {
            let killer = self
                .players
                .values()
                .filter(|k| k.ring && k.id != victim.id)
                .map(|k| (k.distance_to(victim), k))
                .filter(|(d, k)| *d <= k.ring_radius + victim.radius)
                // Nearest killer first; ties go to the lowest id (values() is in id order and
                // min_by keeps the first of equal elements).
                .min_by(|(a, _), (b, _)| a.total_cmp(b));
            if let Some((_, k)) = killer {
                kills.push((victim.id, k.id));
            }
        }
        for (victim, killer) in kills {
            self.players.remove(&victim);
            if let Some(k) = self.players.get_mut(&killer) {
                k.kills = k.kills.saturating_add(1);
                self.changed.insert(killer);
            }
            deaths.push(Death { player: victim, reason: DeathReason::Killed { by: killer } });
        }

        for d in &deaths {
            self.changed.remove(&d.player);
        }
        let mut removed = std::mem::take(&mut self.removed);
        removed.extend(deaths);
        let changed = std::mem::take(&mut self.changed).into_iter().collect();
        StepOutcome { tick: self.tick, changed, removed }
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::test_params;
    use super::*;

    const EPS: f64 = 1e-9;

    fn board() -> Board {
        Board::new(test_params(), 7)
    }

    /// A board with players placed by hand (spawn is random).
    fn place(b: &mut Board, name: &str, x: f64, y: f64) -> PlayerId {
        let id = b.add_player(name).expect("join");
        let p = b.players.get_mut(&id).expect("just added");
        p.x = x;
        p.y = y;
        id
    }

    fn pos(b: &Board, id: PlayerId) -> (f64, f64) {
        let p = b.player(id).expect("on board");
        (p.x, p.y)
    }

    #[test]
    fn players_move_speed_times_dt_per_tick() {
        let mut b = board();
        let id = place(&mut b, "a", 0.0, 0.0);
        b.apply_input(id, 1, Direction::Right, false).unwrap();
        b.step();
        // speed 100 units/s at 10 Hz: 10 units per tick.
        let (x, y) = pos(&b, id);
        assert!((x - 10.0).abs() < EPS && y.abs() < EPS, "({x}, {y})");
        b.apply_input(id, 2, Direction::Up, false).unwrap();
        b.step();
        let (x, y) = pos(&b, id);
        assert!((x - 10.0).abs() < EPS && (y - 10.0).abs() < EPS, "up is +y: ({x}, {y})");
    }

    #[test]
    fn the_latest_direction_keeps_applying() {
        let mut b = board();
        let id = place(&mut b, "a", 0.0, 0.0);
        b.apply_input(id, 1, Direction::Left, false).unwrap();
        for _ in 0..3 {
            b.step();
        }
        assert!((pos(&b, id).0 + 30.0).abs() < EPS);
    }

    #[test]
    fn diagonal_movement_is_normalized() {
        let mut b = board();
        let id = place(&mut b, "a", 0.0, 0.0);
        for (seq, dir) in
            [Direction::UpLeft, Direction::UpRight, Direction::DownLeft, Direction::DownRight].into_iter().enumerate()
        {
            let before = pos(&b, id);
            b.apply_input(id, seq as u64 + 1, dir, false).unwrap();
            b.step();
            let after = pos(&b, id);
            let moved = (after.0 - before.0).hypot(after.1 - before.1);
            assert!((moved - 10.0).abs() < EPS, "{dir:?} moved {moved}");
            assert!((after.0 - before.0).abs() > 1.0 && (after.1 - before.1).abs() > 1.0, "{dir:?} is diagonal");
        }
    }

    #[test]
    fn a_ringed_player_does_not_move() {
        let mut b = board();
        let id = place(&mut b, "a", 5.0, 5.0);
        b.apply_input(id, 1, Direction::Right, true).unwrap();
        let out = b.step();
        assert_eq!(pos(&b, id), (5.0, 5.0));
        assert!(b.player(id).unwrap().ring);
        assert_eq!(out.changed, vec![id], "turning the ring on is a change");
        let out = b.step();
        assert!(out.changed.is_empty(), "standing still with the ring on changes nothing");
        // Ring off again: the held direction applies.
        b.apply_input(id, 2, Direction::Right, false).unwrap();
        b.step();
        assert!((pos(&b, id).0 - 15.0).abs() < EPS);
    }

    #[test]
    fn a_ring_kills_an_unringed_player_it_touches_and_counts_the_kill() {
        let mut b = board();
        let killer = place(&mut b, "k", 0.0, 0.0);
        // ring 30 + body 10: touching at distance 40, not at 40.5.
        let victim = place(&mut b, "v", 40.0, 0.0);
        let safe = place(&mut b, "s", -40.5, 0.0);
        b.apply_input(killer, 1, Direction::None, true).unwrap();
        let out = b.step();
        assert_eq!(out.removed, vec![Death { player: victim, reason: DeathReason::Killed { by: killer } }]);
        assert!(b.player(victim).is_none());
        assert!(b.player(safe).is_some());
        assert_eq!(b.player(killer).unwrap().kills, 1);
        assert!(out.changed.contains(&killer));
        assert!(!out.changed.contains(&victim));
    }

    #[test]
    fn two_ringed_players_do_not_kill_each_other() {
        let mut b = board();
        let a = place(&mut b, "a", 0.0, 0.0);
        let c = place(&mut b, "c", 20.0, 0.0);
        b.apply_input(a, 1, Direction::None, true).unwrap();
        b.apply_input(c, 1, Direction::None, true).unwrap();
        let out = b.step();
        assert!(out.removed.is_empty());
        assert_eq!(b.player_count(), 2);
        assert_eq!(b.player(a).unwrap().kills + b.player(c).unwrap().kills, 0);
    }

    #[test]
    fn without_a_ring_touching_players_do_not_kill() {
        let mut b = board();
        place(&mut b, "a", 0.0, 0.0);
        place(&mut b, "b", 5.0, 0.0);
        assert!(b.step().removed.is_empty());
    }

    #[test]
    fn a_victim_in_two_rings_is_credited_to_the_nearest_killer() {
        let mut b = board();
        let far = place(&mut b, "far", 0.0, 0.0);
        let near = place(&mut b, "near", 70.0, 0.0);
        let victim = place(&mut b, "v", 38.0, 0.0);
        b.apply_input(far, 1, Direction::None, true).unwrap();
        b.apply_input(near, 1, Direction::None, true).unwrap();
        let out = b.step();
        assert_eq!(out.removed, vec![Death { player: victim, reason: DeathReason::Killed { by: near } }]);
        assert_eq!(b.player(near).unwrap().kills, 1);
        assert_eq!(b.player(far).unwrap().kills, 0);
    }

    #[test]
    fn leaving_the_arena_kills_when_the_centre_crosses_the_edge() {
        let mut b = board();
        // arena 1000; 10 units per tick to the right.
        let id = place(&mut b, "a", 985.0, 0.0);
        b.apply_input(id, 1, Direction::Right, false).unwrap();
        let out = b.step();
        assert!(out.removed.is_empty(), "centre at 995 is inside even though the body overhangs");
        let out = b.step();
        assert_eq!(out.removed, vec![Death { player: id, reason: DeathReason::LeftArena }]);
        assert!(b.player(id).is_none());
    }

    #[test]
    fn spawned_players_are_inside_and_out_of_every_ring() {
        let params = Params { max_players: 64, ..test_params() };
        let mut b = Board::new(params, 42);
        for i in 0..64 {
            b.add_player(&format!("p{i}")).expect("room for 64");
        }
        let players: Vec<_> = b.players().cloned().collect();
        for p in &players {
            assert!(p.x.hypot(p.y) <= params.arena_radius - 2.0 * params.player_radius);
            for o in players.iter().filter(|o| o.id != p.id) {
                assert!(p.distance_to(o) > o.ring_radius + p.radius, "{:?} spawned in {:?}'s ring", p.id, o.id);
            }
        }
        // Everybody rings at once: nobody is in reach, so nobody dies.
        let ids: Vec<_> = players.iter().map(|p| p.id).collect();
        for id in &ids {
            b.apply_input(*id, 1, Direction::None, true).unwrap();
        }
        assert!(b.step().removed.is_empty());
    }

    #[test]
    fn spawning_is_deterministic_for_a_seed() {
        let mut a = Board::new(test_params(), 9);
        let mut b = Board::new(test_params(), 9);
        for name in ["x", "y", "z"] {
            a.add_player(name).unwrap();
            b.add_player(name).unwrap();
        }
        assert_eq!(a.players().cloned().collect::<Vec<_>>(), b.players().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn a_crowded_arena_refuses_instead_of_spawning_into_a_ring() {
        let params =
            Params { arena_radius: 100.0, max_players: 64, player_radius: 20.0, ring_radius: 80.0, ..test_params() };
        let mut b = Board::new(params, 1);
        let mut refused = None;
        for i in 0..64 {
            if let Err(e) = b.add_player(&format!("p{i}")) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(JoinError::NoFreeSpace { attempts: SPAWN_ATTEMPTS }));
    }

    #[test]
    fn max_players_is_enforced() {
        let mut b = Board::new(Params { max_players: 2, ..test_params() }, 3);
        b.add_player("a").unwrap();
        b.add_player("b").unwrap();
        assert_eq!(b.add_player("c"), Err(JoinError::Full { max: 2 }));
        assert!(b.add_player("c").unwrap_err().to_string().contains("max_players"));
    }

    #[test]
    fn ids_start_at_one_and_are_never_reused() {
        let mut b = board();
        let a = b.add_player("a").unwrap();
        assert_eq!(a, PlayerId(1));
        assert_eq!(b.remove_player(a), Ok(RemoveOutcome::Removed));
        let c = b.add_player("c").unwrap();
        assert_eq!(c, PlayerId(2));
        assert_eq!(b.remove_player(a), Ok(RemoveOutcome::AlreadyGone));
        assert_eq!(b.remove_player(PlayerId(0)), Err(UnknownPlayer(PlayerId(0))));
        assert_eq!(b.remove_player(PlayerId(9)), Err(UnknownPlayer(PlayerId(9))));
    }

    #[test]
    fn inputs_not_newer_than_the_last_applied_are_ignored() {
        let mut b = board();
        let id = place(&mut b, "a", 0.0, 0.0);
        assert_eq!(b.apply_input(id, 0, Direction::Up, false), Ok(InputOutcome::Stale { acked: 0 }));
        assert_eq!(b.apply_input(id, 5, Direction::Right, false), Ok(InputOutcome::Applied));
        assert_eq!(b.apply_input(id, 5, Direction::Left, false), Ok(InputOutcome::Stale { acked: 5 }));
        assert_eq!(b.apply_input(id, 3, Direction::Left, true), Ok(InputOutcome::Stale { acked: 5 }));
        assert_eq!(b.acked_seq(id), 5);
        b.step();
        assert!((pos(&b, id).0 - 10.0).abs() < EPS, "seq 5 (Right) is the one applied");
        assert!(!b.player(id).unwrap().ring);
        // Latest wins within a tick.
        b.apply_input(id, 6, Direction::Left, false).unwrap();
        b.apply_input(id, 7, Direction::Up, false).unwrap();
        b.step();
        assert_eq!(b.acked_seq(id), 7);
        let (x, y) = pos(&b, id);
        assert!((x - 10.0).abs() < EPS && (y - 10.0).abs() < EPS);
        assert_eq!(b.apply_input(PlayerId(99), 1, Direction::Up, false), Err(UnknownPlayer(PlayerId(99))));
    }

    #[test]
    fn step_reports_joins_and_exits_once() {
        let mut b = board();
        let a = b.add_player("a").unwrap();
        let c = b.add_player("c").unwrap();
        b.remove_player(c).unwrap();
        let out = b.step();
        assert_eq!(out.tick, 1);
        assert_eq!(out.changed, vec![a]);
        assert_eq!(out.removed, vec![Death { player: c, reason: DeathReason::Exited }]);
        let out = b.step();
        assert_eq!(out, StepOutcome { tick: 2, changed: vec![], removed: vec![] });
    }
}
