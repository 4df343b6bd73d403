//! `hcbench heartbeat`: what registry heartbeats cost the leader, in CPU.
//!
//! Phases, all against the leader found at the start:
//! 1. **Idle baseline**: nothing is sent for `--duration` seconds; the CPU of every node process
//!    (and of hcbench itself) is sampled from `/proc` at both ends. This is the cost of an idle
//!    3-node cluster: Raft heartbeats, timers, metrics.
//! 2. `--servers` game servers register (`Registry.Register`, `--ttl-ms`).
//! 3. Every server sends one keepalive per `--interval-ms`, either `Lease.KeepAliveOnce` or one
//!    message on its own `Lease.KeepAlive` stream (`--mode`). Start times are spread evenly over
//!    one interval, as independent servers would be. After a 2 s warm-up the CPU is sampled
//!    again over `--duration` seconds; keepalive latencies are recorded for that window only.
//! 4. The servers deregister (unless `--keep`).
//!
//! The heartbeat cost is the leader's CPU in phase 3 minus phase 1. Every keepalive passes a
//! read-index barrier on the leader (server side: leadership confirmed by a quorum), so the
//! followers' CPU is reported too. hcbench runs on the same cores, so its own CPU is shown
//! as well: on a 2-core machine it competes with the nodes. Linux only (`/proc`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hypercache_proto::v1::lease_client::LeaseClient;
use hypercache_proto::v1::registry_client::RegistryClient;
use hypercache_proto::v1::{DeregisterRequest, LeaseKeepAliveRequest, RegisterRequest};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::common::{channel, describe, home_leader, kind, run_tag, wait_for, CommonArgs};
use super::cpu::{self, CpuFigures, NodePids, NodeWindow};
use crate::report::{op_table, OpStats, OpSummary};

const SETUP_CONCURRENCY: usize = 32;
const WARM_UP: Duration = Duration::from_secs(2);

/// How each server sends its keepalives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One unary `Lease.KeepAliveOnce` per heartbeat.
    Once,
    /// One message per heartbeat on a long-lived `Lease.KeepAlive` stream per server.
    Stream,
}

/// Leader CPU of N servers heartbeating, against an idle baseline.
#[derive(Debug, Clone, clap::Args)]
pub struct HeartbeatArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Registered game servers (1..=100000).
    #[arg(long, default_value_t = 1000)]
    pub servers: usize,
    /// Heartbeat interval per server, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Registration TTL, in milliseconds (more than the interval).
    #[arg(long, default_value_t = 5000)]
    pub ttl_ms: i64,
    #[arg(long, value_enum, default_value_t = Mode::Once)]
    pub mode: Mode,
    /// HTTP/2 connections the servers share (1..=servers; the default is one per server).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Pid of the leader process (default: the `hypercache serve` listening on its endpoint).
    #[arg(long)]
    pub leader_pid: Option<u32>,
    /// Leave the registrations in place (they expire after --ttl-ms).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatReport {
    pub leader: String,
    pub leader_pid: u32,
    /// The leader when the run ended; differs from `leader` if leadership moved.
    pub leader_after: String,
    pub servers: usize,
    pub interval_ms: u64,
    pub ttl_ms: i64,
    pub mode: Mode,
    pub connections: usize,
    pub register_secs: f64,
    pub idle: CpuFigures,
    pub heartbeats: CpuFigures,
    /// Leader CPU with heartbeats minus without.
    pub leader_cost_pct: f64,
    pub keepalive: OpSummary,
}

impl HeartbeatReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "heartbeat: {} servers, one keepalive each per {} ms ({:?}, {} connection(s)), TTL {} ms; leader {} (pid {}); \
             registered in {:.2}s\n",
            self.servers,
            self.interval_ms,
            self.mode,
            self.connections,
            self.ttl_ms,
            self.leader,
            self.leader_pid,
            self.register_secs
        );
        if self.leader_after != self.leader {
            s.push_str(&format!("WARNING: leadership moved to {} during the run\n", self.leader_after));
        }
        s.push_str(&format!(
            "{:<12} {:>8} {:>10} {:>20} {:>10}\n",
            "cpu % core", "window", "leader", "followers", "hcbench"
        ));
        for (name, f) in [("idle", &self.idle), ("heartbeats", &self.heartbeats)] {
            let followers: Vec<String> = f.followers_pct.iter().map(|p| format!("{p:.1}")).collect();
            s.push_str(&format!(
                "{:<12} {:>7.1}s {:>10.1} {:>20} {:>10.1}\n",
                name,
                f.window_secs,
                f.leader_pct,
                followers.join(" / "),
                f.hcbench_pct
            ));
        }
        s.push_str(&format!("leader cost of the heartbeats: {:.1} % of one core\n", self.leader_cost_pct));
        s.push_str(&op_table(&[("keepalive", &self.keepalive)]));
        s
    }
}

impl HeartbeatArgs {
    fn check(&self) -> anyhow::Result<usize> {
        if !(1..=100_000).contains(&self.servers) {
            bail!("--servers must be in 1..=100000, got {}", self.servers);
        }
        if self.interval_ms == 0 || i64::try_from(self.interval_ms).map_or(true, |i| i >= self.ttl_ms) {
            bail!("--interval-ms must be in 1..--ttl-ms ({}), got {}", self.ttl_ms, self.interval_ms);
        }
        let connections = self.connections.unwrap_or(self.servers);
        if !(1..=self.servers).contains(&connections) {
            bail!("--connections must be in 1..=--servers ({}), got {connections}", self.servers);
        }
        Ok(connections)
    }
}

async fn cpu_window(pids: &NodePids, length: Duration, hz: u64) -> anyhow::Result<CpuFigures> {
    let window = NodeWindow::start(pids, hz)?;
    tokio::time::sleep(length).await;
    window.finish()
}

pub async fn run(args: HeartbeatArgs) -> anyhow::Result<HeartbeatReport> {
    let connections = args.check()?;
    let common = args.common.validate()?;
    let hz = cpu::ticks_per_sec()?;
    let (shards, shard, leader) = home_leader(&common.endpoints, Duration::from_secs(10)).await?;
    let pids = NodePids::find(&leader.endpoint, &common.endpoints, args.leader_pid)?;

    let idle = cpu_window(&pids, common.duration, hz).await?;

    let timeout = match args.mode {
        Mode::Once => Some(common.timeout),
        Mode::Stream => None,
    };
    let channels: Vec<Channel> =
        (0..connections).map(|_| channel(&leader.endpoint, timeout)).collect::<Result<_, _>>()?;
    let unary = channel(&leader.endpoint, Some(common.timeout))?;
    let tag = run_tag();
    let register_started = Instant::now();
    let registered = register_all(&unary, shard, &tag, args.servers, args.ttl_ms).await?;
    let register_secs = register_started.elapsed().as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_millis(args.interval_ms);
    let mut beaters = JoinSet::new();
    for (i, (_, lease, _)) in registered.iter().enumerate() {
        let offset = interval.mul_f64(i as f64 / args.servers as f64);
        let client = LeaseClient::new(channels[i % channels.len()].clone());
        let beat = Beat { shard, lease: *lease, offset, interval, timeout: common.timeout };
        let (stop, measuring) = (stop.clone(), measuring.clone());
        match args.mode {
            Mode::Once => beaters.spawn(beat.once(client, stop, measuring)),
            Mode::Stream => beaters.spawn(beat.stream(client, stop, measuring)),
        };
    }
    tokio::time::sleep(WARM_UP).await;
    measuring.store(true, Ordering::Relaxed);
    let measured_started = Instant::now();
    let heartbeats = cpu_window(&pids, common.duration, hz).await?;
    measuring.store(false, Ordering::Relaxed);
    let measured = measured_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut keepalive = OpStats::new();
    while let Some(joined) = beaters.join_next().await {
        keepalive.merge(&joined.context("a heartbeat task panicked")?);
    }
    let leader_after = shards.find_leader(shard, Duration::from_secs(10)).await?.endpoint;
    if !args.keep {
        deregister_all(&unary, shard, &registered).await;
    }
    Ok(HeartbeatReport {
        leader: leader.endpoint,
        leader_pid: pids.leader,
        leader_after,
        servers: args.servers,
        interval_ms: args.interval_ms,
        ttl_ms: args.ttl_ms,
        mode: args.mode,
        connections,
        register_secs,
        leader_cost_pct: heartbeats.leader_pct - idle.leader_pct,
        idle,
        heartbeats,
        keepalive: keepalive.summary(measured),
    })
}

/// One server's heartbeat schedule.
struct Beat {
    shard: u32,
    lease: u64,
    offset: Duration,
    interval: Duration,
    timeout: Duration,
}

impl Beat {
    fn ticker(&self) -> tokio::time::Interval {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + self.offset, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    async fn once(
        self,
        mut client: LeaseClient<Channel>,
        stop: Arc<AtomicBool>,
        measuring: Arc<AtomicBool>,
    ) -> OpStats {
        let mut stats = OpStats::new();
        let mut tick = self.ticker();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = wait_for(&stop) => break,
            }
            let counted = measuring.load(Ordering::Relaxed);
            let started = Instant::now();
            let result = client.keep_alive_once(LeaseKeepAliveRequest { shard_id: self.shard, id: self.lease }).await;
            if counted {
                record(&mut stats, self.lease, started, result.map(|r| r.into_inner().ttl_ms));
            }
        }
        stats
    }

    async fn stream(
        self,
        mut client: LeaseClient<Channel>,
        stop: Arc<AtomicBool>,
        measuring: Arc<AtomicBool>,
    ) -> OpStats {
        let mut stats = OpStats::new();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut responses = match client.keep_alive(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                stats.record_error(kind(&s), || format!("opening Lease.KeepAlive: {}", describe(&s)));
                return stats;
            }
        };
        let mut tick = self.ticker();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = wait_for(&stop) => break,
            }
            let counted = measuring.load(Ordering::Relaxed);
            let started = Instant::now();
            if tx.send(LeaseKeepAliveRequest { shard_id: self.shard, id: self.lease }).await.is_err() {
                stats.record_error("stream_ended", || "the keepalive stream's request side closed".into());
                break;
            }
            let result = match tokio::time::timeout(self.timeout, responses.message()).await {
                Ok(Ok(Some(r))) => Ok(r.ttl_ms),
                Ok(Ok(None)) => Err(tonic::Status::unavailable("the server ended the keepalive stream")),
                Ok(Err(s)) => Err(s),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!("no keepalive response in {:?}", self.timeout))),
            };
            let broken = result.is_err();
            if counted {
                record(&mut stats, self.lease, started, result);
            }
            if broken {
                break;
            }
        }
        stats
    }
}

fn record(stats: &mut OpStats, lease: u64, started: Instant, result: Result<i64, tonic::Status>) {
    match result {
        Ok(ttl) if ttl > 0 => stats.record_ok(started.elapsed()),
        Ok(_) => stats.record_error("lease_gone", || format!("lease {lease} no longer exists (ttl_ms 0)")),
        Err(s) => stats.record_error(kind(&s), || describe(&s)),
    }
}

/// (server id, lease, incarnation) of every registration; any failure ends the run.
async fn register_all(
    unary: &Channel,
    shard: u32,
    tag: &str,
    servers: usize,
    ttl_ms: i64,
) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let mut done = Vec::with_capacity(servers);
    let mut tasks = JoinSet::new();
    for i in 0..servers {
        if tasks.len() >= SETUP_CONCURRENCY {
            done.push(tasks.join_next().await.context("no task")?.context("a register task panicked")??);
        }
        let mut client = RegistryClient::new(unary.clone());
        let server_id = format!("{tag}-s{i:05}");
        tasks.spawn(async move {
            let request = RegisterRequest {
                shard_id: shard,
                server_id: server_id.clone(),
                address: format!("10.0.{}.{}:7000", i / 256, i % 256),
                capacity: 16,
                labels: Default::default(),
                ttl_ms,
                write: None,
            };
            let r = client
                .register(request)
                .await
                .map_err(|s| anyhow::anyhow!("Registry.Register {server_id}: {}", describe(&s)))?
                .into_inner();
            Ok::<_, anyhow::Error>((server_id, r.lease, r.incarnation))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.context("a register task panicked")??);
    }
    Ok(done)
}

/// Best effort; failures are printed, since the measurement is already taken.
async fn deregister_all(unary: &Channel, shard: u32, registered: &[(String, u64, u64)]) {
    let mut tasks = JoinSet::new();
    let mut failures = Vec::new();
    for (server_id, _, incarnation) in registered {
        if tasks.len() >= SETUP_CONCURRENCY {
            if let Some(Ok(Err(e))) = tasks.join_next().await {
                failures.push(e);
            }
        }
        let mut client = RegistryClient::new(unary.clone());
        let request =
            DeregisterRequest { shard_id: shard, server_id: server_id.clone(), incarnation: *incarnation, write: None };
        tasks.spawn(async move {
            let id = request.server_id.clone();
            client
                .deregister(request)
                .await
                .map(drop)
                .map_err(|s| format!("Registry.Deregister {id}: {}", describe(&s)))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            failures.push(e);
        }
    }
    if let Some(first) = failures.first() {
        eprintln!("heartbeat cleanup: {} failure(s), first: {first}", failures.len());
    }
}
