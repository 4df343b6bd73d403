//! The clock nemesis: one node's clocks jump or strobe while the others keep real time. Nodes run
//! under libfaketime (`target::cluster`, [`Faketime`](crate::chaos::target::cluster::Faketime)),
//! each reading its offset from a file on every clock read, so a write to the file moves the
//! node's clock at once.
//!
//! Both the wall clock and the monotonic clock move (libfaketime's default). The server times
//! everything that matters to it (election timeouts, heartbeats, lease deadlines, client
//! deadlines) with the monotonic clock, and uses the wall clock only for the log clock of
//! exactly-once sessions (`machine/session.rs`) and snapshot ids, so faking the wall clock
//! alone would leave its timers untouched. But a monotonic clock never steps back on real
//! hardware, and openraft relies on that: measured on this machine, a node whose offset went
//! from +4 s back to 0 (a strobe flip) panicked in two shard Raft cores (`utime.rs:95`, "expect
//! now ... must >= self.utime"), which then stayed stopped. That is a fault no real node can
//! suffer, so with both clocks faked **offsets only grow** while a node runs:
//!
//! - a **jump** moves the node's clocks forward by 2-30 s at once (a follower's election timer
//!   fires, a leader's lease and heartbeats fall due, as after a stall seen by this node only);
//! - a **strobe** moves them forward by 0.2-2 s every other [`STROBE_PERIOD`] (200 ms) for the
//!   fault's length: a clock racing in bursts at 1.5-6 times real speed;
//! - the heal (`clock-reset`) stops the movement; the node keeps its offset (`offset_ms` in the
//!   log), as a node that drifted ahead stays ahead until it is restarted.
//!
//! Every node's offset is capped at [`FORWARD_CAP_MS`] (5 minutes), half the sessions' 10-minute
//! idle limit: a leader whose wall clock runs further ahead expires sessions early, which the
//! server documents as outside its assumptions (node clocks are NTP-synchronised), not a bug.
//!
//! With `HCJ_FAKETIME_WALL_ONLY=1` only the wall clock is faked, and the same plan is carried
//! out in both directions, as Jepsen's clock nemesis does: a jump sets the offset to +/-2-30 s,
//! a strobe flips it between 0 and +/-0.2-2 s every 200 ms, the heal sets it back to 0.
//!
//! Safety must not depend on any of this: reads are read-index barriers confirmed by a quorum
//! and writes quorum commits, so the register and set workloads must stay valid whatever one
//! node's clocks do. Liveness is at stake, and the lease API (not exercised by these workloads)
//! assumes bounded clock drift by design (docs/api.md, "Lease safety").

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{event, Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::{ClockOffset, Cluster};

/// How often a strobe flips the offset.
pub const STROBE_PERIOD: Duration = Duration::from_millis(200);

/// The largest offset a node gets while its monotonic clock is faked (ms).
pub const FORWARD_CAP_MS: i64 = 5 * 60 * 1000;

/// One planned clock fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockFault {
    /// Offset `offset_ms` for the fault's length.
    Jump { offset_ms: i64 },
    /// Flip between 0 and `offset_ms` every [`STROBE_PERIOD`] for the fault's length.
    Strobe { offset_ms: i64 },
}

impl ClockFault {
    /// Half jumps, half strobes, either direction (the sign is used with the wall clock alone).
    pub fn pick(rng: &mut impl Rng) -> ClockFault {
        let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
        if rng.gen_bool(0.5) {
            ClockFault::Jump { offset_ms: sign * rng.gen_range(2_000..=30_000) }
        } else {
            ClockFault::Strobe { offset_ms: sign * rng.gen_range(200..=2_000) }
        }
    }
}

/// The offset a node moves to at one step of a fault: `away` is a jump, or a strobe's flip away
/// from its resting value. With the monotonic clock faked, `from` plus the fault's size (capped),
/// never less than `from`; with the wall clock alone, the planned offset or 0.
pub fn next_offset(from: ClockOffset, planned_ms: i64, away: bool, fakes_monotonic: bool) -> ClockOffset {
    match (fakes_monotonic, away) {
        (true, true) => ClockOffset(from.0.max(from.0.saturating_add(planned_ms.abs()).min(FORWARD_CAP_MS))),
        (true, false) => from,
        (false, true) => ClockOffset(planned_ms),
        (false, false) => ClockOffset::ZERO,
    }
}

/// Carries out `fault` on `nodes` until `until` (a jump returns at once; a strobe returns when
/// it is over, its log entry spanning every flip). The logged offset is the farthest from real
/// time the first node got.
pub async fn fault(
    cluster: &mut Cluster,
    nodes: &[usize],
    fault: ClockFault,
    until: Instant,
    clock: &Clock,
) -> NemesisEvent {
    let start = clock.now();
    let mut errors = Vec::new();
    let monotonic = cluster.fakes_monotonic().unwrap_or(false);
    let mut farthest: i64 = 0;
    let mut track = |cluster: &Cluster| {
        if let Some(&i) = nodes.first() {
            let now = cluster.nodes[i].clock_offset.0;
            if now.abs() > farthest.abs() {
                farthest = now;
            }
        }
    };
    let action = match fault {
        ClockFault::Jump { offset_ms } => {
            step(cluster, nodes, offset_ms, true, monotonic, &mut errors).await;
            track(cluster);
            Action::ClockJump
        }
        ClockFault::Strobe { offset_ms } => {
            let mut away = false;
            let mut next = Instant::now();
            while next < until {
                away = !away;
                step(cluster, nodes, offset_ms, away, monotonic, &mut errors).await;
                track(cluster);
                next += STROBE_PERIOD;
                tokio::time::sleep_until(next.min(until)).await;
            }
            Action::ClockStrobe
        }
    };
    errors.dedup();
    let mut e = event(cluster, action, nodes, start, clock, errors);
    e.offset_ms = Some(farthest);
    e
}

/// Heals `nodes`: back to 0 with the wall clock alone; with the monotonic clock faked the
/// offset stays where it is (see the module essay).
pub async fn reset(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let mut errors = Vec::new();
    let monotonic = cluster.fakes_monotonic().unwrap_or(false);
    step(cluster, nodes, 0, false, monotonic, &mut errors).await;
    let offset = nodes.first().map(|&i| cluster.nodes[i].clock_offset.0);
    let mut e = event(cluster, Action::ClockReset, nodes, start, clock, errors);
    e.offset_ms = offset;
    e
}

async fn step(
    cluster: &mut Cluster,
    nodes: &[usize],
    planned_ms: i64,
    away: bool,
    monotonic: bool,
    errors: &mut Vec<String>,
) {
    for &i in nodes {
        let offset = next_offset(cluster.nodes[i].clock_offset, planned_ms, away, monotonic);
        if offset == cluster.nodes[i].clock_offset && monotonic {
            continue;
        }
        if let Err(e) = cluster.set_clock(i, offset).await {
            errors.push(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn faults_cover_jumps_and_strobes_both_ways_within_bounds() {
        let mut rng = StdRng::seed_from_u64(1);
        let faults: Vec<ClockFault> = (0..400).map(|_| ClockFault::pick(&mut rng)).collect();
        let jumps: Vec<i64> = faults
            .iter()
            .filter_map(|f| if let ClockFault::Jump { offset_ms } = f { Some(*offset_ms) } else { None })
            .collect();
        let strobes: Vec<i64> = faults
            .iter()
            .filter_map(|f| if let ClockFault::Strobe { offset_ms } = f { Some(*offset_ms) } else { None })
            .collect();
        assert!(jumps.iter().all(|o| (2_000..=30_000).contains(&o.abs())));
        assert!(strobes.iter().all(|o| (200..=2_000).contains(&o.abs())));
        for offsets in [&jumps, &strobes] {
            assert!(offsets.iter().any(|&o| o > 0) && offsets.iter().any(|&o| o < 0), "{offsets:?}");
        }
    }

    #[test]
    fn a_faked_monotonic_clock_only_moves_forward_and_stays_under_the_cap() {
        let at = |ms| ClockOffset(ms);
        // Both clocks: forward by the size whatever the planned direction; a heal holds.
        assert_eq!(next_offset(at(0), -15_000, true, true), at(15_000));
        assert_eq!(next_offset(at(15_000), 500, true, true), at(15_500));
        assert_eq!(next_offset(at(15_500), 500, false, true), at(15_500));
        assert_eq!(next_offset(at(FORWARD_CAP_MS - 10), 30_000, true, true), at(FORWARD_CAP_MS));
        // Already past the cap (a cap lowered between runs): never back.
        assert_eq!(next_offset(at(FORWARD_CAP_MS + 5), 30_000, true, true), at(FORWARD_CAP_MS + 5));
        let mut offset = at(0);
        let mut rng = StdRng::seed_from_u64(9);
        for i in 0..10_000 {
            let planned = match ClockFault::pick(&mut rng) {
                ClockFault::Jump { offset_ms } | ClockFault::Strobe { offset_ms } => offset_ms,
            };
            let next = next_offset(offset, planned, i % 3 != 0, true);
            assert!(next.0 >= offset.0 && next.0 <= FORWARD_CAP_MS);
            offset = next;
        }
        // Wall clock alone: the planned offset, both ways, and 0 at rest.
        assert_eq!(next_offset(at(7), -15_000, true, false), at(-15_000));
        assert_eq!(next_offset(at(-15_000), 400, false, false), at(0));
    }
}
