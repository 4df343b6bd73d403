//! The [`Client`]: endpoint table, per-shard leader cache, and the retry loop every operation
//! runs in.
//!
//! The endpoint table starts as the configured seed list, gains the nodes of the routing table
//! (`routing.rs`) and the leader endpoints learned from NOT_LEADER redirects (at most
//! [`MAX_LEARNED_ENDPOINTS`] of those). Each entry owns one lazily connected tonic `Channel`;
//! tonic multiplexes all concurrent requests over it and re-resolves the host name whenever it
//! reconnects.
//!
//! Every operation names a [`Target`] (a key, a shard, the home shard, or the meta group); the
//! routing table turns it into a [`Group`], whose leader is cached separately: a NOT_LEADER for
//! shard `s` moves shard `s` only. The first attempt goes to the group's cached leader, else the
//! table's leader hint, else its first replica ([`Route`]); retries walk the shard's replicas.
//! `UNKNOWN_SHARD` and `WRONG_SHARD` (both promise "not applied", so even writes are retried)
//! and `NO_LEADER` refresh the routing table, then the shard is resolved again.
//!
//! Every attempt has its own timeout (`ClientConfig::attempt_timeout`), shorter than the
//! operation's deadline: a frozen node (SIGSTOP) accepts connections and never answers, and
//! without it one attempt would eat the whole deadline. An attempt that times out gives its
//! endpoint a strike in the health table (`health.rs`), which routing then avoids for a while;
//! a read moves on to the next replica at once, a write reports `OutcomeUnknown` (it may sit
//! in the frozen leader's socket buffer and be applied when the node resumes). A NOT_LEADER
//! redirect to a skipped endpoint is not followed. Serializable answers older than what the
//! client already saw of the shard are refused here too (`freshness.rs`).
//!
//! The lock around the table is a std `RwLock`: it is only held to look up or insert an entry,
//! never across an `.await`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::config::{validate_endpoint, ClientConfig};
use crate::error::Error;
use crate::freshness::Seen;
use crate::health::{timed_out, Health};
use crate::poison::{self, lock};
use crate::retry::{backoff_delay, classify, delivery_of, give_up, wants_refresh, Decision, Delivery, OpKind};
use crate::routing::{RoutingCache, RoutingTable};
use crate::target::{after, candidates, choose};
pub(crate) use crate::target::{Group, Route, Target};
use crate::writes::{PendingWrite, WriteIds};

/// HTTP/2 ping interval and the wait for its answer on every channel.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Learned (non-configured) endpoints kept in the table; more are used once and dropped.
pub(crate) const MAX_LEARNED_ENDPOINTS: usize = 32;

/// A HyperCache client. Cheap to clone (clones share channels, the routing table and the
/// leader cache).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    table: RwLock<Table>,
    pub(crate) routing: RoutingCache,
    /// Endpoints that recently did not answer in time.
    pub(crate) health: Health,
    /// The newest revision seen per shard (serializable reads never go below it).
    pub(crate) seen: Seen,
    /// This instance's client id and write numbering (exactly-once writes).
    pub(crate) writes: WriteIds,
}

struct Table {
    /// Seeds first (configuration order), then the routing table's nodes, then learned ones.
    nodes: Vec<Node>,
    leaders: HashMap<Group, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Seed,
    Routing,
    /// A leader endpoint from a NOT_LEADER redirect.
    Learned,
}

#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) endpoint: String,
    pub(crate) channel: Channel,
    pub(crate) origin: Origin,
}

/// What the retry loop has done so far, read when the overall deadline fires.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) attempts: u32,
    pub(crate) endpoint: String,
    pub(crate) in_flight: bool,
    pub(crate) last_error: Option<String>,
    /// A failed attempt of a tracked write may have been applied (its outcome is unknown unless
    /// a later attempt answers).
    pub(crate) maybe_applied: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoints", &self.inner.config.endpoints).finish_non_exhaustive()
    }
}

impl Client {
    /// Validates `config` and prepares one lazy channel per endpoint. Nothing is connected or
    /// resolved yet. Must be called inside a Tokio runtime (channels spawn a worker task).
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config("Client::new must be called inside a Tokio runtime"));
        }
        let nodes = config
            .endpoints
            .iter()
            .map(|e| Ok(Node { endpoint: e.clone(), channel: make_channel(e, &config)?, origin: Origin::Seed }))
            .collect::<Result<Vec<_>, Error>>()?;
        let table = RwLock::new(Table { nodes, leaders: HashMap::new() });
        let inner = Inner {
            config,
            table,
            routing: RoutingCache::default(),
            health: Health::default(),
            seen: Seen::default(),
            writes: WriteIds::default(),
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The endpoint believed to lead `shard` (the last one that served a leader request for
    /// it, or the last redirect target), if any.
    pub fn leader_hint(&self, shard: u32) -> Option<String> {
        self.read_table().leaders.get(&Group::Shard(shard)).cloned()
    }

    /// Starts a write: the id all its attempts carry (see `writes.rs`); keep the guard until the
    /// operation returns.
    pub(crate) fn begin_write(&self) -> PendingWrite {
        self.inner.writes.begin()
    }

    /// Every endpoint the client knows: the seeds, the routing table's nodes, learned leaders.
    pub fn endpoints(&self) -> Vec<String> {
        self.read_table().nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        poison::read(&self.inner.table)
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        poison::write(&self.inner.table)
    }

    /// The group `target` addresses under `table` (which every target but `Meta` needs).
    pub(crate) fn resolve(&self, target: &Target, table: Option<&RoutingTable>) -> Result<Group, Error> {
        let Some(table) = table else {
            return Ok(match target {
                Target::Meta => Group::Meta,
                Target::Shard(s) => Group::Shard(*s),
                Target::Key(_) | Target::Home => Group::Shard(0),
            });
        };
        match target {
            Target::Meta => Ok(Group::Meta),
            Target::Key(key) => Ok(Group::Shard(table.shard_of(key))),
            Target::Home => Ok(Group::Shard(table.shard_of(self.inner.config.namespace.as_bytes()))),
            Target::Shard(s) if *s < table.shard_count => Ok(Group::Shard(*s)),
            Target::Shard(s) => Err(Error::UnknownShard {
                message: format!("shard {s} does not exist: the cluster has {} shard(s)", table.shard_count),
            }),
        }
    }

    /// The home shard: where the game services (registry, boards, elections) live.
    pub async fn home_shard(&self) -> Result<u32, Error> {
        let table = self.routing().await?;
        Ok(self.resolve(&Target::Home, Some(&table))?.shard_id())
    }

    pub(crate) fn first_target(&self, group: Group, route: &Route, table: Option<&RoutingTable>) -> Node {
        let skipped = self.inner.health.skipped(tokio::time::Instant::now());
        let t = self.read_table();
        choose(&t.nodes, &t.leaders, table, group, route, &skipped)
    }

    fn next_after(&self, group: Group, table: Option<&RoutingTable>, endpoint: &str) -> Node {
        let skipped = self.inner.health.skipped(tokio::time::Instant::now());
        let t = self.read_table();
        let candidates = candidates(&t.nodes, table, group, &skipped);
        after(&candidates, endpoint).unwrap_or(&t.nodes[0]).clone()
    }

    pub(crate) fn remember_leader(&self, group: Group, endpoint: &str) {
        let mut table = self.write_table();
        if table.leaders.get(&group).map(String::as_str) != Some(endpoint) {
            table.leaders.insert(group, endpoint.to_string());
        }
    }

    /// Follows a leader hint received outside the retry loop (in a stream): later requests and
    /// reconnects for `group` go there. An invalid endpoint is ignored (logged).
    pub(crate) fn learn_leader(&self, group: Group, endpoint: &str) {
        match self.node_for(endpoint, true) {
            Ok(node) => self.remember_leader(group, &node.endpoint),
            Err(_) => tracing::warn!(leader = %endpoint, "server named an invalid leader endpoint"),
        }
    }

    pub(crate) fn forget_leader(&self, group: Group, endpoint: &str) {
        let mut table = self.write_table();
        if table.leaders.get(&group).map(String::as_str) == Some(endpoint) {
            table.leaders.remove(&group);
        }
    }

    /// The node for `endpoint`, creating a channel if it is not in the table. With `learn`, the
    /// new node joins the table (bounded) so later requests and retries can use it.
    pub(crate) fn node_for(&self, endpoint: &str, learn: bool) -> Result<Node, Error> {
        if let Some(node) = self.read_table().nodes.iter().find(|n| n.endpoint == endpoint) {
            return Ok(node.clone());
        }
        validate_endpoint(endpoint)?;
        let channel = make_channel(endpoint, &self.inner.config)?;
        let node = Node { endpoint: endpoint.to_string(), channel, origin: Origin::Learned };
        if learn {
            let mut table = self.write_table();
            if let Some(existing) = table.nodes.iter().find(|n| n.endpoint == endpoint) {
                return Ok(existing.clone());
            }
            if table.nodes.iter().filter(|n| n.origin == Origin::Learned).count() < MAX_LEARNED_ENDPOINTS {
                table.nodes.push(node.clone());
            }
        }
        Ok(node)
    }

    /// Makes the routing table's nodes part of the endpoint table: seeds stay first, nodes that
    /// left the table are dropped (unless seeds), channels of known endpoints are reused.
    pub(crate) fn adopt_endpoints(&self, routing: &RoutingTable) {
        let config = &self.inner.config;
        let mut table = self.write_table();
        let mut nodes: Vec<Node> = table.nodes.iter().filter(|n| n.origin == Origin::Seed).cloned().collect();
        for member in routing.nodes.values() {
            let endpoint = member.endpoint.as_str();
            if nodes.iter().any(|n| n.endpoint == endpoint) || validate_endpoint(endpoint).is_err() {
                continue;
            }
            let channel = match table.nodes.iter().find(|n| n.endpoint == endpoint) {
                Some(known) => known.channel.clone(),
                None => match make_channel(endpoint, config) {
                    Ok(channel) => channel,
                    Err(_) => continue,
                },
            };
            nodes.push(Node { endpoint: endpoint.to_string(), channel, origin: Origin::Routing });
        }
        for learned in table.nodes.iter().filter(|n| n.origin == Origin::Learned) {
            if !nodes.iter().any(|n| n.endpoint == learned.endpoint) {
                nodes.push(learned.clone());
            }
        }
        table.nodes = nodes;
    }

    /// Runs one operation with routing, redirects, retries and the overall deadline
    /// (`request_timeout`).
    ///
    /// `call` performs one attempt on a channel for a shard with the time left; it must put the
    /// shard id in its request and set the time on it (`Request::set_timeout`) so the server
    /// and tonic give up too.
    pub(crate) async fn execute<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        target: Target,
        route: Route,
        call: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Channel, u32, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let timeouts = (self.inner.config.request_timeout, self.inner.config.attempt_timeout);
        self.run(op, kind, target, route, timeouts, call).await.map(|(_, response)| response)
    }

    /// [`execute`](Self::execute) with an explicit deadline for the whole operation (long polls
    /// such as `Campaign`), also returning the endpoint that answered (streams remember it to
    /// move elsewhere when they break). A stream opener must *not* set the time left on its
    /// request, or the stream would be cut at the deadline; the deadline then only bounds the
    /// wait for the response headers. A long poll legitimately waits, so the per-attempt
    /// timeout is the deadline here.
    pub(crate) async fn execute_with<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        target: Target,
        route: Route,
        timeout: Duration,
        call: F,
    ) -> Result<(String, T), Error>
    where
        F: FnMut(Channel, u32, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.run(op, kind, target, route, (timeout, timeout), call).await
    }

    /// The retry loop under the operation's deadline; `timeouts` is (deadline, per attempt).
    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        target: Target,
        route: Route,
        timeouts: (Duration, Duration),
        call: F,
    ) -> Result<(String, T), Error>
    where
        F: FnMut(Channel, u32, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let progress = Mutex::new(Progress::default());
        let attempts = self.retry_loop(op, kind, target, route, timeouts, call, &progress);
        match tokio::time::timeout(timeouts.0, attempts).await {
            Ok(result) => result,
            Err(_elapsed) => Err(deadline_error(op, kind, timeouts.0, &lock(&progress))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn retry_loop<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        target: Target,
        route: Route,
        (timeout, attempt_timeout): (Duration, Duration),
        mut call: F,
        progress: &Mutex<Progress>,
    ) -> Result<(String, T), Error>
    where
        F: FnMut(Channel, u32, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let config = &self.inner.config;
        let deadline = tokio::time::Instant::now() + timeout;
        // The meta group needs no table, but uses a cached one for its leader hint.
        let mut table = match target {
            Target::Meta => self.inner.routing.current(),
            _ => Some(self.routing_until(deadline, progress).await?),
        };
        let mut group = self.resolve(&target, table.as_deref())?;
        let mut node = self.first_target(group, &route, table.as_deref());
        let mut retries = 0u32;
        let mut last_error = String::new();
        // Endpoints that failed during this operation. Right after a leader dies, followers keep
        // naming it until they elect a new one; following those stale redirects without a pause
        // would spend the attempt budget in a few milliseconds, long before the election ends.
        let mut failed: Vec<String> = Vec::new();
        for attempt in 1..=config.max_attempts {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(deadline_error(op, kind, timeout, &lock(progress)));
            }
            {
                let mut p = lock(progress);
                p.attempts = attempt;
                p.endpoint.clone_from(&node.endpoint);
                p.in_flight = true;
            }
            let limit = remaining.min(attempt_timeout);
            let status = match tokio::time::timeout(limit, call(node.channel.clone(), group.shard_id(), limit)).await {
                Ok(Ok(response)) => {
                    self.inner.health.answered(&node.endpoint);
                    if route == Route::Leader {
                        self.remember_leader(group, &node.endpoint);
                    }
                    return Ok((node.endpoint, response.into_inner()));
                }
                Ok(Err(status)) if !timed_out(&status) => {
                    if hypercache_proto::error_info::info_of(&status).is_some() {
                        self.inner.health.answered(&node.endpoint);
                    }
                    status
                }
                _no_answer_in_time => {
                    // Silence, not an error: the node may be frozen with our request in its
                    // socket buffer. Stop waiting on it (and on it as this group's leader).
                    self.inner.health.unresponsive(&node.endpoint, tokio::time::Instant::now());
                    self.forget_leader(group, &node.endpoint);
                    Status::deadline_exceeded(format!("no answer within the {limit:?} attempt timeout"))
                }
            };
            let delivery = delivery_of(&status);
            last_error = format!("{}: {}", node.endpoint, describe(&status, delivery));
            {
                let mut p = lock(progress);
                p.in_flight = false;
                p.last_error = Some(last_error.clone());
            }
            tracing::debug!(op, attempt, endpoint = %node.endpoint, shard = group.shard_id(), error = %last_error, "attempt failed");
            let decision = classify(&status, kind, delivery);
            // A tracked write is retried whatever happened; remember whether this attempt may
            // have taken effect, so giving up reports an unknown outcome, not a failure.
            if kind == OpKind::Tracked && classify(&status, OpKind::Write, delivery) == Decision::OutcomeUnknown {
                lock(progress).maybe_applied = true;
            }
            let refresh = matches!(decision, Decision::Reroute)
                || (wants_refresh(&status) && table.as_ref().is_some_and(|t| !t.is_legacy()));
            if refresh && table.is_some() {
                // The table was wrong about this shard: ask the node that just answered for its
                // table (coalesced with other callers), then route again.
                let seen = self.routing_generation();
                self.refresh_from(seen, &node.endpoint, deadline).await;
                table = self.inner.routing.current().or(table);
                group = self.resolve(&target, table.as_deref())?;
            }
            match decision {
                Decision::Fail(err) => {
                    let by_shard = hypercache_proto::error_info::info_of(&status).is_some();
                    return Err(give_up(err, kind, lock(progress).maybe_applied, by_shard));
                }
                Decision::OutcomeUnknown => {
                    return Err(Error::OutcomeUnknown {
                        message: format!("{op} sent to {last_error}; it may or may not have been applied"),
                    })
                }
                Decision::Redirect(leader)
                    if leader != node.endpoint
                        && !failed.contains(&leader)
                        && !self.inner.health.is_skipped(&leader, tokio::time::Instant::now()) =>
                {
                    match self.node_for(&leader, true) {
                        Ok(next) => {
                            self.remember_leader(group, &next.endpoint);
                            node = next;
                            continue;
                        }
                        Err(_) => {
                            tracing::warn!(op, leader = %leader, "server named an invalid leader endpoint");
                            node = self.next_after(group, table.as_deref(), &node.endpoint);
                        }
                    }
                }
                // A redirect to itself or to a node that already failed: pause, try the next.
                Decision::Redirect(_) | Decision::Reroute => {
                    self.forget_leader(group, &node.endpoint);
                    node = self.next_after(group, table.as_deref(), &node.endpoint);
                }
                Decision::Retry => {
                    if !failed.contains(&node.endpoint) {
                        failed.push(node.endpoint.clone());
                    }
                    self.forget_leader(group, &node.endpoint);
                    node = self.next_after(group, table.as_deref(), &node.endpoint);
                }
            }
            if attempt < config.max_attempts {
                retries += 1;
                let jitter = rand::thread_rng().gen::<f64>();
                tokio::time::sleep(backoff_delay(retries, config.backoff_base, config.backoff_max, jitter)).await;
            }
        }
        let message = format!("{op} gave up after {} attempts; last error from {last_error}", config.max_attempts);
        if lock(progress).maybe_applied {
            return Err(Error::OutcomeUnknown { message: format!("{message}; an attempt may have been applied") });
        }
        Err(Error::Unavailable { message })
    }

    /// One attempt against exactly `endpoint`: no redirect, no retry. Used to inspect a node.
    pub(crate) async fn single<T, Fut>(
        &self,
        op: &'static str,
        endpoint: &str,
        call: impl FnOnce(Channel, Duration) -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let node = self.node_for(endpoint, false)?;
        let timeout = self.inner.config.request_timeout;
        let status = match tokio::time::timeout(timeout, call(node.channel, timeout)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => {
                return Err(Error::DeadlineExceeded {
                    message: format!("{op} on {endpoint}: no answer within {timeout:?}"),
                })
            }
        };
        let delivery = delivery_of(&status);
        let described = describe(&status, delivery);
        let info = hypercache_proto::error_info::info_of(&status);
        let not_leader = info.as_ref().is_some_and(|i| i.reason == "NOT_LEADER");
        Err(match classify(&status, OpKind::Read, delivery) {
            Decision::Fail(err) => err,
            Decision::Redirect(leader) => {
                Error::NotLeader { endpoint: endpoint.to_string(), leader_endpoint: Some(leader), message: described }
            }
            Decision::Retry if not_leader => {
                Error::NotLeader { endpoint: endpoint.to_string(), leader_endpoint: None, message: described }
            }
            // Asked one node on purpose: that it does not host the shard is the answer.
            Decision::Reroute => Error::UnknownShard { message: format!("{op} on {endpoint}: {described}") },
            Decision::Retry | Decision::OutcomeUnknown => {
                Error::Unavailable { message: format!("{op} on {endpoint}: {described}") }
            }
        })
    }
}

/// The error for an operation whose deadline passed: a write (idempotent or not) with an attempt
/// in flight may have been applied; otherwise nothing took effect.
pub(crate) fn deadline_error(op: &str, kind: OpKind, timeout: Duration, p: &Progress) -> Error {
    if (p.in_flight || p.maybe_applied) && kind != OpKind::Read {
        Error::OutcomeUnknown {
            message: format!(
                "{op} sent to {} got no answer within the {timeout:?} deadline (attempt {}); \
                 it may or may not have been applied",
                p.endpoint, p.attempts
            ),
        }
    } else {
        let last = p.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default();
        Error::DeadlineExceeded {
            message: format!(
                "{op} did not complete within {timeout:?} after {} attempt(s), last on {}{last}",
                p.attempts, p.endpoint
            ),
        }
    }
}

pub(crate) fn make_channel(endpoint: &str, config: &ClientConfig) -> Result<Channel, Error> {
    let uri = format!("http://{endpoint}");
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::config(format!("invalid endpoint {endpoint:?}: {e}")))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // A node that vanished (a pod replaced under the same name with a new IP) leaves a
        // connection nobody answers; pings find it within seconds so the channel reconnects and
        // resolves the name again, instead of waiting minutes for TCP to give up.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// A one-line description of a failed attempt, including the transport cause (e.g.
/// "Connection refused") that tonic keeps in the source chain.
pub(crate) fn describe(status: &Status, delivery: Delivery) -> String {
    let mut text = if delivery == Delivery::NotSent {
        format!("could not connect ({})", status.message())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::routing::tests::response;

    fn table() -> RoutingTable {
        RoutingTable::from_wire(response(2, 1)).expect("ready")
    }

    #[tokio::test]
    async fn the_routing_tables_nodes_join_the_endpoint_table_and_seeds_stay() {
        let client = Client::new(ClientConfig::new(["seed:1", "n1:7000"])).expect("client");
        client.node_for("learned:1", true).expect("valid");
        client.adopt_endpoints(&table());
        assert_eq!(client.endpoints(), vec!["seed:1", "n1:7000", "n2:7000", "n3:7000", "learned:1"]);
        let home = client.resolve(&Target::Home, Some(&table())).expect("home");
        assert_eq!(home, Group::Shard(hypercache_proto::routing::Router::new(2).shard_of(b"hypercache")));
        let err = client.resolve(&Target::Shard(2), Some(&table())).expect_err("two shards");
        assert!(matches!(err, Error::UnknownShard { .. }), "{err:?}");
    }
}
