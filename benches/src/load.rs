//! `hcbench` arguments, validation, and the closed-loop workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use hypercache_client::parse_endpoint_list;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::task::JoinSet;

use crate::game::cpu;
use crate::peers::{Conn, Connector, Read, System, Target};
use crate::report::{CpuCost, OpStats, Report};
use crate::timeline::Timeline;

/// Closed-loop load generator for HyperCache, and for etcd and Redis to compare with (puts and
/// gets over a fixed key space).
#[derive(Debug, Clone, Parser)]
#[command(name = "hcbench", version)]
pub struct Args {
    /// The system --endpoints points at.
    #[arg(long, value_enum, default_value_t = System::Hypercache)]
    pub system: System,
    /// Seed endpoints (host:port, comma-separated). etcd: its members; Redis: the primary first,
    /// then its replicas.
    #[arg(long, env = "HYPERCACHE_ENDPOINTS", default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")]
    pub endpoints: String,
    /// Concurrent workers (1..=10000), each with one operation in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Size of the key space (1..=100000000); keys are `<key-prefix><index>`.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Value size in bytes (0..=4194304).
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Fraction of operations that are gets, 0.0..=1.0 (0 = all puts).
    #[arg(long, default_value_t = 0.0)]
    pub get_ratio: f64,
    /// Run for this many seconds (default 10 unless --count is given).
    #[arg(long, conflicts_with = "count")]
    pub duration: Option<u64>,
    /// Run exactly this many operations (in total, across workers).
    #[arg(long)]
    pub count: Option<u64>,
    /// Gets are serializable (served locally, may be stale) instead of linearizable.
    #[arg(long)]
    pub serializable: bool,
    /// Write every key once before measuring, so gets find their keys.
    #[arg(long)]
    pub prefill: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Client deadline per operation, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Prefix of every key written or read.
    #[arg(long, default_value = "hcbench/")]
    pub key_prefix: String,
    /// Also report the CPU time of the measured phase: of the `hypercache serve` processes
    /// listening on --endpoints (on this machine; Linux `/proc`), or of --server-pids, and of
    /// hcbench itself.
    #[arg(long)]
    pub cpu: bool,
    /// With --cpu: the server processes to measure (comma-separated pids) instead of searching
    /// for `hypercache serve` processes; how etcd and Redis are measured.
    #[arg(long, value_delimiter = ',', requires = "cpu")]
    pub server_pids: Vec<u32>,
    /// Redis only: replicas that must acknowledge each put (`WAIT n` after every `SET`).
    #[arg(long, default_value_t = 0)]
    pub redis_wait: u32,
    /// etcd only: HTTP/2 connections per member (1..=256), shared by the workers in turn.
    #[arg(long, default_value_t = 1)]
    pub etcd_connections: usize,
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Count(u64),
}

/// Validated arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    pub system: System,
    pub endpoints: Vec<String>,
    pub concurrency: usize,
    pub keys: u64,
    pub value_size: usize,
    pub get_ratio: f64,
    pub stop: Stop,
    pub serializable: bool,
    pub prefill: bool,
    pub timeout: Duration,
    pub key_prefix: String,
    pub cpu: bool,
    pub server_pids: Vec<u32>,
    pub redis_wait: u32,
    pub etcd_connections: usize,
}

const MAX_VALUE_SIZE: usize = 4 * 1024 * 1024;
const MAX_DURATION_SECS: u64 = 24 * 3600;

impl Args {
    /// Checks every argument; errors name the flag and its accepted range.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let endpoints = parse_endpoint_list(&self.endpoints).context("--endpoints")?;
        if !(1..=10_000).contains(&self.concurrency) {
            bail!("--concurrency must be in 1..=10000, got {}", self.concurrency);
        }
        if !(1..=100_000_000).contains(&self.keys) {
            bail!("--keys must be in 1..=100000000, got {}", self.keys);
        }
        if self.value_size > MAX_VALUE_SIZE {
            bail!("--value-size must be at most {MAX_VALUE_SIZE} bytes, got {}", self.value_size);
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            bail!("--get-ratio must be in 0.0..=1.0, got {}", self.get_ratio);
        }
        if self.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        if !(1..=256).contains(&self.etcd_connections) {
            bail!("--etcd-connections must be in 1..=256, got {}", self.etcd_connections);
        }
        if self.etcd_connections != 1 && self.system != System::Etcd {
            bail!("--etcd-connections applies to --system etcd only");
        }
        if self.redis_wait > 0 && self.system != System::Redis {
            bail!("--redis-wait applies to --system redis only");
        }
        if self.redis_wait as usize >= endpoints.len().max(1) && self.system == System::Redis {
            bail!(
                "--redis-wait {} needs that many replicas after the primary in --endpoints, got {}",
                self.redis_wait,
                endpoints.len() - 1
            );
        }
        let stop = match (self.duration, self.count) {
            (_, Some(0)) => bail!("--count must be at least 1"),
            (_, Some(n)) => Stop::Count(n),
            (Some(secs), None) if !(1..=MAX_DURATION_SECS).contains(&secs) => {
                bail!("--duration must be in 1..={MAX_DURATION_SECS} seconds, got {secs}")
            }
            (Some(secs), None) => Stop::After(Duration::from_secs(secs)),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        Ok(Plan {
            system: self.system,
            endpoints,
            concurrency: self.concurrency,
            keys: self.keys,
            value_size: self.value_size,
            get_ratio: self.get_ratio,
            stop,
            serializable: self.serializable,
            prefill: self.prefill,
            timeout: Duration::from_millis(self.timeout_ms),
            key_prefix: self.key_prefix.clone(),
            cpu: self.cpu,
            server_pids: self.server_pids.clone(),
            redis_wait: self.redis_wait,
            etcd_connections: self.etcd_connections,
        })
    }
}

/// Key `index` of the key space: `<prefix><index, 10 digits>`.
pub fn key(prefix: &str, index: u64) -> Bytes {
    Bytes::from(format!("{prefix}{index:010}"))
}

/// Runs the optional prefill, then the measured phase, and returns the report.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let target = Target {
        system: plan.system,
        endpoints: plan.endpoints.clone(),
        timeout: plan.timeout,
        redis_wait: plan.redis_wait,
        etcd_connections: plan.etcd_connections,
    };
    let connector = Connector::new(&target).await?;
    let mut conns = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        conns.push(connector.connect(worker).await?);
    }
    let mut value = vec![0u8; plan.value_size];
    StdRng::from_entropy().fill_bytes(&mut value);
    let value = Bytes::from(value);
    let plan = Arc::new(plan);

    if plan.prefill {
        conns = prefill(conns, &plan, &value).await?;
    }

    let cpu = if plan.cpu { Some(CpuWindow::start(&plan.endpoints, &plan.server_pids)?) } else { None };
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for conn in conns {
        let (plan, value, stop, issued) = (plan.clone(), value.clone(), stop.clone(), issued.clone());
        workers.spawn(async move { worker(conn, plan, value, stop, issued, started).await });
    }
    if let Stop::After(duration) = plan.stop {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let (mut puts, mut gets) = (OpStats::new(), OpStats::new());
    let mut put_times = Timeline::new(started);
    while let Some(joined) = workers.join_next().await {
        let (p, g, t) = joined.context("a benchmark worker panicked")?;
        puts.merge(&p);
        gets.merge(&g);
        put_times.merge(&t);
    }
    let elapsed = started.elapsed();
    let (put, get) = (puts.summary(elapsed), gets.summary(elapsed));
    let total_ops = put.ops + get.ops;
    let cpu = cpu.map(|w| w.finish(total_ops, total_ops + put.errors + get.errors)).transpose()?;
    Ok(Report {
        system: plan.system,
        endpoints: plan.endpoints.clone(),
        concurrency: plan.concurrency,
        keys: plan.keys,
        value_size: plan.value_size,
        get_ratio: plan.get_ratio,
        serializable: plan.serializable,
        elapsed_secs: elapsed.as_secs_f64(),
        total_ops,
        total_errors: put.errors + get.errors,
        throughput_ops_per_sec: if elapsed.is_zero() { 0.0 } else { total_ops as f64 / elapsed.as_secs_f64() },
        put,
        get,
        longest_put_gap: put_times.longest_gap(),
        cpu,
    })
}

/// The CPU window of `--cpu`: the node processes serving the endpoints, then this process.
struct CpuWindow {
    node_pids: Vec<u32>,
    window: cpu::Window,
    hz: u64,
}

impl CpuWindow {
    /// `server_pids` when given, else the `hypercache serve` processes of `endpoints`; nodes not
    /// running on this machine are left out (their CPU is not ours to read).
    fn start(endpoints: &[String], server_pids: &[u32]) -> anyhow::Result<CpuWindow> {
        let hz = cpu::ticks_per_sec()?;
        let node_pids: Vec<u32> = if server_pids.is_empty() {
            endpoints.iter().filter_map(|e| cpu::find_node_pid(e).ok()).collect()
        } else {
            server_pids.to_vec()
        };
        let mut pids = node_pids.clone();
        pids.push(std::process::id());
        Ok(CpuWindow { node_pids, window: cpu::Window::start(&pids)?, hz })
    }

    fn finish(self, ops: u64, requests: u64) -> anyhow::Result<CpuCost> {
        let (mut secs, wall) = self.window.finish_secs(self.hz)?;
        let own = secs.pop().context("the window holds this process")?;
        Ok(CpuCost::new(wall, self.node_pids, secs, own, ops, requests))
    }
}

/// One closed-loop worker: pick a key and an operation, run it, record it, repeat until told to
/// stop (duration) or until the shared operation budget is spent (count).
async fn worker(
    mut conn: Conn,
    plan: Arc<Plan>,
    value: Bytes,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicU64>,
    origin: Instant,
) -> (OpStats, OpStats, Timeline) {
    let mut rng = StdRng::from_entropy();
    let (mut puts, mut gets) = (OpStats::new(), OpStats::new());
    let mut put_times = Timeline::new(origin);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Stop::Count(count) = plan.stop {
            if issued.fetch_add(1, Ordering::Relaxed) >= count {
                break;
            }
        }
        let key = key(&plan.key_prefix, rng.gen_range(0..plan.keys));
        let is_get = rng.gen::<f64>() < plan.get_ratio;
        let started = Instant::now();
        let (stats, result) = if is_get {
            let read = if plan.serializable { Read::Serializable } else { Read::Linearizable };
            (&mut gets, conn.get(key, read).await)
        } else {
            (&mut puts, conn.put(key, value.clone()).await)
        };
        match result {
            Ok(()) => {
                stats.record_ok(started.elapsed());
                if !is_get {
                    put_times.record(Instant::now());
                }
            }
            Err(e) => stats.record_error(e.kind, || e.message),
        }
    }
    (puts, gets, put_times)
}

/// Writes every key once over the workers' connections, which it hands back; fails if any write
/// fails, because gets against a partially filled key space would measure misses.
async fn prefill(conns: Vec<Conn>, plan: &Arc<Plan>, value: &Bytes) -> anyhow::Result<Vec<Conn>> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for mut conn in conns {
        let (plan, value, next) = (plan.clone(), value.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= plan.keys {
                    return Ok::<Conn, anyhow::Error>(conn);
                }
                if let Err(e) = conn.put(key(&plan.key_prefix, index), value.clone()).await {
                    bail!("prefill put of key #{index}: {}: {}", e.kind, e.message);
                }
            }
        });
    }
    let mut conns = Vec::with_capacity(plan.concurrency);
    while let Some(joined) = workers.join_next().await {
        conns.push(joined.context("a prefill worker panicked")??);
    }
    eprintln!("prefill: wrote {} keys in {:.2}s", plan.keys, started.elapsed().as_secs_f64());
    Ok(conns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("hcbench").chain(extra.iter().copied()))
    }

    #[test]
    fn defaults_are_a_ten_second_put_run() {
        let plan = args(&[]).expect("parse").plan().expect("valid");
        assert_eq!(plan.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!((plan.concurrency, plan.keys, plan.value_size), (16, 10_000, 100));
        assert_eq!(plan.get_ratio, 0.0);
    }

    #[test]
    fn invalid_arguments_are_named() {
        for (flags, needle) in [
            (&["--get-ratio", "1.5"][..], "--get-ratio"),
            (&["--get-ratio", "NaN"][..], "--get-ratio"),
            (&["--concurrency", "0"][..], "--concurrency"),
            (&["--keys", "0"][..], "--keys"),
            (&["--count", "0"][..], "--count"),
            (&["--duration", "0"][..], "--duration"),
            (&["--endpoints", "nohost"][..], "--endpoints"),
            (&["--redis-wait", "1"][..], "--redis-wait applies to --system redis"),
            (&["--etcd-connections", "2"][..], "--etcd-connections applies to --system etcd"),
            (&["--system", "etcd", "--etcd-connections", "0"][..], "--etcd-connections must be in"),
            (
                &["--system", "redis", "--endpoints", "127.0.0.1:1,127.0.0.1:2", "--redis-wait", "2"][..],
                "needs that many replicas",
            ),
        ] {
            let err = args(flags).expect("parse").plan().expect_err("invalid");
            assert!(format!("{err:#}").contains(needle), "{flags:?}: {err:#}");
        }
        assert!(args(&["--count", "5", "--duration", "5"]).is_err(), "one of --count/--duration");
        assert_eq!(args(&["--count", "5"]).expect("parse").plan().expect("valid").stop, Stop::Count(5));
        assert!(args(&["--server-pids", "1,2"]).is_err(), "--server-pids only with --cpu");
        let plan = args(&["--system", "redis", "--endpoints", "127.0.0.1:1,127.0.0.1:2", "--redis-wait", "1"])
            .expect("parse")
            .plan()
            .expect("one replica for WAIT 1");
        assert_eq!((plan.system, plan.redis_wait), (System::Redis, 1));
        let plan = args(&["--cpu", "--server-pids", "7,8"]).expect("parse").plan().expect("valid");
        assert_eq!(plan.server_pids, vec![7, 8]);
    }

    #[test]
    fn keys_are_fixed_width() {
        assert_eq!(key("p/", 42), Bytes::from_static(b"p/0000000042"));
    }
}
