//! Fetching the routing table (`routing.rs` holds the table and its cache): lazily on the first
//! operation that needs a shard, again when a node's answer shows the table wrong, and on
//! demand ([`Client::routing_fresh`]). One fetch is in flight at a time; callers that waited
//! for it use its result. Each `Routing` call is one attempt with the per-attempt timeout and
//! the same health bookkeeping as the retry loop (`call.rs`), which calls in here before its
//! first attempt and after a routing error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypercache_proto::poison::lock;
use hypercache_proto::v1 as pb;
use pb::cluster_client::ClusterClient;
use rand::Rng;
use tonic::Code;

use crate::call::{deadline_error, describe, request, Progress};
use crate::client::Client;
use crate::error::Error;
use crate::health::timed_out;
use crate::ids::ShardId;
use crate::retry::{backoff_delay, classify, delivery_of, Decision, OpKind};
use crate::routing::RoutingTable;
use crate::target::{Route, Target};

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
            Err(_) => Err(deadline_error("routing", OpKind::Read, timeout, &lock(&progress))),
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
            Err(_) => Err(deadline_error("routing", OpKind::Read, timeout, &lock(&progress))),
        }
    }

    /// The routing step a keyed request runs before its first attempt when a table is cached
    /// (what `retry_loop` does up to its first call): read the cached table and its stale flag,
    /// map the key to its shard, pick the node (cached leader, else the table's hint, else a
    /// replica), and update the leader cache as a success does. Returns the shard and the
    /// endpoint, or None while no table is cached. Public only so that `hcbench routing-cost`
    /// can time exactly this code; applications have no use for it.
    #[doc(hidden)]
    pub fn route_cached(&self, key: &bytes::Bytes) -> Option<(ShardId, String)> {
        let cache = &self.inner.routing;
        let table = cache.current()?;
        std::hint::black_box(cache.is_stale());
        let group = self.resolve(&Target::Key(key.clone()), Some(&table)).ok()?;
        let node = self.first_target(group, &Route::Leader, Some(&table));
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
                    format!("{endpoint}: {}", describe(&status, delivery))
                }
            };
            {
                let mut p = lock(progress);
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
            Ok(Err(status)) if !timed_out(&status) => {
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
