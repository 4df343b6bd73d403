//! The call machinery: how one operation becomes attempts on nodes, within one deadline.
//!
//! Every operation names a [`Target`] (a key, a shard, the home shard, or the meta group); the
//! routing table turns it into a [`Group`](crate::target::Group), whose leader is cached
//! separately (`endpoints.rs`). The first attempt goes to the group's cached leader, else the
//! table's leader hint, else its first replica ([`Route`]); retries walk the shard's replicas.
//! `UNKNOWN_SHARD` and `WRONG_SHARD` (both promise "not applied", so even writes are retried)
//! and `NO_LEADER` refresh the routing table (`refresh.rs`), then the shard is resolved again.
//! What each failure means for the next step is decided in `retry.rs`.
//!
//! Every attempt has its own timeout (`ClientConfig::attempt_timeout`), shorter than the
//! operation's deadline: a frozen node (SIGSTOP) accepts connections and never answers, and
//! without it one attempt would eat the whole deadline. An attempt that times out gives its
//! endpoint a strike in the health table (`health.rs`), which routing then avoids for a while;
//! a read moves on to the next replica at once, a write reports `OutcomeUnknown` (it may sit
//! in the frozen leader's socket buffer and be applied when the node resumes). A NOT_LEADER
//! redirect to a skipped endpoint is not followed. Serializable answers older than what the
//! client already saw of the shard are refused too (`freshness.rs`, in the operations' calls).
//!
//! Besides the retry loop this module holds what every request builder and the routing fetch
//! share: [`request`] (a message with its timeout), [`in_shard!`], the loop's [`Progress`] and
//! the errors built from it ([`deadline_error`], [`describe`]).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use hypercache_proto::poison::lock;
use hypercache_proto::Reason;
use rand::Rng;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::client::Client;
use crate::error::Error;
use crate::health::timed_out;
use crate::ids::ShardId;
use crate::retry::{backoff_delay, classify, delivery_of, give_up, wants_refresh, Decision, Delivery, OpKind};
use crate::target::{Route, Target};

/// `$msg` (a request message) with its `shard_id` set to `$shard` (a `ShardId`: the message is
/// where it becomes the wire's number).
macro_rules! in_shard {
    ($msg:expr, $shard:expr) => {{
        let mut msg = $msg;
        msg.shard_id = $shard.0;
        msg
    }};
}
pub(crate) use in_shard;

pub(crate) fn request<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
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

impl Client {
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
        F: FnMut(Channel, ShardId, Duration) -> Fut,
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
        F: FnMut(Channel, ShardId, Duration) -> Fut,
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
        F: FnMut(Channel, ShardId, Duration) -> Fut,
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
        F: FnMut(Channel, ShardId, Duration) -> Fut,
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
            tracing::debug!(op, attempt, endpoint = %node.endpoint, shard = group.shard_id().0, error = %last_error, "attempt failed");
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
        let not_leader = info.as_ref().is_some_and(|i| i.known_reason() == Some(Reason::NotLeader));
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
