//! Nemeses: faults injected into the cluster on a seeded schedule, each action logged with its
//! start and end time (`nemesis.jsonl`), so a report can shade fault periods and an anomaly can
//! be matched with what the cluster was going through.
//!
//! - [`kill`]: SIGKILL one node, a majority or the busiest leader, later restart them with the
//!   same command line.
//! - [`pause`]: SIGSTOP one node, a majority or the busiest leader, later SIGCONT.
//! - [`partition`]: cut a random minority, or the busiest leader, off from the other nodes;
//!   heal restores every link (needs the local target's proxies).
//! - [`wipe`]: SIGKILL one node or the busiest leader, delete its data directory, later restart
//!   it with the same command line (same node id, empty storage); never a second node while a
//!   wiped one has not caught up.
//! - [`schedule`]: alternates heal and fault periods, picks the fault and its nodes with the
//!   run's seeded RNG, and heals everything at the end.
//!
//! Not done: majority rings and one-way partitions (the proxies can express them), clock faults, membership churn (docs/chaos.md).

pub mod kill;
pub mod partition;
pub mod pause;
pub mod schedule;
pub mod wipe;

use serde::{Deserialize, Serialize};

use crate::chaos::history::Clock;
use crate::chaos::target::local::LocalCluster;

/// A fault family, as named on the command line (`--nemesis kill,pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NemesisKind {
    /// SIGKILL, then restart with the same command line.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut a minority or the busiest leader off from the rest, then heal.
    Partition,
    /// SIGKILL one node, delete its data directory, then restart it with the same command line.
    Wipe,
}

impl NemesisKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Wipe => "wipe",
        }
    }
}

/// What one nemesis action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Kill,
    Restart,
    Pause,
    Resume,
    Partition,
    Heal,
    /// SIGKILL and data directory deleted (healed by `restart`).
    Wipe,
    /// Observed, not done: a wiped node caught up (`start`: its restart).
    CaughtUp,
    /// A planned wipe not done: `nodes` (wiped before) had not caught up.
    Skip,
}

/// One line of `nemesis.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    pub action: Action,
    /// Raft node ids.
    pub nodes: Vec<u64>,
    /// Nanoseconds since the run started (the history's clock).
    pub start: u64,
    pub end: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The log entry of an action on `nodes` (0-based indices) that began at `start`.
pub(super) fn event(
    cluster: &LocalCluster,
    action: Action,
    nodes: &[usize],
    start: u64,
    clock: &Clock,
    errors: Vec<String>,
) -> NemesisEvent {
    NemesisEvent {
        action,
        nodes: nodes.iter().map(|&i| cluster.nodes[i].id).collect(),
        start,
        end: clock.now(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}
