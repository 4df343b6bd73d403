//! What the viewer sees while the demo runs: the banner (what runs where, how to kill a game
//! server and what follows), then a status line a second and an event line for every death,
//! restart and board move, with how long the move took after its server died.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::child::{describe, Proc};
use super::config::NODES;
use super::stack::{Stack, ELECTION_TTL_MS, FAILOVER_MARGIN_MS, GAME_SERVER_LEASE_TTL_MS};
use super::stats::{board_moves, owners, remember_owners, status_line, Owners, ServerView};
use crate::proto::v1 as pb;

/// How often the supervisor looks for deaths and board moves, and prints the status line.
const LOOK_INTERVAL: Duration = Duration::from_millis(250);
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A board move this soon after its server died is shown as the failover of that death.
const RECENT_DEATH: Duration = Duration::from_secs(30);

impl Stack {
    /// What the viewer reads once everything runs.
    pub fn print_banner(&self) {
        let ports = self.config.ports;
        println!();
        println!("Orbstrike demo is running. Data and logs: {}", self.dir.display());
        let pids: Vec<String> = self.node_pids.iter().map(u32::to_string).collect();
        println!(
            "  HyperCache      3 nodes on 127.0.0.1:{}-{}, pids {}  (supervisor log {}, node logs in {})",
            ports.node(1),
            ports.node(NODES),
            if pids.is_empty() { "?".to_string() } else { pids.join(" ") },
            self.log("hypercache").display(),
            self.dir.join("hypercache").display()
        );
        for (i, m) in (1u16..).zip(&self.orchestrators) {
            println!(
                "  {:<15} 127.0.0.1:{}  pid {:<7}  metrics http://127.0.0.1:{}/metrics  log {}",
                m.proc.name(),
                ports.orchestrator(i),
                m.proc.pid(),
                ports.orchestrator_admin(i),
                m.proc.log().display()
            );
        }
        for (i, m) in (1u16..).zip(&self.game_servers) {
            println!(
                "  {:<15} 127.0.0.1:{}  pid {:<7}  metrics http://127.0.0.1:{}/metrics  log {}",
                m.proc.name(),
                ports.game_server(i),
                m.proc.pid(),
                ports.game_server_admin(i),
                m.proc.log().display()
            );
        }
        if let Some(bots) = &self.bots {
            println!(
                "  bots            {} games x {} players through both orchestrators  pid {}  log {}",
                self.config.games,
                self.config.players,
                bots.pid(),
                bots.log().display()
            );
        }
        let pids: Vec<String> =
            self.game_servers.iter().map(|m| format!("{} = pid {}", m.proc.name(), m.proc.pid())).collect();
        println!();
        println!("Kill a game server to see failover:   kill -9 <pid>   ({})", pids.join(", "));
        println!(
            "  Its lease ({} ms) expires, the orchestrators' failover master waits {} ms more and moves its boards to the",
            GAME_SERVER_LEASE_TTL_MS, FAILOVER_MARGIN_MS
        );
        println!(
            "  other game server, which resumes them from their last checkpoint (at most 250 ms old). Within about"
        );
        println!(
            "  3 s you see \"board ... moved\" lines, the dead server at 0 boards and the other one holding them all;"
        );
        println!(
            "  players and moves/s keep going (a dip while the boards move): the bots' streams are re-routed by the"
        );
        println!("  orchestrators, no bot reconnects.");
        match self.config.restart_after {
            Some(after) => println!(
                "  The killed server restarts {} s later (empty, a new incarnation), so you can kill the other one next.",
                after.as_secs_f64()
            ),
            None => println!("  Killed servers are not restarted (--restart-after 0)."),
        }
        println!("Ctrl-C stops everything.");
        println!();
    }

    /// Shows stats and events every second until `stop` resolves, and returns its output.
    pub async fn supervise<T>(
        &mut self,
        stats: watch::Receiver<Option<pb::Stats>>,
        stop: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(stop);
        // Deaths and moves are looked for four times a second so that the times printed with
        // them are meaningful; the status line comes once a second.
        let mut ticks = tokio::time::interval(LOOK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_line = Instant::now();
        let mut known: Owners = Owners::new();
        let mut hinted = false;
        self.started = Instant::now();
        loop {
            tokio::select! {
                out = &mut stop => return out,
                _ = ticks.tick() => {}
            }
            self.check_children();
            self.restart_due();
            let games = self.api.list_games().await;
            if let Some(games) = &games {
                let now = owners(games);
                for m in board_moves(&known, &now) {
                    // Timed from the server's death when that explains the move.
                    let after = match self.deaths.get(&m.from).map(Instant::elapsed) {
                        Some(since) if since < RECENT_DEATH => {
                            format!(", {:.2} s after {} died", since.as_secs_f64(), m.from)
                        }
                        _ => String::new(),
                    };
                    println!(">>> board {} moved {} -> {} (epoch {}){after}", m.game_id, m.from, m.to, m.epoch);
                }
                known = remember_owners(&known, now);
                if let (false, Some(game)) = (hinted, games.first()) {
                    println!(
                        "Watch one board live (in another terminal):  {} --orchestrator 127.0.0.1:{} --spectate {}",
                        self.bins.bot.display(),
                        self.config.ports.orchestrator(1),
                        game.game_id
                    );
                    hinted = true;
                }
            }
            if Instant::now() < next_line {
                continue;
            }
            next_line += STATUS_INTERVAL;
            let servers: Vec<ServerView> = self
                .game_servers
                .iter()
                .map(|m| ServerView {
                    id: m.proc.name().to_string(),
                    pid: m.proc.pid(),
                    dead: m.proc.exit().map(|s| format!("dead ({})", describe(s))),
                })
                .collect();
            let latest = stats.borrow().clone();
            println!("{}", status_line(self.started.elapsed(), latest.as_ref(), &servers, games.as_deref()));
        }
    }

    /// Reports processes that died since the last look.
    fn check_children(&mut self) {
        let restart = match self.config.restart_after {
            Some(after) => format!(" It restarts in {} s.", after.as_secs_f64()),
            None => String::new(),
        };
        for m in &mut self.game_servers {
            if let Some(status) = m.proc.newly_exited() {
                m.died = Some(Instant::now());
                self.deaths.insert(m.proc.name().to_string(), Instant::now());
                println!(
                    ">>> {} (pid {}) died: {}. Its boards move to the other game server once its {} ms lease has \
                     expired (+{} ms margin); the players' streams are re-routed, they stay connected.{restart}",
                    m.proc.name(),
                    m.proc.pid(),
                    describe(status),
                    GAME_SERVER_LEASE_TTL_MS,
                    FAILOVER_MARGIN_MS
                );
            }
        }
        for m in &mut self.orchestrators {
            if let Some(status) = m.proc.newly_exited() {
                m.died = Some(Instant::now());
                println!(
                    ">>> {} (pid {}) died: {}. Its players reconnect through the other orchestrator with the same token; \
                     if it was the failover master, the other takes over within its {} ms election lease.{restart}",
                    m.proc.name(),
                    m.proc.pid(),
                    describe(status),
                    ELECTION_TTL_MS
                );
            }
        }
        if let Some(bots) = &mut self.bots {
            if let Some(status) = bots.newly_exited() {
                println!(">>> the bots exited ({}); see {}", describe(status), bots.log().display());
            }
        }
        if let Some(store) = &mut self.store {
            if let Some(status) = store.newly_exited() {
                println!(">>> the HyperCache supervisor exited ({}); see {}", describe(status), store.log().display());
            }
        }
    }

    /// Starts again, with the same command line, what died `restart_after` ago.
    fn restart_due(&mut self) {
        let Some(after) = self.config.restart_after else { return };
        for m in self.game_servers.iter_mut().chain(self.orchestrators.iter_mut()) {
            if m.died.is_none_or(|died| died.elapsed() < after) {
                continue;
            }
            match Proc::spawn(m.proc.spec.clone()) {
                Ok(proc) => {
                    println!(">>> restarted {}: pid {}", proc.name(), proc.pid());
                    m.proc = proc;
                    m.died = None;
                }
                Err(e) => {
                    println!(">>> {e}; not retrying");
                    m.died = None;
                }
            }
        }
    }
}
