//! Per-operation statistics (HDR histograms and error counts) and the final report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::peers::System;
use crate::timeline::Gap;

/// Highest latency the histograms track (60 s); slower samples saturate to it.
const MAX_MICROS: u64 = 60_000_000;

/// Highest lag [`Lag`] tracks (10 min); later samples saturate.
const MAX_LAG_MICROS: u64 = 600_000_000;

/// What one worker (or the merged run) observed for one operation type.
pub struct OpStats {
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
    /// The first message seen per error kind, to tell an operator what went wrong.
    samples: BTreeMap<&'static str, String>,
}

impl OpStats {
    pub fn new() -> Self {
        let latency =
            Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds 1..60s with 3 digits are valid");
        OpStats { latency, errors: BTreeMap::new(), samples: BTreeMap::new() }
    }

    pub fn record_ok(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        self.latency.saturating_record(micros);
    }

    pub fn record_error(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        *self.errors.entry(kind).or_default() += 1;
        self.samples.entry(kind).or_insert_with(message);
    }

    pub fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, message) in &other.samples {
            self.samples.entry(kind).or_insert_with(|| message.clone());
        }
    }

    pub fn summary(&self, elapsed: Duration) -> OpSummary {
        let ops = self.latency.len();
        let secs = elapsed.as_secs_f64();
        let q = |quantile: f64| if ops == 0 { 0 } else { self.latency.value_at_quantile(quantile) };
        OpSummary {
            ops,
            errors: self.errors.values().sum(),
            errors_by_kind: self.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            error_samples: self.samples.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            throughput_ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if ops == 0 { 0 } else { self.latency.max() },
        }
    }
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Successful operations, errors by kind, throughput and latency quantiles of one op type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    pub ops: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// One example message per error kind.
    pub error_samples: BTreeMap<String, String>,
    pub throughput_ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// The whole run, as printed (text or `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub system: System,
    pub endpoints: Vec<String>,
    pub concurrency: usize,
    pub keys: u64,
    pub value_size: usize,
    pub get_ratio: f64,
    pub serializable: bool,
    pub elapsed_secs: f64,
    pub total_ops: u64,
    pub total_errors: u64,
    pub throughput_ops_per_sec: f64,
    pub put: OpSummary,
    pub get: OpSummary,
    /// The longest stretch of the measured phase in which no put completed (a leader change
    /// shows here, not in the quantiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_put_gap: Option<Gap>,
    /// With `--cpu`: what the measured phase cost the nodes and this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuCost>,
}

/// CPU time spent during a measured phase, from `/proc/<pid>/stat` (10 ms ticks).
#[derive(Debug, Clone, Serialize)]
pub struct CpuCost {
    pub window_secs: f64,
    /// The `hypercache serve` processes listening on the endpoints, in endpoint order (those
    /// not found on this machine are left out).
    pub node_pids: Vec<u32>,
    pub node_cpu_secs: Vec<f64>,
    pub nodes_cpu_secs: f64,
    /// This process: the client library, the workers and the runtime.
    pub hcbench_cpu_secs: f64,
    /// Successful operations per CPU-second of the nodes.
    pub ops_per_node_cpu_sec: f64,
    /// Successful operations per CPU-second of the nodes and hcbench together.
    pub ops_per_cpu_sec: f64,
    /// hcbench's CPU per request sent (successes and failures), in microseconds.
    pub hcbench_us_per_request: f64,
}

impl CpuCost {
    /// Adds up the samples; `ops` succeeded out of `requests` sent.
    pub fn new(
        window: Duration,
        node_pids: Vec<u32>,
        node_cpu_secs: Vec<f64>,
        own: f64,
        ops: u64,
        requests: u64,
    ) -> Self {
        let nodes: f64 = node_cpu_secs.iter().sum();
        let per = |n: u64, d: f64| if d > 0.0 { n as f64 / d } else { 0.0 };
        CpuCost {
            window_secs: window.as_secs_f64(),
            node_pids,
            node_cpu_secs,
            nodes_cpu_secs: nodes,
            hcbench_cpu_secs: own,
            ops_per_node_cpu_sec: per(ops, nodes),
            ops_per_cpu_sec: per(ops, nodes + own),
            hcbench_us_per_request: if requests > 0 { own * 1e6 / requests as f64 } else { 0.0 },
        }
    }

    pub fn to_text(&self) -> String {
        let nodes: Vec<String> = self.node_cpu_secs.iter().map(|s| format!("{s:.2}")).collect();
        format!(
            "cpu over {:.2}s: nodes {} s (sum {:.2} s, {:.0} % of one core), hcbench {:.2} s; \
             {:.0} ops per node CPU-second, {:.0} per CPU-second with hcbench; hcbench {:.1} us per request\n",
            self.window_secs,
            if nodes.is_empty() { "-".to_owned() } else { nodes.join(" / ") },
            self.nodes_cpu_secs,
            if self.window_secs > 0.0 { 100.0 * self.nodes_cpu_secs / self.window_secs } else { 0.0 },
            self.hcbench_cpu_secs,
            self.ops_per_node_cpu_sec,
            self.ops_per_cpu_sec,
            self.hcbench_us_per_request
        )
    }
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "hcbench: {} workers, {} keys, {}-byte values, get ratio {:.2}{}, {:.2}s against {:?} at {}",
            self.concurrency,
            self.keys,
            self.value_size,
            self.get_ratio,
            if self.serializable { " (serializable)" } else { "" },
            self.elapsed_secs,
            self.system,
            self.endpoints.join(",")
        );
        let _ = writeln!(
            s,
            "total: {} ops, {} errors, {:.1} ops/s",
            self.total_ops, self.total_errors, self.throughput_ops_per_sec
        );
        s.push_str(&op_table(&[("put", &self.put), ("get", &self.get)]));
        if let Some(gap) = &self.longest_put_gap {
            let _ =
                writeln!(s, "longest stretch without a put completing: {} ms, after {} ms", gap.len_ms, gap.after_ms);
        }
        if let Some(cpu) = &self.cpu {
            s.push_str(&cpu.to_text());
        }
        s
    }
}

/// The latency table (one row per operation type) followed, for each type that failed, by its
/// error counts and one example message per kind.
pub fn op_table(rows: &[(&str, &OpSummary)]) -> String {
    let w = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0).max(4);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "op", "ops", "errors", "ops/s", "p50(us)", "p99(us)", "p999(us)", "max(us)"
    );
    for (name, op) in rows {
        let _ = writeln!(
            s,
            "{:<w$} {:>10} {:>8} {:>11.1} {:>9} {:>9} {:>9} {:>9}",
            name, op.ops, op.errors, op.throughput_ops_per_sec, op.p50_us, op.p99_us, op.p999_us, op.max_us
        );
    }
    for (name, op) in rows {
        if !op.errors_by_kind.is_empty() {
            let kinds: Vec<String> = op.errors_by_kind.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "{name} errors: {}", kinds.join(" "));
            for (kind, message) in &op.error_samples {
                let _ = writeln!(s, "  e.g. {kind}: {message}");
            }
        }
    }
    s
}

/// Quantiles of a lag that may be negative: negative samples count as zero in the quantiles
/// and are reported by number and minimum.
#[derive(Debug, Clone, Serialize)]
pub struct LagSummary {
    pub samples: u64,
    pub below_zero: u64,
    pub min_us: i64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Signed lag samples in microseconds: `received - due`, where `due` may come after `received`
/// when it is only a bound on the true start (e.g. a write's acknowledgement).
pub struct Lag {
    histogram: Histogram<u64>,
    below_zero: u64,
    min_us: i64,
}

impl Default for Lag {
    fn default() -> Self {
        Self::new()
    }
}

impl Lag {
    pub fn new() -> Lag {
        let histogram =
            Histogram::new_with_bounds(1, MAX_LAG_MICROS, 3).expect("static bounds 1..600s with 3 digits are valid");
        Lag { histogram, below_zero: 0, min_us: i64::MAX }
    }

    pub fn record(&mut self, received: Instant, due: Instant) {
        let micros = match received.checked_duration_since(due) {
            Some(late) => i64::try_from(late.as_micros()).unwrap_or(i64::MAX),
            None => -i64::try_from(due.duration_since(received).as_micros()).unwrap_or(i64::MAX),
        };
        self.min_us = self.min_us.min(micros);
        if micros < 0 {
            self.below_zero += 1;
        }
        let clamped = u64::try_from(micros.max(1)).unwrap_or(1).min(MAX_LAG_MICROS);
        self.histogram.saturating_record(clamped);
    }

    pub fn summary(&self) -> LagSummary {
        let n = self.histogram.len();
        let q = |quantile| if n == 0 { 0 } else { self.histogram.value_at_quantile(quantile) };
        LagSummary {
            samples: n,
            below_zero: self.below_zero,
            min_us: if n == 0 { 0 } else { self.min_us },
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if n == 0 { 0 } else { self.histogram.max() },
        }
    }
}

/// A benchmark report as text, or as pretty JSON with `--json`.
pub fn render<R: Serialize>(report: R, json: bool, text: fn(&R) -> String) -> anyhow::Result<String> {
    if json {
        let mut s = serde_json::to_string_pretty(&report).context("encoding the report")?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(text(&report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_lags_are_counted_and_clamped() {
        let due = Instant::now() + Duration::from_secs(1);
        let mut lag = Lag::new();
        lag.record(due + Duration::from_millis(30), due);
        lag.record(due - Duration::from_millis(5), due);
        let s = lag.summary();
        assert_eq!((s.samples, s.below_zero), (2, 1));
        assert_eq!(s.min_us, -5_000);
        assert!((29_900..=30_100).contains(&s.max_us), "{}", s.max_us);
        assert_eq!(Lag::new().summary().min_us, 0);
    }

    #[test]
    fn quantiles_errors_and_merge() {
        let mut a = OpStats::new();
        for ms in 1..=100u64 {
            a.record_ok(Duration::from_millis(ms));
        }
        let mut b = OpStats::new();
        b.record_error("unavailable", || "first".into());
        b.record_error("unavailable", || "second".into());
        b.record_ok(Duration::from_secs(3600)); // saturates to the 60 s bound
        a.merge(&b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!(s.ops, 101);
        assert_eq!(s.errors, 2);
        assert_eq!(s.errors_by_kind["unavailable"], 2);
        assert_eq!(s.error_samples["unavailable"], "first");
        assert!((s.throughput_ops_per_sec - 50.5).abs() < 1e-9);
        assert!((49_000..=51_100).contains(&s.p50_us), "{}", s.p50_us);
        assert!(s.max_us >= 59_000_000);
    }

    #[test]
    fn cpu_cost_divides_by_the_right_totals() {
        let c = CpuCost::new(Duration::from_secs(10), vec![1, 2], vec![3.0, 1.0], 1.0, 10_000, 10_100);
        assert_eq!(c.nodes_cpu_secs, 4.0);
        assert_eq!(c.ops_per_node_cpu_sec, 2_500.0);
        assert_eq!(c.ops_per_cpu_sec, 2_000.0);
        assert!((c.hcbench_us_per_request - 99.0099).abs() < 1e-3);
        assert_eq!(CpuCost::new(Duration::ZERO, vec![], vec![], 0.0, 0, 0).ops_per_cpu_sec, 0.0);
    }

    #[test]
    fn empty_stats_report_zeros() {
        let s = OpStats::new().summary(Duration::ZERO);
        assert_eq!((s.ops, s.p50_us, s.max_us, s.throughput_ops_per_sec), (0, 0, 0, 0.0));
    }
}
