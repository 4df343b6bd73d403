//! `hcbench orbstrike-proxy`: what the orchestrator's Play proxy adds to input-to-update
//! latency.
//!
//! `--games` games are created on the one running game server; on each, half of the
//! `--players` play **directly** (`GameServer.AddPlayer` + `GameServer.Play` on the game
//! server) and half **through the orchestrator** (`JoinGame` + `Orchestrator.Play`), alternating,
//! all at the same time and with the same input rate and steering. Both halves therefore see the
//! same boards, ticks, machine load and hypervisor steal; the difference between their latency
//! distributions is the proxy's cost: one more hop each way for inputs and updates (decode,
//! queue, re-encode, loopback TCP) plus the orchestrator's share of the two cores.
//!
//! Input-to-update latency includes waiting for the next tick (uniform over 0..33 ms at 30 Hz),
//! so both distributions are dominated by the tick, and the proxy shows as a shift. The report
//! gives the p50 and p99 differences (proxied minus direct) for each of `--rounds` windows and
//! for all of them together; the target is <= 1 ms at p99. The rounds show how much the
//! difference moves from one window to the next on this shared machine.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use super::common::{
    channels, create_games, delete_games, find_listener_pid, game_params, node_procs, CpuReport, CpuWindow, Errors,
    MsSummary, OrbArgs, Proc,
};
use super::swarm::{join_all, Links, Route, RouteStats, Swarm, WindowStats};

#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub orb: OrbArgs,
    /// The game server's gRPC address.
    #[arg(long, default_value = "127.0.0.1:7810")]
    pub gameserver: String,
    #[arg(long, default_value_t = 20)]
    pub games: usize,
    /// Players per game (half direct, half proxied).
    #[arg(long, default_value_t = 10)]
    pub players: usize,
    #[arg(long, default_value_t = 10)]
    pub input_hz: u32,
    /// Seconds of play before the measured window.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// HTTP/2 connections to the game server for the direct players (the orchestrator uses one
    /// per game server).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    #[arg(long)]
    pub keep: bool,
    /// Measured windows of --duration seconds each (reported one by one and together).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

/// One route's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RouteFigures {
    pub players: usize,
    pub latency_ms: Option<MsSummary>,
    pub update_gap_ms: Option<MsSummary>,
    pub updates_per_player_per_sec: f64,
    pub inputs_dropped: u64,
    pub missed_ticks: u64,
    pub snapshots_after_first: u64,
    pub game_overs: u64,
    pub errors: Errors,
}

/// One measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub direct_ms: Option<MsSummary>,
    pub proxied_ms: Option<MsSummary>,
    pub p50_added_ms: Option<f64>,
    pub p99_added_ms: Option<f64>,
    pub orchestrator_cpu_pct: Option<f64>,
    pub steal_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyReport {
    pub games: usize,
    pub players_per_game: usize,
    pub input_hz: u32,
    /// Measured time, all rounds together.
    pub window_secs: f64,
    /// Each round on its own.
    pub rounds: Vec<Round>,
    /// All rounds together.
    pub direct: RouteFigures,
    pub proxied: RouteFigures,
    /// Proxied minus direct, in ms.
    pub p50_added_ms: Option<f64>,
    pub p99_added_ms: Option<f64>,
    /// CPU over the last round.
    pub cpu: CpuReport,
    pub games_not_deleted: usize,
}

fn route_of(i: usize) -> Route {
    if i % 2 == 1 {
        Route::Proxied
    } else {
        Route::Direct
    }
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<ProxyReport> {
    let orb = args.orb.validate()?;
    if args.players < 2 || args.players > 64 || args.games == 0 {
        bail!("--games must be at least 1 and --players 2..=64 (half of them play through the orchestrator)");
    }
    let mut procs = vec![Proc {
        name: "gameserver".into(),
        pid: find_listener_pid(&args.gameserver).context("finding the game server's process")?,
    }];
    if let Ok(pid) = find_listener_pid(&orb.orchestrators[0]) {
        procs.push(Proc { name: "orchestrator".into(), pid });
    }
    procs.extend(node_procs(&orb.hypercache));
    // Proxied players all use the first orchestrator, so its CPU is the proxy's.
    let first = vec![orb.orchestrator_channels()?.remove(0)];
    let links = Links { direct: channels(&args.gameserver, args.connections)?, proxied: first.clone() };
    let store = orb.store()?;
    let games = create_games(&first, args.games, game_params(args.players as u32), 16, Duration::from_secs(30)).await?;
    let ids: Vec<String> = games.iter().map(|g| g.game_id.clone()).collect();
    let mut swarm = Swarm::new(links.clone(), args.input_hz);
    let measured: anyhow::Result<_> = async {
        let plans = join_all(&links, &ids, args.players, route_of, 32).await?;
        swarm.add(plans).await?;
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        let mut rounds = Vec::new();
        for _ in 0..args.rounds.max(1) {
            let cpu = CpuWindow::start(procs.clone())?;
            swarm.begin_window();
            tokio::time::sleep(orb.duration).await;
            let stats = swarm.end_window().await;
            rounds.push((stats, cpu.finish()?));
        }
        Ok(rounds)
    }
    .await;
    swarm.stop().await;
    let games_not_deleted = if args.keep { 0 } else { delete_games(&store, ids).await };
    let measured = measured?;
    let round_figures: Vec<Round> = measured
        .iter()
        .map(|(stats, cpu)| {
            let d = stats.direct.latency.summary();
            let p = stats.proxied.latency.summary();
            let diff = |f: fn(&MsSummary) -> f64| Some(f(p.as_ref()?) - f(d.as_ref()?));
            Round {
                direct_ms: d,
                proxied_ms: p,
                p50_added_ms: diff(|s| s.p50),
                p99_added_ms: diff(|s| s.p99),
                orchestrator_cpu_pct: cpu.pct_of("orchestrator"),
                steal_pct: cpu.steal_pct,
            }
        })
        .collect();
    let mut stats = WindowStats::default();
    let mut elapsed = Duration::ZERO;
    for (s, _) in &measured {
        stats.direct.merge(&s.direct);
        stats.proxied.merge(&s.proxied);
        elapsed += s.elapsed;
    }
    let cpu = measured.last().map(|(_, cpu)| cpu.clone()).context("no round measured")?;
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let per_route = args.players.div_ceil(2) * args.games;
    let figures = |s: &RouteStats, players: usize| RouteFigures {
        players,
        latency_ms: s.latency.summary(),
        update_gap_ms: s.gaps.summary(),
        updates_per_player_per_sec: s.updates as f64 / secs / players.max(1) as f64,
        inputs_dropped: s.inputs_dropped,
        missed_ticks: s.missed_ticks,
        snapshots_after_first: s.snapshots_after_first,
        game_overs: s.game_overs,
        errors: s.errors.clone(),
    };
    let direct = figures(&stats.direct, per_route);
    let proxied = figures(&stats.proxied, args.players / 2 * args.games);
    let diff = |f: fn(&MsSummary) -> f64| Some(f(proxied.latency_ms.as_ref()?) - f(direct.latency_ms.as_ref()?));
    Ok(ProxyReport {
        games: args.games,
        players_per_game: args.players,
        input_hz: args.input_hz,
        window_secs: secs,
        rounds: round_figures,
        p50_added_ms: diff(|s| s.p50),
        p99_added_ms: diff(|s| s.p99),
        direct,
        proxied,
        cpu,
        games_not_deleted,
    })
}

impl ProxyReport {
    pub fn to_text(&self) -> String {
        let route = |name: &str, r: &RouteFigures| {
            format!(
                "{name:<8} {} players: input->update {}\n         update gap {}, {:.1} updates/s per player, \
                 inputs dropped {}, missed ticks {}, extra snapshots {}, game overs {}, errors: {}\n",
                r.players,
                MsSummary::text(&r.latency_ms),
                MsSummary::text(&r.update_gap_ms),
                r.updates_per_player_per_sec,
                r.inputs_dropped,
                r.missed_ticks,
                r.snapshots_after_first,
                r.game_overs,
                r.errors.text()
            )
        };
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:+.2} ms"));
        let ms = |s: &Option<MsSummary>| s.map_or("-".into(), |s| format!("{:.2} / {:.2}", s.p50, s.p99));
        let rounds: String = self
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "round {}: direct p50/p99 {} ms, proxied {} ms: adds p50 {}, p99 {}; orchestrator CPU {}, steal {:.1} %\n",
                    i + 1,
                    ms(&r.direct_ms),
                    ms(&r.proxied_ms),
                    f(r.p50_added_ms),
                    f(r.p99_added_ms),
                    r.orchestrator_cpu_pct.map_or("-".into(), |c| format!("{c:.1} %")),
                    r.steal_pct
                )
            })
            .collect();
        format!(
            "orbstrike-proxy: {} games x {} players (alternately direct and through the orchestrator), {} inputs/s, \
             {:.1} s measured\n{rounds}all rounds:\n{}{}proxy adds: p50 {}, p99 {} (target: p99 <= +1 ms)\n{}\n{}",
            self.games,
            self.players_per_game,
            self.input_hz,
            self.window_secs,
            route("direct", &self.direct),
            route("proxied", &self.proxied),
            f(self.p50_added_ms),
            f(self.p99_added_ms),
            self.cpu.text(),
            if self.games_not_deleted > 0 {
                format!("{} games not deleted\n", self.games_not_deleted)
            } else {
                String::new()
            }
        )
    }
}
