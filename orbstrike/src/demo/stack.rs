//! The demo's processes and their lifecycle: start in dependency order, supervise (show the
//! stats, report deaths and board moves, restart what died), stop in reverse order.
//!
//! Start: the store (`hypercache dev --nodes 3`, ready when it prints "cluster ready") -> two
//! game servers and two orchestrators -> ready when an orchestrator's stats count both game
//! servers -> the bots. Stop: bots -> orchestrators -> game servers (each drains: final
//! checkpoints, releases its boards) -> store, each group with SIGTERM, a bounded wait, then
//! SIGKILL.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use super::binaries::Binaries;
use super::child::{describe, stop_group, Proc, Spec};
use super::config::{DemoConfig, GAME_SERVERS, NODES, ORCHESTRATORS};
use super::stats::Orchestrators;
use super::DemoError;
use crate::proto::v1 as pb;

/// The game servers' registration lease and self-fencing margin: a killed server's boards move
/// after about TTL + the orchestrators' failover margin + a board scan.
pub const GAME_SERVER_LEASE_TTL_MS: u64 = 2000;
pub const GAME_SERVER_LEASE_MARGIN_MS: u64 = 400;
pub const FAILOVER_MARGIN_MS: u64 = 500;
pub const SCAN_INTERVAL_MS: u64 = 250;
pub const ELECTION_TTL_MS: u64 = 2000;
const DRAIN_TIMEOUT_MS: u64 = 5000;
/// How long each group gets between SIGTERM and SIGKILL.
const BOTS_GRACE: Duration = Duration::from_secs(5);
const ORCHESTRATORS_GRACE: Duration = Duration::from_secs(15);
const GAME_SERVERS_GRACE: Duration = Duration::from_secs(15);
/// The store supervisor stops its nodes one after another, each within `--grace-secs`.
const STORE_NODE_GRACE_SECS: u64 = 5;
const STORE_GRACE: Duration = Duration::from_secs(STORE_NODE_GRACE_SECS * NODES as u64 + 5);
const STORE_READY_TIMEOUT: Duration = Duration::from_secs(60);
const STACK_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A process that is restarted when it dies.
pub(super) struct Member {
    pub(super) proc: Proc,
    /// When its death was noticed (cleared on restart).
    pub(super) died: Option<Instant>,
}

pub struct Stack {
    pub(super) config: DemoConfig,
    pub(super) dir: PathBuf,
    pub(super) bins: Binaries,
    pub(super) store: Option<Proc>,
    /// The store nodes' pids, as the supervisor printed them (for a last-resort SIGKILL).
    pub(super) node_pids: Vec<u32>,
    pub(super) game_servers: Vec<Member>,
    pub(super) orchestrators: Vec<Member>,
    pub(super) bots: Option<Proc>,
    pub api: Orchestrators,
    pub(super) started: Instant,
    /// When each game server last died, for timing the moves of its boards.
    pub(super) deaths: HashMap<String, Instant>,
}

impl Stack {
    pub fn new(config: DemoConfig, dir: PathBuf, bins: Binaries) -> Result<Stack, DemoError> {
        let endpoints = orchestrator_endpoints(&config);
        let api =
            Orchestrators::new(&endpoints).map_err(|e| DemoError::Start(format!("orchestrator endpoints: {e}")))?;
        Ok(Stack {
            config,
            dir,
            bins,
            store: None,
            node_pids: Vec::new(),
            game_servers: Vec::new(),
            orchestrators: Vec::new(),
            bots: None,
            api,
            started: Instant::now(),
            deaths: HashMap::new(),
        })
    }

    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn store_endpoints(&self) -> String {
        (1..=NODES).map(|i| format!("127.0.0.1:{}", self.config.ports.node(i))).collect::<Vec<_>>().join(",")
    }

    /// Starts `hypercache dev` and waits for its "cluster ready".
    pub async fn start_store(&mut self) -> Result<(), DemoError> {
        let ports = self.config.ports;
        let spec = Spec {
            name: "hypercache".into(),
            program: self.bins.hypercache.clone(),
            args: vec![
                "dev".into(),
                "--nodes".into(),
                NODES.to_string(),
                "--dir".into(),
                self.dir.join("hypercache").display().to_string(),
                "--base-port".into(),
                ports.node(1).to_string(),
                "--admin-base-port".into(),
                ports.node_admin(1).to_string(),
                "--grace-secs".into(),
                STORE_NODE_GRACE_SECS.to_string(),
            ],
            log: self.log("hypercache"),
        };
        let log = spec.log.clone();
        let store = self.store.insert(Proc::spawn(spec)?);
        let deadline = Instant::now() + STORE_READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            self.node_pids = node_pids(&text);
            if text.contains("cluster ready") {
                return Ok(());
            }
            if text.contains("no leader after") {
                return Err(DemoError::Start(format!(
                    "the HyperCache cluster elected no leader; see {} and the node logs in {}",
                    log.display(),
                    self.dir.join("hypercache").display()
                )));
            }
            if let Some(status) = store.newly_exited() {
                return Err(died_during_start(store.name(), status, &log));
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Start(format!(
                    "the HyperCache cluster was not ready within {} s; see {}",
                    STORE_READY_TIMEOUT.as_secs(),
                    log.display()
                )));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    fn game_server_spec(&self, i: u16) -> Spec {
        let ports = self.config.ports;
        let name = format!("gs-{i}");
        Spec {
            name: name.clone(),
            program: self.bins.game_server.clone(),
            args: vec![
                "--server-id".into(),
                name.clone(),
                "--listen".into(),
                format!("127.0.0.1:{}", ports.game_server(i)),
                "--admin-listen".into(),
                format!("127.0.0.1:{}", ports.game_server_admin(i)),
                "--hypercache".into(),
                self.store_endpoints(),
                "--lease-ttl-ms".into(),
                GAME_SERVER_LEASE_TTL_MS.to_string(),
                "--lease-margin-ms".into(),
                GAME_SERVER_LEASE_MARGIN_MS.to_string(),
                "--drain-timeout-ms".into(),
                DRAIN_TIMEOUT_MS.to_string(),
            ],
            log: self.log(&name),
        }
    }

    fn orchestrator_spec(&self, i: u16) -> Spec {
        let ports = self.config.ports;
        let name = format!("orchestrator-{i}");
        Spec {
            name: name.clone(),
            program: self.bins.orchestrator.clone(),
            args: vec![
                "--id".into(),
                name.clone(),
                "--listen".into(),
                format!("127.0.0.1:{}", ports.orchestrator(i)),
                "--admin-listen".into(),
                format!("127.0.0.1:{}", ports.orchestrator_admin(i)),
                "--hypercache".into(),
                self.store_endpoints(),
                "--token-secret-file".into(),
                self.dir.join("token-secret").display().to_string(),
                "--failover-margin-ms".into(),
                FAILOVER_MARGIN_MS.to_string(),
                "--scan-interval-ms".into(),
                SCAN_INTERVAL_MS.to_string(),
                "--election-ttl-ms".into(),
                ELECTION_TTL_MS.to_string(),
                // The bots create all their games at once.
                "--create-rate".into(),
                "100".into(),
                "--create-burst".into(),
                "1000".into(),
            ],
            log: self.log(&name),
        }
    }

    /// Starts the game servers and orchestrators and waits until the orchestrators see both
    /// game servers.
    pub async fn start_services(&mut self, stats: &mut watch::Receiver<Option<pb::Stats>>) -> Result<(), DemoError> {
        write_secret(&self.dir.join("token-secret"))?;
        for i in 1..=GAME_SERVERS {
            let proc = Proc::spawn(self.game_server_spec(i))?;
            self.game_servers.push(Member { proc, died: None });
        }
        for i in 1..=ORCHESTRATORS {
            let proc = Proc::spawn(self.orchestrator_spec(i))?;
            self.orchestrators.push(Member { proc, died: None });
        }
        let deadline = Instant::now() + STACK_READY_TIMEOUT;
        loop {
            let ready = stats.borrow_and_update().as_ref().is_some_and(|s| s.servers >= u64::from(GAME_SERVERS));
            if ready {
                return Ok(());
            }
            for member in self.game_servers.iter_mut().chain(self.orchestrators.iter_mut()) {
                if let Some(status) = member.proc.newly_exited() {
                    return Err(died_during_start(member.proc.name(), status, member.proc.log()));
                }
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Start(format!(
                    "the orchestrators did not see {GAME_SERVERS} game servers within {} s; see the logs in {}",
                    STACK_READY_TIMEOUT.as_secs(),
                    self.dir.display()
                )));
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), stats.changed()).await;
        }
    }

    /// Starts the bots: `games` x `players`, spread over both orchestrators, until stopped.
    pub fn start_bots(&mut self) -> Result<(), DemoError> {
        let spec = Spec {
            name: "bots".into(),
            program: self.bins.bot.clone(),
            args: vec![
                "--orchestrator".into(),
                orchestrator_endpoints(&self.config).join(","),
                "--games".into(),
                self.config.games.to_string(),
                "--players".into(),
                self.config.players.to_string(),
                "--input-hz".into(),
                self.config.input_hz.to_string(),
                // "Until stopped": the demo ends them with SIGTERM.
                "--duration".into(),
                "100000h".into(),
                "--client-id".into(),
                "orbstrike-demo".into(),
            ],
            log: self.log("bots"),
        };
        self.bots = Some(Proc::spawn(spec)?);
        Ok(())
    }

    /// Stops everything in order; once `hurry` turns true (a second Ctrl-C) nobody is waited for.
    pub async fn stop(&mut self, hurry: watch::Receiver<bool>) {
        if let Some(bots) = &mut self.bots {
            stop_group("the bots", &mut [bots], Signal::SIGTERM, BOTS_GRACE, hurry.clone()).await;
        }
        let mut orchestrators: Vec<&mut Proc> = self.orchestrators.iter_mut().map(|m| &mut m.proc).collect();
        stop_group("the orchestrators", &mut orchestrators, Signal::SIGTERM, ORCHESTRATORS_GRACE, hurry.clone()).await;
        let mut game_servers: Vec<&mut Proc> = self.game_servers.iter_mut().map(|m| &mut m.proc).collect();
        stop_group(
            "the game servers, each draining its boards",
            &mut game_servers,
            Signal::SIGTERM,
            GAME_SERVERS_GRACE,
            hurry.clone(),
        )
        .await;
        if let Some(store) = &mut self.store {
            stop_group("the HyperCache cluster", &mut [store], Signal::SIGTERM, STORE_GRACE, hurry).await;
            // A supervisor that had to be killed could not stop its nodes (they run in process
            // groups of their own).
            if store.exit().is_some_and(|s| s.signal() == Some(Signal::SIGKILL as i32)) {
                for pid in &self.node_pids {
                    if let Ok(pid) = i32::try_from(*pid) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
        }
    }
}

fn orchestrator_endpoints(config: &DemoConfig) -> Vec<String> {
    (1..=ORCHESTRATORS).map(|i| format!("127.0.0.1:{}", config.ports.orchestrator(i))).collect()
}

fn died_during_start(name: &str, status: std::process::ExitStatus, log: &Path) -> DemoError {
    DemoError::Start(format!("{name} exited during start-up ({}); see {}", describe(status), log.display()))
}

/// The pids in `hypercache dev`'s "node-1  id=1  client=...  pid=123  log=..." lines.
fn node_pids(text: &str) -> Vec<u32> {
    text.lines()
        .filter(|line| line.starts_with("node-"))
        .filter_map(|line| line.split_whitespace().find_map(|word| word.strip_prefix("pid=")?.parse().ok()))
        .collect()
}

/// A fresh random token secret, readable by this user only (passed to the orchestrators as a
/// file so it does not show in `ps`).
fn write_secret(path: &Path) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secret = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let error = |source| DemoError::Io { what: format!("writing {}", path.display()), source };
    let mut file = std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path).map_err(error)?;
    file.write_all(secret.as_bytes()).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_pids_come_from_the_supervisor_output() {
        let text = "node-1  id=1  client=127.0.0.1:7200  admin=http://127.0.0.1:7210  pid=4242  log=/d/node-1.log\n\
                    node-2  id=2  client=127.0.0.1:7201  admin=http://127.0.0.1:7211  pid=4243  log=/d/node-2.log\n\
                    \n  node-1: /bin/hypercache serve --node-id 1 ...\ncluster ready: leader is node-1\n";
        assert_eq!(node_pids(text), vec![4242, 4243]);
    }
}
