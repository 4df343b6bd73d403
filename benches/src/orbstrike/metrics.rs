//! Reading a process's Prometheus `/metrics` page (game server, orchestrator) and turning two
//! readings into the figures of the window between them.
//!
//! The page is fetched with a bare HTTP/1.1 GET (`Connection: close`) on a TCP socket: the
//! admin ports serve plain text and the benches crate needs no HTTP client for that.
//!
//! Histogram quantiles are what Prometheus' `histogram_quantile` computes: find the bucket the
//! rank falls into and interpolate linearly inside it (the first bucket starts at 0). So they are
//! only as fine as the buckets; a quantile in the `+Inf` bucket is reported as the largest finite
//! bound and flagged.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One reading: every sample line, keyed by `name{labels}` exactly as printed.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    values: BTreeMap<String, f64>,
}

/// Fetches `http://{addr}/metrics`.
pub async fn scrape(addr: &str) -> anyhow::Result<Scrape> {
    let body = tokio::time::timeout(Duration::from_secs(5), get(addr, "/metrics"))
        .await
        .with_context(|| format!("GET http://{addr}/metrics took more than 5 s"))??;
    Ok(Scrape::parse(&body))
}

/// GET `path` on `addr`; the body if the status is 200.
pub async fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.context("sending the request")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.context("reading the response")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers in the response")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        bail!("GET http://{addr}{path}: {status}");
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// Undoes chunked transfer encoding (hex size line, data, CRLF, ..., 0).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut values = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            if let Some((key, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.trim().parse::<f64>() {
                    values.insert(key.trim().to_string(), v);
                }
            }
        }
        Scrape { values }
    }

    /// The value of `key` (`name` or `name{label="x"}`), 0 if absent.
    pub fn get(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }

    /// `later - self` for `key`.
    pub fn delta(&self, later: &Scrape, key: &str) -> f64 {
        later.get(key) - self.get(key)
    }

    /// The buckets (upper bound, cumulative count) of histogram `name` (without labels).
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut out: Vec<(f64, f64)> = self
            .values
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((bound, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Histogram `name` over the window from `self` to `later`.
    pub fn histogram_delta(&self, later: &Scrape, name: &str) -> HistogramDelta {
        let before = self.buckets(name);
        let buckets = later
            .buckets(name)
            .into_iter()
            .map(|(bound, n)| {
                let was = before.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, c)| *c);
                (bound, (n - was).max(0.0))
            })
            .collect();
        HistogramDelta {
            buckets,
            count: self.delta(later, &format!("{name}_count")),
            sum: self.delta(later, &format!("{name}_sum")),
        }
    }
}

/// A histogram's observations within one window.
#[derive(Debug, Clone, Default)]
pub struct HistogramDelta {
    /// (upper bound, cumulative count), ascending, `+Inf` last.
    buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

/// A quantile read from buckets.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BucketQuantile {
    pub value: f64,
    /// True when it fell into the `+Inf` bucket: the true value is above `value`.
    pub above_last_bucket: bool,
}

impl HistogramDelta {
    /// `histogram_quantile(q)`; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<BucketQuantile> {
        let total = self.buckets.last().map(|(_, n)| *n)?;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(BucketQuantile { value: lower.0, above_last_bucket: true });
                }
                let in_bucket = cumulative - lower.1;
                let fraction = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
                return Some(BucketQuantile {
                    value: lower.0 + (bound - lower.0) * fraction,
                    above_last_bucket: false,
                });
            }
            lower = (bound, cumulative);
        }
        None
    }

    /// Observations above `bound` (which should be a bucket bound to be exact).
    pub fn above(&self, bound: f64) -> f64 {
        let total = self.buckets.last().map_or(0.0, |(_, n)| *n);
        let at_or_below = self.buckets.iter().filter(|(b, _)| *b <= bound).map(|(_, n)| *n).fold(0.0, f64::max);
        total - at_or_below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP x\n\
        t_bucket{le=\"0.001\"} 10\nt_bucket{le=\"0.01\"} 10\nt_bucket{le=\"+Inf\"} 10\nt_sum 0.005\nt_count 10\n\
        ticks_total 100\nsyncs_total{result=\"ok\"} 4\n";
    const AFTER: &str = "t_bucket{le=\"0.001\"} 60\nt_bucket{le=\"0.01\"} 109\nt_bucket{le=\"+Inf\"} 110\n\
        t_sum 0.505\nt_count 110\nticks_total 400\nsyncs_total{result=\"ok\"} 10\n";

    #[test]
    fn deltas_and_labelled_counters() {
        let (a, b) = (Scrape::parse(BEFORE), Scrape::parse(AFTER));
        assert_eq!(a.delta(&b, "ticks_total"), 300.0);
        assert_eq!(a.delta(&b, "syncs_total{result=\"ok\"}"), 6.0);
        assert_eq!(a.get("missing"), 0.0);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = Scrape::parse(BEFORE).histogram_delta(&Scrape::parse(AFTER), "t");
        assert_eq!((h.count, h.sum), (100.0, 0.5));
        // 50 in (0, 1 ms], 49 in (1, 10 ms], 1 above.
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50.value - 0.001).abs() < 1e-12 && !p50.above_last_bucket, "{p50:?}");
        let p90 = h.quantile(0.9).unwrap();
        assert!((p90.value - (0.001 + 0.009 * 40.0 / 49.0)).abs() < 1e-9, "{p90:?}");
        let max = h.quantile(1.0).unwrap();
        assert!(max.above_last_bucket && max.value == 0.01, "{max:?}");
        assert_eq!(h.above(0.01), 1.0);
        assert_eq!(h.above(0.001), 50.0);
        assert!(HistogramDelta::default().quantile(0.5).is_none());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }
}
