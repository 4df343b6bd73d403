//! [`LeaseKeeper`]: keeps one lease alive in the background and says, at every moment, until
//! when the holder may rely on it.
//!
//! # Safety contract
//!
//! A keepalive sent at instant `t` and answered with `ttl_ms > 0` proves the lease lives at
//! least until `t + ttl` (the server measures from the same send). The keeper records `t` when
//! it hands the keepalive to the transport (no later than the real send) and publishes
//! `deadline = t + ttl`, never a time computed from when the answer *arrived*: a slow answer
//! shortens the vouched window instead of stretching it past what the server promised.
//! The deadline never moves backwards.
//!
//! Holders **self-fence** at `deadline - margin` ([`LeaseKeeper::is_safe`]): the margin covers
//! clock-rate differences and the time between checking and acting. Once
//! [`LeaseState::Lost`] is published it is final; a new lease is needed.
//!
//! # How it renews
//!
//! Over one bidirectional `Lease.KeepAlive` stream to the leader of the lease's shard (encoded in
//! its id), one keepalive in flight at a time, the next one a third of the TTL after the
//! previous was sent, so two more attempts fit before the deadline if one fails. An answer that does not come within half the TTL (or the
//! request timeout), a broken stream, or `NOT_LEADER` / `NO_LEADER` / connection loss make it
//! reconnect (following the leader hint, with backoff); the first keepalive of each stream is
//! queued with the call itself. It reports the lease lost when
//! - the server answers `ttl_ms = 0` or `LEASE_NOT_FOUND` ([`LostReason::Gone`]),
//! - the vouched deadline passes without a successful renewal ([`LostReason::DeadlinePassed`]),
//!   even if an answer might still arrive: the holder has already had to stop,
//! - a non-transient error ends it ([`LostReason::Failed`]), or it is stopped or dropped
//!   ([`LostReason::Stopped`]).

use std::time::Duration;

use hypercache_proto::v1 as pb;
use hypercache_proto::Reason;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout_at, Instant};
use tonic::codec::Streaming;

use crate::client::Client;
use crate::error::Error;
use crate::lease::Lease;
use crate::retry::OpKind;
use crate::stream::{classify_break, reconnect_delay, Next};
use crate::target::{Group, Route, Target};
use crate::types::{duration_ms, LeaseId};

/// What a [`LeaseKeeper`] can vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease lives at least until `deadline`.
    Alive { deadline: Instant },
    /// Final: the keeper no longer vouches for the lease. `last_deadline` is the last deadline it
    /// vouched for (the lease may have lived until then, no longer).
    Lost { reason: LostReason, last_deadline: Instant },
}

/// Why a [`LeaseKeeper`] stopped vouching for its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The server said the lease no longer exists (expired or revoked).
    Gone,
    /// The vouched deadline passed before a renewal succeeded.
    DeadlinePassed,
    /// A non-transient error (e.g. the lease service is not served).
    Failed(Error),
    /// The keeper was stopped or dropped.
    Stopped,
}

impl LeaseState {
    /// The deadline currently (or last) vouched for.
    pub fn deadline(&self) -> Instant {
        match self {
            LeaseState::Alive { deadline } => *deadline,
            LeaseState::Lost { last_deadline, .. } => *last_deadline,
        }
    }

    pub fn is_lost(&self) -> bool {
        matches!(self, LeaseState::Lost { .. })
    }

    /// True when the lease is alive and `now + margin` is before the deadline.
    pub fn is_safe_at(&self, now: Instant, margin: Duration) -> bool {
        matches!(self, LeaseState::Alive { deadline } if now + margin < *deadline)
    }
}

/// Keeps a lease alive from a background task until stopped, dropped, or lost.
#[derive(Debug)]
pub struct LeaseKeeper {
    client: Client,
    id: LeaseId,
    state: watch::Receiver<LeaseState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts keeping `lease` (as returned by [`Client::grant`], or by a registration) alive.
    /// Must be called inside a Tokio runtime.
    pub fn spawn(client: Client, lease: Lease) -> Result<LeaseKeeper, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("LeaseKeeper::spawn must be called inside a Tokio runtime"))?;
        let (state_tx, state) = watch::channel(LeaseState::Alive { deadline: lease.deadline });
        let (stop, stop_rx) = oneshot::channel();
        let sent = lease.deadline.checked_sub(lease.ttl).unwrap_or_else(Instant::now);
        let driver = Driver {
            client: client.clone(),
            id: lease.id,
            state: state_tx,
            deadline: lease.deadline,
            ttl: lease.ttl,
            next_due: sent + interval(lease.ttl),
            failures: 0,
        };
        let task = runtime.spawn(driver.run(stop_rx));
        Ok(LeaseKeeper { client, id: lease.id, state, stop: Some(stop), task: Some(task) })
    }

    /// Starts keeping an existing lease alive, known only by id: renews it once first (so there
    /// is a deadline to vouch for). A lease that no longer exists is a `Rejected` error with
    /// reason `LEASE_NOT_FOUND`.
    pub async fn start(client: Client, id: LeaseId) -> Result<LeaseKeeper, Error> {
        match client.keep_alive_once(id).await? {
            Some(lease) => LeaseKeeper::spawn(client, lease),
            None => Err(lease_gone(id)),
        }
    }

    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The last vouched deadline (see the module documentation).
    pub fn deadline(&self) -> Instant {
        self.state.borrow().deadline()
    }

    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every renewal and the final loss.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// True while the holder may act on the lease: alive, and `margin` before the deadline.
    pub fn is_safe(&self, margin: Duration) -> bool {
        self.state.borrow().is_safe_at(Instant::now(), margin)
    }

    /// Waits until the lease is lost and returns the final state.
    pub async fn lost(&self) -> LeaseState {
        let mut state = self.state.clone();
        let lost = state.wait_for(LeaseState::is_lost).await.map(|s| s.clone());
        // The driver always publishes `Lost` before it ends; a closed channel without it would
        // mean the task panicked, which is a loss all the same.
        lost.unwrap_or_else(|_| LeaseState::Lost {
            reason: LostReason::Failed(Error::Internal { message: "lease keeper task ended".into() }),
            last_deadline: self.deadline(),
        })
    }

    /// Stops renewing (the lease then expires on its own) and returns the final state.
    pub async fn stop(mut self) -> LeaseState {
        self.halt().await;
        self.state()
    }

    /// Stops renewing and revokes the lease (deleting what is attached to it); returns the
    /// number of keys deleted.
    pub async fn stop_and_revoke(mut self) -> Result<u64, Error> {
        self.halt().await;
        self.client.revoke(self.id).await
    }

    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

pub(crate) fn lease_gone(id: LeaseId) -> Error {
    let info = pb::ErrorInfo { reason: Reason::LeaseNotFound.into(), not_applied: true, ..Default::default() };
    Error::Rejected {
        code: tonic::Code::NotFound,
        reason: Reason::LeaseNotFound,
        message: format!("lease {id} does not exist (expired or revoked)"),
        info: Box::new(info),
    }
}

/// The TTL and deadline a keepalive sent at `sent` and answered with `ttl_ms` vouches for;
/// `None` when the answer says the lease is gone.
pub(crate) fn renewal(sent: Instant, ttl_ms: i64) -> Option<(Duration, Instant)> {
    (ttl_ms > 0).then(|| {
        let ttl = duration_ms(ttl_ms);
        (ttl, sent + ttl)
    })
}

/// Time from one keepalive to the next: a third of the TTL, so two more fit before the deadline.
pub(crate) fn interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(1))
}

/// How long an answer may take before the stream is given up and reopened.
pub(crate) fn response_wait(ttl: Duration, request_timeout: Duration) -> Duration {
    (ttl / 2).min(request_timeout).max(Duration::from_millis(1))
}

/// Runs `fut` unless `deadline` comes first (`None`).
async fn before<F: std::future::Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        _ = sleep_until(deadline) => None,
    }
}

fn transient(err: &Error) -> bool {
    err.is_retryable() || matches!(err, Error::OutcomeUnknown { .. } | Error::Internal { .. })
}

/// One open keepalive stream.
struct KeepAliveStream {
    endpoint: String,
    requests: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    responses: Streaming<pb::LeaseKeepAliveResponse>,
    /// When the first keepalive was queued.
    sent: Instant,
}

struct Driver {
    client: Client,
    id: LeaseId,
    state: watch::Sender<LeaseState>,
    deadline: Instant,
    ttl: Duration,
    next_due: Instant,
    /// Consecutive failed streams or connection attempts.
    failures: u32,
}

impl Driver {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let reason = tokio::select! {
            biased;
            _ = &mut stop => LostReason::Stopped,
            reason = self.keep() => reason,
        };
        tracing::debug!(lease = %self.id, ?reason, "lease keeper stopped");
        self.state.send_replace(LeaseState::Lost { reason, last_deadline: self.deadline });
    }

    fn request(&self) -> pb::LeaseKeepAliveRequest {
        pb::LeaseKeepAliveRequest { shard_id: self.id.shard().0, id: self.id.0 }
    }

    /// Keepalives go to the shard encoded in the lease id.
    fn target(&self) -> Target {
        Target::Shard(self.id.shard())
    }

    fn group(&self) -> Group {
        Group::Shard(self.id.shard())
    }

    /// Renews until the lease is lost; returns why.
    async fn keep(&mut self) -> LostReason {
        loop {
            let mut resume_at = self.next_due;
            if self.failures > 0 {
                resume_at = resume_at.max(Instant::now() + reconnect_delay(&self.client, self.failures));
            }
            if before(self.deadline, sleep_until(resume_at)).await.is_none() {
                return LostReason::DeadlinePassed;
            }
            let lost = match before(self.deadline, self.open()).await {
                None => return LostReason::DeadlinePassed,
                Some(Ok(stream)) => self.drive(stream).await,
                Some(Err(err)) => self.judge(err),
            };
            if let Some(reason) = lost {
                return reason;
            }
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// `Some` when `err` ends the lease, `None` when another attempt may succeed.
    fn judge(&self, err: Error) -> Option<LostReason> {
        if err.is_reason(Reason::LeaseNotFound) {
            Some(LostReason::Gone)
        } else if transient(&err) {
            tracing::debug!(lease = %self.id, error = %err, "keepalive failed; retrying");
            None
        } else {
            Some(LostReason::Failed(err))
        }
    }

    /// Opens a stream to the leader with the first keepalive queued.
    async fn open(&self) -> Result<KeepAliveStream, Error> {
        let msg = self.request();
        let timeout = self.client.config().request_timeout;
        let (endpoint, (requests, responses, sent)) = self
            .client
            .execute_with("lease_keep_alive", OpKind::Idempotent, self.target(), Route::Leader, timeout, |ch, _, _| {
                let (tx, rx) = mpsc::channel(1);
                let sent = Instant::now();
                tx.try_send(msg).expect("a new channel has room for one message");
                let mut leases = self.client.leases(ch);
                async move {
                    let outbound =
                        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
                    let response = leases.keep_alive(outbound).await?;
                    Ok(response.map(|responses| (tx, responses, sent)))
                }
            })
            .await?;
        Ok(KeepAliveStream { endpoint, requests, responses, sent })
    }

    /// Renews over one stream until it breaks (`None`: reconnect) or the lease is lost.
    async fn drive(&mut self, mut stream: KeepAliveStream) -> Option<LostReason> {
        let mut sent = stream.sent;
        loop {
            let wait = response_wait(self.ttl, self.client.config().request_timeout);
            let answer = before(self.deadline, timeout_at(sent + wait, stream.responses.message())).await;
            match answer {
                None => return Some(LostReason::DeadlinePassed),
                Some(Err(_elapsed)) => {
                    tracing::debug!(lease = %self.id, endpoint = %stream.endpoint, ?wait, "no keepalive answer");
                    self.client.forget_leader(self.group(), &stream.endpoint);
                    return None;
                }
                Some(Ok(Ok(Some(response)))) => match renewal(sent, response.ttl_ms) {
                    None => return Some(LostReason::Gone),
                    Some((ttl, deadline)) => self.renewed(sent, ttl, deadline),
                },
                Some(Ok(Ok(None))) => return None,
                Some(Ok(Err(status))) => {
                    match classify_break::<()>(&self.client, self.group(), &stream.endpoint, &status) {
                        Next::Failed(err) => return self.judge(err),
                        Next::Broken(_) | Next::Message(()) => return None,
                    }
                }
            }
            if before(self.deadline, sleep_until(self.next_due)).await.is_none() {
                return Some(LostReason::DeadlinePassed);
            }
            sent = Instant::now();
            if stream.requests.send(self.request()).await.is_err() {
                return None;
            }
        }
    }

    fn renewed(&mut self, sent: Instant, ttl: Duration, deadline: Instant) {
        self.ttl = ttl;
        self.failures = 0;
        self.deadline = self.deadline.max(deadline);
        self.next_due = sent + interval(ttl);
        self.state.send_replace(LeaseState::Alive { deadline: self.deadline });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_is_measured_from_the_send() {
        let sent = Instant::now();
        assert_eq!(renewal(sent, 900), Some((Duration::from_millis(900), sent + Duration::from_millis(900))));
        assert_eq!(renewal(sent, 0), None, "ttl 0: the lease is gone");
        assert_eq!(renewal(sent, -1), None);
    }

    #[test]
    fn two_more_attempts_fit_before_the_deadline() {
        let ttl = Duration::from_millis(900);
        assert_eq!(interval(ttl), Duration::from_millis(300));
        assert_eq!(response_wait(ttl, Duration::from_secs(5)), Duration::from_millis(450));
        assert_eq!(response_wait(Duration::from_secs(60), Duration::from_secs(5)), Duration::from_secs(5));
        assert!(interval(Duration::ZERO) > Duration::ZERO);
    }

    #[test]
    fn safety_is_judged_against_the_deadline_minus_the_margin() {
        let now = Instant::now();
        let alive = LeaseState::Alive { deadline: now + Duration::from_millis(100) };
        assert!(alive.is_safe_at(now, Duration::from_millis(50)));
        assert!(!alive.is_safe_at(now, Duration::from_millis(100)));
        let lost = LeaseState::Lost { reason: LostReason::Gone, last_deadline: now + Duration::from_secs(9) };
        assert!(!lost.is_safe_at(now, Duration::ZERO));
        assert_eq!(lost.deadline(), now + Duration::from_secs(9));
    }
}
