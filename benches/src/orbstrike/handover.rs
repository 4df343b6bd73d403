//! `hcbench orbstrike-failover` and `hcbench orbstrike-drain`: how long a board is out of play
//! when its game server dies (`kill -9`) or is stopped (SIGTERM, a planned drain), and what the
//! players lose, as players connected through the orchestrator see it.
//!
//! Each trial:
//! 1. starts a *victim* game server (this process starts it, see [`super::procs`]), creates
//!    `--boards` games through the orchestrator (the victim is the only server with room, so
//!    it gets them all), then starts a *target* server with nothing on it;
//! 2. `--players` players per game join and play through the orchestrator (`JoinGame`,
//!    `Orchestrator.Play`) for `--settle` seconds plus a random 0-1 s (so the trials sample every
//!    phase of the orchestrators' board scans);
//! 3. kills the victim (`kill -9`) or sends it SIGTERM, and records the instant;
//! 4. waits until a player of every board has received a snapshot after that instant: the
//!    orchestrator re-routed its stream to the new owner, whose first update is a snapshot.
//!
//! Per board it reports:
//! - **served after**: from the kill/SIGTERM to the first update from the new owner at a
//!   player (the targets: <= 3 s for a kill with default settings, <= 500 ms for a drain);
//! - **gained after**: from the kill/SIGTERM to the new owner's `board gained` log line (it
//!   has loaded the checkpoint and ticks the board); the rest is the orchestrator noticing the
//!   move and re-opening the stream;
//! - for a drain, **released after**: the victim's `board drained` line (final checkpoint
//!   written, board released);
//! - **ticks lost**: the last tick the players saw from the old owner minus the tick the new
//!   owner resumed from (the tick of the checkpoint it loaded, from its `board gained` line).
//!   Positive means the players saw ticks that the store never got: after a kill, the ticks
//!   since the last checkpoint (the consistency contract says at most one checkpoint interval,
//!   250 ms by default, plus the sync in flight). After a drain it must be <= 0: the final
//!   checkpoint holds everything the players saw;
//! - **inputs rolled back**: the last input ack a player saw from the old owner minus the ack in
//!   the new owner's snapshot (inputs the players had seen applied but the new owner never got);
//! - the players' **gap**: last update from the old owner to first from the new one.
//!
//! Per trial it also reports when this process's registry watch saw the victim's registration
//! go: after a kill that is the lease expiring (up to the 3 s TTL after the last keepalive), the
//! first part of the failover time; the orchestrators' failover master then waits its margin
//! and finds the board in its next scan.
//!
//! The games are deleted and the target stopped at the end of each trial. Every figure is from
//! this machine's clock: the kill instant and the players' receive times are this process's,
//! the log lines' are the servers' (same host, same clock).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use hypercache_client::ServerUpdate;
use hypercache_proto::poison::lock;
use serde::Serialize;
use tokio::time::Instant;

use super::common::{create_games, delete_games, game_params, short_list, Errors, OrbArgs};
use super::procs::{board_events, ms_between, ServerSpec};
use super::swarm::{join_all, Links, Reroute, Route, Swarm};

/// How the victim is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `kill -9`: unplanned failover.
    Kill,
    /// SIGTERM: planned drain.
    Drain,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HandoverArgs {
    #[command(flatten)]
    pub orb: OrbArgs,
    /// The orbstrike-gameserver binary.
    #[arg(long, default_value = "target/release/orbstrike-gameserver")]
    pub gameserver_bin: PathBuf,
    /// First of the four ports the two game servers use (gRPC and admin each).
    #[arg(long, default_value_t = 7830)]
    pub base_port: u16,
    /// Where the game servers' logs go (kept for inspection).
    #[arg(long, default_value = "/tmp/hcbench-orbstrike")]
    pub log_dir: PathBuf,
    /// Boards on the victim.
    #[arg(long, default_value_t = 10)]
    pub boards: usize,
    /// Players per board (through the orchestrator).
    #[arg(long, default_value_t = 2)]
    pub players: usize,
    #[arg(long, default_value_t = 10)]
    pub input_hz: u32,
    /// The game servers' tick rate (to turn lost ticks into milliseconds).
    #[arg(long, default_value_t = 30)]
    pub tick_hz: u32,
    #[arg(long, default_value_t = 3)]
    pub trials: u32,
    /// Seconds of play before the victim is stopped (plus a random 0-1 s).
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
    /// How long to wait for every board to come back, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// More flags for both game servers (space-separated), e.g. "--checkpoint-interval-ms 100".
    #[arg(long, default_value = "")]
    pub gameserver_flags: String,
}

/// One board's hand-over.
#[derive(Debug, Clone, Serialize)]
pub struct BoardHandover {
    pub game_id: String,
    pub served_after_ms: Option<f64>,
    pub gained_after_ms: Option<f64>,
    pub released_after_ms: Option<f64>,
    pub released: Option<bool>,
    pub resume_tick: Option<u64>,
    pub last_old_tick: Option<u64>,
    pub ticks_lost: Option<i64>,
    pub ms_lost: Option<f64>,
    pub inputs_rolled_back: Option<u64>,
    pub player_gap_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub trial: u32,
    pub victim: String,
    pub target: String,
    pub boards: Vec<BoardHandover>,
    /// When this process's registry watch saw the victim's registration go (its lease expired
    /// after a kill; it deregistered at the end of a drain).
    pub registry_down_after_ms: Option<f64>,
    /// Drain: from SIGTERM to the victim's exit, and its exit status.
    pub victim_exit_after_ms: Option<f64>,
    pub victim_exit: Option<String>,
    /// Errors the players saw during the trial (a proxied player should see none).
    pub player_errors: Errors,
    pub logs: Vec<String>,
}

/// Quantiles of one figure over every board of every trial.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Option<Spread> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread { n: v.len(), min: v[0], median: v[(v.len() - 1) / 2], max: v[v.len() - 1] })
    }

    fn text(s: &Option<Spread>, unit: &str) -> String {
        match s {
            Some(s) => format!("min {:.0} / median {:.0} / max {:.0} {unit} (n={})", s.min, s.median, s.max, s.n),
            None => "-".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HandoverReport {
    pub mode: Mode,
    pub boards: usize,
    pub players_per_board: usize,
    pub trials: Vec<Trial>,
    pub served_after_ms: Option<Spread>,
    pub gained_after_ms: Option<Spread>,
    pub ticks_lost: Option<Spread>,
    pub boards_not_back: usize,
    pub target_ms: f64,
    /// Boards served on the new owner within the target.
    pub within_target: usize,
}

pub async fn run(mode: Mode, args: HandoverArgs) -> anyhow::Result<HandoverReport> {
    let orb = args.orb.validate()?;
    if args.boards == 0 || args.players == 0 || args.players > 64 || args.trials == 0 {
        bail!("--boards, --players (1..=64) and --trials must be at least 1");
    }
    let mut trials = Vec::new();
    for trial in 1..=args.trials {
        let t = run_trial(mode, &args, &orb, trial).await.with_context(|| format!("trial {trial}"))?;
        let served = Spread::of(t.boards.iter().filter_map(|b| b.served_after_ms).collect());
        eprintln!("trial {trial}: served after {}", Spread::text(&served, "ms"));
        trials.push(t);
    }
    let all: Vec<&BoardHandover> = trials.iter().flat_map(|t| &t.boards).collect();
    let target_ms = match mode {
        Mode::Kill => 3000.0,
        Mode::Drain => 500.0,
    };
    Ok(HandoverReport {
        mode,
        boards: args.boards,
        players_per_board: args.players,
        served_after_ms: Spread::of(all.iter().filter_map(|b| b.served_after_ms).collect()),
        gained_after_ms: Spread::of(all.iter().filter_map(|b| b.gained_after_ms).collect()),
        ticks_lost: Spread::of(all.iter().filter_map(|b| b.ticks_lost).map(|t| t as f64).collect()),
        boards_not_back: all.iter().filter(|b| b.served_after_ms.is_none()).count(),
        target_ms,
        within_target: all.iter().filter(|b| b.served_after_ms.is_some_and(|ms| ms <= target_ms)).count(),
        trials,
    })
}

async fn run_trial(mode: Mode, args: &HandoverArgs, orb: &super::common::Orb, trial: u32) -> anyhow::Result<Trial> {
    let tag = match mode {
        Mode::Kill => "kill",
        Mode::Drain => "drain",
    };
    let spec = |suffix: &str, port: u16| ServerSpec {
        bin: args.gameserver_bin.clone(),
        server_id: format!("hcb-{tag}-{}-{trial}-{suffix}", std::process::id()),
        port,
        admin_port: port + 1,
        hypercache: orb.hypercache.clone(),
        log_dir: args.log_dir.clone(),
        extra: args.gameserver_flags.split_whitespace().map(str::to_string).collect(),
    };
    let (victim_spec, target_spec) = (spec("victim", args.base_port), spec("target", args.base_port + 2));
    let mut victim = victim_spec.start(trial).await?;
    let orchestrators = orb.orchestrator_channels()?;
    let store = orb.store()?;
    // The orchestrator sees the new server through its registry watch; until then it may
    // refuse (no room) or, if an older server is still registered, place elsewhere.
    let games =
        create_games(&orchestrators, args.boards, game_params(args.players as u32), 8, Duration::from_secs(30)).await?;
    let ids: Vec<String> = games.iter().map(|g| g.game_id.clone()).collect();
    let elsewhere: Vec<String> =
        games.iter().filter(|g| g.server_id != victim_spec.server_id).map(|g| g.game_id.clone()).collect();
    if !elsewhere.is_empty() {
        delete_games(&store, ids).await;
        bail!(
            "games {} were placed on other servers than the victim {}: is another game server registered?",
            short_list(&elsewhere, 3),
            victim_spec.server_id
        );
    }
    let target = target_spec.start(trial).await?;
    let links = Links { direct: Vec::new(), proxied: orchestrators };
    let mut swarm = Swarm::new(links.clone(), args.input_hz);
    let outcome = async {
        let plans = join_all(&links, &ids, args.players, |_| Route::Proxied, 16).await?;
        swarm.add(plans).await?;
        swarm.begin_window();
        let registry_down = watch_down(&store, &victim_spec.server_id);
        // Up to a second more, at random: the trials would otherwise stop the victim at the same
        // phase of the orchestrators' 1 s board scan every time and sample one scan delay.
        let jitter = Duration::from_millis(rand::random::<u64>() % 1000);
        tokio::time::sleep(Duration::from_secs(args.settle) + jitter).await;
        let (wall0, t0) = match mode {
            Mode::Kill => victim.kill9()?,
            Mode::Drain => victim.term()?,
        };
        let deadline = t0 + Duration::from_secs(args.timeout);
        let firsts = wait_for_reroutes(&swarm, &ids, t0, deadline).await;
        let exit = match mode {
            Mode::Kill => None,
            Mode::Drain => victim.wait_exit(deadline.saturating_duration_since(Instant::now())).await?,
        };
        // Let the new owner's log lines reach the file.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = swarm.end_window().await;
        let down = registry_down.abort_and_get();
        anyhow::Ok((wall0, t0, firsts, exit, stats, down))
    }
    .await;
    swarm.stop().await;
    delete_games(&store, ids.clone()).await;
    let target_log = target.log.clone();
    let victim_log = victim.log.clone();
    target.stop(Duration::from_secs(15)).await;
    drop(victim);
    let (wall0, t0, firsts, exit, stats, down) = outcome?;
    let gained = board_events(&target_log)?;
    let drained = board_events(&victim_log)?;
    let boards = ids
        .iter()
        .map(|id| {
            let events: Vec<&Reroute> = firsts.get(id).map(|v| v.iter().collect()).unwrap_or_default();
            let first = events.iter().min_by_key(|e| e.at);
            let gain = gained.iter().find(|e| &e.board == id && e.message == "board gained");
            let drain = drained.iter().find(|e| &e.board == id && e.message == "board drained");
            let last_old_tick = events.iter().map(|e| e.prev_tick).max();
            let resume_tick = gain.and_then(|g| g.tick);
            let ticks_lost = last_old_tick.zip(resume_tick).map(|(l, r)| l as i64 - r as i64);
            BoardHandover {
                game_id: id.clone(),
                served_after_ms: first.map(|e| e.at.saturating_duration_since(t0).as_secs_f64() * 1000.0),
                gained_after_ms: gain.map(|g| ms_between(wall0, g.at)),
                released_after_ms: drain.map(|d| ms_between(wall0, d.at)),
                released: drain.and_then(|d| d.released),
                resume_tick,
                last_old_tick,
                ticks_lost,
                ms_lost: ticks_lost.map(|t| t as f64 * 1000.0 / f64::from(args.tick_hz.max(1))),
                inputs_rolled_back: events.iter().map(|e| e.prev_ack.saturating_sub(e.ack)).max(),
                player_gap_ms: first
                    .and_then(|e| e.prev_at.map(|p| e.at.saturating_duration_since(p).as_secs_f64() * 1000.0)),
            }
        })
        .collect();
    Ok(Trial {
        trial,
        victim: victim_spec.server_id.clone(),
        target: target_spec.server_id.clone(),
        boards,
        registry_down_after_ms: down.map(|at| ms_between(wall0, at)),
        victim_exit_after_ms: exit.map(|(_, at)| at.saturating_duration_since(t0).as_secs_f64() * 1000.0),
        victim_exit: exit.map(|(status, _)| status.to_string()),
        player_errors: stats.proxied.errors,
        logs: vec![victim_log.display().to_string(), target_log.display().to_string()],
    })
}

/// Watches the registry in the background for `server_id`'s DOWN event.
struct DownWatch {
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Option<SystemTime>>>,
}

impl DownWatch {
    /// Stops watching; when the DOWN event arrived, if it did.
    fn abort_and_get(self) -> Option<SystemTime> {
        self.task.abort();
        *lock(&self.seen)
    }
}

fn watch_down(store: &hypercache_client::Client, server_id: &str) -> DownWatch {
    let seen = Arc::new(Mutex::new(None));
    let mut watch = store.watch_servers();
    let (id, out) = (server_id.to_string(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok(update) = watch.next().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let ServerUpdate::Changes { changes, .. } = update {
                if changes.iter().any(|c| !c.up && c.server.server_id == id) {
                    *lock(&out) = Some(SystemTime::now());
                    return;
                }
            }
        }
    });
    DownWatch { task, seen }
}

/// Each player's first snapshot after `t0`, by game, once every game has one (or at the
/// deadline).
async fn wait_for_reroutes(
    swarm: &Swarm,
    ids: &[String],
    t0: Instant,
    deadline: Instant,
) -> BTreeMap<String, Vec<Reroute>> {
    loop {
        let mut firsts: BTreeMap<String, BTreeMap<u32, Reroute>> = BTreeMap::new();
        for e in swarm.reroutes().into_iter().filter(|e| e.at > t0) {
            let by_player = firsts.entry(e.game_id.clone()).or_default();
            if by_player.get(&e.player_id).is_none_or(|old| e.at < old.at) {
                by_player.insert(e.player_id, e);
            }
        }
        if ids.iter().all(|id| firsts.contains_key(id)) || Instant::now() >= deadline {
            return firsts.into_iter().map(|(g, m)| (g, m.into_values().collect())).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn trial_text(mode: Mode, t: &Trial) -> String {
    let mut s = format!("trial {}: victim {} -> target {}", t.trial, t.victim, t.target);
    if mode == Mode::Drain {
        s.push_str(&format!(
            ", victim exited {} ms after SIGTERM ({})",
            opt(t.victim_exit_after_ms),
            t.victim_exit.as_deref().unwrap_or("still running at the deadline")
        ));
    }
    s.push_str(&format!(
        ", registration gone after {} ms, player errors: {}\n",
        opt(t.registry_down_after_ms),
        t.player_errors.text()
    ));
    s.push_str(
        "  board                       served  gained released  ticks lost (old -> resumed)  inputs back  gap\n",
    );
    for b in &t.boards {
        s.push_str(&format!(
            "  {:<26} {:>7} {:>7} {:>8}  {:>4} = {:>6} -> {:<6}       {:>11}  {:>5}\n",
            b.game_id,
            opt(b.served_after_ms),
            opt(b.gained_after_ms),
            match (b.released_after_ms, b.released) {
                (Some(ms), Some(false)) => format!("{ms:.0}!"),
                (ms, _) => opt(ms),
            },
            b.ticks_lost.map_or("-".into(), |t| t.to_string()),
            b.last_old_tick.map_or("-".into(), |t| t.to_string()),
            b.resume_tick.map_or("-".into(), |t| t.to_string()),
            b.inputs_rolled_back.map_or("-".into(), |t| t.to_string()),
            opt(b.player_gap_ms),
        ));
    }
    s
}

impl HandoverReport {
    pub fn to_text(&self) -> String {
        let what = match self.mode {
            Mode::Kill => "kill -9 of the owning game server",
            Mode::Drain => "SIGTERM (drain) of the owning game server",
        };
        let mut s = format!(
            "orbstrike-{}: {what}; {} boards x {} players through the orchestrator; times in ms from the signal\n",
            match self.mode {
                Mode::Kill => "failover",
                Mode::Drain => "drain",
            },
            self.boards,
            self.players_per_board
        );
        for t in &self.trials {
            s.push_str(&trial_text(self.mode, t));
        }
        s.push_str(&format!(
            "served on the new owner after: {} (target <= {:.0} ms: {} of {} boards)\nnew owner loaded it after: {}\n\
             ticks lost (last seen from the old owner - resumed from): {}\nboards not back by the deadline: {}\n",
            Spread::text(&self.served_after_ms, "ms"),
            self.target_ms,
            self.within_target,
            self.trials.iter().map(|t| t.boards.len()).sum::<usize>(),
            Spread::text(&self.gained_after_ms, "ms"),
            Spread::text(&self.ticks_lost, "ticks"),
            self.boards_not_back
        ));
        s
    }
}
