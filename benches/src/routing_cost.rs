//! `hcbench routing-cost`: what key -> shard routing adds to the client's CPU per request
//! (issue #6's target: at most 5 %).
//!
//! Two measurements in one process, divided:
//!
//! 1. **Client CPU per request.** The KV load generator ([`crate::load`]) runs its workload
//!    through [`hypercache_client::Client`] (every request routed by the library), and the
//!    process's own CPU time (utime + stime from `/proc/self/stat`, all threads) over the
//!    measured phase is divided by the requests sent. That is everything the client side costs:
//!    the library (routing, retry loop, deadline), tonic/h2/prost, the Tokio runtime and the
//!    workers' own bookkeeping (key formatting, histograms), so the ratio below is against the
//!    whole client, as an application would see it.
//! 2. **The routing step alone.** What the client runs per keyed request to pick a shard and a
//!    node, in a tight loop on one thread over the same keys, timed by that thread's CPU time
//!    (`/proc/thread-self/stat`) and by wall time. It is the library's own code,
//!    [`Client::route_cached`] (the first part of its retry loop on a cached table): read the
//!    cached table and its stale flag, `Target::Key` (a `Bytes` clone), the key's shard
//!    ([`RoutingTable::shard_of`]: hash tag scan, SipHash, ring search), the shard's replicas
//!    among the endpoints, the cached leader, the `Node` clone, and the leader-cache update a
//!    success makes. Everything in it is counted as routing, although the leader choice and the
//!    node clone existed before sharding: the figure is an upper bound. `shard_of` alone is
//!    reported too.
//!
//! Not counted: routing-table fetches and refreshes (once per run here, and on errors), and the
//! shard id every request carries (4 bytes, present before sharding too).

use std::hint::black_box;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use hypercache_client::{Client, ClientConfig, RoutingTable};
use serde::Serialize;

use crate::game::cpu;
use crate::load::{self, Args};
use crate::report::{render, Report};

/// Client CPU per request with routing, and the routing step's share of it.
#[derive(Debug, Clone, clap::Args)]
pub struct RoutingCostArgs {
    /// The workload (the KV load generator's flags; `--cpu` is implied).
    #[command(flatten)]
    pub kv: Args,
    /// Routing steps per timing round (1000..=1000000000).
    #[arg(long, default_value_t = 5_000_000)]
    pub iterations: u64,
    /// Timing rounds of the routing step; the median is used (1..=100).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutingCostReport {
    pub shard_count: u32,
    pub routing_version: u64,
    /// The workload run, with its CPU.
    pub workload: Report,
    pub client_us_per_request: f64,
    /// Per round: the routing step's thread CPU and wall time per call, in nanoseconds.
    pub route_cpu_ns: Vec<f64>,
    pub route_wall_ns: Vec<f64>,
    /// Per round: `RoutingTable::shard_of` alone, thread CPU per call.
    pub shard_of_cpu_ns: Vec<f64>,
    pub route_ns_median: f64,
    pub shard_of_ns_median: f64,
    /// The routing step's median CPU over the client's CPU per request, in percent.
    pub route_pct_of_request: f64,
    pub shard_of_pct_of_request: f64,
}

impl RoutingCostReport {
    pub fn to_text(&self) -> String {
        let mut s = self.workload.to_text();
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ");
        s.push_str(&format!(
            "routing table: {} shards, version {}\n\
             client CPU per request: {:.2} us\n\
             routing step per request (thread CPU, ns; rounds): {} (wall {})\n\
             shard_of alone (thread CPU, ns; rounds): {}\n\
             routing / request CPU: {:.2} % (shard_of alone {:.2} %)\n",
            self.shard_count,
            self.routing_version,
            self.client_us_per_request,
            list(&self.route_cpu_ns),
            list(&self.route_wall_ns),
            list(&self.shard_of_cpu_ns),
            self.route_pct_of_request,
            self.shard_of_pct_of_request,
        ));
        s
    }
}

pub async fn run(args: RoutingCostArgs) -> anyhow::Result<String> {
    if !(1_000..=1_000_000_000).contains(&args.iterations) {
        bail!("--iterations must be in 1000..=1000000000, got {}", args.iterations);
    }
    if !(1..=100).contains(&args.rounds) {
        bail!("--rounds must be in 1..=100, got {}", args.rounds);
    }
    let json = args.kv.json;
    let mut plan = args.kv.plan()?;
    plan.cpu = true;
    let config = ClientConfig::new(plan.endpoints.clone()).request_timeout(plan.timeout);
    let client = Client::new(config).context("creating the client")?;
    let table = client.routing().await.context("fetching the routing table")?;
    let keys: Vec<Bytes> = (0..plan.keys).map(|i| load::key(&plan.key_prefix, i)).collect();
    // Warm the leader cache for every shard, as the workload's clients are after warm-up.
    for key in &keys {
        client.route_cached(key).context("the routing table is cached")?;
    }

    let workload = load::run(plan).await?;
    let cost = workload.cpu.as_ref().context("the workload ran without its CPU window")?;
    let client_us = cost.hcbench_us_per_request;

    let (iterations, rounds) = (args.iterations, args.rounds);
    let direct = table.clone();
    let timed = tokio::task::spawn_blocking(move || time_rounds(&client, &direct, &keys, iterations, rounds))
        .await
        .context("the timing thread panicked")??;
    let (route_cpu_ns, route_wall_ns, shard_of_cpu_ns) = timed;
    let route_ns = median(&route_cpu_ns);
    let shard_of_ns = median(&shard_of_cpu_ns);
    let pct = |ns: f64| if client_us > 0.0 { 100.0 * ns / (client_us * 1_000.0) } else { 0.0 };
    let report = RoutingCostReport {
        shard_count: table.shard_count,
        routing_version: table.version,
        workload,
        client_us_per_request: client_us,
        route_pct_of_request: pct(route_ns),
        shard_of_pct_of_request: pct(shard_of_ns),
        route_cpu_ns,
        route_wall_ns,
        shard_of_cpu_ns,
        route_ns_median: route_ns,
        shard_of_ns_median: shard_of_ns,
    };
    render(report, json, RoutingCostReport::to_text)
}

type Rounds = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Times `rounds` rounds of the routing step and of `shard_of` alone, on this thread.
fn time_rounds(
    client: &Client,
    table: &RoutingTable,
    keys: &[Bytes],
    iterations: u64,
    rounds: u32,
) -> anyhow::Result<Rounds> {
    let hz = cpu::ticks_per_sec()?;
    let (mut route_cpu, mut route_wall, mut shard_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let key = |i: u64| &keys[(i % keys.len() as u64) as usize];
    for _ in 0..rounds {
        let (before, started) = (cpu::sample_thread()?, Instant::now());
        for i in 0..iterations {
            black_box(client.route_cached(black_box(key(i))));
        }
        let wall = started.elapsed();
        route_cpu.push(per_call_ns(cpu::cpu_secs(before, cpu::sample_thread()?, hz), iterations));
        route_wall.push(per_call_ns(wall.as_secs_f64(), iterations));

        let before = cpu::sample_thread()?;
        for i in 0..iterations {
            black_box(table.shard_of(black_box(key(i))));
        }
        shard_cpu.push(per_call_ns(cpu::cpu_secs(before, cpu::sample_thread()?, hz), iterations));
    }
    Ok((route_cpu, route_wall, shard_cpu))
}

fn per_call_ns(secs: f64, calls: u64) -> f64 {
    secs * 1e9 / calls as f64
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_round() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[]), 0.0);
        assert!((per_call_ns(1.0, 1_000_000) - 1_000.0).abs() < 1e-9);
    }
}
