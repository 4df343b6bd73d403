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
//! 2. **The routing step alone.** What `Client::execute` does per request to pick a shard and a
//!    node, in a tight loop on one thread over the same keys, timed by that thread's CPU time
//!    (`/proc/thread-self/stat`) and by wall time. The library keeps that code crate-private, so
//!    [`RouteStep`] is a copy of it as of this revision (`client.rs` `retry_loop` up to the first
//!    attempt, `routing.rs` `routing_until`, `target.rs` `choose`), run on the real routing table
//!    fetched from the cluster and on the client's real data structures (seed endpoints first,
//!    a leader cached for every shard, as after warm-up): read the cached table (lock, `Arc`
//!    clone, stale flag), `Target::Key` (a `Bytes` clone), the key's shard
//!    ([`RoutingTable::shard_of`]: hash tag scan, SipHash, ring search), the shard's replicas
//!    among the endpoints, the cached leader, the `Node` clone (`String` + tonic `Channel`), and
//!    the leader-cache update after the success. Everything in it is counted as routing, although
//!    the leader choice and the node clone existed before sharding: the figure is an upper bound.
//!    `shard_of` alone is reported too.
//!
//! Not counted: routing-table fetches and refreshes (once per run here, and on errors), and the
//! shard id every request carries (4 bytes, present before sharding too).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use hypercache_client::{Client, ClientConfig, RoutingTable};
use serde::Serialize;
use tonic::transport::Channel;

use crate::game::common::channel;
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
    let step = RouteStep::new(&plan.endpoints, table.clone())?;

    let workload = load::run(plan).await?;
    let cost = workload.cpu.as_ref().context("the workload ran without its CPU window")?;
    let client_us = cost.hcbench_us_per_request;

    let (iterations, rounds) = (args.iterations, args.rounds);
    let timed = tokio::task::spawn_blocking(move || time_rounds(&step, &keys, iterations, rounds))
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
fn time_rounds(step: &RouteStep, keys: &[Bytes], iterations: u64, rounds: u32) -> anyhow::Result<Rounds> {
    let hz = cpu::ticks_per_sec()?;
    let (mut route_cpu, mut route_wall, mut shard_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let key = |i: u64| &keys[(i % keys.len() as u64) as usize];
    for _ in 0..rounds {
        let (before, started) = (cpu::sample_thread()?, Instant::now());
        for i in 0..iterations {
            let (shard, node) = step.route(black_box(key(i)));
            black_box((shard, &node.endpoint, &node.channel));
        }
        let wall = started.elapsed();
        route_cpu.push(per_call_ns(cpu::cpu_secs(before, cpu::sample_thread()?, hz), iterations));
        route_wall.push(per_call_ns(wall.as_secs_f64(), iterations));

        let before = cpu::sample_thread()?;
        for i in 0..iterations {
            black_box(step.direct.shard_of(black_box(key(i))));
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

/// A node of the client's endpoint table (`client.rs` `Node`).
#[derive(Clone)]
struct Node {
    endpoint: String,
    channel: Channel,
}

/// The client's leader-cache key (`target.rs` `Group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    // Never built here; kept so that the key hashes like the client's two-variant enum.
    #[allow(dead_code)]
    Meta,
    Shard(u32),
}

impl Group {
    fn shard_id(self) -> u32 {
        match self {
            Group::Meta => 0,
            Group::Shard(s) => s,
        }
    }
}

/// The client's endpoint table and leader cache (`client.rs` `Table`).
struct Table {
    nodes: Vec<Node>,
    leaders: HashMap<Group, String>,
}

/// The per-request routing step of `hypercache-client` (see the module documentation), over the
/// same data structures and locks.
struct RouteStep {
    routing: RwLock<Option<Arc<RoutingTable>>>,
    stale: AtomicBool,
    table: RwLock<Table>,
    /// The same routing table, for timing `shard_of` alone.
    direct: Arc<RoutingTable>,
}

impl RouteStep {
    /// The steady state after warm-up: seeds first, then the table's other nodes (as
    /// `adopt_endpoints` orders them), and a cached leader for every shard (its table hint).
    fn new(seeds: &[String], table: Arc<RoutingTable>) -> anyhow::Result<RouteStep> {
        let mut nodes: Vec<Node> = seeds
            .iter()
            .map(|e| Ok(Node { endpoint: e.clone(), channel: channel(e, None)? }))
            .collect::<anyhow::Result<_>>()?;
        for member in table.nodes.values() {
            if !member.endpoint.is_empty() && !nodes.iter().any(|n| n.endpoint == member.endpoint) {
                nodes.push(Node { endpoint: member.endpoint.clone(), channel: channel(&member.endpoint, None)? });
            }
        }
        let leaders = (0..table.shard_count)
            .filter_map(|s| {
                let id = table.shard(s)?.leader_id?;
                Some((Group::Shard(s), table.endpoint_of(id)?.to_owned()))
            })
            .collect();
        Ok(RouteStep {
            routing: RwLock::new(Some(table.clone())),
            stale: AtomicBool::new(false),
            table: RwLock::new(Table { nodes, leaders }),
            direct: table,
        })
    }

    /// One request's routing: the shard of `key` and the node its first attempt goes to, then
    /// the leader-cache update the client makes when that attempt succeeds.
    fn route(&self, key: &Bytes) -> (u32, Node) {
        // `routing_until`, cached path: the table and its stale flag.
        let table = self.routing.read().unwrap_or_else(PoisonError::into_inner).clone();
        let table = table.expect("the table is installed in RouteStep::new");
        black_box(self.stale.load(Ordering::Relaxed));
        // `Target::Key(key.clone())`, then `resolve`.
        let target = key.clone();
        let group = Group::Shard(table.shard_of(&target));
        // `first_target` -> `choose(.., Route::Leader)`.
        let node = {
            let t = self.table.read().unwrap_or_else(PoisonError::into_inner);
            let candidates = candidates(&t.nodes, &table, group);
            let hint = t.leaders.get(&group).map(String::as_str).or_else(|| {
                table.shard(group.shard_id()).and_then(|p| p.leader_id).and_then(|id| table.endpoint_of(id))
            });
            let leader = hint.and_then(|h| t.nodes.iter().find(|n| n.endpoint == h));
            leader.or_else(|| candidates.first().copied()).unwrap_or(&t.nodes[0]).clone()
        };
        // `remember_leader` after the successful attempt.
        {
            let mut t = self.table.write().unwrap_or_else(PoisonError::into_inner);
            if t.leaders.get(&group).map(String::as_str) != Some(node.endpoint.as_str()) {
                t.leaders.insert(group, node.endpoint.clone());
            }
        }
        (group.shard_id(), node)
    }
}

/// `target.rs` `candidates`: the shard's replicas that the endpoint table holds, in placement
/// order; every node when the table names none.
fn candidates<'a>(nodes: &'a [Node], table: &RoutingTable, group: Group) -> Vec<&'a Node> {
    let endpoints: Vec<&str> = table
        .shard(group.shard_id())
        .map_or_else(Vec::new, |s| s.replicas.iter().filter_map(|id| table.endpoint_of(*id)).collect());
    let replicas: Vec<&Node> = endpoints.into_iter().filter_map(|e| nodes.iter().find(|n| n.endpoint == e)).collect();
    if replicas.is_empty() {
        nodes.iter().collect()
    } else {
        replicas
    }
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
