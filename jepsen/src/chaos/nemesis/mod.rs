//! Nemeses: faults injected into the cluster on a seeded schedule, each action logged with its
//! start and end time (`nemesis.jsonl`), so a report can shade fault periods and an anomaly can
//! be matched with what the cluster was going through.
//!
//! - [`kill`]: SIGKILL one node, a majority or the busiest leader, later restart them with the
//!   same command line.
//!   `kill-all` SIGKILLs every node at once (every pod of a StatefulSet evicted together): a
//!   process crash of the whole cluster, which what each node wrote survives (the kernel still
//!   writes its page cache out). `power` is a power cut, of the whole cluster half of the time,
//!   else of one node (sometimes the busiest leader) or a minority: each cut node's own
//!   filesystem stops taking writes at one instant (`target/disk.rs`), the node is SIGKILLed,
//!   its filesystem is mounted again as after a reboot: what was not fsynced is gone, so it is
//!   the fault that shows an acknowledged write that was never made durable (the
//!   `ack-before-flush` failpoint).
//! - [`pause`]: SIGSTOP one node, a majority or the busiest leader, later SIGCONT.
//! - [`partition`]: cut a random minority or the busiest leader off from the other nodes, cut
//!   the links of a majorities ring, or cut the busiest leader's links one way (it hears but is
//!   not heard, or the reverse); heal restores every link (needs the local target's proxies).
//! - [`wipe`]: SIGKILL one node or the busiest leader, delete its data directory, later restart
//!   it with the same command line (same node id, empty storage); never a second node while a
//!   wiped one has not caught up.
//! - [`clock`]: one node's wall and monotonic clocks (libfaketime) jump forward 2-30 s, or
//!   strobe (forward 0.2-2 s every other 200 ms); never back, as a monotonic clock cannot; the
//!   heal stops them. With the wall clock alone: both directions, and the heal resets to 0.
//! - [`churn`]: start the spare node (it joins and is promoted), then decommission a member
//!   or the busiest leader; its replicas move while the next faults run; once it has left it
//!   is retired (killed, data deleted) into the spare.
//! - [`schedule`]: alternates heal and fault periods, picks the fault and its nodes with the
//!   run's seeded RNG, and heals everything at the end; with `--compose`, half of the kill,
//!   pause, partition and clock faults come with a second fault (kill, pause or partition) of
//!   another node at the same time.
//!
//! Not done: clock skew that grows slowly (rate changes) (docs/chaos.md).

pub mod churn;
pub mod clock;
pub mod kill;
pub mod partition;
pub mod pause;
pub mod schedule;
pub mod wipe;

use serde::{Deserialize, Serialize};

use crate::chaos::history::Clock;
use crate::chaos::target::cluster::Cluster;

/// A fault family, as named on the command line (`--nemesis kill,pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NemesisKind {
    /// SIGKILL, then restart with the same command line.
    Kill,
    /// SIGKILL every node at once, then restart them all.
    KillAll,
    /// A power cut of every node, one node or a minority: what was not fsynced is lost (needs
    /// root: loop mounts).
    Power,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut a minority or the busiest leader off, a majorities ring, or the busiest leader one
    /// way, then heal.
    Partition,
    /// SIGKILL one node, delete its data directory, then restart it with the same command line.
    Wipe,
    /// Jump or strobe one node's wall and monotonic clocks (libfaketime), then reset them.
    Clock,
    /// Add a node (the spare), then decommission a member while the next faults run.
    Churn,
}

impl NemesisKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::KillAll => "kill-all",
            NemesisKind::Power => "power",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Wipe => "wipe",
            NemesisKind::Clock => "clock",
            NemesisKind::Churn => "churn",
        }
    }
}

/// What one nemesis action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Kill,
    /// Filesystems shut down at one instant, nodes SIGKILLed, filesystems remounted (healed by
    /// `restart`).
    PowerCut,
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
    /// A node's clocks jumped, to `offset_ms` from real time (healed by `clock-reset`).
    ClockJump,
    /// A node's clocks strobed (moved every 200 ms) from `start` to `end`, at most `offset_ms`
    /// from real time (healed by `clock-reset`).
    ClockStrobe,
    /// The heal of a clock fault: the offset stops moving (both clocks faked: it stays at
    /// `offset_ms`) or goes back to 0 (the wall clock alone).
    ClockReset,
    /// The spare node started to join the cluster (`end`: started).
    Join,
    /// The joined node seen as a voter (`start`: its start; with an error: it was not in time).
    Promoted,
    /// A member asked to leave (`end`: the meta leader accepted).
    Decommission,
    /// Observed: a decommissioned node left the membership (`start`: seen gone), and was retired
    /// into the spare slot (`end`).
    Left,
    /// Observed: a decommissioned node came back as a new incarnation before it left (it was
    /// wiped meanwhile), replacing the drained one; it stays a member.
    Replaced,
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
    /// Clock actions (ms, negative: behind real time): for a jump or strobe the farthest the node
    /// got from real time, for `clock-reset` where it was left. Absent from every other
    /// action (and from logs written before the clock nemesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<i64>,
    /// A partition's shape (absent from every other action, and from logs written before the
    /// shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<partition::Shape>,
    /// A partition's cut links, directed: `[from, to]` means bytes from `from` to `to` are lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<[u64; 2]>,
}

impl NemesisEvent {
    /// A line with none of the optional fields (clock offset, partition shape and cut).
    pub fn new(action: Action, nodes: Vec<u64>, start: u64, end: u64, error: Option<String>) -> NemesisEvent {
        NemesisEvent { action, nodes, start, end, error, offset_ms: None, shape: None, cut: Vec::new() }
    }
}

/// The log entry of an action on `nodes` (0-based indices) that began at `start`.
pub(super) fn event(
    cluster: &Cluster,
    action: Action,
    nodes: &[usize],
    start: u64,
    clock: &Clock,
    errors: Vec<String>,
) -> NemesisEvent {
    let ids = nodes.iter().map(|&i| cluster.nodes[i].id).collect();
    NemesisEvent::new(action, ids, start, clock.now(), (!errors.is_empty()).then(|| errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_events_carry_their_offset_and_old_logs_still_read() {
        let old: NemesisEvent = serde_json::from_str(r#"{"action":"kill","nodes":[1],"start":1,"end":2}"#).unwrap();
        assert_eq!(old.offset_ms, None);
        let jump = NemesisEvent {
            action: Action::ClockJump,
            nodes: vec![2],
            start: 1,
            end: 2,
            error: None,
            offset_ms: Some(-15_000),
            shape: None,
            cut: Vec::new(),
        };
        let line = serde_json::to_string(&jump).unwrap();
        assert_eq!(line, r#"{"action":"clock-jump","nodes":[2],"start":1,"end":2,"offset_ms":-15000}"#);
        assert_eq!(serde_json::from_str::<NemesisEvent>(&line).unwrap(), jump);
        assert!(!serde_json::to_string(&old).unwrap().contains("offset_ms"));
    }

    #[test]
    fn partitions_carry_their_shape_and_links_and_old_logs_still_read() {
        let old: NemesisEvent =
            serde_json::from_str(r#"{"action":"partition","nodes":[1],"start":1,"end":2}"#).unwrap();
        assert_eq!((old.shape, old.cut.len()), (None, 0));
        let cut = NemesisEvent {
            action: Action::Partition,
            nodes: vec![2],
            start: 1,
            end: 2,
            error: None,
            offset_ms: None,
            shape: Some(partition::Shape::OneWayOut),
            cut: vec![[2, 1], [2, 3]],
        };
        let line = serde_json::to_string(&cut).unwrap();
        assert_eq!(
            line,
            r#"{"action":"partition","nodes":[2],"start":1,"end":2,"shape":"one-way-out","cut":[[2,1],[2,3]]}"#
        );
        assert_eq!(serde_json::from_str::<NemesisEvent>(&line).unwrap(), cut);
        assert!(!serde_json::to_string(&old).unwrap().contains("shape"));
    }
}
