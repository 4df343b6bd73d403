//! The partition nemesis: cuts a set of directed links between nodes through the local target's
//! proxies (`target::proxy`); the heal restores every link. Clients reach every node throughout
//! (as in Jepsen, faults are between servers), so a cut-off node keeps answering clients:
//! whatever it serves must still be linearizable.
//!
//! Shapes ([`Shape`], logged as `shape` with the `cut` links in `nemesis.jsonl`):
//! - **minority**: a random minority (halves: 1 of 3, 2 of 5) cut from the rest, both ways;
//! - **leader**: the node that leads the most shards alone, found by asking every node for its
//!   replicas' roles (if nobody answers, the planned random node), both ways;
//! - **ring** (Jepsen's majorities ring): every node still talks to a majority, but no two
//!   nodes to the same majority, so several nodes may each believe they can win an election;
//! - **one-way-out**: the busiest leader's bytes to the others are lost, theirs to it arrive
//!   (it hears, it is not heard); **one-way-in**: the other direction (it is heard, it does not
//!   hear).
//!
//! Shapes of one nemesis kind rather than kinds of their own: every shape is "cut links, heal
//! them all", so `--nemesis partition` stays one flag, the availability figures pair every
//! shape's `partition` with its `heal` as before, and a run under partitions exercises all of
//! them without the caller listing shapes.
//!
//! Links are directed on bytes, not on calls: the servers talk gRPC, request and response on
//! one connection, so a call across a one-way cut fails whichever side made it, and what a
//! one-way cut adds over a two-way one is that requests in the open direction are still
//! delivered and acted on (a vote request with a higher term, entries appended by a leader
//! that never hears the acknowledgement). For the same reason a ring is symmetric: Jepsen's
//! ring of 3 drops one direction per pair, which here would fail every call between every pair.
//! A symmetric ring of 3 is a triangle with nothing to cut, so with 3 nodes the ring is opened
//! at one random pair (a bridge: its two ends cannot talk, the third node talks to both), the
//! only cut of 3 nodes where every node sees a majority and no two the same one.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{event, Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::Cluster;

/// What a partition cuts (see the module essay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// A random minority cut from the rest, both ways.
    Minority,
    /// The busiest leader alone, both ways.
    Leader,
    /// Every node talks to a majority, no two to the same one; `nodes` is the ring's order.
    Ring,
    /// The busiest leader's bytes to the others are lost; it still hears them.
    OneWayOut,
    /// The others' bytes to the busiest leader are lost; it is still heard.
    OneWayIn,
}

impl Shape {
    /// True when the side is the node leading the most shards, found when the fault starts.
    pub fn leader(self) -> bool {
        matches!(self, Shape::Leader | Shape::OneWayOut | Shape::OneWayIn)
    }
}

/// The directed links to cut so that `side` and the other nodes of `all` cannot talk.
pub fn cut_between(all: &[u64], side: &[u64]) -> HashSet<(u64, u64)> {
    let mut cut = one_way(all, side);
    cut.extend(one_way(all, side).into_iter().map(|(a, b)| (b, a)));
    cut
}

/// The directed links from `side` to the other nodes of `all`: the side hears, it is not heard.
pub fn one_way(all: &[u64], side: &[u64]) -> HashSet<(u64, u64)> {
    let mut cut = HashSet::new();
    for &a in side {
        for &b in all.iter().filter(|b| !side.contains(b)) {
            cut.insert((a, b));
        }
    }
    cut
}

/// The links (both directions) of a majorities ring over `order`: each node talks to the
/// `k` nodes on either side of it, `k` the least that makes `2k + 1` a majority; with 3
/// nodes, to its ring neighbours but the ends `order[0]` and `order[2]` not to each other.
pub fn ring(order: &[u64]) -> HashSet<(u64, u64)> {
    let n = order.len();
    let mut cut = HashSet::new();
    if n == 3 {
        cut.insert((order[0], order[2]));
        cut.insert((order[2], order[0]));
        return cut;
    }
    let k = (n / 2).div_ceil(2);
    for i in 0..n {
        for j in 0..n {
            let apart = (i + n - j) % n;
            if apart.min(n - apart) > k {
                cut.insert((order[i], order[j]));
            }
        }
    }
    cut
}

/// The links to cut for `shape` over `all`, `nodes` being the side (the ring's order for a
/// ring).
pub fn links(shape: Shape, all: &[u64], nodes: &[u64]) -> HashSet<(u64, u64)> {
    match shape {
        Shape::Minority | Shape::Leader => cut_between(all, nodes),
        Shape::Ring => ring(nodes),
        Shape::OneWayOut => one_way(all, nodes),
        Shape::OneWayIn => one_way(all, nodes).into_iter().map(|(a, b)| (b, a)).collect(),
    }
}

/// Cuts the links of `shape` over `nodes` (0-based indices: the side, or the ring's order).
pub async fn partition(cluster: &mut Cluster, shape: Shape, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let all: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let ids: Vec<u64> = nodes.iter().map(|&i| cluster.nodes[i].id).collect();
    let cut = links(shape, &all, &ids);
    let mut logged: Vec<[u64; 2]> = cut.iter().map(|&(a, b)| [a, b]).collect();
    logged.sort_unstable();
    let errors = cluster.set_cut(cut).await.err().map(|e| e.to_string()).into_iter().collect();
    let mut logged_event = event(cluster, Action::Partition, nodes, start, clock, errors);
    logged_event.shape = Some(shape);
    logged_event.cut = logged;
    logged_event
}

pub async fn heal(cluster: &mut Cluster, clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let errors = match cluster.any_cut() {
        true => cluster.set_cut(HashSet::new()).await.err().map(|e| e.to_string()).into_iter().collect(),
        false => Vec::new(),
    };
    event(cluster, Action::Heal, &[], start, clock, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which nodes `node` talks to (itself included): those it has no cut link with, either way.
    fn reachable(all: &[u64], cut: &HashSet<(u64, u64)>, node: u64) -> Vec<u64> {
        all.iter().copied().filter(|&p| !cut.contains(&(node, p)) && !cut.contains(&(p, node))).collect()
    }

    #[test]
    fn a_side_is_cut_from_the_rest_both_ways_and_nothing_else() {
        let cut = cut_between(&[1, 2, 3, 4, 5], &[2, 5]);
        assert_eq!(cut.len(), 12);
        assert!(cut.contains(&(2, 1)) && cut.contains(&(1, 2)) && cut.contains(&(5, 3)) && cut.contains(&(4, 5)));
        assert!(!cut.contains(&(2, 5)) && !cut.contains(&(1, 3)));
        assert!(cut_between(&[1, 2, 3], &[]).is_empty());
    }

    #[test]
    fn one_way_cuts_only_one_direction() {
        let out = links(Shape::OneWayOut, &[1, 2, 3], &[2]);
        assert_eq!(out, HashSet::from([(2, 1), (2, 3)]), "2 is not heard");
        let inbound = links(Shape::OneWayIn, &[1, 2, 3], &[2]);
        assert_eq!(inbound, HashSet::from([(1, 2), (3, 2)]), "2 does not hear");
        let both = links(Shape::Leader, &[1, 2, 3], &[2]);
        assert_eq!(both, out.union(&inbound).copied().collect());
    }

    #[test]
    fn in_a_ring_every_node_sees_a_majority_and_no_two_the_same_one() {
        for n in 3u64..=9 {
            // A scrambled order: the ring follows it, not the ids.
            let order: Vec<u64> = (0..n).map(|i| (i * 11 + 1) % n + 1).collect();
            let mut all = order.clone();
            all.sort_unstable();
            assert_eq!(all, (1..=n).collect::<Vec<_>>(), "n = {n}");
            let cut = ring(&order);
            assert!(!cut.is_empty(), "n = {n}: a ring cuts something");
            assert!(cut.iter().all(|&(a, b)| cut.contains(&(b, a))), "n = {n}: symmetric");
            let seen: Vec<Vec<u64>> = all.iter().map(|&x| reachable(&all, &cut, x)).collect();
            for (x, s) in all.iter().zip(&seen) {
                assert!(s.len() as u64 > n / 2, "n = {n}: node {x} sees {s:?}, not a majority");
                assert!(s.contains(x));
            }
            let distinct: HashSet<&Vec<u64>> = seen.iter().collect();
            assert_eq!(distinct.len(), seen.len(), "n = {n}: two nodes see the same majority: {seen:?}");
        }
        // 5 nodes: each talks to its two ring neighbours, never to the nodes two steps away.
        let cut = ring(&[3, 1, 4, 5, 2]);
        assert_eq!(cut.len(), 10);
        assert!(cut.contains(&(3, 4)) && cut.contains(&(4, 3)) && !cut.contains(&(3, 1)) && !cut.contains(&(3, 2)));
        // 3 nodes: the ends of the order cannot talk, the middle node talks to both.
        assert_eq!(ring(&[2, 3, 1]), HashSet::from([(2, 1), (1, 2)]));
    }
}
