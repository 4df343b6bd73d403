//! The nemesis schedule: `heal` of quiet, then `fault` with one fault active, repeated until the
//! time limit; then everything is healed. The plan is a pure function of the seed, the fault
//! kinds and the node count ([`plan`]), so a run can be repeated with the same faults on the
//! same nodes at the same offsets; [`run`] carries it out against a cluster.
//!
//! A kill or pause hits one random node, a random majority, or the node leading the most shards
//! (a third of the time each): one node tests fail-over, a majority tests that the cluster stops
//! rather than lies, and that it recovers, the leader that a new one takes over (and, paused,
//! that the old one does not act on stale beliefs when it wakes). A partition has one of five
//! shapes (`partition.rs`), a quarter of the time each for a random minority, the busiest
//! leader alone, and a majorities ring over a random order of the nodes, and an eighth each for
//! the busiest leader cut one way, unheard (`one-way-out`) or deaf (`one-way-in`). A wipe hits one random node, or (a third of
//! the time) the busiest leader, never a majority; and never while a node wiped earlier has not
//! caught up (`wipe.rs`): the wipe then waits for it up to the fault's length, and is skipped
//! (`skip` in the log) if it still has not. A clock fault hits one random node or (a third of
//! the time) the busiest leader, with a jump or a strobe drawn from the seed (`clock.rs`).
//! A `kill-all` cut hits every node; a `power` cut every node half of the time, else one node
//! (half of those times the busiest leader) or a minority. Leaders are found when the fault
//! starts.
//!
//! Composed faults ([`compose`], `hcjepsen test --compose`): half of the kill, pause, partition
//! and clock steps get a second fault of another of the run's kinds among kill, pause and
//! partition, on one other node, begun with the first and healed with it: a node killed while
//! the leader is cut off, a paused node during a clock jump. Drawn from a stream of their own,
//! so a seed's plan of single faults stays what it was.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::churn::{self, Leaving};
use super::clock::{self, ClockFault};
use super::partition::Shape;
use super::wipe::{self, CatchUp};
use super::{kill, partition, pause, Action, NemesisEvent, NemesisKind};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::{Cluster, NodeState};

/// One planned fault: from `at` (after the run's start) for `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub duration: Duration,
    pub kind: NemesisKind,
    /// 0-based node indices (for a partition: the side cut off, or the ring's order).
    pub nodes: Vec<usize>,
    /// Hit the node leading the most shards instead (`nodes` if none answers).
    pub leader: bool,
    /// For a clock fault: what the clock does.
    pub clock: Option<ClockFault>,
    /// For a partition: what is cut.
    pub shape: Option<Shape>,
    /// Membership churn (`churn.rs`) begun just before the fault (or, for a `churn` step, as
    /// the fault), so that the replicas it moves move under it.
    pub churn: Option<ChurnTarget>,
    /// A second fault at the same time ([`compose`]).
    pub with: Option<Overlay>,
}

/// A second fault begun and healed with a step's own: one node (not one the step hits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    /// Kill, pause or partition.
    pub kind: NemesisKind,
    /// A member index, 0-based; another member if the step hits this one.
    pub node: usize,
    /// For a partition: the node cut off both ways, or one way.
    pub shape: Option<Shape>,
}

/// The kinds a second fault may have.
const OVERLAYS: [NemesisKind; 3] = [NemesisKind::Kill, NemesisKind::Pause, NemesisKind::Partition];

/// Adds second faults to half of the steps that can take one (see the module essay): a step of
/// kill, pause, partition or clock, with another of `kinds` among [`OVERLAYS`] left to add.
pub fn compose(seed: u64, kinds: &[NemesisKind], nodes: usize, steps: &mut [Step]) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x636f_6d70_6f73_6500);
    for step in steps.iter_mut() {
        let own =
            matches!(step.kind, NemesisKind::Kill | NemesisKind::Pause | NemesisKind::Partition | NemesisKind::Clock);
        let others: Vec<NemesisKind> =
            OVERLAYS.iter().copied().filter(|k| kinds.contains(k) && *k != step.kind).collect();
        if !own || others.is_empty() || nodes < 2 || !rng.gen_bool(0.5) {
            continue;
        }
        let kind = others[rng.gen_range(0..others.len())];
        let shape = (kind == NemesisKind::Partition).then(|| match rng.gen_range(0..4) {
            0 => Shape::OneWayOut,
            1 => Shape::OneWayIn,
            _ => Shape::Minority,
        });
        let free: Vec<usize> = (0..nodes).filter(|n| !step.nodes.contains(n)).collect();
        let node = if free.is_empty() { rng.gen_range(0..nodes) } else { free[rng.gen_range(0..free.len())] };
        step.with = Some(Overlay { kind, node, shape });
    }
}

/// Which member a churn decommissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnTarget {
    /// A member index, 0-based (the members in slot order when the churn starts).
    pub member: usize,
    /// The node leading the most shards instead (`member` if none answers).
    pub leader: bool,
}

/// How long before a fault the churn riding on it starts (the join and promotion take 0.2-2 s;
/// the decommission's replica moves then run during the fault).
const CHURN_LEAD: Duration = Duration::from_secs(1);

/// The faults of a run of `limit` over `nodes` nodes.
pub fn plan(
    seed: u64,
    kinds: &[NemesisKind],
    nodes: usize,
    limit: Duration,
    heal: Duration,
    fault: Duration,
) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut at = heal;
    // With other faults, churn rides on half of their steps instead of taking steps of its own.
    let churn = kinds.contains(&NemesisKind::Churn);
    let others: Vec<NemesisKind> = kinds.iter().copied().filter(|&k| k != NemesisKind::Churn).collect();
    let kinds = if others.is_empty() { kinds } else { &others[..] };
    while !kinds.is_empty() && nodes > 0 && at + fault <= limit {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let shape = (kind == NemesisKind::Partition).then(|| match rng.gen_range(0..8) {
            0 | 1 => Shape::Minority,
            2 | 3 => Shape::Leader,
            4 | 5 => Shape::Ring,
            6 => Shape::OneWayOut,
            _ => Shape::OneWayIn,
        });
        let (count, leader) = match (kind, shape) {
            (NemesisKind::Partition, Some(Shape::Ring)) | (NemesisKind::KillAll, _) => (nodes, false),
            // Half the power cuts take the whole cluster down (what a lost rack or zone does, and
            // what loses acknowledged writes that were never fsynced); the others one node, the busiest
            // leader half of those times, or a minority: the survivors keep serving while the
            // cut nodes come back with only what they had fsynced.
            (NemesisKind::Power, _) => match rng.gen_range(0..6) {
                0..=2 => (nodes, false),
                3 => (1, false),
                4 => (1, true),
                _ => (((nodes - 1) / 2).max(1), false),
            },
            (NemesisKind::Partition, Some(Shape::Minority)) => (nodes / 2, false),
            (NemesisKind::Partition, _) => (1, true),
            (NemesisKind::Kill | NemesisKind::Pause, _) => match rng.gen_range(0..3) {
                0 => (1, false),
                1 => (nodes / 2 + 1, false),
                _ => (1, true),
            },
            (NemesisKind::Wipe | NemesisKind::Clock, _) => (1, rng.gen_range(0..3) == 2),
            // Its target is in `churn` below.
            (NemesisKind::Churn, _) => (0, false),
        };
        let clock = (kind == NemesisKind::Clock).then(|| ClockFault::pick(&mut rng));
        let mut all: Vec<usize> = (0..nodes).collect();
        all.shuffle(&mut rng);
        all.truncate(count);
        // A ring keeps its random order: it says which nodes are neighbours.
        if shape != Some(Shape::Ring) {
            all.sort_unstable();
        }
        let churn = (kind == NemesisKind::Churn || (churn && rng.gen_bool(0.5)))
            .then(|| ChurnTarget { member: rng.gen_range(0..nodes), leader: rng.gen_range(0..3) == 2 });
        steps.push(Step { at, duration: fault, kind, nodes: all, leader, clock, shape, churn, with: None });
        at += fault + heal;
    }
    steps
}

/// Carries out `steps` (offsets from `start`), then heals whatever is still faulty. Returns
/// every action taken, and the watcher of a wiped node that had not caught up by then (the
/// caller waits for it after measuring the cluster's recovery).
pub async fn run(
    cluster: &mut Cluster,
    steps: &[Step],
    clock: &Clock,
    start: Instant,
) -> (Vec<NemesisEvent>, Option<CatchUp>) {
    let mut log = Vec::new();
    let mut catching_up: Option<CatchUp> = None;
    let mut leaving: Option<Leaving> = None;
    // Without a probe nothing could tell that a wiped node caught up: no wipe at all then.
    let probe = cluster.probe().map_err(|e| e.to_string());
    for step in steps {
        let riding = step.kind != NemesisKind::Churn;
        let churn_at = if riding { step.at.saturating_sub(CHURN_LEAD) } else { step.at };
        tokio::time::sleep_until(start + if step.churn.is_some() { churn_at } else { step.at }).await;
        // A decommissioned node that has left is retired before anything else picks nodes.
        if leaving.as_ref().is_some_and(Leaving::left) {
            if let Some(done) = leaving.take() {
                log.push(retire_when_left(cluster, done, Duration::ZERO, clock).await);
            }
        }
        if let Some(target) = step.churn {
            let wiped = catching_up.as_ref().map(|c| c.id);
            leaving = churn_step(cluster, target, leaving, wiped, step.duration, clock, &mut log).await;
        }
        if !riding {
            // Nothing to heal: the decommission goes on under the next faults.
            continue;
        }
        tokio::time::sleep_until(start + step.at).await;
        if step.kind == NemesisKind::Wipe {
            if let Err(e) = &probe {
                log.push(skip(Vec::new(), clock, Some(e.clone())));
                continue;
            }
            if let Some(pending) = catching_up.take() {
                match pending.wait(step.duration).await {
                    Ok(caught_up) => log.push(caught_up),
                    Err(pending) => {
                        let id = pending.id;
                        catching_up = Some(pending);
                        log.push(skip(vec![id], clock, None));
                        continue;
                    }
                }
            }
        }
        let leader = if step.leader { cluster.busiest_leader().await } else { None };
        // The plan numbers the members 0..nodes; with churn, member k is not always slot k.
        let members = cluster.members();
        let planned = step.nodes.iter().filter_map(|&k| members.get(k).copied()).collect::<Vec<_>>();
        // A whole-cluster fault hits every member, a fourth one that churn added included.
        let whole = step.kind == NemesisKind::KillAll
            || (step.kind == NemesisKind::Power && step.nodes.len() >= cluster.size());
        let nodes = if whole { members } else { leader.map_or(planned, |l| vec![l]) };
        // A node being decommissioned is not wiped: were it to come back before or after it
        // left, the harness could not tell a replaced member from one to retire (the server's
        // side of that is ADR 40, tested in `membership.rs`).
        if step.kind == NemesisKind::Wipe {
            if let Some(l) = leaving.as_ref().filter(|l| nodes.contains(&l.slot)) {
                log.push(skip(vec![l.id], clock, None));
                continue;
            }
        }
        // The second fault first: a clock strobe holds the call below until its end.
        let with = match step.with {
            Some(overlay) => overlaid(cluster, overlay, &nodes, clock, &mut log).await,
            None => None,
        };
        log.push(match step.kind {
            NemesisKind::Kill | NemesisKind::KillAll => kill::kill(cluster, &nodes, clock).await,
            NemesisKind::Power => kill::power(cluster, &nodes, clock).await,
            NemesisKind::Churn => continue,
            NemesisKind::Pause => pause::pause(cluster, &nodes, clock).await,
            NemesisKind::Partition => {
                // `plan` always sets one; a step built by hand without one isolates its nodes.
                let shape = step.shape.unwrap_or(Shape::Minority);
                partition::partition(cluster, shape, &nodes, clock).await
            }
            NemesisKind::Wipe => wipe::wipe(cluster, &nodes, clock).await,
            NemesisKind::Clock => {
                // `plan` always sets one; a step built by hand without one moves nothing.
                let fault = step.clock.unwrap_or(ClockFault::Jump { offset_ms: 0 });
                clock::fault(cluster, &nodes, fault, start + step.at + step.duration, clock).await
            }
        });
        tokio::time::sleep_until(start + step.at + step.duration).await;
        log.push(match step.kind {
            NemesisKind::Kill | NemesisKind::KillAll | NemesisKind::Power | NemesisKind::Wipe => {
                kill::restart(cluster, &nodes, clock).await
            }
            NemesisKind::Pause => pause::resume(cluster, &nodes, clock).await,
            NemesisKind::Partition => partition::heal(cluster, clock).await,
            NemesisKind::Clock => clock::reset(cluster, &nodes, clock).await,
            NemesisKind::Churn => continue,
        });
        if let Some((overlay, node)) = with {
            log.push(match overlay.kind {
                NemesisKind::Pause => pause::resume(cluster, &[node], clock).await,
                NemesisKind::Partition => partition::heal(cluster, clock).await,
                _ => kill::restart(cluster, &[node], clock).await,
            });
        }
        if step.kind == NemesisKind::Wipe {
            let restarted = log.last().map_or(clock.now(), |e| e.end);
            // One node per wipe (`plan`), and none while another catches up (above).
            if let (Some(&i), Ok(probe)) = (nodes.first(), &probe) {
                catching_up = Some(wipe::watch(probe.clone(), cluster.nodes[i].id, i, restarted, *clock));
            }
        }
    }
    log.extend(heal_all(cluster, clock).await);
    if let Some(pending) = leaving {
        log.push(retire_when_left(cluster, pending, LEAVE_WITHIN, clock).await);
    }
    (log, catching_up)
}

/// Begins `overlay` on its member, or another member if `busy` (the step's own nodes) holds it;
/// returns it with the slot it hit (none if every member is busy).
async fn overlaid(
    cluster: &mut Cluster,
    overlay: Overlay,
    busy: &[usize],
    clock: &Clock,
    log: &mut Vec<NemesisEvent>,
) -> Option<(Overlay, usize)> {
    let members = cluster.members();
    let start = overlay.node % members.len().max(1);
    let node = (0..members.len())
        .map(|k| members[(start + k) % members.len()])
        .find(|slot| !busy.contains(slot) && cluster.nodes[*slot].state == NodeState::Running)?;
    log.push(match overlay.kind {
        NemesisKind::Pause => pause::pause(cluster, &[node], clock).await,
        NemesisKind::Partition => {
            partition::partition(cluster, overlay.shape.unwrap_or(Shape::Minority), &[node], clock).await
        }
        _ => kill::kill(cluster, &[node], clock).await,
    });
    Some((overlay, node))
}

/// One churn (`churn.rs`): first waits up to `within` for the previous decommission to finish
/// (and retires that node), or skips; returns the decommission now in flight, if any. The node
/// `wiped` (still catching up after a wipe) is not decommissioned: it is skipped.
async fn churn_step(
    cluster: &mut Cluster,
    target: ChurnTarget,
    leaving: Option<Leaving>,
    wiped: Option<u64>,
    within: Duration,
    clock: &Clock,
    log: &mut Vec<NemesisEvent>,
) -> Option<Leaving> {
    if let Some(pending) = leaving {
        let slot = pending.slot;
        match pending.wait(within).await {
            Ok(left) => log.push(churn::retire(cluster, slot, left, clock).await),
            Err(pending) => {
                log.push(skip(vec![pending.id], clock, None));
                return Some(pending);
            }
        }
    }
    let leader = if target.leader { cluster.busiest_leader().await } else { None };
    let node = leader.or_else(|| cluster.members().get(target.member).copied())?;
    if wiped == Some(cluster.nodes[node].id) {
        log.push(skip(vec![cluster.nodes[node].id], clock, None));
        return None;
    }
    let (done, pending) = churn::churn(cluster, node, within, clock).await;
    log.extend(done);
    pending
}

/// How long the end of a run waits for a decommission still moving replicas.
const LEAVE_WITHIN: Duration = Duration::from_secs(60);

/// Waits up to `within` for a decommissioned node to leave and retires it; a node that does not
/// leave in time gets a `left` line with an error (a stuck decommission).
async fn retire_when_left(cluster: &mut Cluster, pending: Leaving, within: Duration, clock: &Clock) -> NemesisEvent {
    let slot = pending.slot;
    match pending.wait(within).await {
        Ok(left) => churn::retire(cluster, slot, left, clock).await,
        Err(pending) => pending.never(clock),
    }
}

/// The line of a planned fault not carried out: `nodes` were not ready for it, or `error`.
fn skip(nodes: Vec<u64>, clock: &Clock, error: Option<String>) -> NemesisEvent {
    let now = clock.now();
    NemesisEvent::new(Action::Skip, nodes, now, now, error)
}

/// Restores every link, resumes every paused node and restarts every killed one.
pub async fn heal_all(cluster: &mut Cluster, clock: &Clock) -> Vec<NemesisEvent> {
    let with = |cluster: &Cluster, state| -> Vec<usize> {
        cluster.nodes.iter().enumerate().filter(|(_, n)| n.state == state).map(|(i, _)| i).collect()
    };
    let mut log = Vec::new();
    if cluster.any_cut() {
        log.push(partition::heal(cluster, clock).await);
    }
    let paused = with(cluster, NodeState::Paused);
    if !paused.is_empty() {
        log.push(pause::resume(cluster, &paused, clock).await);
    }
    let killed = with(cluster, NodeState::Killed);
    if !killed.is_empty() {
        log.push(kill::restart(cluster, &killed, clock).await);
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn composed_plans_keep_the_single_faults_and_add_a_second_on_another_node_to_about_half() {
        let kinds = [NemesisKind::Kill, NemesisKind::Pause, NemesisKind::Partition, NemesisKind::Clock];
        let (mut eligible, mut composed) = (0, 0);
        for seed in 0..200 {
            let single = plan(seed, &kinds, 3, 300 * S, 3 * S, 4 * S);
            let mut steps = single.clone();
            compose(seed, &kinds, 3, &mut steps);
            for (one, two) in single.iter().zip(&steps) {
                assert_eq!(*one, Step { with: None, ..two.clone() }, "the step itself changed");
                eligible += 1;
                let Some(with) = two.with else { continue };
                composed += 1;
                assert!(OVERLAYS.contains(&with.kind) && with.kind != two.kind, "{two:?}");
                assert!(two.nodes.len() == 3 || !two.nodes.contains(&with.node), "{two:?}");
                assert_eq!(with.shape.is_some(), with.kind == NemesisKind::Partition, "{two:?}");
            }
        }
        let share = composed as f64 / eligible as f64;
        assert!((0.4..0.6).contains(&share), "{composed} of {eligible}");
        // Only the run's own kinds, and none where no other kind is left.
        let mut steps = plan(1, &[NemesisKind::Kill], 3, 60 * S, 3 * S, 4 * S);
        compose(1, &[NemesisKind::Kill], 3, &mut steps);
        assert!(steps.iter().all(|s| s.with.is_none()));
        let mut steps = plan(2, &[NemesisKind::Wipe, NemesisKind::Pause], 3, 300 * S, 3 * S, 4 * S);
        compose(2, &[NemesisKind::Wipe, NemesisKind::Pause], 3, &mut steps);
        for s in &steps {
            match s.kind {
                NemesisKind::Wipe => assert!(s.with.is_none(), "a wipe waits on catch-up: no second fault"),
                _ => assert!(s.with.is_none_or(|w| w.kind != NemesisKind::Pause)),
            }
        }
    }

    #[test]
    fn plans_alternate_heal_and_fault_within_the_limit_and_repeat_by_seed() {
        let kinds = [NemesisKind::Kill, NemesisKind::Pause];
        let steps = plan(7, &kinds, 5, 30 * S, 3 * S, 4 * S);
        assert_eq!(steps.len(), 4, "3+4, 10+4, 17+4, 24+4 fit in 30 s");
        assert_eq!(steps.iter().map(|s| s.at).collect::<Vec<_>>(), [3 * S, 10 * S, 17 * S, 24 * S]);
        for s in &steps {
            assert!(s.nodes.len() == 1 || s.nodes.len() == 3, "one node or a majority: {s:?}");
            assert!(s.nodes.iter().all(|&n| n < 5));
        }
        assert_eq!(steps, plan(7, &kinds, 5, 30 * S, 3 * S, 4 * S));
        let many = plan(1, &kinds, 3, 3000 * S, S, S);
        assert!(many.iter().any(|s| s.kind == NemesisKind::Kill) && many.iter().any(|s| s.kind == NemesisKind::Pause));
        assert!(many.iter().any(|s| s.nodes.len() == 1) && many.iter().any(|s| s.nodes.len() == 2));
        assert!(many.iter().any(|s| s.leader && s.kind == NemesisKind::Kill));
        assert!(plan(1, &[], 3, 30 * S, S, S).is_empty());
        // Churn alone: steps of its own; with other faults: riding on about half of theirs.
        let alone = plan(5, &[NemesisKind::Churn], 3, 300 * S, S, S);
        assert!(!alone.is_empty() && alone.iter().all(|s| s.kind == NemesisKind::Churn && s.churn.is_some()));
        assert!(alone.iter().all(|s| s.churn.is_some_and(|c| c.member < 3)));
        let riding = plan(5, &[NemesisKind::Churn, NemesisKind::Kill], 3, 3000 * S, S, S);
        assert!(riding.iter().all(|s| s.kind == NemesisKind::Kill));
        let with = riding.iter().filter(|s| s.churn.is_some()).count();
        assert!(with * 10 > riding.len() * 4 && with * 10 < riding.len() * 6, "{with} of {}", riding.len());
        assert!(steps.iter().chain(&many).all(|s| s.churn.is_none()), "no churn unless asked");
        let all = plan(4, &[NemesisKind::KillAll], 3, 30 * S, S, S);
        assert!(!all.is_empty() && all.iter().all(|s| s.nodes == [0, 1, 2] && !s.leader), "{all:?}");
        // Power cuts: about half of the whole cluster, the rest of one node (sometimes the busiest
        // leader) or a minority (two of five).
        let cuts = plan(6, &[NemesisKind::Power], 5, 3000 * S, S, S);
        let whole = cuts.iter().filter(|s| s.nodes.len() == 5).count();
        assert!(whole * 10 > cuts.len() * 4 && whole * 10 < cuts.len() * 6, "{whole} of {}", cuts.len());
        assert!(
            cuts.iter().any(|s| s.nodes.len() == 1 && s.leader) && cuts.iter().any(|s| s.nodes.len() == 1 && !s.leader)
        );
        assert!(cuts.iter().any(|s| s.nodes.len() == 2) && cuts.iter().all(|s| matches!(s.nodes.len(), 1 | 2 | 5)));
        // A partition: a shape each, the side or the ring's order to match; every shape drawn,
        // about as often as the module essay says.
        let cuts = plan(2, &[NemesisKind::Partition], 5, 3000 * S, S, S);
        for s in &cuts {
            let shape = s.shape.expect("a partition has a shape");
            assert_eq!(s.leader, shape.leader(), "{s:?}");
            match shape {
                Shape::Minority => assert_eq!(s.nodes.len(), 2, "{s:?}"),
                Shape::Ring => {
                    let mut order = s.nodes.clone();
                    order.sort_unstable();
                    assert_eq!(order, [0, 1, 2, 3, 4], "{s:?}");
                }
                Shape::Leader | Shape::OneWayOut | Shape::OneWayIn => assert_eq!(s.nodes.len(), 1, "{s:?}"),
            }
        }
        let share = |shape| cuts.iter().filter(|s| s.shape == Some(shape)).count() * 1000 / cuts.len();
        for (shape, per_mille) in [
            (Shape::Minority, 250),
            (Shape::Leader, 250),
            (Shape::Ring, 250),
            (Shape::OneWayOut, 125),
            (Shape::OneWayIn, 125),
        ] {
            assert!(share(shape).abs_diff(per_mille) < 60, "{shape:?}: {} per mille", share(shape));
        }
        assert!(cuts.iter().any(|s| s.shape == Some(Shape::Ring) && s.nodes != [0, 1, 2, 3, 4]), "rings are shuffled");
        assert!(steps.iter().chain(&many).all(|s| s.shape.is_none()), "only partitions have shapes");
        // A wipe: one node (never a majority: see wipe.rs), the busiest leader about a third of the time.
        let wipes = plan(3, &[NemesisKind::Wipe], 5, 3000 * S, S, S);
        assert!(wipes.iter().all(|s| s.nodes.len() == 1));
        let leaders = wipes.iter().filter(|s| s.leader).count();
        assert!(leaders * 4 > wipes.len() && leaders * 5 < wipes.len() * 2, "{leaders} of {}", wipes.len());
    }
}
