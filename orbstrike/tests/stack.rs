//! The stack as separate processes: real `orbstrike-gameserver` and `orbstrike-orchestrator`
//! binaries on an in-process HyperCache, with bots and an observing player in the test process
//! talking only to the orchestrators' public API.
//!
//! What is checked (issue 4, item 7):
//! - a `kill -9` of the game server that owns a board: the board resumes on the other server from
//!   its last checkpoint and the players' streams continue (failover time printed);
//! - at no moment do two servers accept inputs for the same board, from the servers' accept logs
//!   and the store's epochs, across a failover, a restart and a drain;
//! - a killed failover master is replaced (larger term) and failover still happens;
//! - a SIGTERM drain hands boards over at once with no checkpoint loss;
//! - bad inputs through the orchestrator get clear errors (filling the gaps that
//!   `tests/orchestrator.rs` leaves: there the game servers are fakes).
//!
//! Timers are short (game-server lease 2 s, failover margin 300 ms, scans every 100 ms) so that a
//! failover costs a few seconds; every wait is a condition with a deadline. Measured times are
//! printed (`cargo test -p orbstrike --test stack -- --nocapture`), never asserted beyond the
//! correctness points.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, init_logging, ChildProcess, HyperCache};
use hypercache_client::{Board, Checkpoint, Client, Term};
use nix::sys::signal::Signal;
use orbstrike::bot::{self, BotConfig};
use orbstrike::orchestrator::token::{Claims, TokenKey};
use orbstrike::orchestrator::DEFAULT_ELECTION;
use orbstrike::proto::v1 as pb;
use pb::orchestrator_client::OrchestratorClient;
use pb::play_request::Msg;
use pb::play_update::Body;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

const GAME_SERVER: &str = env!("CARGO_BIN_EXE_orbstrike-gameserver");
const ORCHESTRATOR: &str = env!("CARGO_BIN_EXE_orbstrike-orchestrator");
const SECRET: &str = "stack-test-token-secret";
const WAIT: Duration = Duration::from_secs(30);
/// The game servers' registration lease: a killed server's boards move after this plus the
/// failover margin.
const LEASE_TTL_MS: u64 = 2000;

// ---------------------------------------------------------------------------------------------
// Processes.

/// The test's store and directory for process logs and accept logs.
struct Env {
    hc: HyperCache,
    store: Client,
    endpoints: String,
    dir: TempDir,
}

impl Env {
    async fn start() -> Env {
        init_logging();
        let hc = HyperCache::start(1).await;
        let store = hc.client();
        let endpoints = hc.endpoints().join(",");
        Env { hc, store, endpoints, dir: tempfile::tempdir().expect("tempdir") }
    }

    fn accept_log(&self, server: &str) -> PathBuf {
        self.dir.path().join(format!("{server}.accept.jsonl"))
    }

    /// A game server process; `run` tells restarts apart in the process log's name (the accept
    /// log is per server id, appended to by every run).
    fn game_server(&self, id: &str, run: u32) -> ChildProcess {
        let args: Vec<String> = [
            "--server-id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--hypercache",
            &self.endpoints,
            "--capacity",
            "10",
            "--checkpoint-interval-ms",
            "100",
            "--lease-ttl-ms",
            &LEASE_TTL_MS.to_string(),
            "--lease-margin-ms",
            "400",
            "--drain-timeout-ms",
            "5000",
            "--accept-log",
            &self.accept_log(id).display().to_string(),
            "--log-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ChildProcess::spawn(id, GAME_SERVER, &args, self.dir.path().join(format!("{id}.{run}.log")))
    }

    /// An orchestrator process and the address it listens on (it binds port 0 and logs it).
    async fn orchestrator(&self, id: &str) -> (ChildProcess, String) {
        let args: Vec<String> = [
            "--id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--hypercache",
            &self.endpoints,
            "--token-secret",
            SECRET,
            "--failover-margin-ms",
            "300",
            "--scan-interval-ms",
            "100",
            "--election-ttl-ms",
            "1000",
            "--reroute-timeout-ms",
            "20000",
            "--create-rate",
            "1000",
            "--create-burst",
            "1000",
            "--log-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = ChildProcess::spawn(id, ORCHESTRATOR, &args, self.dir.path().join(format!("{id}.log")));
        let listen =
            process.wait_event("orchestrator started", WAIT, |f| f.get("listen")?.as_str().map(str::to_string)).await;
        (process, listen)
    }

    /// Waits until the registry lists every one of `ids`.
    async fn registered(&self, ids: &[&str]) {
        eventually(&format!("{ids:?} registered"), WAIT, || {
            let store = self.store.clone();
            async move {
                let live: HashSet<String> = store.list_servers().await.ok()?.into_iter().map(|s| s.server_id).collect();
                ids.iter().all(|id| live.contains(*id)).then_some(())
            }
        })
        .await;
    }

    /// The failover master's candidate id and term.
    async fn master(&self) -> (String, Term) {
        eventually("a failover master", WAIT, || {
            let store = self.store.clone();
            async move {
                let leader = store.election_leader(DEFAULT_ELECTION).await.ok()?.leader?;
                Some((leader.candidate, leader.term))
            }
        })
        .await
    }

    async fn board(&self, id: &str) -> (Board, Option<Checkpoint>) {
        let record = self.store.get_board(id, false).await.expect("get board").expect("the board exists");
        (record.board, record.checkpoint)
    }

    /// Polls until `id` is owned by `server` at an epoch above `above`; returns the board and when
    /// it was first seen so.
    async fn moved_to(&self, id: &str, server: &str, above: u64) -> (Board, Instant) {
        eventually(&format!("{id} to be owned by {server} above epoch {above}"), WAIT, || {
            let store = self.store.clone();
            async move {
                let board = store.get_board(id, false).await.ok()??.board;
                (owner(&board) == server && board.epoch.0 > above).then(|| (board, Instant::now()))
            }
        })
        .await
    }
}

fn owner(board: &Board) -> &str {
    board.owner.as_ref().map_or("", |o| o.server_id.as_str())
}

async fn client(endpoint: &str) -> OrchestratorClient<Channel> {
    OrchestratorClient::connect(format!("http://{endpoint}")).await.expect("connect to the orchestrator")
}

/// Waits until the orchestrator's stats count `n` live game servers (its placement view).
async fn sees_servers(endpoint: &str, n: u64) {
    let mut stats =
        client(endpoint).await.watch_stats(pb::WatchStatsRequest {}).await.expect("watch stats").into_inner();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, stats.message()).await;
        let stats = next.expect("stats in time").expect("the stats stream").expect("the stats stream goes on");
        if stats.servers == n {
            return;
        }
    }
}

fn params(max_players: u32) -> pb::GameParams {
    pb::GameParams {
        arena_radius: 1000.0,
        max_players,
        speed: 100.0,
        player_radius: 10.0,
        ring_radius: 30.0,
        tick_hz: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// An observing player: joins through an orchestrator, keeps its ring on (it cannot be killed and
// does not move) and sends an input every 50 ms, recording every update it gets.

#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    tick: u64,
    /// A full snapshot after the first update of the stream: the orchestrator re-routed the
    /// stream to a new owner, and this is that owner's first update.
    resync: bool,
}

struct Observer {
    seen: Arc<Mutex<Vec<Seen>>>,
    ended: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Observer {
    async fn join(endpoint: &str, game: &str) -> Observer {
        let mut client = client(endpoint).await;
        let join = pb::JoinGameRequest { game_id: game.into(), name: "observer".into() };
        let joined = client.join_game(join).await.expect("the observer joins").into_inner();
        let (tx, rx) = mpsc::channel(64);
        let hello = pb::Hello { token: joined.token, ..Default::default() };
        tx.send(pb::PlayRequest { msg: Some(Msg::Hello(hello)) }).await.expect("queue hello");
        let mut updates = client.play(ReceiverStream::new(rx)).await.expect("the observer plays").into_inner();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (seen_w, ended_w) = (seen.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let mut inputs = tokio::time::interval(Duration::from_millis(50));
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = inputs.tick() => {
                        seq += 1;
                        let input = pb::Input { seq, direction: pb::Direction::None as i32, ring: true };
                        let _ = tx.try_send(pb::PlayRequest { msg: Some(Msg::Input(input)) });
                    }
                    update = updates.message() => {
                        let end = match update {
                            Ok(Some(u)) => {
                                let mut seen = seen_w.lock().expect("observer lock");
                                let resync = !seen.is_empty() && matches!(u.body, Some(Body::Snapshot(_)));
                                seen.push(Seen { at: Instant::now(), tick: u.tick, resync });
                                if matches!(u.body, Some(Body::GameOver(_))) { format!("game over: {u:?}") } else { continue }
                            }
                            Ok(None) => "the stream ended".to_string(),
                            Err(status) => format!("the stream failed: {status:?}"),
                        };
                        *ended_w.lock().expect("observer lock") = Some(end);
                        return;
                    }
                }
            }
        });
        Observer { seen, ended, task }
    }

    fn assert_playing(&self) {
        if let Some(end) = self.ended.lock().expect("observer lock").clone() {
            panic!("the observer's stream must not end (no player-visible error): {end}");
        }
    }

    fn first_resync_after(&self, t: Instant) -> Option<Seen> {
        self.seen.lock().expect("observer lock").iter().find(|s| s.at > t && s.resync).copied()
    }

    async fn wait_updates_after(&self, t: Instant, n: usize) {
        eventually(&format!("{n} updates to the observer"), WAIT, || async {
            self.assert_playing();
            (self.seen.lock().expect("observer lock").iter().filter(|s| s.at > t).count() >= n).then_some(())
        })
        .await;
    }

    /// Waits for the re-routed stream's first update after `t` and then a steady flow from the
    /// new owner; returns that first update.
    async fn wait_resumed_after(&self, t: Instant) -> Seen {
        let resync = eventually("the observer's stream to resume on the new owner", WAIT, || async {
            self.assert_playing();
            self.first_resync_after(t)
        })
        .await;
        self.wait_updates_after(resync.at, 10).await;
        resync
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Accept logs.

/// One line of a game server's accept log.
#[derive(Debug, Clone, serde::Deserialize)]
struct Accepted {
    board: String,
    server: String,
    epoch: u64,
    tick: u64,
    at_ms: u64,
}

fn read_accept_logs(paths: &[PathBuf]) -> Vec<Accepted> {
    let mut lines = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        lines.extend(text.lines().map(|l| serde_json::from_str::<Accepted>(l).expect("an accept-log line")));
    }
    lines
}

/// One owner's stretch of accepting inputs for one board at one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stretch {
    server: String,
    epoch: u64,
    first_ms: u64,
    last_ms: u64,
    last_tick: u64,
}

/// Per board, the stretches in epoch order. Checks the single-owner invariant: an epoch is
/// accepted by one server only, and the stretches follow each other in time in epoch order
/// without overlapping, so nobody accepted at an epoch older than one another server had
/// already accepted at.
fn single_owner_stretches(lines: &[Accepted]) -> BTreeMap<String, Vec<Stretch>> {
    let mut by_epoch: BTreeMap<(String, u64), Stretch> = BTreeMap::new();
    for l in lines {
        let stretch = by_epoch.entry((l.board.clone(), l.epoch)).or_insert_with(|| Stretch {
            server: l.server.clone(),
            epoch: l.epoch,
            first_ms: l.at_ms,
            last_ms: l.at_ms,
            last_tick: l.tick,
        });
        assert_eq!(stretch.server, l.server, "board {} epoch {} accepted by two servers", l.board, l.epoch);
        stretch.first_ms = stretch.first_ms.min(l.at_ms);
        stretch.last_ms = stretch.last_ms.max(l.at_ms);
        stretch.last_tick = stretch.last_tick.max(l.tick);
    }
    let mut boards: BTreeMap<String, Vec<Stretch>> = BTreeMap::new();
    for ((board, _), stretch) in by_epoch {
        boards.entry(board).or_default().push(stretch);
    }
    for (board, stretches) in &boards {
        for pair in stretches.windows(2) {
            assert!(
                pair[0].last_ms < pair[1].first_ms,
                "board {board}: {:?} still accepted inputs when {:?} had started",
                pair[0],
                pair[1]
            );
        }
    }
    boards
}

fn line(board: &str, server: &str, epoch: u64, tick: u64, at_ms: u64) -> Accepted {
    Accepted { board: board.into(), server: server.into(), epoch, tick, at_ms }
}

#[test]
fn the_single_owner_check_accepts_handovers_in_epoch_order() {
    let lines = [line("b", "gs-1", 1, 5, 100), line("b", "gs-1", 1, 6, 130), line("b", "gs-2", 2, 4, 2500)];
    let stretches = single_owner_stretches(&lines);
    assert_eq!(stretches["b"].len(), 2);
    assert_eq!((stretches["b"][0].last_tick, stretches["b"][1].first_ms), (6, 2500));
}

#[test]
#[should_panic(expected = "still accepted inputs")]
fn the_single_owner_check_catches_overlapping_owners() {
    single_owner_stretches(&[line("b", "gs-1", 1, 5, 100), line("b", "gs-2", 2, 6, 120), line("b", "gs-1", 1, 7, 130)]);
}

#[test]
#[should_panic(expected = "still accepted inputs")]
fn the_single_owner_check_catches_a_stale_epoch_accepting_later() {
    single_owner_stretches(&[line("b", "gs-2", 2, 6, 120), line("b", "gs-1", 1, 7, 130)]);
}

#[test]
#[should_panic(expected = "accepted by two servers")]
fn the_single_owner_check_catches_two_servers_at_one_epoch() {
    single_owner_stretches(&[line("b", "gs-1", 1, 5, 100), line("b", "gs-2", 1, 6, 120)]);
}

fn last_accepted_tick(lines: &[Accepted], board: &str, server: &str, epoch: u64) -> u64 {
    lines
        .iter()
        .filter(|l| l.board == board && l.server == server && l.epoch == epoch)
        .map(|l| l.tick)
        .max()
        .unwrap_or_else(|| panic!("{server} logged no accepted input for {board} at epoch {epoch}"))
}

fn first_accepted_tick(lines: &[Accepted], board: &str, epoch: u64) -> Option<u64> {
    lines.iter().filter(|l| l.board == board && l.epoch == epoch).map(|l| l.tick).min()
}

/// The tick a game server loaded `board` at `epoch` from (its "board gained" log line).
async fn gained_tick(server: &mut ChildProcess, board: &str, epoch: u64) -> u64 {
    server
        .wait_event("board gained", WAIT, |f| {
            (f.get("board")?.as_str()? == board && f.get("epoch")?.as_u64()? == epoch)
                .then(|| f.get("tick")?.as_u64())?
        })
        .await
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

// ---------------------------------------------------------------------------------------------

/// Items (a), (b) and (d): bots play two games, one per server; the owner of one is killed with
/// SIGKILL (its board resumes on the other server), restarted, and then the other server is
/// drained with SIGTERM (both boards move back at once). Throughout, an observing player's
/// stream continues, and at the end the accept logs show one owner at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boards_survive_a_kill_and_a_drain_with_one_owner_at_a_time() {
    let env = Env::start().await;
    let mut gs1 = env.game_server("gs-1", 1);
    let mut gs2 = env.game_server("gs-2", 1);
    let (o1, e1) = env.orchestrator("o-1").await;
    let (o2, e2) = env.orchestrator("o-2").await;
    env.registered(&["gs-1", "gs-2"]).await;
    sees_servers(&e1, 2).await;
    sees_servers(&e2, 2).await;
    env.master().await;

    // Two games created through one orchestrator, so its placement puts one on each server
    // (replicas do not share reservations, so concurrent creates through both might not).
    let mut c1 = client(&e1).await;
    let mut placed = HashMap::new();
    for _ in 0..2 {
        let created = c1.create_game(pb::CreateGameRequest { params: Some(params(8)), lifetime_ms: 0 }).await;
        let created = created.expect("create").into_inner();
        placed.insert(created.server_id, created.game_id);
    }
    assert!(placed.contains_key("gs-1") && placed.contains_key("gs-2"), "one game per server: {placed:?}");
    // Three bots per game, spread over both orchestrators. Long enough for the kill, the
    // failover and some play after it on a slow machine; the drain phase is followed by the
    // observer alone if the bots have finished by then.
    let bot_runs: Vec<_> = placed
        .values()
        .map(|game| {
            let mut bots = BotConfig::new(vec![e1.clone(), e2.clone()]);
            bots.join = Some(game.clone());
            bots.players = 3;
            bots.input_hz = 10;
            bots.duration = Duration::from_secs(12);
            tokio::spawn(bot::run(bots))
        })
        .collect();
    let (g1, g2) = (placed["gs-1"].clone(), placed["gs-2"].clone());
    let observer = Observer::join(&e2, &g1).await;
    observer.wait_updates_after(Instant::now(), 20).await;
    // Which server the store gave each (board, epoch), to hold the accept logs against.
    let mut assigned: BTreeMap<(String, u64), String> = BTreeMap::new();

    // (a) kill -9 the owner of g1.
    let (before, ckpt_before) = env.board(&g1).await;
    assert_eq!(owner(&before), "gs-1");
    assigned.insert((g1.clone(), before.epoch.0), "gs-1".into());
    assigned.insert((g2.clone(), env.board(&g2).await.0.epoch.0), "gs-2".into());
    let ckpt_before = ckpt_before.expect("g1 has a checkpoint").seq.0;
    let killed_at = Instant::now();
    gs1.kill9();
    let (moved, moved_at) = env.moved_to(&g1, "gs-2", before.epoch.0).await;
    assert_eq!(moved.epoch, before.epoch.next(), "moved once, by the failover master");
    assigned.insert((g1.clone(), moved.epoch.0), "gs-2".into());
    let loaded = gained_tick(&mut gs2, &g1, moved.epoch.0).await;
    assert!(
        loaded >= ckpt_before,
        "resumed from tick {loaded}, older than the checkpoint {ckpt_before} seen before the kill"
    );
    let resumed = observer.wait_resumed_after(killed_at).await;
    assert!(
        resumed.tick >= loaded,
        "the new owner's first update (tick {}) predates its checkpoint {loaded}",
        resumed.tick
    );
    let (_, ckpt_now) = env.board(&g1).await;
    assert!(ckpt_now.expect("checkpoint").seq.0 >= ckpt_before);
    println!(
        "kill -9: board reassigned after {}, first update from the new owner after {} (unplanned failover)",
        ms(moved_at - killed_at),
        ms(resumed.at - killed_at)
    );

    // The killed server comes back (a new incarnation, same accept log), then gs-2 drains.
    let mut gs1 = env.game_server("gs-1", 2);
    env.registered(&["gs-1"]).await;
    sees_servers(&e1, 2).await;
    sees_servers(&e2, 2).await;
    let epochs: Vec<(String, u64)> = {
        let mut epochs = Vec::new();
        for g in [&g1, &g2] {
            let (board, _) = env.board(g).await;
            assert_eq!(owner(&board), "gs-2", "{g} is on gs-2 before the drain");
            epochs.push((g.clone(), board.epoch.0));
        }
        epochs
    };

    // (d) SIGTERM drain.
    let term_at = Instant::now();
    gs2.signal(Signal::SIGTERM);
    let mut reassigned = Vec::new();
    for (g, epoch) in &epochs {
        let (board, at) = env.moved_to(g, "gs-1", *epoch).await;
        // Release (epoch + 1) then assignment (epoch + 2): the board was handed over, not taken
        // from an expired lease (which would be one bump, and only after the TTL).
        assert_eq!(board.epoch.0, epoch + 2, "{g} was released by the drain and then reassigned");
        assigned.insert((g.clone(), board.epoch.0), "gs-1".into());
        reassigned.push((g.clone(), board.epoch, at - term_at));
    }
    let status = gs2.wait_exit(WAIT).await;
    assert!(status.success(), "gs-2 exits cleanly after draining: {status}");
    let resumed_after_drain = observer.wait_resumed_after(term_at).await;
    let slowest = reassigned.iter().map(|(_, _, d)| *d).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(LEASE_TTL_MS),
        "a drained board is reassigned at once, well before a lease expiry could move it ({slowest:?})"
    );
    for (g, _) in &epochs {
        let drained = gs2.json_events("board drained");
        assert!(
            drained.iter().any(|f| f["board"] == g.as_str() && f["released"] == true),
            "gs-2 logged releasing {g}: {drained:?}"
        );
    }
    println!(
        "SIGTERM drain: boards reassigned after {}, first update from the new owner after {}",
        reassigned.iter().map(|(g, _, d)| format!("{g}: {}", ms(*d))).collect::<Vec<_>>().join(", "),
        ms(resumed_after_drain.at - term_at)
    );

    let mut reroutes = 0;
    for run in bot_runs {
        let report = run.await.expect("bot task").expect("bot run");
        println!("bots of one game:\n{}", report.text());
        assert_eq!((report.games, report.players), (1, 3));
        assert!(report.updates_per_second > 10.0, "the bots kept receiving updates: {}", report.text());
        let stream_errors: Vec<&String> = report.errors.keys().filter(|k| k.starts_with("play:")).collect();
        assert!(stream_errors.is_empty(), "no player-visible stream errors: {}", report.text());
        reroutes += report.reroutes;
    }
    assert!(reroutes >= 1, "the killed server's players were re-routed");
    observer.assert_playing();

    // (b) One owner at a time, from the accept logs (complete once the writers have stopped).
    drop(observer);
    for mut orchestrator in [o1, o2] {
        orchestrator.signal(Signal::SIGTERM);
        orchestrator.wait_exit(WAIT).await;
    }
    gs1.signal(Signal::SIGTERM);
    gs1.wait_exit(WAIT).await;
    let lines = read_accept_logs(&[env.accept_log("gs-1"), env.accept_log("gs-2")]);
    let stretches = single_owner_stretches(&lines);
    for (board, list) in &stretches {
        let (now, _) = env.board(board).await;
        for s in list {
            assert!(
                s.epoch <= now.epoch.0,
                "{board}: inputs accepted at epoch {} beyond the store's {}",
                s.epoch,
                now.epoch
            );
            if let Some(server) = assigned.get(&(board.clone(), s.epoch)) {
                assert_eq!(
                    &s.server, server,
                    "{board} epoch {}: accepted by {} but assigned to {server}",
                    s.epoch, s.server
                );
            }
        }
    }
    for ((board, epoch), server) in &assigned {
        let found = stretches.get(board).is_some_and(|list| list.iter().any(|s| s.epoch == *epoch));
        assert!(found, "{server} accepted inputs for {board} at epoch {epoch} (the logs cannot be empty)");
    }

    // The kill lost at most the inputs after g1's last checkpoint; the drain lost nothing: its
    // final checkpoint (what gs-1 loaded) holds the last tick gs-2 accepted inputs at.
    let lost = last_accepted_tick(&lines, &g1, "gs-1", before.epoch.0).saturating_sub(loaded);
    println!("kill -9 lost {lost} ticks of accepted inputs (checkpoint every 100 ms at 30 Hz)");
    for (g, epoch) in &epochs {
        let last = last_accepted_tick(&lines, g, "gs-2", *epoch);
        let final_checkpoint = gained_tick(&mut gs1, g, epoch + 2).await;
        assert!(
            final_checkpoint >= last,
            "{g}: drained at tick {final_checkpoint} but gs-2 accepted inputs at tick {last}"
        );
        if let Some(first) = first_accepted_tick(&lines, g, epoch + 2) {
            assert!(first > last, "{g}: gs-1 accepted at tick {first}, not after gs-2's last tick {last}");
        }
    }
    env.hc.shutdown().await;
}

/// Item (c): the failover master is killed; the other orchestrator becomes master with a larger
/// term, and a game server killed afterwards still has its board moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_failover_master_is_replaced_and_failover_still_happens() {
    let env = Env::start().await;
    let mut game_servers: HashMap<&str, ChildProcess> =
        HashMap::from([("gs-1", env.game_server("gs-1", 1)), ("gs-2", env.game_server("gs-2", 1))]);
    let mut orchestrators = HashMap::new();
    for id in ["o-1", "o-2"] {
        orchestrators.insert(id, env.orchestrator(id).await);
    }
    env.registered(&["gs-1", "gs-2"]).await;
    let (master, term) = env.master().await;
    let survivor = if master == "o-1" { "o-2" } else { "o-1" };
    let (mut master_process, _) = orchestrators.remove(master.as_str()).expect("the master is one of ours");
    let (survivor_process, endpoint) = orchestrators.remove(survivor).expect("the other one");
    sees_servers(&endpoint, 2).await;

    let mut c = client(&endpoint).await;
    let created = c
        .create_game(pb::CreateGameRequest { params: Some(params(8)), lifetime_ms: 0 })
        .await
        .expect("create")
        .into_inner();
    let observer = Observer::join(&endpoint, &created.game_id).await;
    observer.wait_updates_after(Instant::now(), 10).await;

    let killed_at = Instant::now();
    master_process.kill9();
    let (new_term, took_over_at) = eventually("the other orchestrator to become failover master", WAIT, || {
        let store = env.store.clone();
        async move {
            let leader = store.election_leader(DEFAULT_ELECTION).await.ok()?.leader?;
            (leader.candidate == survivor).then(|| (leader.term, Instant::now()))
        }
    })
    .await;
    assert!(new_term > term, "the new master's term {new_term} must be larger than the killed one's {term}");
    println!(
        "failover master killed: {survivor} took over after {} (term {term} -> {new_term})",
        ms(took_over_at - killed_at)
    );

    // Failover still happens, now decided by the new master.
    let (before, _) = env.board(&created.game_id).await;
    let victim = owner(&before).to_string();
    let heir = if victim == "gs-1" { "gs-2" } else { "gs-1" };
    let killed_at = Instant::now();
    game_servers.get_mut(victim.as_str()).expect("the owner is one of ours").kill9();
    let (moved, moved_at) = env.moved_to(&created.game_id, heir, before.epoch.0).await;
    assert_eq!(moved.epoch, before.epoch.next());
    let resumed = observer.wait_resumed_after(killed_at).await;
    println!(
        "then kill -9 of {victim}: board reassigned after {}, first update from {heir} after {}",
        ms(moved_at - killed_at),
        ms(resumed.at - killed_at)
    );
    observer.assert_playing();
    drop((observer, game_servers, survivor_process));
    env.hc.shutdown().await;
}

/// Item (e), the gaps left by `tests/orchestrator.rs` (whose game servers are fakes): refusals
/// that only a real game server or real parameter limits produce, and genuine tokens that
/// name a game or player that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_through_the_orchestrator_get_clear_errors() {
    let env = Env::start().await;
    let _gs = env.game_server("gs-1", 1);
    let (_o, endpoint) = env.orchestrator("o-1").await;
    sees_servers(&endpoint, 1).await;
    let mut c = client(&endpoint).await;
    // Invalid parameters beyond those the orchestrator tests cover; the message names the field
    // and its limit.
    let cases = [
        (pb::GameParams { arena_radius: 10.0, ..params(8) }, "params.arena_radius"),
        (pb::GameParams { speed: 0.0, ..params(8) }, "params.speed"),
        (pb::GameParams { tick_hz: 500, ..params(8) }, "params.tick_hz"),
        (pb::GameParams { player_radius: f64::NAN, ..params(8) }, "params.player_radius"),
        (pb::GameParams { max_players: 65, ..params(8) }, "params.max_players"),
    ];
    for (bad, field) in cases {
        let status = c
            .create_game(pb::CreateGameRequest { params: Some(bad), lifetime_ms: 0 })
            .await
            .expect_err("invalid parameters are refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }

    // A full board: the real game server refuses and the player gets its reason.
    let game = c
        .create_game(pb::CreateGameRequest { params: Some(params(2)), lifetime_ms: 0 })
        .await
        .expect("create")
        .into_inner()
        .game_id;
    let join = |name: &str| pb::JoinGameRequest { game_id: game.clone(), name: name.into() };
    let ann = c.join_game(join("ann")).await.expect("ann joins").into_inner();
    c.join_game(join("bob")).await.expect("bob joins");
    let status = c.join_game(join("cy")).await.expect_err("the board is full");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("full") && status.message().contains("max_players"), "{status:?}");

    // A genuine token (signed with the shared secret) for a game that does not exist.
    let key = TokenKey::new(SECRET.as_bytes()).expect("key");
    let far = u64::MAX / 2;
    let ghost = key
        .sign(&Claims { game_id: "g-000000000000000000000000".into(), player_id: 1, expires_at_ms: far })
        .expect("sign");
    let status = first_play_answer(&mut c, ghost.clone()).await.expect_err("no such game");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("not found"), "{status:?}");
    let status = c.exit_game(pb::ExitGameRequest { token: ghost.into() }).await.expect_err("no such game");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // A genuine token for a player that left the board: Play is refused, ExitGame is idempotent.
    c.exit_game(pb::ExitGameRequest { token: ann.token.clone() }).await.expect("ann leaves");
    c.exit_game(pb::ExitGameRequest { token: ann.token.clone() }).await.expect("leaving twice is fine");
    let status = first_play_answer(&mut c, ann.token.to_vec()).await.expect_err("ann is not on the board");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("player"), "{status:?}");

    // A forged token on ExitGame (Play's forged and expired tokens are covered with the fakes).
    let forged = TokenKey::new(b"not-the-shared-secret").expect("key");
    let token = forged.sign(&Claims { game_id: game.clone(), player_id: 2, expires_at_ms: far }).expect("sign");
    let status = c.exit_game(pb::ExitGameRequest { token: token.into() }).await.expect_err("forged");
    assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "invalid token"));
    env.hc.shutdown().await;
}

/// The first update or error of a Play stream opened with `token`.
async fn first_play_answer(
    c: &mut OrchestratorClient<Channel>,
    token: Vec<u8>,
) -> Result<pb::PlayUpdate, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello { token: token.into(), ..Default::default() };
    tx.send(pb::PlayRequest { msg: Some(Msg::Hello(hello)) }).await.expect("queue hello");
    let mut stream = c.play(ReceiverStream::new(rx)).await?.into_inner();
    match tokio::time::timeout(WAIT, stream.message()).await.expect("an answer in time") {
        Ok(Some(update)) => Ok(update),
        Ok(None) => Err(tonic::Status::ok("the stream ended without an answer")),
        Err(status) => Err(status),
    }
}
