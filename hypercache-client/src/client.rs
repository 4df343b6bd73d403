//! The [`Client`]: endpoint table, leader cache, and the retry loop every operation runs in.
//!
//! The endpoint table starts as the configured seed list and grows with leader endpoints learned
//! from NOT_LEADER redirects (at most [`MAX_LEARNED_ENDPOINTS`] of them). Each entry owns one
//! lazily connected tonic `Channel`; tonic multiplexes all concurrent requests over it and
//! re-resolves the host name whenever it reconnects.
//!
//! The lock around the table is a std `RwLock`: it is only held to look up or insert an entry,
//! never across an `.await`.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::config::{validate_endpoint, ClientConfig};
use crate::error::Error;
use crate::retry::{backoff_delay, classify, delivery_of, Decision, Delivery, OpKind};

/// HTTP/2 ping interval and the wait for its answer on every channel.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Learned (non-configured) endpoints kept in the table; more are used once and dropped.
pub(crate) const MAX_LEARNED_ENDPOINTS: usize = 32;

/// Where the first attempt of an operation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The cached leader, else the first endpoint; successes update the cache.
    Leader,
    /// The first configured endpoint (serializable reads); the cache is left alone.
    First,
    /// Streams any node can serve (watches): the cached leader unless it is `avoid` (the node a
    /// stream just broke on), else the endpoint after `avoid`, else the first. A success says
    /// nothing about leadership, so the cache is left alone.
    PreferLeader { avoid: Option<String> },
}

/// A HyperCache client. Cheap to clone (clones share channels and the leader cache).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    table: RwLock<Table>,
}

struct Table {
    nodes: Vec<Node>,
    leader: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) endpoint: String,
    pub(crate) channel: Channel,
}

/// What the retry loop has done so far, read when the overall deadline fires.
struct Progress {
    attempts: u32,
    endpoint: String,
    in_flight: bool,
    last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            .map(|e| Ok(Node { endpoint: e.clone(), channel: make_channel(e, &config)? }))
            .collect::<Result<Vec<_>, Error>>()?;
        let table = RwLock::new(Table { nodes, leader: None });
        Ok(Client { inner: Arc::new(Inner { config, table }) })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The endpoint believed to be the leader (the last one that served a leader request, or
    /// the last redirect target), if any.
    pub fn leader_hint(&self) -> Option<String> {
        self.read_table().leader.clone()
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.inner.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.inner.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn first_target(&self, route: &Route) -> Node {
        let table = self.read_table();
        let leader = || table.leader.as_ref().and_then(|l| table.nodes.iter().find(|n| &n.endpoint == l));
        let chosen = match route {
            Route::Leader => leader(),
            Route::First => None,
            Route::PreferLeader { avoid: None } => leader(),
            Route::PreferLeader { avoid: Some(avoid) } => leader().filter(|n| &n.endpoint != avoid).or_else(|| {
                let i = table.nodes.iter().position(|n| &n.endpoint == avoid)?;
                Some(&table.nodes[(i + 1) % table.nodes.len()])
            }),
        };
        chosen.unwrap_or(&table.nodes[0]).clone()
    }

    fn next_after(&self, endpoint: &str) -> Node {
        let table = self.read_table();
        let next = table.nodes.iter().position(|n| n.endpoint == endpoint).map_or(0, |i| (i + 1) % table.nodes.len());
        table.nodes[next].clone()
    }

    pub(crate) fn remember_leader(&self, endpoint: &str) {
        let mut table = self.write_table();
        if table.leader.as_deref() != Some(endpoint) {
            table.leader = Some(endpoint.to_string());
        }
    }

    /// Follows a leader hint received outside the retry loop (in a stream): later requests and
    /// reconnects go there. An invalid endpoint is ignored (logged).
    pub(crate) fn learn_leader(&self, endpoint: &str) {
        match self.node_for(endpoint, true) {
            Ok(node) => self.remember_leader(&node.endpoint),
            Err(_) => tracing::warn!(leader = %endpoint, "server named an invalid leader endpoint"),
        }
    }

    pub(crate) fn forget_leader(&self, endpoint: &str) {
        let mut table = self.write_table();
        if table.leader.as_deref() == Some(endpoint) {
            table.leader = None;
        }
    }

    /// The node for `endpoint`, creating a channel if it is not in the table. With `learn`, the
    /// new node joins the table (bounded) so later requests and retries can use it.
    pub(crate) fn node_for(&self, endpoint: &str, learn: bool) -> Result<Node, Error> {
        if let Some(node) = self.read_table().nodes.iter().find(|n| n.endpoint == endpoint) {
            return Ok(node.clone());
        }
        validate_endpoint(endpoint)?;
        let node = Node { endpoint: endpoint.to_string(), channel: make_channel(endpoint, &self.inner.config)? };
        if learn {
            let mut table = self.write_table();
            if let Some(existing) = table.nodes.iter().find(|n| n.endpoint == endpoint) {
                return Ok(existing.clone());
            }
            if table.nodes.len() < self.inner.config.endpoints.len() + MAX_LEARNED_ENDPOINTS {
                table.nodes.push(node.clone());
            }
        }
        Ok(node)
    }

    /// Runs one operation with redirects, retries and the overall deadline
    /// (`request_timeout`).
    ///
    /// `call` performs one attempt on a channel with the time left; it must set that time on
    /// the request (`Request::set_timeout`) so the server and tonic give up too.
    pub(crate) async fn execute<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        route: Route,
        call: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let timeout = self.inner.config.request_timeout;
        self.execute_with(op, kind, route, timeout, call).await.map(|(_, response)| response)
    }

    /// [`execute`](Self::execute) with an explicit deadline for the whole operation (long polls
    /// such as `Campaign`), also returning the endpoint that answered (streams remember it to
    /// move elsewhere when they break). A stream opener must *not* set the time left on its
    /// request, or the stream would be cut at the deadline; the deadline then only bounds the
    /// wait for the response headers.
    pub(crate) async fn execute_with<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        route: Route,
        timeout: Duration,
        call: F,
    ) -> Result<(String, T), Error>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let progress =
            Mutex::new(Progress { attempts: 0, endpoint: String::new(), in_flight: false, last_error: None });
        match tokio::time::timeout(timeout, self.retry_loop(op, kind, route, timeout, call, &progress)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(deadline_error(op, kind, timeout, &lock(&progress))),
        }
    }

    async fn retry_loop<T, F, Fut>(
        &self,
        op: &'static str,
        kind: OpKind,
        route: Route,
        timeout: Duration,
        mut call: F,
        progress: &Mutex<Progress>,
    ) -> Result<(String, T), Error>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let config = &self.inner.config;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut target = self.first_target(&route);
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
                p.endpoint.clone_from(&target.endpoint);
                p.in_flight = true;
            }
            let result = call(target.channel.clone(), remaining).await;
            let status = match result {
                Ok(response) => {
                    if route == Route::Leader {
                        self.remember_leader(&target.endpoint);
                    }
                    return Ok((target.endpoint, response.into_inner()));
                }
                Err(status) => status,
            };
            let delivery = delivery_of(&status);
            last_error = format!("{}: {}", target.endpoint, describe(&status, delivery));
            {
                let mut p = lock(progress);
                p.in_flight = false;
                p.last_error = Some(last_error.clone());
            }
            tracing::debug!(op, attempt, endpoint = %target.endpoint, error = %last_error, "attempt failed");
            match classify(&status, kind, delivery) {
                Decision::Fail(err) => return Err(err),
                Decision::OutcomeUnknown => {
                    return Err(Error::OutcomeUnknown {
                        message: format!("{op} sent to {last_error}; it may or may not have been applied"),
                    })
                }
                Decision::Redirect(leader) if leader != target.endpoint && !failed.contains(&leader) => {
                    match self.node_for(&leader, true) {
                        Ok(node) => {
                            self.remember_leader(&node.endpoint);
                            target = node;
                            continue;
                        }
                        Err(_) => {
                            tracing::warn!(op, leader = %leader, "server named an invalid leader endpoint");
                            target = self.next_after(&target.endpoint);
                        }
                    }
                }
                // A redirect to itself or to a node that already failed: pause, try the next.
                Decision::Redirect(_) => {
                    self.forget_leader(&target.endpoint);
                    target = self.next_after(&target.endpoint);
                }
                Decision::Retry => {
                    if !failed.contains(&target.endpoint) {
                        failed.push(target.endpoint.clone());
                    }
                    self.forget_leader(&target.endpoint);
                    target = self.next_after(&target.endpoint);
                }
            }
            if attempt < config.max_attempts {
                retries += 1;
                let jitter = rand::thread_rng().gen::<f64>();
                tokio::time::sleep(backoff_delay(retries, config.backoff_base, config.backoff_max, jitter)).await;
            }
        }
        Err(Error::Unavailable {
            message: format!("{op} gave up after {} attempts; last error from {last_error}", config.max_attempts),
        })
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
        let not_leader = hypercache_proto::error_info::info_of(&status).is_some_and(|i| i.reason == "NOT_LEADER");
        Err(match classify(&status, OpKind::Read, delivery) {
            Decision::Fail(err) => err,
            Decision::Redirect(leader) => {
                Error::NotLeader { endpoint: endpoint.to_string(), leader_endpoint: Some(leader), message: described }
            }
            Decision::Retry if not_leader => {
                Error::NotLeader { endpoint: endpoint.to_string(), leader_endpoint: None, message: described }
            }
            Decision::Retry | Decision::OutcomeUnknown => {
                Error::Unavailable { message: format!("{op} on {endpoint}: {described}") }
            }
        })
    }
}

/// The error for an operation whose deadline passed: a write (idempotent or not) with an attempt
/// in flight may have been applied; otherwise nothing took effect.
fn deadline_error(op: &str, kind: OpKind, timeout: Duration, p: &Progress) -> Error {
    if p.in_flight && kind != OpKind::Read {
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

fn make_channel(endpoint: &str, config: &ClientConfig) -> Result<Channel, Error> {
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
