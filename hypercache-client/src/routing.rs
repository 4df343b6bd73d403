//! The routing table cache: which shard a key lives in, and which nodes host each shard.
//!
//! # Model
//!
//! A cluster has a fixed number of shards; a key's shard is
//! [`Router::shard_of`](hypercache_proto::routing::Router::shard_of) over that count (hash tags
//! `{...}` honoured). Each shard is a Raft group on a few nodes. Any node answers
//! `Cluster.Routing` with the table its replica of the meta group holds: the shard count, every
//! shard's replicas and last known leader, and the nodes with their endpoints. The client caches
//! one [`RoutingTable`]:
//!
//! - **Fetched lazily**, on the first operation that needs a shard, from the endpoints in order,
//!   within that operation's deadline. `version == 0` means the cluster has no placement yet
//!   (its shards are still being created): the client backs off and asks again until the
//!   deadline.
//! - **Refreshed** when a node says the table was wrong: `UNKNOWN_SHARD` (the node hosts no
//!   replica of the shard), `WRONG_SHARD` (the key does not map to the named shard), `NO_LEADER`,
//!   or a `NOT_LEADER` that names no leader. A refresh only marks the table stale; the next
//!   operation (or the retry of this one) asks one node, and concurrent refreshes coalesce: one
//!   fetch is in flight at a time and the callers that waited for it use its result. A failed
//!   refresh keeps the old table (a stale table costs a redirect, not an error). Tables never
//!   go backwards: an answer with a lower version than the cached one (a lagging node) is
//!   ignored.
//! - **Legacy clusters**: a server that answers `UNIMPLEMENTED` predates sharding; it is one
//!   shard, id 0, on every node ([`RoutingTable::is_legacy`]). A legacy table yields to the
//!   first real one, and a routing error under it refreshes only when the server promised
//!   "not applied" (`WRONG_SHARD`, `UNKNOWN_SHARD`).
//!
//! The endpoints of the table's nodes join the client's endpoint table (the seeds stay), so
//! requests for a shard go straight to its replicas.
//!
//! # Why the legacy mode stays (decided December 2026)
//!
//! No server in this repository reaches it: `hypercache-server` always serves
//! `Cluster.Routing`. What reaches it are the client's test fakes (`tests/common/mod.rs`,
//! `tests/common/scripted.rs`), which serve one service each (KV, Lease, Boards, Watch) and let
//! `fake_server.rs`, `frozen_endpoint.rs`, `board_sync.rs`, `lease_keeper.rs` and
//! `watcher.rs` (and hcctl's tests, which share these fakes) test the retry loop, leases, boards and watches without modelling a placement;
//! `sharded.rs` tests the move from a legacy answer to a real table. We keep it because
//! removing it saves about thirty lines (here, in `refresh.rs` and `call.rs`) while every one
//! of those fakes would have to grow a `Cluster` service serving a one-shard table; and because
//! its reading of `UNIMPLEMENTED` is safe: one shard, replaced by the real table at the first
//! `WRONG_SHARD` or `UNKNOWN_SHARD` (the server promises those were not applied). Remove it
//! together with those fakes if the mode ever costs more than that.
//!
//! # Not done (deliberately)
//!
//! - No periodic refresh: a table is only replaced when a node's answer shows it is wrong.
//! - The per-shard leader cache lives with the endpoint table (`endpoints.rs`); the table's
//!   `leader_id` is only the fallback hint when no leader has been seen for a shard.
//!
//! This module is data and decisions only; fetching the table over the network is
//! `refresh.rs`, above the client and the call machinery.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hypercache_proto::poison;
use hypercache_proto::routing::{hash_tag, Router};
use hypercache_proto::v1 as pb;

use crate::ids::ShardId;

/// A node as the routing table names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingNode {
    pub node_id: u64,
    pub name: String,
    /// `host:port` of its gRPC endpoint.
    pub endpoint: String,
    pub voter: bool,
    /// Being decommissioned: its replicas are moving away.
    pub draining: bool,
    /// Marked down by the placement driver (silent too long): its replicas are re-created on
    /// other nodes until it answers again.
    pub down: bool,
}

/// One shard's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlacement {
    pub shard_id: ShardId,
    /// Node ids of the shard's target replicas.
    pub replicas: Vec<u64>,
    /// The leader as last known by the meta group; a hint.
    pub leader_id: Option<u64>,
}

/// The cluster's routing table as the client caches it (see the module documentation).
#[derive(Debug, Clone)]
pub struct RoutingTable {
    /// Grows with every placement change; 0 for a legacy cluster.
    pub version: u64,
    pub shard_count: u32,
    pub replication: u32,
    /// Nodes by id. Draining nodes are listed until they have left.
    pub nodes: BTreeMap<u64, RoutingNode>,
    /// Indexed by shard id (`shards[s].shard_id == ShardId(s)`).
    pub shards: Vec<ShardPlacement>,
    /// The meta group's leader (the placement driver).
    pub meta_leader_id: Option<u64>,
    legacy: bool,
    router: Router,
}

impl RoutingTable {
    /// The table of a server that predates sharding: one shard, id 0, served by every node.
    pub fn legacy() -> Self {
        RoutingTable {
            version: 0,
            shard_count: 1,
            replication: 0,
            nodes: BTreeMap::new(),
            shards: vec![ShardPlacement { shard_id: ShardId(0), replicas: Vec::new(), leader_id: None }],
            meta_leader_id: None,
            legacy: true,
            router: Router::new(1),
        }
    }

    /// True for a cluster that predates sharding (it answered `Routing` with `UNIMPLEMENTED`).
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The shard `key` lives in.
    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        ShardId(self.router.shard_of(key))
    }

    /// Every shard of the cluster, in id order.
    pub fn shard_ids(&self) -> impl Iterator<Item = ShardId> {
        (0..self.shard_count).map(ShardId)
    }

    /// True when the cluster has the shard (its id is below `shard_count`).
    pub fn has_shard(&self, shard_id: ShardId) -> bool {
        shard_id.0 < self.shard_count
    }

    pub fn shard(&self, shard_id: ShardId) -> Option<&ShardPlacement> {
        self.shards.get(usize::try_from(shard_id.0).ok()?)
    }

    pub fn node(&self, node_id: u64) -> Option<&RoutingNode> {
        self.nodes.get(&node_id)
    }

    /// The endpoint of node `node_id`, if the table knows it.
    pub fn endpoint_of(&self, node_id: u64) -> Option<&str> {
        self.node(node_id).map(|n| n.endpoint.as_str()).filter(|e| !e.is_empty())
    }

    /// The endpoints of the shard's replicas, in placement order.
    pub(crate) fn replica_endpoints(&self, shard_id: ShardId) -> Vec<&str> {
        self.shard(shard_id)
            .map_or_else(Vec::new, |s| s.replicas.iter().filter_map(|id| self.endpoint_of(*id)).collect())
    }

    /// The endpoint of the shard's leader as the table last knew it.
    pub(crate) fn leader_endpoint(&self, shard_id: ShardId) -> Option<&str> {
        self.shard(shard_id).and_then(|s| s.leader_id).and_then(|id| self.endpoint_of(id))
    }

    /// The shards every key under `prefix` may live in: one when the prefix holds a complete
    /// hash tag (every key starting with it has that tag), else all of them.
    pub(crate) fn shards_for_prefix(&self, prefix: &[u8]) -> Vec<ShardId> {
        if self.shard_count > 1 && hash_tag(prefix).len() < prefix.len() {
            vec![self.shard_of(prefix)]
        } else {
            self.shard_ids().collect()
        }
    }
}

impl RoutingTable {
    /// The table a `Routing` answer describes; `None` while the cluster has no placement yet
    /// (version 0). Public so tools that hold a `Cluster.Routing` answer (hcctl's tests) build
    /// the same table the client routes with.
    pub fn from_wire(r: pb::RoutingResponse) -> Option<Self> {
        if r.version == 0 || r.shard_count == 0 {
            return None;
        }
        let nodes = r
            .nodes
            .into_iter()
            .map(|m| {
                let (draining, down) = (r.draining.contains(&m.node_id), r.down.contains(&m.node_id));
                let node = RoutingNode {
                    node_id: m.node_id,
                    name: m.name,
                    endpoint: m.endpoint,
                    voter: m.voter,
                    draining,
                    down,
                };
                (m.node_id, node)
            })
            .collect();
        let mut shards: Vec<ShardPlacement> = (0..r.shard_count)
            .map(|s| ShardPlacement { shard_id: ShardId(s), replicas: Vec::new(), leader_id: None })
            .collect();
        for route in r.shards {
            if let Some(slot) = usize::try_from(route.shard_id).ok().and_then(|i| shards.get_mut(i)) {
                slot.replicas = route.replicas;
                slot.leader_id = (route.leader_id != 0).then_some(route.leader_id);
            }
        }
        Some(RoutingTable {
            version: r.version,
            shard_count: r.shard_count,
            replication: r.replication,
            nodes,
            shards,
            meta_leader_id: (r.meta_leader_id != 0).then_some(r.meta_leader_id),
            legacy: false,
            router: Router::new(r.shard_count),
        })
    }
}

/// The cached table and the refresh bookkeeping.
#[derive(Default)]
pub(crate) struct RoutingCache {
    current: RwLock<Option<Arc<RoutingTable>>>,
    /// Set when a node's answer showed the table is wrong; the next user refreshes it.
    stale: AtomicBool,
    /// Bumped by every completed fetch, so callers that waited on `fetching` can tell that
    /// someone else already fetched for them.
    generation: AtomicU64,
    /// Held (an async mutex, across the fetch) by the one caller fetching a table.
    pub(crate) fetching: tokio::sync::Mutex<()>,
}

impl RoutingCache {
    pub(crate) fn current(&self) -> Option<Arc<RoutingTable>> {
        poison::read(&self.current).clone()
    }

    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A refresh that produced no table: the old one stays in use until a node's answer shows
    /// it wrong again (a refresh per operation against a dead node would cost every operation a
    /// connect timeout).
    pub(crate) fn attempted(&self) {
        self.stale.store(false, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Installs `table` unless it is older than the cached one; returns what is cached now.
    pub(crate) fn install(&self, table: RoutingTable) -> (Arc<RoutingTable>, bool) {
        let mut current = poison::write(&self.current);
        let (cached, newer) = match current.as_ref() {
            Some(old) if !old.legacy && (table.legacy || table.version < old.version) => (old.clone(), false),
            _ => {
                let table = Arc::new(table);
                *current = Some(table.clone());
                (table, true)
            }
        };
        self.stale.store(false, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
        (cached, newer)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn response(shard_count: u32, version: u64) -> pb::RoutingResponse {
        pb::RoutingResponse {
            version,
            shard_count,
            replication: 2,
            nodes: (1..=3)
                .map(|id| pb::Member {
                    node_id: id,
                    name: format!("n{id}"),
                    endpoint: format!("n{id}:7000"),
                    voter: true,
                    incarnation: id,
                })
                .collect(),
            shards: (0..shard_count)
                .map(|s| pb::ShardRoute {
                    shard_id: s,
                    replicas: vec![u64::from(s % 3) + 1, u64::from((s + 1) % 3) + 1],
                    leader_id: if s == 0 { 0 } else { u64::from(s % 3) + 1 },
                })
                .collect(),
            draining: vec![3],
            meta_leader_id: 1,
            down: vec![2],
        }
    }

    #[test]
    fn a_response_becomes_a_table() {
        let table = RoutingTable::from_wire(response(4, 7)).expect("ready");
        assert_eq!((table.version, table.shard_count, table.meta_leader_id), (7, 4, Some(1)));
        assert_eq!(table.replica_endpoints(ShardId(1)), vec!["n2:7000", "n3:7000"]);
        assert_eq!(table.leader_endpoint(ShardId(0)), None, "leader_id 0 is unknown");
        assert_eq!(table.leader_endpoint(ShardId(2)), Some("n3:7000"));
        assert!(table.node(3).expect("listed").draining);
        assert!(table.node(2).expect("listed").down && !table.node(3).expect("listed").down);
        assert!(table.shard(ShardId(4)).is_none() && !table.has_shard(ShardId(4)) && table.has_shard(ShardId(3)));
        assert_eq!(table.shard_of(b"board:{b7}:owner"), ShardId(Router::new(4).shard_of(b"b7")));
        assert!(RoutingTable::from_wire(response(4, 0)).is_none(), "version 0: no placement yet");
    }

    #[test]
    fn tables_never_go_backwards_and_legacy_yields() {
        let cache = RoutingCache::default();
        let (t, changed) = cache.install(RoutingTable::legacy());
        assert!(t.is_legacy() && changed);
        let (t, changed) = cache.install(RoutingTable::from_wire(response(4, 7)).expect("ready"));
        assert!(changed && t.version == 7, "a real table replaces the legacy one");
        let (t, changed) = cache.install(RoutingTable::from_wire(response(4, 6)).expect("ready"));
        assert!(!changed && t.version == 7, "a lagging node's older table is ignored");
        let (_, changed) = cache.install(RoutingTable::legacy());
        assert!(!changed);
        assert_eq!(cache.generation(), 4, "every completed fetch counts");
    }

    #[test]
    fn tagged_prefixes_live_in_one_shard() {
        let table = RoutingTable::from_wire(response(8, 1)).expect("ready");
        assert_eq!(table.shards_for_prefix(b"board:{b7}:"), vec![table.shard_of(b"b7")]);
        assert_eq!(table.shards_for_prefix(b"board:{b7").len(), 8, "an open tag says nothing");
        assert_eq!(table.shards_for_prefix(b"").len(), 8);
        assert_eq!(RoutingTable::legacy().shards_for_prefix(b"x{y}"), vec![ShardId(0)]);
    }
}
