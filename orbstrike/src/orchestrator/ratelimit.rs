//! Per-client token buckets for CreateGame.
//!
//! Each client (the `x-client-id` metadata if present, else the peer IP) has a bucket of `burst`
//! tokens refilled at `rate` per second; a create takes one. The limiter is per orchestrator, so
//! with R replicas behind a load balancer a client may create up to R x rate games per second:
//! a sharper global limit would need a store round trip per request, which placement at
//! hundreds of games per second cannot afford.
//!
//! Memory is bounded: past `max_clients` buckets, full (idle) buckets are forgotten, and if that
//! is not enough every bucket is forgotten (which errs towards admitting, never towards
//! refusing a well-behaved client). Time is an argument, so the maths is tested without sleeping.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Default bound on remembered clients.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// A refused request: the limit and when to try again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "create rate limit exceeded for client {client:?}: at most {rate} games/s (burst {burst}); retry in {} ms",
    retry_after.as_millis()
)]
pub struct RateLimited {
    pub client: String,
    pub rate: f64,
    pub burst: u32,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: u32,
    max_clients: usize,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// `rate` must be positive and finite and `burst` at least 1 (the config validates both).
    pub fn new(rate: f64, burst: u32, max_clients: usize) -> RateLimiter {
        RateLimiter { rate, burst: burst.max(1), max_clients: max_clients.max(1), buckets: HashMap::new() }
    }

    /// Takes one token from `client`'s bucket at `now`, or says how long until one is there.
    pub fn check(&mut self, client: &str, now: Instant) -> Result<(), RateLimited> {
        let burst = f64::from(self.burst);
        if !self.buckets.contains_key(client) && self.buckets.len() >= self.max_clients {
            self.evict(now);
        }
        let bucket = self.buckets.entry(client.to_string()).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - bucket.tokens;
        Err(RateLimited {
            client: client.to_string(),
            rate: self.rate,
            burst: self.burst,
            retry_after: Duration::from_secs_f64(missing / self.rate),
        })
    }

    /// Clients currently remembered.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }

    fn evict(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, f64::from(self.burst));
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        if self.buckets.len() >= self.max_clients {
            tracing::warn!(clients = self.buckets.len(), "rate limiter full of active clients; forgetting all buckets");
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(2.0, 3, 10);
        for _ in 0..3 {
            l.check("a", t0).unwrap();
        }
        let err = l.check("a", t0).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(500));
        assert!(err.to_string().contains("at most 2 games/s (burst 3)"), "{err}");
        // Another client has its own bucket.
        l.check("b", t0).unwrap();
        // Half a second later one token is back, not two.
        let t1 = t0 + Duration::from_millis(500);
        l.check("a", t1).unwrap();
        assert!(l.check("a", t1).is_err());
        // Long idle: refilled to the burst, never above it.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            l.check("a", t2).unwrap();
        }
        assert!(l.check("a", t2).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1.0, 1, 3);
        for c in ["a", "b", "c"] {
            l.check(c, t0).unwrap();
        }
        // All three are active (empty buckets): a fourth forces forgetting everyone.
        l.check("d", t0).unwrap();
        assert!(l.clients() <= 3);
        // Once the others are idle (refilled), only they are dropped.
        let later = t0 + Duration::from_secs(10);
        let mut l = RateLimiter::new(1.0, 1, 2);
        l.check("idle", t0).unwrap();
        l.check("busy", later).unwrap();
        l.check("new", later).unwrap();
        assert_eq!(l.clients(), 2);
        assert!(l.check("busy", later).is_err(), "the active bucket survived the eviction");
    }
}
