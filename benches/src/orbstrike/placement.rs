//! `hcbench orbstrike-placement`: CreateGame throughput through one orchestrator.
//!
//! CreateGame validates the parameters, checks the client's rate limit, picks the least-loaded
//! live game server with room from the orchestrator's registry view, then writes to HyperCache:
//! `Boards.Create` (the board with its initial checkpoint) and `Boards.Assign` (epoch 0 -> 1, to
//! that server). It answers once the assignment is stored; the server loads the board afterwards.
//!
//! So that what is measured is placement and not a game server ticking thousands of new boards
//! on the same two cores, the games are placed on `--servers` *registered stand-ins*: registry
//! entries this process creates and keeps alive (lease keeper) but which serve nothing (their
//! address is a closed port, `--stand-in-address`). Nothing else about CreateGame changes. The
//! orchestrator must run with a create rate limit above the offered load (the suite starts it
//! with `--create-rate 1000000`): the default limit (5 games/s per client) is a per-client
//! policy, not a capacity.
//!
//! For each `--concurrency` level, that many workers call CreateGame in a closed loop for
//! `--duration` seconds (one HTTP/2 connection per 64 workers); rate, latency and errors by kind
//! are reported, with the CPU of the orchestrator and the nodes. The created games are deleted
//! after each level, and the stand-ins deregistered at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use hypercache_client::{LeaseKeeper, RegisterOptions};
use hypercache_proto::poison::lock;
use orbstrike::proto::v1 as pb;
use pb::orchestrator_client::OrchestratorClient;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::common::{
    channels, delete_games, find_listener_pid, game_params, node_procs, with_client_id, CpuReport, CpuWindow, OrbArgs,
    Proc,
};
use crate::game::common::kind;
use crate::report::{OpStats, OpSummary};

#[derive(Debug, Clone, clap::Args)]
pub struct PlacementArgs {
    #[command(flatten)]
    pub orb: OrbArgs,
    /// Closed-loop workers, one level each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub concurrency: Vec<usize>,
    /// Registered stand-in game servers.
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// The address the stand-ins register (nothing should listen there).
    #[arg(long, default_value = "127.0.0.1:7899")]
    pub stand_in_address: String,
    /// Leave the games in the store.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacementLevel {
    pub concurrency: usize,
    pub create: OpSummary,
    pub cpu: CpuReport,
    pub games_not_deleted: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacementReport {
    pub orchestrator: String,
    pub servers: usize,
    pub levels: Vec<PlacementLevel>,
}

pub async fn run(args: PlacementArgs) -> anyhow::Result<PlacementReport> {
    let orb = args.orb.validate()?;
    if args.servers == 0 || args.concurrency.iter().any(|c| *c == 0 || *c > 10_000) {
        bail!("--servers must be at least 1 and every --concurrency 1..=10000");
    }
    let orchestrator = orb.orchestrators[0].clone();
    let mut procs = Vec::new();
    if let Ok(pid) = find_listener_pid(&orchestrator) {
        procs.push(Proc { name: "orchestrator".into(), pid });
    }
    procs.extend(node_procs(&orb.hypercache));
    let store = orb.store()?;
    let tag = format!("hcb-standin-{}", std::process::id());
    let mut keepers = Vec::new();
    for i in 0..args.servers {
        let mut options =
            RegisterOptions::new(format!("{tag}-{i}"), args.stand_in_address.clone(), Duration::from_secs(10));
        options.capacity = 1_000_000;
        let registration = store.register(options).await.context("registering a stand-in server")?;
        keepers.push((registration.incarnation, LeaseKeeper::spawn(store.clone(), registration.lease)?));
    }
    // The orchestrator learns of them through its registry watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut levels = Vec::new();
    let mut result = Ok(());
    for &c in &args.concurrency {
        match level(&args, &orchestrator, c, orb.duration, procs.clone(), &store).await {
            Ok(l) => {
                eprintln!("{} workers: {:.0} games/s", l.concurrency, l.create.throughput_ops_per_sec);
                levels.push(l);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (i, (incarnation, keeper)) in keepers.into_iter().enumerate() {
        keeper.stop().await;
        let _ = store.deregister(&format!("{tag}-{i}"), incarnation).await;
    }
    result?;
    Ok(PlacementReport { orchestrator, servers: args.servers, levels })
}

async fn level(
    args: &PlacementArgs,
    orchestrator: &str,
    concurrency: usize,
    duration: Duration,
    procs: Vec<Proc>,
    store: &hypercache_client::Client,
) -> anyhow::Result<PlacementLevel> {
    let conns = channels(orchestrator, concurrency.div_ceil(64))?;
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::new()));
    let mut workers = JoinSet::new();
    let cpu = CpuWindow::start(procs)?;
    let started = Instant::now();
    for w in 0..concurrency {
        let mut client = OrchestratorClient::new(conns[w % conns.len()].clone());
        let (stop, created) = (stop.clone(), created.clone());
        workers.spawn(async move {
            let mut stats = OpStats::new();
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = with_client_id(pb::CreateGameRequest { params: Some(game_params(8)), lifetime_ms: 0 });
                let sent = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), client.create_game(request)).await {
                    Ok(Ok(r)) => {
                        stats.record_ok(sent.elapsed());
                        mine.push(r.into_inner().game_id);
                    }
                    Ok(Err(status)) => stats.record_error(kind(&status), || status.message().to_string()),
                    Err(_) => stats.record_error("client_timeout", || "no answer within 10 s".into()),
                }
            }
            lock(&created).extend(mine);
            stats
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = OpStats::new();
    while let Some(done) = workers.join_next().await {
        all.merge(&done.context("a create worker failed")?);
    }
    let elapsed = started.elapsed();
    let cpu = cpu.finish()?;
    let ids = std::mem::take(&mut *lock(&created));
    let games_not_deleted = if args.keep { 0 } else { delete_games(store, ids).await };
    Ok(PlacementLevel { concurrency, create: all.summary(elapsed), cpu, games_not_deleted })
}

fn level_text(l: &PlacementLevel) -> String {
    let c = &l.create;
    let errors = if c.errors_by_kind.is_empty() {
        "none".to_string()
    } else {
        c.errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} x{n} (e.g. {:?})", c.error_samples.get(k).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "{:>4} workers: {:.0} games/s ({} created), p50 {:.2} / p99 {:.2} / max {:.2} ms, errors: {}\n      {}{}",
        l.concurrency,
        c.throughput_ops_per_sec,
        c.ops,
        c.p50_us as f64 / 1000.0,
        c.p99_us as f64 / 1000.0,
        c.max_us as f64 / 1000.0,
        errors,
        l.cpu.text(),
        if l.games_not_deleted > 0 {
            format!("\n      {} games not deleted", l.games_not_deleted)
        } else {
            String::new()
        }
    )
}

impl PlacementReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "orbstrike-placement: CreateGame through {} onto {} registered stand-in servers (target >= 500 games/s)\n",
            self.orchestrator, self.servers
        );
        for l in &self.levels {
            s.push_str(&level_text(l));
            s.push('\n');
        }
        s
    }
}
