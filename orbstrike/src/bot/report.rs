//! What the bot measures, and the report it prints.
//!
//! Counters are shared atomics; latency samples are kept per player (a bounded reservoir, so a
//! long run keeps a uniform sample in fixed memory) and merged at the end. Percentiles use the
//! nearest-rank method on the sorted samples: p50 of [1, 2, 3, 4] is 2, p99 of 100 samples is
//! the 99th smallest.
//!
//! Input-to-update latency: the time from sending input `seq` to the first update whose
//! `ack_seq >= seq`; it includes the wait for the next tick, so its floor is about half a tick.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hypercache_proto::poison::lock;
use rand::Rng;
use serde::Serialize;

/// Samples kept per player.
pub const SAMPLES_PER_PLAYER: usize = 20_000;

/// The nearest-rank `p`-th percentile (0 < p <= 100) of ascending `sorted`; `None` if empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps float noise (99.9 / 100 * 1000 = 999.0000000000001) from adding a rank.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil();
    let index = if rank.is_finite() && rank >= 1.0 { (rank as usize).min(sorted.len()) - 1 } else { 0 };
    Some(sorted[index])
}

/// A uniform sample of at most `cap` values (Vitter's algorithm R).
#[derive(Debug, Clone)]
pub struct Reservoir {
    cap: usize,
    seen: u64,
    values: Vec<u64>,
}

impl Reservoir {
    pub fn new(cap: usize) -> Reservoir {
        Reservoir { cap: cap.max(1), seen: 0, values: Vec::new() }
    }

    pub fn add(&mut self, value: u64, rng: &mut impl Rng) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(value);
        } else {
            let slot = rng.gen_range(0..self.seen);
            if let Some(v) = usize::try_from(slot).ok().and_then(|s| self.values.get_mut(s)) {
                *v = value;
            }
        }
    }

    pub fn into_values(self) -> Vec<u64> {
        self.values
    }
}

/// Counters shared by every player task.
#[derive(Debug, Default)]
pub struct Recorder {
    pub games: AtomicU64,
    pub joins: AtomicU64,
    pub updates: AtomicU64,
    pub inputs: AtomicU64,
    pub reroutes: AtomicU64,
    pub reconnects: AtomicU64,
    pub game_overs: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Recorder {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error as `{operation}:{kind}` (kinds are gRPC code names: a bounded set).
    pub fn error(&self, operation: &str, status: &tonic::Status) {
        let key = format!("{operation}:{:?}", status.code());
        let mut errors = lock(&self.errors);
        *errors.entry(key).or_default() += 1;
    }

    pub fn report(&self, elapsed: Duration, players: u64, mut latencies_us: Vec<u64>) -> Report {
        latencies_us.sort_unstable();
        let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        Report {
            duration_s: elapsed.as_secs_f64(),
            games: get(&self.games),
            players,
            joins: get(&self.joins),
            updates: get(&self.updates),
            updates_per_second: get(&self.updates) as f64 / secs,
            inputs_sent: get(&self.inputs),
            latency_ms: Latency {
                samples: latencies_us.len() as u64,
                p50: ms(percentile(&latencies_us, 50.0)),
                p99: ms(percentile(&latencies_us, 99.0)),
                max: ms(latencies_us.last().copied()),
            },
            reroutes: get(&self.reroutes),
            reconnects: get(&self.reconnects),
            game_overs: get(&self.game_overs),
            errors: lock(&self.errors).clone(),
        }
    }
}

/// Input-to-update latency, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// The result of a bot run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub duration_s: f64,
    /// Games created (or joined).
    pub games: u64,
    pub players: u64,
    /// Successful JoinGame calls (first joins and rejoins after game over).
    pub joins: u64,
    pub updates: u64,
    pub updates_per_second: f64,
    pub inputs_sent: u64,
    pub latency_ms: Latency,
    /// Full snapshots received mid-stream: the orchestrator re-routed a stream to a new owner.
    pub reroutes: u64,
    /// Play streams re-opened by the bot (an orchestrator ended one with UNAVAILABLE).
    pub reconnects: u64,
    pub game_overs: u64,
    /// Errors by `operation:code`.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// A short human-readable summary.
    pub fn text(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let mut out = format!(
            "duration {:.1} s, {} games, {} players, {} joins\n\
             updates {} ({:.0}/s), inputs sent {}\n\
             input->update latency ms: p50 {} p99 {} max {} ({} samples)\n\
             re-routes {}, reconnects {}, game overs {}\n",
            self.duration_s,
            self.games,
            self.players,
            self.joins,
            self.updates,
            self.updates_per_second,
            self.inputs_sent,
            f(self.latency_ms.p50),
            f(self.latency_ms.p99),
            f(self.latency_ms.max),
            self.latency_ms.samples,
            self.reroutes,
            self.reconnects,
            self.game_overs,
        );
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            out.push_str("errors:\n");
            for (kind, n) in &self.errors {
                out.push_str(&format!("  {kind}: {n}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 75.0), Some(3));
        assert_eq!(percentile(&[1, 2, 3, 4], 100.0), Some(4));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 0.0), Some(1));
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 99.0), Some(990));
        assert_eq!(percentile(&thousand, 99.9), Some(999));
    }

    #[test]
    fn the_reservoir_stays_bounded_and_uniform_enough() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut r = Reservoir::new(1000);
        for v in 0..100_000u64 {
            r.add(v, &mut rng);
        }
        let mut values = r.into_values();
        assert_eq!(values.len(), 1000);
        values.sort_unstable();
        let median = percentile(&values, 50.0).unwrap();
        assert!((40_000..60_000).contains(&median), "median {median} of a uniform 0..100000 sample");
    }

    #[test]
    fn the_report_summarises() {
        let r = Recorder::default();
        Recorder::count(&r.updates);
        Recorder::count(&r.updates);
        r.error("join", &tonic::Status::resource_exhausted("full"));
        let report = r.report(Duration::from_secs(2), 3, vec![3000, 1000, 2000]);
        assert_eq!(report.updates_per_second, 1.0);
        assert_eq!(report.latency_ms.p50, Some(2.0));
        assert_eq!(report.latency_ms.max, Some(3.0));
        assert_eq!(report.errors.get("join:ResourceExhausted"), Some(&1));
        assert!(report.text().contains("join:ResourceExhausted: 1"));
        assert!(serde_json::to_string(&report).unwrap().contains("\"updates\":2"));
    }
}
