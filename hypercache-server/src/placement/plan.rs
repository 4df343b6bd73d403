//! The placement document and how target replica sets are computed.
//!
//! Replicas: node names are hashed onto a ring ([`VNODES_PER_NODE`] points each); shard `s`'s
//! replicas are the first R distinct nodes met walking the ring from the hash of `s`. Adding a
//! node takes over only the ring arcs its points land on, so about R/N of the replicas move;
//! removing one moves only its own replicas. Hashing names (not ids or IPs) keeps the result
//! the same however often pods restart.
//!
//! Leaders: each shard's replica list is ordered so that its first entry is the preferred
//! leader, chosen greedily (fewest preferred leaderships so far) so leaders spread evenly; the
//! driver moves leadership there once that replica is caught up.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use hashring::HashRing;
use serde::{Deserialize, Serialize};

use crate::types::{Incarnation, NodeId, NodeInfo};

/// Points each node owns on the replica ring.
pub const VNODES_PER_NODE: u32 = 32;

/// What the meta group records about data placement. Versioned: every change bumps `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub version: u64,
    /// Fixed when the cluster is created.
    pub shard_count: u32,
    /// Wanted replicas per shard (fewer while the cluster has fewer nodes).
    pub replication: u32,
    /// Nodes being decommissioned: no new replicas; theirs move away, then they leave.
    pub draining: BTreeSet<NodeId>,
    /// The incarnation each draining node had when its decommission started. A node that comes
    /// back under the same id on an empty volume is a new member, not the one being drained
    /// ([`Placement::drained`]). (Absent from documents written before: empty, and a mark
    /// without an incarnation applies to whoever has the id, as before.)
    #[serde(default)]
    pub draining_incarnations: BTreeMap<NodeId, Incarnation>,
    /// Nodes that stopped answering the driver for `replace_down_node_after_ms`: no new
    /// replicas, and theirs are re-created on the other nodes. A down node stays a member and
    /// returns to the placement as soon as it answers again. (Absent from documents written
    /// before down nodes were replaced: empty.)
    #[serde(default)]
    pub down: BTreeSet<NodeId>,
    /// Indexed by shard id.
    pub shards: Vec<ShardPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Target replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// The voters the shard was (or will be) initialized with, by `initial[0]`. Recorded before
    /// the first initialize and never changed, so a shard is only ever initialized one way.
    pub initial: Vec<NodeId>,
    /// Set once a replica reported a leader: the shard exists.
    pub created: bool,
}

impl Placement {
    /// A new cluster's placement: every shard still to be created with its target replicas.
    pub fn new(shard_count: u32, replication: u32, nodes: &BTreeMap<NodeId, String>) -> Placement {
        let targets = targets(shard_count, replication, nodes);
        Placement {
            version: 1,
            shard_count,
            replication,
            draining: BTreeSet::new(),
            draining_incarnations: BTreeMap::new(),
            down: BTreeSet::new(),
            shards: targets
                .into_iter()
                .map(|replicas| ShardPlan { initial: replicas.clone(), replicas, created: false })
                .collect(),
        }
    }

    /// The placement for `nodes` (draining and down ones excluded here), or None when nothing
    /// changes.
    pub fn retarget(&self, nodes: &BTreeMap<NodeId, String>) -> Option<Placement> {
        let targets = targets(self.shard_count, self.replication, &self.eligible(nodes));
        if targets.iter().zip(&self.shards).all(|(t, s)| *t == s.replicas) {
            return None;
        }
        let mut next = self.clone();
        next.version += 1;
        for (plan, target) in next.shards.iter_mut().zip(targets) {
            plan.replicas = target;
        }
        Some(next)
    }

    /// Draining marks that no longer apply, given the current `members`: the node left the
    /// membership, or the member with its id now runs another incarnation than the one being
    /// drained (it was removed and came back on an empty volume: a new node, which must not be
    /// drained in its turn).
    pub fn drained(&self, members: &BTreeMap<NodeId, NodeInfo>) -> Vec<NodeId> {
        let stale = |id: &NodeId| match members.get(id) {
            None => true,
            Some(member) => self.draining_incarnations.get(id).is_some_and(|drained| *drained != member.incarnation),
        };
        self.draining.iter().filter(|id| stale(id)).copied().collect()
    }

    /// Marks `id`, running `incarnation`, as draining; true if that changed the document.
    pub fn start_draining(&mut self, id: NodeId, incarnation: Incarnation) -> bool {
        let new_mark = self.draining.insert(id);
        let recorded = self.draining_incarnations.insert(id, incarnation);
        new_mark || recorded != Some(incarnation)
    }

    /// Drops `id`'s draining mark.
    pub fn stop_draining(&mut self, id: NodeId) {
        self.draining.remove(&id);
        self.draining_incarnations.remove(&id);
    }

    /// The nodes of `nodes` that may hold replicas: neither draining nor down.
    pub fn eligible(&self, nodes: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, String> {
        nodes
            .iter()
            .filter(|(id, _)| !self.draining.contains(id) && !self.down.contains(id))
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// Every node holding a target replica of some shard.
    pub fn holders(&self) -> BTreeSet<NodeId> {
        self.shards.iter().flat_map(|s| s.replicas.iter().copied()).collect()
    }
}

/// A node's `point`-th place on the ring, hashed as its name's bytes then the point.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodePoint {
    id: NodeId,
    name: String,
    point: u32,
}

impl Hash for NodePoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.name.as_bytes());
        state.write(&self.point.to_be_bytes());
    }
}

/// Where shard `s` starts its walk on the ring.
struct ShardPoint(u32);

impl Hash for ShardPoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(b"shard/");
        state.write(&self.0.to_be_bytes());
    }
}

/// Target replicas of every shard over `nodes` (id -> name), preferred leader first.
pub fn targets(shard_count: u32, replication: u32, nodes: &BTreeMap<NodeId, String>) -> Vec<Vec<NodeId>> {
    if nodes.is_empty() {
        return vec![Vec::new(); shard_count as usize];
    }
    let mut ring = HashRing::new();
    ring.batch_add(
        nodes
            .iter()
            .flat_map(|(id, name)| {
                (0..VNODES_PER_NODE).map(move |point| NodePoint { id: *id, name: name.clone(), point })
            })
            .collect(),
    );
    let want = (replication as usize).clamp(1, nodes.len());
    let mut leaders: BTreeMap<NodeId, u32> = nodes.keys().map(|id| (*id, 0)).collect();
    (0..shard_count)
        .map(|s| {
            let walk = ring.get_with_replicas(&ShardPoint(s), ring.len()).unwrap_or_default();
            let mut replicas: Vec<NodeId> = Vec::with_capacity(want);
            for p in walk {
                if !replicas.contains(&p.id) {
                    replicas.push(p.id);
                    if replicas.len() == want {
                        break;
                    }
                }
            }
            // Preferred leader: the replica with the fewest preferred leaderships so far (ring
            // order breaks ties), moved to the front.
            if let Some(best) = (0..replicas.len()).min_by_key(|i| leaders.get(&replicas[*i]).copied().unwrap_or(0)) {
                let leader = replicas.remove(best);
                *leaders.entry(leader).or_default() += 1;
                replicas.insert(0, leader);
            }
            replicas
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u64) -> BTreeMap<NodeId, String> {
        (1..=n).map(|i| (i, format!("hypercache-{}", i - 1))).collect()
    }

    #[test]
    fn replicas_are_distinct_and_as_many_as_wanted() {
        for n in 1..=7 {
            for t in targets(16, 3, &nodes(n)) {
                assert_eq!(t.len(), 3.min(n as usize));
                let set: BTreeSet<_> = t.iter().collect();
                assert_eq!(set.len(), t.len(), "{t:?}");
            }
        }
    }

    #[test]
    fn preferred_leaders_spread_evenly() {
        for (shards, n) in [(8u32, 5u64), (16, 3), (16, 5), (64, 7)] {
            let t = targets(shards, 3, &nodes(n));
            let mut count: BTreeMap<NodeId, u32> = BTreeMap::new();
            for r in &t {
                *count.entry(r[0]).or_default() += 1;
            }
            let max = shards.div_ceil(n as u32);
            assert!(count.values().all(|c| *c <= max), "{shards} shards on {n} nodes: {count:?}");
            assert_eq!(count.len() as u64, n.min(u64::from(shards)), "every node leads some shard");
        }
    }

    #[test]
    fn adding_a_node_moves_few_replicas_and_only_to_it() {
        let (before, after) = (targets(64, 3, &nodes(5)), targets(64, 3, &nodes(6)));
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            let b: BTreeSet<_> = b.iter().collect();
            let a: BTreeSet<_> = a.iter().collect();
            for added in a.difference(&b) {
                assert_eq!(**added, 6, "a replica moved to an old node: {b:?} -> {a:?}");
                moved += 1;
            }
        }
        // Ideal: 1/6 of 192 replicas = 32; well under half.
        assert!(moved < 96, "{moved} of 192 replicas moved");
        assert!(moved > 0);
    }

    #[test]
    fn the_same_names_give_the_same_placement() {
        // Ids differ, names are the same: replicas follow names.
        let a = targets(16, 3, &nodes(4));
        let renumbered: BTreeMap<NodeId, String> = nodes(4).into_iter().map(|(id, n)| (id + 10, n)).collect();
        let b = targets(16, 3, &renumbered);
        for (x, y) in a.iter().zip(&b) {
            let y: Vec<NodeId> = y.iter().map(|id| id - 10).collect();
            assert_eq!(*x, y);
        }
    }

    #[test]
    fn a_draining_mark_ends_when_the_node_leaves_or_comes_back_as_another_incarnation() {
        let info = |inc: u64| NodeInfo { name: "n".into(), addr: "n:1".into(), incarnation: Incarnation(inc) };
        let mut p = Placement::new(1, 3, &nodes(3));
        assert!(p.start_draining(3, Incarnation(7)));
        assert!(!p.start_draining(3, Incarnation(7)), "the same mark again changes nothing");
        let mut members: BTreeMap<NodeId, NodeInfo> = [(1, info(1)), (2, info(2)), (3, info(7))].into();
        assert!(p.drained(&members).is_empty(), "still a member under the drained incarnation");
        members.insert(3, info(8));
        assert_eq!(p.drained(&members), [3], "back on an empty volume: a new node, not the drained one");
        members.remove(&3);
        assert_eq!(p.drained(&members), [3], "left");
        p.stop_draining(3);
        assert!(p.draining.is_empty() && p.draining_incarnations.is_empty());
        // A mark written before incarnations were recorded applies to whoever has the id.
        p.draining.insert(2);
        members.insert(2, info(9));
        assert!(p.drained(&members).is_empty());
        let old: Placement =
            serde_json::from_str(r#"{"version":1,"shard_count":1,"replication":3,"draining":[2],"shards":[]}"#)
                .unwrap();
        assert!(old.draining_incarnations.is_empty() && old.draining.contains(&2));
    }

    #[test]
    fn retarget_keeps_creation_records_and_skips_draining_nodes() {
        let mut p = Placement::new(8, 3, &nodes(3));
        p.shards[0].created = true;
        assert!(p.retarget(&nodes(3)).is_none());
        p.draining.insert(2);
        let next = p.retarget(&nodes(4)).unwrap();
        assert_eq!(next.version, 2);
        assert!(next.shards[0].created);
        assert_eq!(next.shards[0].initial, p.shards[0].initial);
        assert!(next.shards.iter().all(|s| !s.replicas.contains(&2) && s.replicas.len() == 3));
    }

    #[test]
    fn down_nodes_get_no_replicas_and_come_back_to_the_same_ones() {
        let before = Placement::new(8, 3, &nodes(4));
        let mut p = before.clone();
        p.down.insert(3);
        let without = p.retarget(&nodes(4)).unwrap();
        assert!(without.shards.iter().all(|s| !s.replicas.contains(&3) && s.replicas.len() == 3));
        // Replicas of the other nodes stay where they were.
        for (a, b) in before.shards.iter().zip(&without.shards) {
            assert!(a.replicas.iter().filter(|n| **n != 3).all(|n| b.replicas.contains(n)));
        }
        let mut back = without.clone();
        back.down.remove(&3);
        let again = back.retarget(&nodes(4)).unwrap();
        let replicas = |p: &Placement| p.shards.iter().map(|s| s.replicas.clone()).collect::<Vec<_>>();
        assert_eq!(replicas(&again), replicas(&before), "placement is a function of the eligible names");
    }

    #[test]
    fn a_document_without_the_down_set_still_reads() {
        let mut json = serde_json::to_value(Placement::new(2, 1, &nodes(1))).unwrap();
        json.as_object_mut().unwrap().remove("down");
        let p: Placement = serde_json::from_value(json).unwrap();
        assert!(p.down.is_empty());
    }
}
