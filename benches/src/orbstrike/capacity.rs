//! `hcbench orbstrike-capacity`: how many boards one game-server process ticks at 30 Hz.
//!
//! Setup: `--boards` games are created through the orchestrator (so the one game server
//! running gets them all), `--players` players join each one *directly* on the game server
//! (`GameServer.AddPlayer`) and play on `GameServer.Play` streams (see [`super::swarm`]): the
//! orchestrator's proxy is measured separately (`orbstrike-proxy`). Every player sends
//! `--input-hz` inputs per second and steers like the bot.
//!
//! Each level runs `--warmup` seconds, then a measured window of `--duration` seconds over
//! which are read:
//! - from the game server's `/metrics`: ticks run, the tick-duration histogram (the time one
//!   board's tick takes, from applying intents to queueing the updates and handing over the
//!   checkpoint), checkpoint syncs and dropped updates;
//! - from the players: update rate, gap between updates, input-to-update latency;
//! - from `/proc`: CPU of the game server, the orchestrator, each HyperCache node and hcbench,
//!   the whole machine, and the hypervisor's steal.
//!
//! **Overrun.** A board's ticks come from a Tokio interval that skips missed ticks, so a tick
//! that cannot start within its 33.3 ms slot is not run late but dropped, and game time slows
//! down. The level overran if the server ran fewer than 99 % of the nominal ticks
//! (boards x tick rate x window). A single tick never comes near the budget (microseconds), so
//! the per-tick p99 is reported next to the budget for completeness, and the real budget is the
//! server's CPU: all boards' ticks, updates and checkpoints must fit in the cores it gets.
//!
//! A window in which the hypervisor stole more than `--max-steal` of the CPU is measured again
//! (at most `--steal-retries` times; the discarded windows are listed in the report).
//!
//! With `--search`, levels step up by `--step` boards (adding boards to the running ones) until
//! a level overruns or `--max-boards` is reached; the report gives the largest level that did not
//! overrun.
//!
//! CPU per player-tick is the game server's CPU time in the window divided by the ticks it ran
//! times the players per board: everything the server did (ticks, encoding and sending 30
//! updates per player per second, receiving inputs, checkpoints) charged to the player-ticks.
//!
//! At the end the benchmark's games are deleted from the store.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use super::common::{
    channels, create_games, delete_games, find_listener_pid, game_params, node_procs, CpuReport, CpuWindow, Errors,
    MsSummary, OrbArgs, Proc,
};
use super::metrics::{scrape, BucketQuantile, Scrape};
use super::swarm::{join_all, Links, Route, Swarm};

const TICK_HISTOGRAM: &str = "orbstrike_gameserver_tick_duration_seconds";

#[derive(Debug, Clone, clap::Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub orb: OrbArgs,
    /// The game server's gRPC address (players play on it directly).
    #[arg(long, default_value = "127.0.0.1:7810")]
    pub gameserver: String,
    /// The game server's admin address (/metrics).
    #[arg(long, default_value = "127.0.0.1:7811")]
    pub gameserver_admin: String,
    /// Boards (of the first level).
    #[arg(long, default_value_t = 200)]
    pub boards: usize,
    /// Players per board.
    #[arg(long, default_value_t = 10)]
    pub players: usize,
    /// Inputs per second per player.
    #[arg(long, default_value_t = 10)]
    pub input_hz: u32,
    /// The boards' tick rate, as configured on the game server (for the nominal tick count).
    #[arg(long, default_value_t = 30)]
    pub tick_hz: u32,
    /// Seconds of play before each measured window.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Step the boards up until a level overruns.
    #[arg(long)]
    pub search: bool,
    /// Boards added per level with --search.
    #[arg(long, default_value_t = 100)]
    pub step: usize,
    /// Largest level tried with --search.
    #[arg(long, default_value_t = 2000)]
    pub max_boards: usize,
    /// HTTP/2 connections the players share (default: one per 250 players of the largest level,
    /// 2..=16).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Joins and creates in flight.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// Leave the games in the store at the end.
    #[arg(long)]
    pub keep: bool,
    /// Measure a level again when the hypervisor stole more than this share of the CPU (%) in
    /// its window: on this VM steal comes in bursts of up to 70 % that stall every process
    /// (game servers have lost their lease in them), which says nothing about the game server.
    #[arg(long, default_value_t = 10.0)]
    pub max_steal: f64,
    /// How many times a level is measured again for steal (the last measurement counts).
    #[arg(long, default_value_t = 2)]
    pub steal_retries: u32,
}

/// One level's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub boards: usize,
    pub players: usize,
    pub window_secs: f64,
    pub nominal_ticks_per_sec: f64,
    pub ticks_per_sec: f64,
    /// Ticks run over nominal ticks, in percent.
    pub tick_rate_pct: f64,
    pub overrun: bool,
    pub tick_budget_ms: f64,
    pub tick_p50_ms: Option<BucketQuantile>,
    pub tick_p99_ms: Option<BucketQuantile>,
    pub tick_mean_ms: f64,
    /// Ticks longer than the budget (exact only at a bucket bound; the largest bucket is 25 ms).
    pub ticks_over_25ms: f64,
    /// Time spent inside ticks, in percent of one core.
    pub tick_work_pct: f64,
    pub checkpoint_syncs_per_sec: f64,
    pub checkpoint_sync_p99_ms: Option<BucketQuantile>,
    /// Updates the server dropped for full player queues (each costs that player a snapshot).
    pub dropped_updates: f64,
    pub updates_per_sec: f64,
    pub updates_per_player_per_sec: f64,
    pub update_gap_ms: Option<MsSummary>,
    pub latency_ms: Option<MsSummary>,
    pub missed_ticks: u64,
    pub game_overs: u64,
    pub errors: Errors,
    pub cpu: CpuReport,
    /// Game-server CPU per player per tick, in microseconds.
    pub gameserver_cpu_us_per_player_tick: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    pub gameserver: String,
    pub players_per_board: usize,
    pub input_hz: u32,
    pub tick_hz: u32,
    pub connections: usize,
    pub levels: Vec<Level>,
    /// Windows measured again because the hypervisor stole more than `--max-steal` of the CPU.
    pub discarded_for_steal: Vec<Level>,
    /// The largest level that did not overrun (None if the first did).
    pub max_boards_without_overrun: Option<usize>,
    pub search: bool,
    pub games_not_deleted: usize,
}

pub async fn run(args: CapacityArgs) -> anyhow::Result<CapacityReport> {
    let orb = args.orb.validate()?;
    if args.players == 0 || args.players > 64 || args.boards == 0 {
        bail!("--boards must be at least 1 and --players 1..=64");
    }
    let gs_pid = find_listener_pid(&args.gameserver).context("finding the game server's process")?;
    let mut procs = vec![Proc { name: "gameserver".into(), pid: gs_pid }];
    if let Ok(pid) = find_listener_pid(&orb.orchestrators[0]) {
        procs.push(Proc { name: "orchestrator".into(), pid });
    }
    procs.extend(node_procs(&orb.hypercache));
    let most = if args.search { args.max_boards.max(args.boards) } else { args.boards };
    let connections = args.connections.unwrap_or((most * args.players).div_ceil(250).clamp(2, 16));
    let links = Links { direct: channels(&args.gameserver, connections)?, proxied: orb.orchestrator_channels()? };
    let orchestrators = orb.orchestrator_channels()?;
    let store = orb.store()?;
    let mut swarm = Swarm::new(links.clone(), args.input_hz);
    let mut created: Vec<String> = Vec::new();
    let mut levels = Vec::new();
    let mut discarded = Vec::new();
    let mut target = args.boards;
    let outcome: anyhow::Result<()> = async {
        loop {
            let add = target - swarm.boards();
            let games = create_games(
                &orchestrators,
                add,
                game_params(args.players as u32),
                args.setup_concurrency,
                Duration::from_secs(30),
            )
            .await?;
            created.extend(games.iter().map(|g| g.game_id.clone()));
            let ids: Vec<String> = games.iter().map(|g| g.game_id.clone()).collect();
            let plans = join_all(&links, &ids, args.players, |_| Route::Direct, args.setup_concurrency).await?;
            swarm.add(plans).await?;
            tokio::time::sleep(Duration::from_secs(args.warmup)).await;
            let mut level = measure(&args, &mut swarm, procs.clone(), orb.duration).await?;
            let mut retries = 0;
            while level.cpu.steal_pct > args.max_steal && retries < args.steal_retries {
                eprintln!(
                    "{} boards: the hypervisor stole {:.1} % of the CPU in the window; measuring again",
                    level.boards, level.cpu.steal_pct
                );
                discarded.push(level);
                retries += 1;
                tokio::time::sleep(Duration::from_secs(args.warmup)).await;
                level = measure(&args, &mut swarm, procs.clone(), orb.duration).await?;
            }
            let overrun = level.overrun;
            eprintln!("{} boards: ticks at {:.1} % of nominal", level.boards, level.tick_rate_pct);
            levels.push(level);
            if !args.search || overrun || target + args.step > args.max_boards {
                return Ok(());
            }
            target += args.step;
        }
    }
    .await;
    swarm.stop().await;
    let games_not_deleted = if args.keep { 0 } else { delete_games(&store, created).await };
    outcome?;
    let max_boards_without_overrun = levels.iter().filter(|l| !l.overrun).map(|l| l.boards).max();
    Ok(CapacityReport {
        gameserver: args.gameserver.clone(),
        players_per_board: args.players,
        input_hz: args.input_hz,
        tick_hz: args.tick_hz,
        connections,
        levels,
        discarded_for_steal: discarded,
        max_boards_without_overrun,
        search: args.search,
        games_not_deleted,
    })
}

async fn measure(args: &CapacityArgs, swarm: &mut Swarm, procs: Vec<Proc>, window: Duration) -> anyhow::Result<Level> {
    let before = scrape(&args.gameserver_admin).await?;
    let cpu = CpuWindow::start(procs)?;
    swarm.begin_window();
    tokio::time::sleep(window).await;
    let stats = swarm.end_window().await;
    let cpu = cpu.finish()?;
    let after = scrape(&args.gameserver_admin).await?;
    Ok(level(args, swarm.boards(), &before, &after, &stats.direct, stats.elapsed, cpu))
}

fn level(
    args: &CapacityArgs,
    boards: usize,
    before: &Scrape,
    after: &Scrape,
    players: &super::swarm::RouteStats,
    elapsed: Duration,
    cpu: CpuReport,
) -> Level {
    let secs = cpu.window_secs.max(f64::MIN_POSITIVE);
    let ticks = before.delta(after, "orbstrike_gameserver_ticks_total");
    let nominal = boards as f64 * f64::from(args.tick_hz);
    let ticks_per_sec = ticks / secs;
    let tick_rate_pct = 100.0 * ticks_per_sec / nominal.max(f64::MIN_POSITIVE);
    let h = before.histogram_delta(after, TICK_HISTOGRAM);
    let ms = |q: Option<BucketQuantile>| q.map(|q| BucketQuantile { value: q.value * 1000.0, ..q });
    let syncs = before.histogram_delta(after, "orbstrike_gameserver_checkpoint_sync_duration_seconds");
    let gs_cpu = cpu.pct_of("gameserver");
    let player_ticks = ticks * args.players as f64;
    let players_total = (boards * args.players) as f64;
    let window = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Level {
        boards,
        players: boards * args.players,
        window_secs: secs,
        nominal_ticks_per_sec: nominal,
        ticks_per_sec,
        tick_rate_pct,
        overrun: tick_rate_pct < 99.0,
        tick_budget_ms: 1000.0 / f64::from(args.tick_hz.max(1)),
        tick_p50_ms: ms(h.quantile(0.5)),
        tick_p99_ms: ms(h.quantile(0.99)),
        tick_mean_ms: if h.count > 0.0 { 1000.0 * h.sum / h.count } else { 0.0 },
        ticks_over_25ms: h.above(0.025),
        tick_work_pct: 100.0 * h.sum / secs,
        checkpoint_syncs_per_sec: syncs.count / secs,
        checkpoint_sync_p99_ms: ms(syncs.quantile(0.99)),
        dropped_updates: before.delta(after, "orbstrike_gameserver_subscriber_resyncs_total"),
        updates_per_sec: players.updates as f64 / window,
        updates_per_player_per_sec: players.updates as f64 / window / players_total.max(1.0),
        update_gap_ms: players.gaps.summary(),
        latency_ms: players.latency.summary(),
        missed_ticks: players.missed_ticks,
        game_overs: players.game_overs,
        errors: players.errors.clone(),
        gameserver_cpu_us_per_player_tick: gs_cpu
            .filter(|_| player_ticks > 0.0)
            .map(|pct| pct / 100.0 * secs * 1e6 / player_ticks),
        cpu,
    }
}

fn q_text(q: &Option<BucketQuantile>) -> String {
    match q {
        Some(q) if q.above_last_bucket => format!("> {:.3}", q.value),
        Some(q) => format!("{:.3}", q.value),
        None => "-".into(),
    }
}

fn level_text(l: &Level) -> String {
    format!(
        "{} boards x {} players: ticks {:.0}/s of {:.0} ({:.1} %){}; tick p50 {} / p99 {} / mean {:.3} ms \
         (budget {:.1} ms), {:.0} ticks > 25 ms, ticks take {:.1} % of a core\n  \
         checkpoints {:.0}/s (sync p99 {} ms), dropped updates {:.0}; players: {:.0} updates/s ({:.1} per player), \
         update gap {}, input->update {}, missed ticks {}, game overs {}, errors: {}\n  \
         {}\n  game server CPU per player-tick: {}",
        l.boards,
        l.players / l.boards.max(1),
        l.ticks_per_sec,
        l.nominal_ticks_per_sec,
        l.tick_rate_pct,
        if l.overrun { " OVERRUN" } else { "" },
        q_text(&l.tick_p50_ms),
        q_text(&l.tick_p99_ms),
        l.tick_mean_ms,
        l.tick_budget_ms,
        l.ticks_over_25ms,
        l.tick_work_pct,
        l.checkpoint_syncs_per_sec,
        q_text(&l.checkpoint_sync_p99_ms),
        l.dropped_updates,
        l.updates_per_sec,
        l.updates_per_player_per_sec,
        MsSummary::text(&l.update_gap_ms),
        MsSummary::text(&l.latency_ms),
        l.missed_ticks,
        l.game_overs,
        l.errors.text(),
        l.cpu.text(),
        l.gameserver_cpu_us_per_player_tick.map_or("-".into(), |v| format!("{v:.2} us")),
    )
}

impl CapacityReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "orbstrike-capacity: game server {}, {} players per board (direct GameServer.Play), {} inputs/s each, \
             {} Hz, {} connections{}\n",
            self.gameserver,
            self.players_per_board,
            self.input_hz,
            self.tick_hz,
            self.connections,
            if self.search { ", searching upwards" } else { "" }
        );
        for l in &self.levels {
            s.push_str(&level_text(l));
            s.push('\n');
        }
        for l in &self.discarded_for_steal {
            s.push_str(&format!(
                "(discarded: {} boards measured under {:.1} % steal: ticks at {:.1} % of nominal)\n",
                l.boards, l.cpu.steal_pct, l.tick_rate_pct
            ));
        }
        s.push_str(&match self.max_boards_without_overrun {
            Some(b) => format!("largest level without overrun: {b} boards\n"),
            None => "every level overran\n".to_string(),
        });
        if self.games_not_deleted > 0 {
            s.push_str(&format!("{} games could not be deleted\n", self.games_not_deleted));
        }
        s
    }
}
