//! What the Orbstrike benchmarks share: flags, channels to orchestrators and game servers, game
//! creation and clean-up, latency histograms, and the machine-level figures every report carries
//! (CPU of each process, CPU stolen by the hypervisor).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use hypercache_client::{Client, ClientConfig, Reason};
use hypercache_proto::poison::lock;
use orbstrike::proto::v1 as pb;
use pb::orchestrator_client::OrchestratorClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::game::common::{channel, parse_endpoints};
use crate::game::cpu;

/// Longest measured phase accepted, in seconds.
const MAX_DURATION_SECS: u64 = 3600;

/// Flags every Orbstrike benchmark takes.
#[derive(Debug, Clone, clap::Args)]
pub struct OrbArgs {
    /// HyperCache endpoints (host:port, comma-separated): clean-up, and the nodes' CPU.
    #[arg(long, default_value = "127.0.0.1:7801,127.0.0.1:7802,127.0.0.1:7803")]
    pub hypercache: String,
    /// Orchestrator endpoints (host:port, comma-separated).
    #[arg(long, default_value = "127.0.0.1:7820")]
    pub orchestrator: String,
    /// Length of each measured phase, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Validated [`OrbArgs`].
#[derive(Debug, Clone)]
pub struct Orb {
    pub hypercache: Vec<String>,
    pub orchestrators: Vec<String>,
    pub duration: Duration,
}

impl OrbArgs {
    pub fn validate(&self) -> anyhow::Result<Orb> {
        if !(1..=MAX_DURATION_SECS).contains(&self.duration) {
            bail!("--duration must be in 1..={MAX_DURATION_SECS} seconds, got {}", self.duration);
        }
        Ok(Orb {
            hypercache: parse_endpoints(&self.hypercache).context("--hypercache")?,
            orchestrators: parse_endpoints(&self.orchestrator).context("--orchestrator")?,
            duration: Duration::from_secs(self.duration),
        })
    }
}

impl Orb {
    pub fn store(&self) -> anyhow::Result<Client> {
        Client::new(ClientConfig::new(self.hypercache.clone())).context("HyperCache client")
    }

    /// One lazily connected channel per orchestrator.
    pub fn orchestrator_channels(&self) -> anyhow::Result<Vec<Channel>> {
        self.orchestrators.iter().map(|e| channel(e, None)).collect()
    }
}

/// `n` channels (HTTP/2 connections) to one endpoint.
pub fn channels(endpoint: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    (0..n.max(1)).map(|_| channel(endpoint, None)).collect()
}

/// The parameters of every benchmark game: the bot's defaults, `max_players` players, the
/// server's default tick rate (30 Hz).
pub fn game_params(max_players: u32) -> pb::GameParams {
    pb::GameParams {
        arena_radius: 1000.0,
        max_players: max_players.max(1),
        speed: 200.0,
        player_radius: 15.0,
        ring_radius: 40.0,
        tick_hz: 0,
    }
}

/// The `x-client-id` the benchmarks send (the orchestrators' rate-limit key).
pub const CLIENT_ID: &str = "hcbench-orbstrike";

/// A request carrying [`CLIENT_ID`].
pub fn with_client_id<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-client-id", tonic::metadata::MetadataValue::from_static(CLIENT_ID));
    request
}

/// A created game and the server it was placed on.
#[derive(Debug, Clone)]
pub struct Game {
    pub game_id: String,
    pub server_id: String,
}

/// Creates `count` games through the orchestrators (`concurrency` at a time), retrying refusals
/// that mean "later" (rate limit, no room yet, unavailable) for up to `patience` per game.
pub async fn create_games(
    orchestrators: &[Channel],
    count: usize,
    params: pb::GameParams,
    concurrency: usize,
    patience: Duration,
) -> anyhow::Result<Vec<Game>> {
    if orchestrators.is_empty() {
        bail!("no orchestrator to create games through");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let games = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency.clamp(1, count.max(1)) {
        let mut client = OrchestratorClient::new(orchestrators[w % orchestrators.len()].clone());
        let (next, games) = (next.clone(), games.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let game = create_one(&mut client, params, patience).await?;
                lock(&games).push(game);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.context("a create worker failed")??;
    }
    let games = std::mem::take(&mut *lock(&games));
    Ok(games)
}

async fn create_one(
    client: &mut OrchestratorClient<Channel>,
    params: pb::GameParams,
    patience: Duration,
) -> anyhow::Result<Game> {
    let deadline = Instant::now() + patience;
    let mut wait = Duration::from_millis(50);
    loop {
        let request = with_client_id(pb::CreateGameRequest { params: Some(params), lifetime_ms: 0 });
        let status = match tokio::time::timeout(Duration::from_secs(10), client.create_game(request)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                return Ok(Game { game_id: r.game_id, server_id: r.server_id });
            }
            Ok(Err(status)) => status,
            Err(_) => tonic::Status::deadline_exceeded("CreateGame took more than 10 s"),
        };
        let later = matches!(
            status.code(),
            tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        );
        if !later || Instant::now() + wait > deadline {
            bail!("CreateGame: {:?} {}", status.code(), status.message());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Deletes the benchmark's games from the store (the games' servers then end their streams).
/// Returns how many could not be deleted; a game already gone counts as deleted.
pub async fn delete_games(store: &Client, ids: Vec<String>) -> usize {
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..32.min(ids.len()) {
        let (ids, next, failed, store) = (ids.clone(), next.clone(), failed.clone(), store.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { return };
                match store.delete_board(id, None).await {
                    Ok(()) => {}
                    Err(e) if e.is_reason(Reason::BoardNotFound) => {}
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    failed.load(Ordering::Relaxed)
}

/// A latency histogram in microseconds (1 µs .. 10 min, 3 significant digits).
#[derive(Clone)]
pub struct Micros(Histogram<u64>);

impl Default for Micros {
    fn default() -> Self {
        Micros(Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds 1 us..10 min are valid"))
    }
}

impl Micros {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Micros) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50 / p99 / p99.9 / max in milliseconds (`None` without samples).
    pub fn summary(&self) -> Option<MsSummary> {
        if self.0.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(MsSummary {
            samples: self.0.len(),
            p50: ms(self.0.value_at_quantile(0.5)),
            p99: ms(self.0.value_at_quantile(0.99)),
            p999: ms(self.0.value_at_quantile(0.999)),
            max: ms(self.0.max()),
        })
    }
}

/// Quantiles of a latency, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct MsSummary {
    pub samples: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl MsSummary {
    pub fn text(s: &Option<MsSummary>) -> String {
        match s {
            Some(s) => format!(
                "p50 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms ({} samples)",
                s.p50, s.p99, s.p999, s.max, s.samples
            ),
            None => "no samples".to_string(),
        }
    }
}

/// Errors by kind, with one example message each.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    pub counts: BTreeMap<String, u64>,
    pub samples: BTreeMap<String, String>,
}

impl Errors {
    pub fn add(&mut self, kind: &str, message: impl FnOnce() -> String) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
        self.samples.entry(kind.to_string()).or_insert_with(message);
    }

    pub fn merge(&mut self, other: &Errors) {
        for (k, n) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += n;
        }
        for (k, m) in &other.samples {
            self.samples.entry(k.clone()).or_insert_with(|| m.clone());
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn text(&self) -> String {
        if self.counts.is_empty() {
            return "none".to_string();
        }
        self.counts
            .iter()
            .map(|(k, n)| format!("{k} x{n} (e.g. {:?})", self.samples.get(k).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The pid of the process started with `--listen <endpoint>` (a game server or an
/// orchestrator; HyperCache nodes are found by [`cpu::find_node_pid`]).
pub fn find_listener_pid(endpoint: &str) -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // Processes come and go while we scan; an unreadable one is not ours.
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"--listen" && w[1] == endpoint.as_bytes()) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process started with `--listen {endpoint}` on this machine"),
        many => bail!("several processes listen on {endpoint}: {many:?}"),
    }
}

/// A named process whose CPU a report shows.
#[derive(Debug, Clone)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
}

/// The HyperCache node processes of `endpoints` that can be found (named `hypercache :port`).
pub fn node_procs(endpoints: &[String]) -> Vec<Proc> {
    endpoints
        .iter()
        .filter_map(|e| cpu::find_node_pid(e).ok().map(|pid| Proc { name: format!("hypercache {e}"), pid }))
        .collect()
}

/// CPU of one process over a window, in percent of one core (200 % = both cores of this VM).
#[derive(Debug, Clone, Serialize)]
pub struct ProcCpu {
    pub name: String,
    pub pid: u32,
    pub pct: f64,
}

/// CPU of several processes (this one included) and of the whole machine over one window.
pub struct CpuWindow {
    procs: Vec<Proc>,
    window: Option<cpu::Window>,
    steal: StatSample,
    hz: u64,
}

/// What a [`CpuWindow`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    pub window_secs: f64,
    pub procs: Vec<ProcCpu>,
    /// Busy CPU of the whole machine (every process, the kernel), percent of one core.
    pub machine_busy_pct: f64,
    /// The machine's busy CPU not accounted for by `procs`: other processes (builds, tests) and
    /// the kernel's work outside them (softirqs of loopback traffic, for one).
    pub others_pct: f64,
    /// CPU time the hypervisor gave to other guests, percent of all CPU time (`/proc/stat`).
    pub steal_pct: f64,
}

impl CpuReport {
    pub fn pct_of(&self, name: &str) -> Option<f64> {
        self.procs.iter().find(|p| p.name == name).map(|p| p.pct)
    }

    pub fn text(&self) -> String {
        let procs: Vec<String> = self.procs.iter().map(|p| format!("{} {:.1}", p.name, p.pct)).collect();
        format!(
            "CPU % of one core over {:.1} s: {}; machine busy {:.1} of 200 (others {:.1}); hypervisor steal {:.1} % of all CPU time",
            self.window_secs,
            procs.join(", "),
            self.machine_busy_pct,
            self.others_pct,
            self.steal_pct
        )
    }
}

impl CpuWindow {
    /// Starts measuring `procs` and this process (named `hcbench`). A process that cannot be
    /// sampled is left out of the report rather than failing the benchmark.
    pub fn start(mut procs: Vec<Proc>) -> anyhow::Result<CpuWindow> {
        let hz = cpu::ticks_per_sec()?;
        procs.push(Proc { name: "hcbench".into(), pid: std::process::id() });
        procs.retain(|p| cpu::sample(p.pid).is_ok());
        let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
        let window = Some(cpu::Window::start(&pids)?);
        Ok(CpuWindow { procs, window, steal: StatSample::now()?, hz })
    }

    pub fn finish(mut self) -> anyhow::Result<CpuReport> {
        let window = self.window.take().context("the window was already finished")?;
        let (pct, wall) = window.finish(self.hz)?;
        let steal = StatSample::now()?;
        let procs: Vec<ProcCpu> =
            self.procs.iter().zip(pct).map(|(p, pct)| ProcCpu { name: p.name.clone(), pid: p.pid, pct }).collect();
        let machine_busy_pct = self.steal.busy_pct_since(&steal);
        Ok(CpuReport {
            window_secs: wall.as_secs_f64(),
            others_pct: (machine_busy_pct - procs.iter().map(|p| p.pct).sum::<f64>()).max(0.0),
            procs,
            machine_busy_pct,
            steal_pct: self.steal.steal_pct_since(&steal),
        })
    }
}

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct StatSample {
    total: u64,
    idle: u64,
    steal: u64,
    cpus: u64,
}

impl StatSample {
    fn now() -> anyhow::Result<StatSample> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_proc_stat(&stat)
    }

    fn steal_pct_since(&self, later: &StatSample) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * later.steal.saturating_sub(self.steal) as f64 / total as f64
    }

    /// Non-idle, non-stolen time in percent of one core.
    fn busy_pct_since(&self, later: &StatSample) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        let idle = later.idle.saturating_sub(self.idle);
        let steal = later.steal.saturating_sub(self.steal);
        100.0 * self.cpus as f64 * total.saturating_sub(idle + steal) as f64 / total as f64
    }
}

/// user nice system idle iowait irq softirq steal of the `cpu ` line; cpus = `cpuN` lines.
fn parse_proc_stat(stat: &str) -> anyhow::Result<StatSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu ")).context("no aggregate cpu line in /proc/stat")?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().unwrap_or(0)).collect();
    if fields.len() < 8 {
        bail!("the cpu line of /proc/stat has {} fields, expected at least 8", fields.len());
    }
    let cpus = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count() as u64;
    Ok(StatSample { total: fields.iter().sum(), idle: fields[3] + fields[4], steal: fields[7], cpus: cpus.max(1) })
}

/// `ids` joined for a report, cut after `max`.
pub fn short_list(ids: &[String], max: usize) -> String {
    let mut s = ids.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > max {
        s.push_str(&format!(", ... ({} in all)", ids.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_steal_and_busy_shares() {
        let a = parse_proc_stat("cpu  100 0 100 700 0 0 0 100 0 0\ncpu0 1\ncpu1 1\n").unwrap();
        let b = parse_proc_stat("cpu  200 0 200 1400 0 0 0 200 0 0\ncpu0 1\ncpu1 1\n").unwrap();
        assert_eq!(a.cpus, 2);
        assert!((a.steal_pct_since(&b) - 10.0).abs() < 1e-9);
        // 200 busy ticks out of 1000, on 2 cpus: 40 % of one core.
        assert!((a.busy_pct_since(&b) - 40.0).abs() < 1e-9);
        assert!(parse_proc_stat("intr 1 2 3").is_err());
    }

    #[test]
    fn micros_summarise_in_milliseconds() {
        let mut m = Micros::default();
        assert!(m.summary().is_none());
        for ms in 1..=100u64 {
            m.record(Duration::from_millis(ms));
        }
        let s = m.summary().unwrap();
        assert_eq!(s.samples, 100);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn errors_count_by_kind_and_keep_one_sample() {
        let mut e = Errors::default();
        e.add("unavailable", || "first".into());
        e.add("unavailable", || "second".into());
        let mut all = Errors::default();
        all.merge(&e);
        assert_eq!(all.total(), 2);
        assert!(all.text().contains("unavailable x2 (e.g. \"first\")"));
    }
}
