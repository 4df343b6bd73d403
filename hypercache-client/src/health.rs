//! Endpoints that recently stopped answering, so that operations try the others first.
//!
//! A frozen node (SIGSTOP, a stalled VM, a swap storm) keeps its sockets: TCP connects succeed
//! and requests sit in its receive buffer until it runs again. Nothing fails fast, so the only
//! signal is silence: an attempt that gets no answer within the per-attempt timeout
//! (`ClientConfig::attempt_timeout`) gives the endpoint a *strike*. A struck endpoint is
//! *skipped* for a while: routing puts it after every other candidate, and a NOT_LEADER redirect
//! to it is not followed (the followers keep naming a frozen leader until they elect a new
//! one, which is exactly the window we want to ride out elsewhere). Any answer from the endpoint
//! (success or a server error) clears its strikes.
//!
//! The skip period doubles per consecutive strike, from [`FIRST_SKIP`] to [`MAX_SKIP`]. The
//! first period is longer than a Raft election with the server's default timings (0.6-1.2 s
//! election timeout), so a client does not go back to a frozen leader, wait a whole attempt
//! timeout again, and stretch the write gap while the cluster is electing its successor.
//!
//! Skipping only reorders: when every candidate is skipped, they are all tried anyway, so a
//! cluster whose nodes were all frozen at once is used again as soon as it answers.
//!
//! Decisions take the current instant as an argument (pure, tested without sleeping); the
//! table is a std `Mutex` held only to look up or update one entry, never across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hypercache_proto::poison::lock;
use tokio::time::Instant;

/// How long an endpoint is skipped after its first strike.
pub(crate) const FIRST_SKIP: Duration = Duration::from_secs(5);
/// The longest skip, however many strikes in a row.
pub(crate) const MAX_SKIP: Duration = Duration::from_secs(60);
/// Entries kept at most; the oldest skip is dropped beyond (endpoints are bounded by the
/// endpoint table anyway; this guards against a server naming endless leaders).
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Entry {
    strikes: u32,
    until: Instant,
}

/// The health table: endpoint -> strikes and the end of its skip period.
#[derive(Debug, Default)]
pub(crate) struct Health {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Health {
    /// `endpoint` did not answer an attempt in time: skip it until `now` + its skip period.
    pub(crate) fn unresponsive(&self, endpoint: &str, now: Instant) {
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(endpoint) {
            let oldest = entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(endpoint.to_string()).or_insert(Entry { strikes: 0, until: now });
        entry.strikes = entry.strikes.saturating_add(1);
        entry.until = now + skip_period(entry.strikes);
        tracing::debug!(endpoint, strikes = entry.strikes, "endpoint did not answer in time; skipping it for a while");
    }

    /// `endpoint` answered: it is used normally again.
    pub(crate) fn answered(&self, endpoint: &str) {
        let mut entries = lock(&self.entries);
        if entries.remove(endpoint).is_some() {
            tracing::debug!(endpoint, "endpoint answers again");
        }
    }

    /// True while `endpoint` is in its skip period.
    pub(crate) fn is_skipped(&self, endpoint: &str, now: Instant) -> bool {
        lock(&self.entries).get(endpoint).is_some_and(|e| e.until > now)
    }

    /// Every endpoint in its skip period at `now`.
    pub(crate) fn skipped(&self, now: Instant) -> Vec<String> {
        lock(&self.entries).iter().filter(|(_, e)| e.until > now).map(|(k, _)| k.clone()).collect()
    }
}

/// True when `status` is tonic's own expiry of the request's `grpc-timeout` (the channel
/// enforces it on the client side too, racing the attempt timer, which is set to the same
/// time): the endpoint did not answer in time, exactly like an elapsed attempt timer.
pub(crate) fn timed_out(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    status.code() == tonic::Code::Cancelled
        && status.message() == tonic::TimeoutExpired(()).to_string()
        && hypercache_proto::error_info::info_of(status).is_none()
}

/// The skip period after `strikes` consecutive strikes (1-based).
fn skip_period(strikes: u32) -> Duration {
    let doublings = strikes.saturating_sub(1).min(16);
    FIRST_SKIP.saturating_mul(1u32 << doublings).min(MAX_SKIP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_skip_for_doubling_periods_and_an_answer_clears_them() {
        let health = Health::default();
        let t0 = Instant::now();
        assert!(!health.is_skipped("a:1", t0));
        health.unresponsive("a:1", t0);
        assert!(health.is_skipped("a:1", t0 + FIRST_SKIP - Duration::from_millis(1)));
        assert!(!health.is_skipped("a:1", t0 + FIRST_SKIP), "the skip ends");
        assert_eq!(health.skipped(t0), vec!["a:1".to_string()]);

        // A second strike in a row doubles the period.
        let t1 = t0 + FIRST_SKIP;
        health.unresponsive("a:1", t1);
        assert!(health.is_skipped("a:1", t1 + FIRST_SKIP * 2 - Duration::from_millis(1)));
        assert!(!health.is_skipped("a:1", t1 + FIRST_SKIP * 2));
        for _ in 0..20 {
            health.unresponsive("a:1", t1);
        }
        assert!(!health.is_skipped("a:1", t1 + MAX_SKIP), "bounded by MAX_SKIP");

        health.answered("a:1");
        assert!(!health.is_skipped("a:1", t1));
        health.unresponsive("a:1", t1);
        assert!(!health.is_skipped("a:1", t1 + FIRST_SKIP), "strikes start over after an answer");
    }

    #[test]
    fn tonics_own_timeout_counts_as_no_answer() {
        let expired = tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string());
        assert!(timed_out(&expired));
        assert!(!timed_out(&tonic::Status::cancelled("the caller went away")));
        assert!(!timed_out(&tonic::Status::unavailable("connection reset")));
    }

    #[test]
    fn the_table_is_bounded() {
        let health = Health::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            health.unresponsive(&format!("n{i}:1"), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(health.skipped(t0).len(), MAX_ENTRIES);
        assert!(health.is_skipped(&format!("n{}:1", MAX_ENTRIES + 9), t0), "the newest is kept");
        assert!(!health.is_skipped("n0:1", t0), "the oldest went");
    }
}
