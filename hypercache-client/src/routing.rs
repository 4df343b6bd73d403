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
//!   shard, id 0, on every node ([`RoutingTable::is_legacy`]).
//!
//! The endpoints of the table's nodes join the client's endpoint table (the seeds stay), so
//! requests for a shard go straight to its replicas.
//!
//! # Not done (deliberately)
//!
//! - No periodic refresh: a table is only replaced when a node's answer shows it is wrong.
//! - The per-shard leader cache lives with the endpoint table in `client.rs`; the table's
//!   `leader_id` is only the fallback hint when no leader has been seen for a shard.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hypercache_proto::routing::{hash_tag, Router};
use hypercache_proto::v1 as pb;
use pb::cluster_client::ClusterClient;
use rand::Rng;
use tonic::Code;

use crate::client::{Client, Progress};
use crate::error::Error;
use crate::ops::request;
use crate::retry::{backoff_delay, classify, delivery_of, Decision, OpKind};

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
    pub shard_id: u32,
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
    /// Indexed by shard id (`shards[s].shard_id == s`).
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
            shards: vec![ShardPlacement { shard_id: 0, replicas: Vec::new(), leader_id: None }],
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
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        self.router.shard_of(key)
    }

    pub fn shard(&self, shard_id: u32) -> Option<&ShardPlacement> {
        self.shards.get(usize::try_from(shard_id).ok()?)
    }

    pub fn node(&self, node_id: u64) -> Option<&RoutingNode> {
        self.nodes.get(&node_id)
    }

    /// The endpoint of node `node_id`, if the table knows it.
    pub fn endpoint_of(&self, node_id: u64) -> Option<&str> {
        self.node(node_id).map(|n| n.endpoint.as_str()).filter(|e| !e.is_empty())
    }

    /// The endpoints of the shard's replicas, in placement order.
    pub(crate) fn replica_endpoints(&self, shard_id: u32) -> Vec<&str> {
        self.shard(shard_id)
            .map_or_else(Vec::new, |s| s.replicas.iter().filter_map(|id| self.endpoint_of(*id)).collect())
    }

    /// The endpoint of the shard's leader as the table last knew it.
    pub(crate) fn leader_endpoint(&self, shard_id: u32) -> Option<&str> {
        self.shard(shard_id).and_then(|s| s.leader_id).and_then(|id| self.endpoint_of(id))
    }

    /// The shards every key under `prefix` may live in: one when the prefix holds a complete
    /// hash tag (every key starting with it has that tag), else all of them.
    pub(crate) fn shards_for_prefix(&self, prefix: &[u8]) -> Vec<u32> {
        if self.shard_count > 1 && hash_tag(prefix).len() < prefix.len() {
            vec![self.shard_of(prefix)]
        } else {
            (0..self.shard_count).collect()
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
            .map(|shard_id| ShardPlacement { shard_id, replicas: Vec::new(), leader_id: None })
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
    fetching: tokio::sync::Mutex<()>,
}

impl RoutingCache {
    pub(crate) fn current(&self) -> Option<Arc<RoutingTable>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A refresh that produced no table: the old one stays in use until a node's answer shows
    /// it wrong again (a refresh per operation against a dead node would cost every operation a
    /// connect timeout).
    fn attempted(&self) {
        self.stale.store(false, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Installs `table` unless it is older than the cached one; returns what is cached now.
    fn install(&self, table: RoutingTable) -> (Arc<RoutingTable>, bool) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
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

/// What one `Routing` call produced.
enum Fetched {
    Table(RoutingTable),
    NotReady,
    Failed(tonic::Status),
}

impl Client {
    /// The routing table, fetching it first if none is cached or it was marked stale (a failed
    /// refresh of a stale table returns the old one). Bounded by the request timeout.
    pub async fn routing(&self) -> Result<Arc<RoutingTable>, Error> {
        let timeout = self.inner.config.request_timeout;
        let progress = Mutex::new(Progress::default());
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout(timeout, self.routing_until(deadline, &progress)).await {
            Ok(result) => result,
            Err(_) => {
                Err(crate::client::deadline_error("routing", OpKind::Read, timeout, &crate::client::lock(&progress)))
            }
        }
    }

    /// A table fetched now (from the endpoints in turn until one answers), for callers that
    /// watch the placement change (a decommission). Never older than the cached one.
    pub async fn routing_fresh(&self) -> Result<Arc<RoutingTable>, Error> {
        let timeout = self.inner.config.request_timeout;
        let progress = Mutex::new(Progress::default());
        let deadline = tokio::time::Instant::now() + timeout;
        // The meta leader has the newest table. Ask it first: a node removed from the cluster
        // keeps answering with the table it had when it left (it never learns of its removal),
        // and a seed name may keep resolving to it.
        let leader = self.inner.routing.current().and_then(|t| {
            let id = t.meta_leader_id?;
            t.endpoint_of(id).map(str::to_owned)
        });
        if let Some(endpoint) = leader {
            if let Fetched::Table(table) = self.fetch(&endpoint, deadline).await {
                return Ok(self.adopt(table));
            }
        }
        match tokio::time::timeout(timeout, self.fetch_until(deadline, &progress, true)).await {
            Ok(result) => result,
            Err(_) => {
                Err(crate::client::deadline_error("routing", OpKind::Read, timeout, &crate::client::lock(&progress)))
            }
        }
    }

    /// The routing step a keyed request runs before its first attempt when a table is cached
    /// (what `retry_loop` does up to its first call): read the cached table and its stale flag,
    /// map the key to its shard, pick the node (cached leader, else the table's hint, else a
    /// replica), and update the leader cache as a success does. Returns the shard and the
    /// endpoint, or None while no table is cached. Public only so that `hcbench routing-cost`
    /// can time exactly this code; applications have no use for it.
    #[doc(hidden)]
    pub fn route_cached(&self, key: &bytes::Bytes) -> Option<(u32, String)> {
        let cache = &self.inner.routing;
        let table = cache.current()?;
        std::hint::black_box(cache.is_stale());
        let group = self.resolve(&crate::target::Target::Key(key.clone()), Some(&table)).ok()?;
        let node = self.first_target(group, &crate::target::Route::Leader, Some(&table));
        self.remember_leader(group, &node.endpoint);
        Some((group.shard_id(), node.endpoint))
    }

    /// Forgets the cached table's accuracy: the next operation fetches it again.
    pub fn invalidate_routing(&self) {
        self.inner.routing.mark_stale();
    }

    /// [`routing`](Self::routing) within an operation: the caller's deadline and progress.
    pub(crate) async fn routing_until(
        &self,
        deadline: tokio::time::Instant,
        progress: &Mutex<Progress>,
    ) -> Result<Arc<RoutingTable>, Error> {
        let cache = &self.inner.routing;
        if let Some(table) = cache.current() {
            if !cache.is_stale() {
                return Ok(table);
            }
            // Stale: one best-effort refresh. Each attempt (failed ones included) bumps the
            // generation, so successive refreshes rotate over the endpoints instead of waiting on
            // one that is down.
            let seen = cache.generation();
            let endpoints = self.endpoints_by_health();
            let index = usize::try_from(seen % endpoints.len().max(1) as u64).unwrap_or(0);
            let endpoint = endpoints.get(index).cloned().unwrap_or_default();
            self.refresh_from(seen, &endpoint, deadline).await;
            return Ok(cache.current().unwrap_or(table));
        }
        self.fetch_until(deadline, progress, false).await
    }

    /// Asks the endpoints in turn until one gives a table (`UNIMPLEMENTED`: the legacy table),
    /// backing off while the cluster has no placement yet. Unless `fresh`, a table another
    /// caller fetched meanwhile will do.
    async fn fetch_until(
        &self,
        deadline: tokio::time::Instant,
        progress: &Mutex<Progress>,
        fresh: bool,
    ) -> Result<Arc<RoutingTable>, Error> {
        let cache = &self.inner.routing;
        let config = &self.inner.config;
        let mut failures = 0u32;
        let mut attempt = 0usize;
        loop {
            let endpoints = self.endpoints_by_health();
            let endpoint = endpoints[attempt % endpoints.len()].clone();
            attempt += 1;
            let seen = cache.generation();
            let fetched = {
                let _one_in_flight = cache.fetching.lock().await;
                if cache.generation() != seen && !fresh {
                    if let Some(table) = cache.current() {
                        return Ok(table);
                    }
                }
                self.fetch(&endpoint, deadline).await
            };
            let why = match fetched {
                Fetched::Table(table) => return Ok(self.adopt(table)),
                Fetched::NotReady => format!("{endpoint}: the cluster has no shard placement yet"),
                Fetched::Failed(status) if status.code() == Code::Unimplemented => {
                    return Ok(self.adopt(RoutingTable::legacy()));
                }
                Fetched::Failed(status) => {
                    let delivery = delivery_of(&status);
                    if let Decision::Fail(err) = classify(&status, OpKind::Read, delivery) {
                        return Err(err);
                    }
                    failures += 1;
                    format!("{endpoint}: {}", crate::client::describe(&status, delivery))
                }
            };
            {
                let mut p = crate::client::lock(progress);
                p.endpoint = endpoint;
                p.last_error = Some(why.clone());
            }
            if failures >= config.max_attempts {
                return Err(Error::Unavailable {
                    message: format!(
                        "routing table: no node answered after {failures} attempts; last error from {why}"
                    ),
                });
            }
            let jitter = rand::thread_rng().gen::<f64>();
            let delay = backoff_delay(attempt as u32, config.backoff_base, config.backoff_max, jitter);
            tokio::time::sleep_until((tokio::time::Instant::now() + delay).min(deadline)).await;
        }
    }

    /// One refresh from `endpoint`, unless another caller completed one since `seen`. Failures
    /// are logged and leave the cached table in place.
    pub(crate) async fn refresh_from(&self, seen: u64, endpoint: &str, deadline: tokio::time::Instant) {
        let cache = &self.inner.routing;
        let _one_in_flight = cache.fetching.lock().await;
        if cache.generation() != seen {
            return;
        }
        match self.fetch(endpoint, deadline).await {
            Fetched::Table(table) => {
                self.adopt(table);
            }
            Fetched::Failed(status) if status.code() == Code::Unimplemented => {
                self.adopt(RoutingTable::legacy());
            }
            Fetched::NotReady => {
                tracing::debug!(%endpoint, "routing refresh: no placement yet");
                cache.attempted();
            }
            Fetched::Failed(status) => {
                tracing::debug!(%endpoint, error = %status, "routing refresh failed");
                cache.attempted();
            }
        }
    }

    pub(crate) fn routing_generation(&self) -> u64 {
        self.inner.routing.generation()
    }

    /// The endpoints, those the health table skips last (a fresh client knows none: a frozen
    /// first seed then costs one attempt timeout, not the whole deadline).
    fn endpoints_by_health(&self) -> Vec<String> {
        let skipped = self.inner.health.skipped(tokio::time::Instant::now());
        let (healthy, skipped): (Vec<String>, Vec<String>) =
            self.endpoints().into_iter().partition(|e| !skipped.contains(e));
        healthy.into_iter().chain(skipped).collect()
    }

    /// One `Routing` call to `endpoint`, bounded by the per-attempt timeout.
    async fn fetch(&self, endpoint: &str, deadline: tokio::time::Instant) -> Fetched {
        let node = match self.node_for(endpoint, false) {
            Ok(node) => node,
            Err(err) => return Fetched::Failed(tonic::Status::invalid_argument(err.to_string())),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(1));
        let limit = remaining.min(self.inner.config.attempt_timeout);
        let max = self.inner.config.max_message_bytes;
        let mut cluster = ClusterClient::new(node.channel).max_decoding_message_size(max);
        let health = &self.inner.health;
        match tokio::time::timeout(limit, cluster.routing(request(pb::RoutingRequest {}, limit))).await {
            Ok(Ok(response)) => {
                health.answered(endpoint);
                match RoutingTable::from_wire(response.into_inner()) {
                    Some(table) => Fetched::Table(table),
                    None => Fetched::NotReady,
                }
            }
            Ok(Err(status)) if !crate::health::timed_out(&status) => {
                if status.code() == Code::Unimplemented || hypercache_proto::error_info::info_of(&status).is_some() {
                    health.answered(endpoint);
                }
                Fetched::Failed(status)
            }
            _no_answer_in_time => {
                health.unresponsive(endpoint, tokio::time::Instant::now());
                Fetched::Failed(tonic::Status::deadline_exceeded(format!(
                    "no answer within the {limit:?} attempt timeout"
                )))
            }
        }
    }

    /// Caches `table` (unless older) and adds its nodes to the endpoint table.
    fn adopt(&self, table: RoutingTable) -> Arc<RoutingTable> {
        let (current, changed) = self.inner.routing.install(table);
        if changed {
            tracing::debug!(version = current.version, shards = current.shard_count, "routing table updated");
            self.adopt_endpoints(&current);
        }
        current
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
        assert_eq!(table.replica_endpoints(1), vec!["n2:7000", "n3:7000"]);
        assert_eq!(table.leader_endpoint(0), None, "leader_id 0 is unknown");
        assert_eq!(table.leader_endpoint(2), Some("n3:7000"));
        assert!(table.node(3).expect("listed").draining);
        assert!(table.node(2).expect("listed").down && !table.node(3).expect("listed").down);
        assert!(table.shard(4).is_none());
        assert_eq!(table.shard_of(b"board:{b7}:owner"), Router::new(4).shard_of(b"b7"));
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
        assert_eq!(RoutingTable::legacy().shards_for_prefix(b"x{y}"), vec![0]);
    }
}
