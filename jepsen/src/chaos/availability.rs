//! Availability during faults, from the history and the nemesis log: for each fault, how long
//! writes stopped while it lasted (the longest stretch with no write completing `ok`), and how
//! long after its heal the first write completed. The targets: a write gap after a
//! leader kill or pause of at most the election timeout + 0.5 s, full service within 2 s of a
//! heal. Figures, not a verdict: a run is not invalid because it was slow.
//!
//! Writes are `ok` puts, compare-and-swaps (those whose comparison held), adds, bank transfers,
//! election campaigns and resignations (a campaign completes when it wins, so its waiting for
//! the previous leader counts in the gap), board assignments and checkpoint syncs, list-append
//! transactions that append, the watch workload's puts and deletes: every `ok` operation that is
//! not a read ([`Op::is_read`](super::history::Op::is_read); watch deliveries are reads) nor a
//! workload's setup. Reads do not count, as a read served by a partitioned or paused node's
//! peers says nothing about commits.

use serde::{Deserialize, Serialize};

use super::history::{EventType, Operation};
use super::nemesis::partition::Shape;
use super::nemesis::{Action, NemesisEvent};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub action: Action,
    pub nodes: Vec<u64>,
    /// A partition's shape (absent otherwise, and from results written before the shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
    /// When the fault began and when its heal began (ns on the run's clock).
    pub start: u64,
    pub healed: u64,
    pub writes: usize,
    /// The longest stretch between `start` and `healed` with no write completing.
    pub longest_write_gap_ms: u64,
    /// From the end of the heal to the first write completing after it (`None`: none did).
    pub first_write_after_heal_ms: Option<u64>,
}

fn heals(action: Action) -> &'static [Action] {
    match action {
        Action::Kill | Action::PowerCut | Action::Wipe => &[Action::Restart],
        Action::Pause => &[Action::Resume],
        Action::Partition => &[Action::Heal],
        Action::ClockJump | Action::ClockStrobe => &[Action::ClockReset],
        // The churn's fault period is the replica move: from the decommission to the node gone.
        Action::Decommission => &[Action::Left, Action::Replaced],
        Action::Restart
        | Action::Resume
        | Action::Heal
        | Action::CaughtUp
        | Action::Skip
        | Action::ClockReset
        | Action::Join
        | Action::Promoted
        | Action::Left
        | Action::Replaced => &[],
    }
}

pub fn windows(ops: &[Operation], nemesis: &[NemesisEvent]) -> Vec<FaultWindow> {
    let mut writes: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == EventType::Ok && !o.op.is_read() && !o.op.is_setup())
        .filter_map(|o| o.complete)
        .collect();
    writes.sort_unstable();
    let ms = |ns: u64| ns / 1_000_000;
    let mut out = Vec::new();
    for (i, fault) in nemesis.iter().enumerate() {
        let ends = heals(fault.action);
        let Some(heal) = nemesis[i + 1..].iter().find(|e| ends.contains(&e.action)) else { continue };
        let during: Vec<u64> = writes.iter().copied().filter(|&t| t >= fault.start && t <= heal.start).collect();
        let mut edges = vec![fault.start];
        edges.extend(&during);
        edges.push(heal.start);
        let gap = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let after = writes.iter().find(|&&t| t >= heal.end).map(|&t| ms(t - heal.end));
        out.push(FaultWindow {
            action: fault.action,
            nodes: fault.nodes.clone(),
            shape: fault.shape,
            start: fault.start,
            healed: heal.start,
            writes: during.len(),
            longest_write_gap_ms: ms(gap),
            first_write_after_heal_ms: after,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::Op;

    const MS: u64 = 1_000_000;

    fn write_done(at_ms: u64) -> Operation {
        let op = Op::Write { key: "k".into(), value: at_ms };
        Operation { process: 0, op, outcome: EventType::Ok, invoke: at_ms * MS - MS, complete: Some(at_ms * MS) }
    }
    fn action(action: Action, at_ms: u64) -> NemesisEvent {
        NemesisEvent {
            action,
            nodes: vec![1],
            start: at_ms * MS,
            end: at_ms * MS + MS,
            error: None,
            offset_ms: None,
            shape: None,
            cut: Vec::new(),
        }
    }

    #[test]
    fn gaps_and_recovery_are_measured_per_fault() {
        let mut ops: Vec<Operation> = [100, 200, 1500, 1600, 3100, 3300].into_iter().map(write_done).collect();
        // A read and a failed write do not count as writes.
        ops.push(Operation { outcome: EventType::Fail, ..write_done(2500) });
        ops.push(Operation { op: Op::Read { key: "k".into(), value: None }, ..write_done(2600) });
        let log = [action(Action::Kill, 1000), action(Action::Restart, 3000), action(Action::Pause, 4000)];
        let w = windows(&ops, &log);
        assert_eq!(w.len(), 1, "a fault without its heal has no window");
        assert_eq!((w[0].writes, w[0].longest_write_gap_ms, w[0].first_write_after_heal_ms), (2, 1400, Some(99)));
        // No write at all during the fault: the gap is the whole fault.
        let w = windows(&ops[..2], &log[..2]);
        assert_eq!((w[0].writes, w[0].longest_write_gap_ms, w[0].first_write_after_heal_ms), (0, 2000, None));
    }
}
