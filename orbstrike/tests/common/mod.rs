//! Helpers for Orbstrike's in-process tests: a real HyperCache cluster (nodes with their own sled
//! directories and gRPC ports on 127.0.0.1, talking over real sockets) and game servers started
//! in the same process. Everything binds ephemeral ports.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::future::Future;
use std::time::{Duration, Instant};

use hypercache_client::{Client, ClientConfig};
use hypercache_server::config::Config as NodeConfig;
use hypercache_server::local_cluster;
use hypercache_server::node::Node;
use orbstrike::gameserver::{Config as GameServerConfig, GameServer};
use orbstrike::proto::v1 as pb;
use orbstrike::proto::v1::game_server_client::GameServerClient;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Logs go to the test output when `ORBSTRIKE_TEST_LOG` is set (e.g. `info,orbstrike=debug`).
pub fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("ORBSTRIKE_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An in-process HyperCache cluster.
pub struct HyperCache {
    pub root: TempDir,
    pub configs: Vec<NodeConfig>,
    pub nodes: Vec<Option<Node>>,
}

impl HyperCache {
    /// Starts `n` nodes with static peers and waits until a client can write.
    pub async fn start(n: usize) -> HyperCache {
        let root = tempfile::tempdir().expect("tempdir");
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        for mut planned in local_cluster::plan(n, root.path()).await.expect("loopback ports") {
            planned.config.shutdown_grace_ms = 5_000;
            let (config, node) = planned.start().await.expect("node starts");
            nodes.push(Some(node));
            configs.push(config);
        }
        let cluster = HyperCache { root, configs, nodes };
        let client = cluster.client();
        eventually("the cluster accepts writes", Duration::from_secs(30), || {
            let client = client.clone();
            async move { client.list_servers().await.ok() }
        })
        .await;
        cluster
    }

    /// Client endpoints of the running nodes.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .map(|i| self.configs[i].advertise_addr.clone())
            .collect()
    }

    pub fn client(&self) -> Client {
        Client::new(ClientConfig::new(self.endpoints())).expect("client")
    }

    pub async fn shutdown(mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                node.shutdown().await.expect("graceful shutdown");
            }
        }
    }
}

/// A game-server configuration for tests: ephemeral port on 127.0.0.1, default lease (3 s TTL,
/// 500 ms margin; generous enough for a loaded 2-core machine), 5 s drain.
pub fn game_server_config(cluster: &HyperCache, server_id: &str) -> GameServerConfig {
    GameServerConfig {
        server_id: Some(server_id.to_string()),
        listen: "127.0.0.1:0".parse().expect("address"),
        drain_timeout_ms: 5_000,
        ..GameServerConfig::new(cluster.endpoints())
    }
}

/// Starts a game server in-process and waits until it is registered.
pub async fn start_game_server(cluster: &HyperCache, config: GameServerConfig) -> GameServer {
    let server = GameServer::start(config).await.expect("game server starts");
    let client = cluster.client();
    let id = server.server_id().to_string();
    eventually("the game server is registered", Duration::from_secs(20), || {
        let (client, id) = (client.clone(), id.clone());
        async move { client.list_servers().await.ok()?.into_iter().any(|s| s.server_id == id).then_some(()) }
    })
    .await;
    server
}

/// A gRPC client of a game server.
pub async fn game_client(server: &GameServer) -> GameServerClient<Channel> {
    GameServerClient::connect(format!("http://{}", server.local_addr())).await.expect("connect to game server")
}

/// Reasonable game parameters for tests.
pub fn params() -> pb::GameParams {
    pb::GameParams {
        arena_radius: 1000.0,
        max_players: 16,
        speed: 100.0,
        player_radius: 10.0,
        ring_radius: 30.0,
        tick_hz: 0,
    }
}

/// The checkpoint an orchestrator creates a game with: params only, tick 0.
pub fn initial_checkpoint(params: &pb::GameParams) -> bytes::Bytes {
    use prost::Message;
    bytes::Bytes::from(pb::BoardCheckpoint { params: Some(*params), ..Default::default() }.encode_to_vec())
}

/// One player's Play stream: inputs in, updates out.
pub struct PlayStream {
    pub inputs: mpsc::Sender<pb::PlayRequest>,
    pub updates: tonic::Streaming<pb::PlayUpdate>,
}

impl PlayStream {
    /// Opens a Play stream with `hello {game_id, player_id}`.
    pub async fn open(
        client: &mut GameServerClient<Channel>,
        game_id: &str,
        player_id: u32,
    ) -> Result<PlayStream, tonic::Status> {
        let (inputs, rx) = mpsc::channel(64);
        let hello = pb::Hello { token: Default::default(), game_id: game_id.to_string(), player_id };
        inputs.send(pb::PlayRequest { msg: Some(pb::play_request::Msg::Hello(hello)) }).await.expect("queue hello");
        let updates = client.play(ReceiverStream::new(rx)).await?.into_inner();
        Ok(PlayStream { inputs, updates })
    }

    pub async fn send(&self, seq: u64, direction: pb::Direction, ring: bool) {
        let input = pb::Input { seq, direction: direction as i32, ring };
        let _ = self.inputs.send(pb::PlayRequest { msg: Some(pb::play_request::Msg::Input(input)) }).await;
    }

    /// The next update, failing the test after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<pb::PlayUpdate>, tonic::Status> {
        tokio::time::timeout(timeout, self.updates.message()).await.expect("an update (or the end) in time")
    }

    /// Reads updates until one satisfies `wanted` (failing the test after `timeout`).
    pub async fn until(&mut self, timeout: Duration, wanted: impl Fn(&pb::PlayUpdate) -> bool) -> pb::PlayUpdate {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.updates.message()).await;
            let update =
                next.expect("the wanted update in time").expect("the stream is ok").expect("the stream goes on");
            if wanted(&update) {
                return update;
            }
        }
    }

    /// Reads until the stream ends; returns the final status (`Ok` for a clean end).
    pub async fn end(&mut self, timeout: Duration) -> Result<(), tonic::Status> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.updates.message()).await.expect("the stream ends in time") {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    }
}

/// A child process of a test (a game server or orchestrator binary), with its output in a log
/// file. Dropping it kills it (SIGKILL) and reaps it, also when the test panics.
pub struct ChildProcess {
    pub name: String,
    pub log: std::path::PathBuf,
    child: std::process::Child,
    exit: Option<std::process::ExitStatus>,
}

impl ChildProcess {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &str, args: &[String], log: std::path::PathBuf) -> ChildProcess {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open the process log");
        let err = out.try_clone().expect("clone the log handle");
        let child = std::process::Command::new(program)
            .args(args)
            .env("ORBSTRIKE_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({program}): {e}"));
        ChildProcess { name: name.to_string(), log, child, exit: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (SIGTERM for a graceful stop; SIGKILL for a crash).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
    }

    /// `kill -9` and reap: a crash with no chance to clean up.
    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.exit = Some(self.child.wait().expect("reap the killed process"));
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("check the process");
        }
        self.exit
    }

    /// Waits for the process to exit, failing the test (with its log's tail) after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; log tail:\n{}",
                self.name,
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The process's JSON log lines (`--log-format json`) whose message is `message`, as their
    /// `fields` objects.
    pub fn json_events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                let fields = v.get("fields")?;
                (fields.get("message")?.as_str()? == message).then(|| fields.clone())
            })
            .collect()
    }

    /// Waits until the process logs `message` (JSON) with fields that `pick` accepts; fails the
    /// test with the log's tail if the process exits or `timeout` passes first.
    pub async fn wait_event<T>(
        &mut self,
        message: &str,
        timeout: Duration,
        pick: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.json_events(message).iter().find_map(&pick) {
                return found;
            }
            if let Some(status) = self.try_exit() {
                panic!("{} exited ({status}) before logging {message:?}; log tail:\n{}", self.name, self.log_tail(20));
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {message:?} within {timeout:?}; log tail:\n{}",
                self.name,
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // No panics here: this also runs while a failed test unwinds.
        if self.exit.is_none() && !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
