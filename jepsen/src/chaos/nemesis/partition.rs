//! The partition nemesis: cuts every link between one side of the cluster and the other, in
//! both directions, through the local target's proxies (`target::proxy`); the heal restores
//! every link. Clients reach every node throughout (as in Jepsen, faults are between servers),
//! so a minority node keeps answering clients: whatever it serves must still be linearizable.
//!
//! Sides: a random minority (halves: 1 of 3, 2 of 5), or the node that leads the most shards
//! alone, found by asking every node for its replicas' roles (if nobody answers, the planned
//! random node).

use std::collections::HashSet;

use super::{event, Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::local::LocalCluster;

/// The directed links to cut so that `side` and the other nodes of `all` cannot talk.
pub fn cut_between(all: &[u64], side: &[u64]) -> HashSet<(u64, u64)> {
    let mut cut = HashSet::new();
    for &a in side {
        for &b in all.iter().filter(|b| !side.contains(b)) {
            cut.insert((a, b));
            cut.insert((b, a));
        }
    }
    cut
}

pub fn partition(cluster: &mut LocalCluster, side: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let all: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let ids: Vec<u64> = side.iter().map(|&i| cluster.nodes[i].id).collect();
    let errors = match cluster.proxies() {
        Some(proxies) => {
            proxies.set_cut(cut_between(&all, &ids));
            Vec::new()
        }
        None => vec!["the cluster was started without proxies".to_string()],
    };
    event(cluster, Action::Partition, side, start, clock, errors)
}

pub fn heal(cluster: &mut LocalCluster, clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    if let Some(proxies) = cluster.proxies() {
        proxies.set_cut(HashSet::new());
    }
    event(cluster, Action::Heal, &[], start, clock, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_is_cut_from_the_rest_both_ways_and_nothing_else() {
        let cut = cut_between(&[1, 2, 3, 4, 5], &[2, 5]);
        assert_eq!(cut.len(), 12);
        assert!(cut.contains(&(2, 1)) && cut.contains(&(1, 2)) && cut.contains(&(5, 3)) && cut.contains(&(4, 5)));
        assert!(!cut.contains(&(2, 5)) && !cut.contains(&(1, 3)));
        assert!(cut_between(&[1, 2, 3], &[]).is_empty());
    }
}
