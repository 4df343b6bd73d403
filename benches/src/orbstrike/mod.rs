//! Benchmarks of Orbstrike (issue #4): the targets of `docs/benchmarks.md`, "Orbstrike". Each is
//! an `hcbench` subcommand with a text report (or `--json`); `benches/scripts/orbstrike-suite.sh`
//! runs them all against a fresh HyperCache dev cluster and fresh Orbstrike processes.
//!
//! - [`capacity`]: boards x players one game-server process ticks at 30 Hz without overrunning,
//!   with the CPU of every process on the machine (`--search` steps the boards up);
//! - [`proxy`]: input-to-update latency through the orchestrator vs. directly on the game
//!   server, at the same time on the same boards;
//! - [`handover`]: `kill -9` of a game server (unplanned failover) or SIGTERM (planned drain):
//!   per board, time until players get updates from the new owner, and ticks lost;
//! - [`placement`]: CreateGame rate through one orchestrator.
//!
//! The players are [`swarm`]: many players per task, the same scripted steering as the bot.
//!
//! The machine these run on has two cores shared by the three HyperCache nodes, the Orbstrike
//! processes and the load generator, and a hypervisor that steals CPU from it: every report
//! carries the CPU of each process and the steal over its window, so a reader can tell a limit
//! of the code from a limit of the machine. Linux only (`/proc`).

pub mod capacity;
pub mod common;
pub mod handover;
pub mod metrics;
pub mod placement;
pub mod procs;
pub mod proxy;
pub mod swarm;

use crate::report::render;

/// The Orbstrike subcommands of `hcbench`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Boards x players one game server sustains at 30 Hz (tick overrun, CPU per player-tick).
    OrbstrikeCapacity(capacity::CapacityArgs),
    /// Latency the orchestrator's Play proxy adds (proxied vs. direct players, same boards).
    OrbstrikeProxy(proxy::ProxyArgs),
    /// kill -9 of a game server: time until its boards serve players again, ticks lost.
    OrbstrikeFailover(handover::HandoverArgs),
    /// SIGTERM (drain) of a game server: per-board hand-over time, checkpoint loss.
    OrbstrikeDrain(handover::HandoverArgs),
    /// CreateGame rate through one orchestrator.
    OrbstrikePlacement(placement::PlacementArgs),
}

impl Command {
    /// Runs the benchmark and renders its report (text, or JSON with `--json`).
    pub async fn run(self) -> anyhow::Result<String> {
        match self {
            Command::OrbstrikeCapacity(a) => {
                let json = a.orb.json;
                render(capacity::run(a).await?, json, capacity::CapacityReport::to_text)
            }
            Command::OrbstrikeProxy(a) => {
                let json = a.orb.json;
                render(proxy::run(a).await?, json, proxy::ProxyReport::to_text)
            }
            Command::OrbstrikeFailover(a) => {
                let json = a.orb.json;
                render(handover::run(handover::Mode::Kill, a).await?, json, handover::HandoverReport::to_text)
            }
            Command::OrbstrikeDrain(a) => {
                let json = a.orb.json;
                render(handover::run(handover::Mode::Drain, a).await?, json, handover::HandoverReport::to_text)
            }
            Command::OrbstrikePlacement(a) => {
                let json = a.orb.json;
                render(placement::run(a).await?, json, placement::PlacementReport::to_text)
            }
        }
    }
}
