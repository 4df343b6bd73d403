//! Benchmarks of the game-state primitives (issue #3): board checkpoints, watch delivery,
//! registry heartbeats and lease expiry. Each is an `hcbench` subcommand:
//!
//! - [`board_sync`]: closed-loop `Boards.Sync` throughput and latency, one owner per board;
//! - [`watch_latency`]: put-to-watcher delivery latency with many watchers on one prefix;
//! - [`heartbeat`]: leader CPU of many servers sending keepalives, against an idle baseline;
//! - [`lease_expiry`]: how late abandoned leases' keys are deleted, as a watcher sees it.
//!
//! Unlike the KV load generator ([`crate::load`]) these use the generated tonic clients of
//! `hypercache-proto` directly (see [`common`] for why) and route by hand, once, at the start of
//! the run: game services to the leader of the client library's home shard, KV keys to the
//! leader of their own shard (their per-run prefix is a hash tag, so one shard per run). Every run is bounded by `--duration` (and every unary call by
//! `--timeout-ms`); setup failures end the run with the server's exact error, failures during
//! the measured phase are counted per kind in the report.

pub mod board_sync;
pub mod common;
pub mod cpu;
pub mod heartbeat;
pub mod lease_expiry;
pub mod watch_latency;

use crate::report::render;

/// The game-state subcommands of `hcbench`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Boards.Sync throughput: B boards assigned to one registered server, C sync workers.
    BoardSync(board_sync::BoardSyncArgs),
    /// KV.Watch delivery latency: W watchers on a prefix, one writer at a fixed rate.
    WatchLatency(watch_latency::WatchLatencyArgs),
    /// Leader CPU of N registered servers heartbeating every interval, vs. an idle baseline.
    Heartbeat(heartbeat::HeartbeatArgs),
    /// Lease expiry lag: N leases with one key each, never kept alive, a watcher on the keys.
    LeaseExpiry(lease_expiry::LeaseExpiryArgs),
}

impl Command {
    /// Runs the benchmark and renders its report (text, or JSON with `--json`).
    pub async fn run(self) -> anyhow::Result<String> {
        match self {
            Command::BoardSync(a) => {
                let json = a.common.json;
                render(board_sync::run(a).await?, json, board_sync::BoardSyncReport::to_text)
            }
            Command::WatchLatency(a) => {
                let json = a.common.json;
                render(watch_latency::run(a).await?, json, watch_latency::WatchLatencyReport::to_text)
            }
            Command::Heartbeat(a) => {
                let json = a.common.json;
                render(heartbeat::run(a).await?, json, heartbeat::HeartbeatReport::to_text)
            }
            Command::LeaseExpiry(a) => {
                let json = a.common.json;
                render(lease_expiry::run(a).await?, json, lease_expiry::LeaseExpiryReport::to_text)
            }
        }
    }
}
