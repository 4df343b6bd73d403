//! `hcbench board-sync`: checkpoint throughput of `Boards.Sync`, the hot path of a game server.
//!
//! Setup, all against the leader: register one game server (its registration lease is kept
//! alive with `Lease.KeepAliveOnce` for the whole run), create `--boards` boards and assign each
//! to that server (`expected_epoch` 0, a unique `request_id`), remembering the epoch each
//! assignment returned. Then `--concurrency` closed-loop workers sync for `--duration` seconds:
//! worker `w` owns boards `w, w + C, w + 2C, ...` and cycles through them, sending
//! `Sync(board, epoch, seq + 1, checkpoint)`. Because one worker owns each board, its `seq`
//! strictly increases and every sync is a real write; a STALE_SEQ or STALE_EPOCH in the error
//! table would be a server bug (or a lost leader), not contention the benchmark created.
//!
//! The checkpoint is random bytes, generated once and shared, so the client spends no CPU per
//! request on it. Workers share `--connections` HTTP/2 connections to the leader (default one,
//! like a single game-server process). Afterwards the boards are deleted and the server
//! deregistered, unless `--keep`. When the nodes are local `hypercache serve` processes, their
//! CPU (and hcbench's) over the measured phase is reported too, to show what saturates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hypercache_proto::v1::boards_client::BoardsClient;
use hypercache_proto::v1::lease_client::LeaseClient;
use hypercache_proto::v1::registry_client::RegistryClient;
use hypercache_proto::v1::{
    AssignBoardRequest, CreateBoardRequest, DeleteBoardRequest, DeregisterRequest, LeaseKeepAliveRequest,
    RegisterRequest, SyncBoardRequest,
};
use rand::RngCore;
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::common::{channel, describe, home_leader, kind, run_tag, wait_for, CommonArgs};
use super::cpu::{self, CpuFigures, NodePids, NodeWindow};
use crate::report::{op_table, OpStats, OpSummary};

/// Concurrent requests while creating, assigning and deleting boards.
const SETUP_CONCURRENCY: usize = 32;

/// Closed-loop `Boards.Sync` throughput with one owner per board.
#[derive(Debug, Clone, clap::Args)]
pub struct BoardSyncArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Boards to create and assign (1..=100000).
    #[arg(long, default_value_t = 256)]
    pub boards: usize,
    /// Sync workers (1..=boards), each with one sync in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Checkpoint size in bytes (0..=4194304; the server's limit is limits.max_value_bytes).
    #[arg(long, default_value_t = 2048)]
    pub checkpoint_size: usize,
    /// HTTP/2 connections to the leader the workers share (1..=concurrency).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Registration TTL of the hosting game server, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub server_ttl_ms: i64,
    /// Interval between the hosting server's keepalives, in milliseconds (below the TTL).
    #[arg(long, default_value_t = 5_000)]
    pub keepalive_ms: u64,
    /// Leave the boards and the registration in place after the run.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoardSyncReport {
    pub leader: String,
    pub boards: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub checkpoint_bytes: usize,
    pub setup_secs: f64,
    pub elapsed_secs: f64,
    pub sync: OpSummary,
    pub keepalive: OpSummary,
    /// CPU of the node processes and hcbench over the measured phase; absent when the nodes are
    /// not processes on this machine.
    pub cpu: Option<CpuFigures>,
}

impl BoardSyncReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "board-sync: {} boards, {} workers over {} connection(s), {}-byte checkpoints, {:.2}s against leader {} \
             (setup {:.2}s)\n",
            self.boards,
            self.concurrency,
            self.connections,
            self.checkpoint_bytes,
            self.elapsed_secs,
            self.leader,
            self.setup_secs
        );
        s.push_str(&op_table(&[("sync", &self.sync), ("keepalive", &self.keepalive)]));
        if let Some(cpu) = &self.cpu {
            s.push_str(&format!("cpu % of one core: {}\n", cpu.to_text()));
        }
        s
    }
}

impl BoardSyncArgs {
    fn check(&self) -> anyhow::Result<()> {
        if !(1..=100_000).contains(&self.boards) {
            bail!("--boards must be in 1..=100000, got {}", self.boards);
        }
        if !(1..=self.boards).contains(&self.concurrency) {
            bail!("--concurrency must be in 1..=--boards ({}), got {}", self.boards, self.concurrency);
        }
        if !(1..=self.concurrency).contains(&self.connections) {
            bail!("--connections must be in 1..=--concurrency ({}), got {}", self.concurrency, self.connections);
        }
        if self.checkpoint_size > 4 * 1024 * 1024 {
            bail!("--checkpoint-size must be at most 4194304 bytes, got {}", self.checkpoint_size);
        }
        if self.keepalive_ms == 0 || i64::try_from(self.keepalive_ms).map_or(true, |k| k >= self.server_ttl_ms) {
            bail!("--keepalive-ms must be in 1..--server-ttl-ms ({}), got {}", self.server_ttl_ms, self.keepalive_ms);
        }
        Ok(())
    }
}

/// An assigned board: its id and the epoch its syncs must carry.
#[derive(Debug, Clone)]
struct Owned {
    id: String,
    epoch: u64,
}

pub async fn run(args: BoardSyncArgs) -> anyhow::Result<BoardSyncReport> {
    args.check()?;
    let common = args.common.validate()?;
    let (_, shard, leader) = home_leader(&common.endpoints, Duration::from_secs(10)).await?;
    let unary = channel(&leader.endpoint, Some(common.timeout))?;
    let tag = run_tag();
    let server_id = format!("{tag}-srv");

    let setup_started = Instant::now();
    let registered = RegistryClient::new(unary.clone())
        .register(RegisterRequest {
            shard_id: shard,
            server_id: server_id.clone(),
            address: "127.0.0.1:1".into(),
            capacity: u32::try_from(args.boards).unwrap_or(u32::MAX),
            labels: Default::default(),
            ttl_ms: args.server_ttl_ms,
            write: None,
        })
        .await
        .map_err(|s| anyhow::anyhow!("Registry.Register {server_id}: {}", describe(&s)))?
        .into_inner();
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = tokio::spawn(keep_alive(
        LeaseClient::new(unary.clone()),
        shard,
        registered.lease,
        Duration::from_millis(args.keepalive_ms),
        stop.clone(),
    ));
    let owned = create_and_assign(&unary, shard, &tag, &server_id, args.boards).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let mut checkpoint = vec![0u8; args.checkpoint_size];
    rand::thread_rng().fill_bytes(&mut checkpoint);
    let checkpoint = Bytes::from(checkpoint);
    let connections: Vec<Channel> =
        (0..args.connections).map(|_| channel(&leader.endpoint, Some(common.timeout))).collect::<Result<_, _>>()?;

    // Best effort: the nodes may be remote, or not `hypercache serve` processes.
    let pids = NodePids::find(&leader.endpoint, &common.endpoints, None).ok();
    let hz = cpu::ticks_per_sec()?;
    let window = pids.as_ref().map(|p| NodeWindow::start(p, hz)).transpose()?;
    let sync_stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for w in 0..args.concurrency {
        let mine: Vec<Owned> = owned.iter().skip(w).step_by(args.concurrency).cloned().collect();
        let client = BoardsClient::new(connections[w % connections.len()].clone());
        workers.spawn(sync_worker(client, shard, mine, checkpoint.clone(), sync_stop.clone()));
    }
    tokio::time::sleep(common.duration).await;
    sync_stop.store(true, Ordering::Relaxed);
    let mut sync = OpStats::new();
    while let Some(joined) = workers.join_next().await {
        sync.merge(&joined.context("a sync worker panicked")?);
    }
    let elapsed = started.elapsed();
    let cpu = window.map(NodeWindow::finish).transpose()?;
    stop.store(true, Ordering::Relaxed);
    let keepalive = keeper.await.context("the keepalive task panicked")?;

    if !args.keep {
        cleanup(&unary, shard, &owned, &server_id, registered.incarnation).await;
    }
    Ok(BoardSyncReport {
        leader: leader.endpoint,
        boards: args.boards,
        concurrency: args.concurrency,
        connections: args.connections,
        checkpoint_bytes: args.checkpoint_size,
        setup_secs,
        elapsed_secs: elapsed.as_secs_f64(),
        sync: sync.summary(elapsed),
        keepalive: keepalive.summary(elapsed),
        cpu,
    })
}

/// Creates and assigns every board; any failure ends the run, since a board that is not
/// assigned would turn every one of its syncs into an error.
async fn create_and_assign(
    unary: &Channel,
    shard: u32,
    tag: &str,
    server_id: &str,
    boards: usize,
) -> anyhow::Result<Vec<Owned>> {
    let mut owned = Vec::with_capacity(boards);
    let mut tasks = JoinSet::new();
    for i in 0..boards {
        if tasks.len() >= SETUP_CONCURRENCY {
            owned.push(next_owned(&mut tasks).await?);
        }
        let client = BoardsClient::new(unary.clone());
        let (id, server_id, request_id) = (format!("{tag}-b{i:05}"), server_id.to_owned(), format!("{tag}-assign-{i}"));
        tasks.spawn(create_one(client, shard, id, server_id, request_id));
    }
    while !tasks.is_empty() {
        owned.push(next_owned(&mut tasks).await?);
    }
    owned.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(owned)
}

async fn next_owned(tasks: &mut JoinSet<anyhow::Result<Owned>>) -> anyhow::Result<Owned> {
    tasks.join_next().await.context("no setup task left")?.context("a setup task panicked")?
}

async fn create_one(
    mut client: BoardsClient<Channel>,
    shard: u32,
    id: String,
    server_id: String,
    request_id: String,
) -> anyhow::Result<Owned> {
    client
        .create(CreateBoardRequest { shard_id: shard, board_id: id.clone(), ..Default::default() })
        .await
        .map_err(|s| anyhow::anyhow!("Boards.Create {id}: {}", describe(&s)))?;
    let assigned = client
        .assign(AssignBoardRequest {
            shard_id: shard,
            board_id: id.clone(),
            server_id,
            expected_epoch: 0,
            request_id,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("Boards.Assign {id}: {}", describe(&s)))?
        .into_inner();
    let epoch = assigned.board.with_context(|| format!("Boards.Assign {id}: the response has no board"))?.epoch;
    Ok(Owned { id, epoch })
}

/// One closed-loop worker over the boards it owns.
async fn sync_worker(
    mut client: BoardsClient<Channel>,
    shard: u32,
    boards: Vec<Owned>,
    checkpoint: Bytes,
    stop: Arc<AtomicBool>,
) -> OpStats {
    let mut stats = OpStats::new();
    let mut seqs = vec![0u64; boards.len()];
    for i in (0..boards.len()).cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        seqs[i] += 1;
        let request = SyncBoardRequest {
            shard_id: shard,
            board_id: boards[i].id.clone(),
            epoch: boards[i].epoch,
            seq: seqs[i],
            checkpoint: checkpoint.clone(),
            write: None,
        };
        let started = Instant::now();
        match client.sync(request).await {
            Ok(_) => stats.record_ok(started.elapsed()),
            Err(s) => stats.record_error(kind(&s), || describe(&s)),
        }
    }
    stats
}

/// Keeps the hosting server's registration alive; a response with TTL 0 means the lease is
/// gone, which the report counts as an error.
async fn keep_alive(
    mut client: LeaseClient<Channel>,
    shard: u32,
    lease: u64,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> OpStats {
    let mut stats = OpStats::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the lease was just granted
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for(&stop) => break,
        }
        let started = Instant::now();
        match client.keep_alive_once(LeaseKeepAliveRequest { shard_id: shard, id: lease }).await {
            Ok(r) if r.get_ref().ttl_ms > 0 => stats.record_ok(started.elapsed()),
            Ok(_) => stats.record_error("lease_gone", || format!("lease {lease} no longer exists (ttl_ms 0)")),
            Err(s) => stats.record_error(kind(&s), || describe(&s)),
        }
    }
    stats
}

/// Best effort: failures are printed, not fatal, because the measurement is already taken.
async fn cleanup(unary: &Channel, shard: u32, owned: &[Owned], server_id: &str, incarnation: u64) {
    let mut tasks = JoinSet::new();
    let mut failures = Vec::new();
    for board in owned {
        if tasks.len() >= SETUP_CONCURRENCY {
            if let Some(Ok(Err(e))) = tasks.join_next().await {
                failures.push(e);
            }
        }
        let mut client = BoardsClient::new(unary.clone());
        let id = board.id.clone();
        tasks.spawn(async move {
            let request =
                DeleteBoardRequest { shard_id: shard, board_id: id.clone(), expected_epoch: None, write: None };
            client.delete(request).await.map(drop).map_err(|s| format!("Boards.Delete {id}: {}", describe(&s)))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            failures.push(e);
        }
    }
    let request = DeregisterRequest { shard_id: shard, server_id: server_id.to_owned(), incarnation, write: None };
    if let Err(s) = RegistryClient::new(unary.clone()).deregister(request).await {
        failures.push(format!("Registry.Deregister {server_id}: {}", describe(&s)));
    }
    if let Some(first) = failures.first() {
        eprintln!("board-sync cleanup: {} failure(s), first: {first}", failures.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: BoardSyncArgs,
    }

    fn args(extra: &[&str]) -> BoardSyncArgs {
        T::try_parse_from(std::iter::once("t").chain(extra.iter().copied())).expect("parse").a
    }

    #[test]
    fn limits_are_checked_and_named() {
        assert!(args(&[]).check().is_ok());
        for (flags, needle) in [
            (&["--concurrency", "300"][..], "--concurrency"),
            (&["--boards", "0"][..], "--boards"),
            (&["--connections", "65"][..], "--connections"),
            (&["--keepalive-ms", "60000"][..], "--keepalive-ms"),
            (&["--checkpoint-size", "9999999"][..], "--checkpoint-size"),
        ] {
            let err = args(flags).check().expect_err("invalid");
            assert!(err.to_string().contains(needle), "{flags:?}: {err}");
        }
    }
}
