//! The board checker: epoch fencing of board checkpoints (issue 17: no checkpoint accepted from
//! an epoch older than one already handed to a new owner; seqs increase within an epoch). Per
//! board, from the history alone:
//!
//! 1. **Stale owner accepted.** A sync acknowledged `ok` with epoch `E` must not have been
//!    invoked after an operation that showed the board at an epoch above `E` had completed: an
//!    `ok` assign that handed out a newer epoch, or an `ok` read of the owner record at one. The
//!    assignment and the sync are single log entries, so a sync invoked after the assignment
//!    completed is applied after it and must be refused (`STALE_EPOCH`); a sync in flight across
//!    the assignment may legitimately go either way and is not judged.
//! 2. **Seqs go back within an epoch.** The `ok` syncs of one epoch, in completion order, have
//!    strictly increasing seqs (the workload never repeats a seq).
//! 3. **Lost or rolled-back checkpoint.** The stored checkpoint's (epoch, seq) only moves forward
//!    (seqs increase within an epoch, a sync of an older epoch is refused, a new epoch's first
//!    sync is always written), so a read must not return a checkpoint older than that of an
//!    `ok` sync, or of another read, that completed before the read was invoked. An `ok` read
//!    that found no board at all is reported too.
//!
//! Operations whose outcome is unknown (`info`) are not evidence either way: they may take effect
//! at any later time. A history without an `ok` `open-boards` or without an `ok` final read of
//! every board is `unknown` unless it already holds an anomaly.
//!
//! Not checked: that a refused sync really wrote nothing unless a later read shows it (it would
//! show as a rolled-back checkpoint only when a newer one was acknowledged before); the
//! checkpoint data itself (the workload's data is a function of owner, epoch and seq).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation, Process};

/// At most this many anomalies are listed (all are counted).
const LISTED: usize = 20;

/// One operation named in an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    /// Its position in the paired history.
    pub index: usize,
    pub process: Process,
    pub op: Op,
    pub invoke: u64,
    pub complete: Option<u64>,
}

impl OpRef {
    fn of(index: usize, o: &Operation) -> OpRef {
        OpRef { index, process: o.process, op: o.op.clone(), invoke: o.invoke, complete: o.complete }
    }
}

/// One violation, naming the operations that prove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    /// `sync` (epoch `epoch`) was accepted although `superseded_by` had shown `newer_epoch`
    /// before the sync was invoked.
    StaleEpochAccepted { board: String, epoch: u64, newer_epoch: u64, sync: OpRef, superseded_by: OpRef },
    /// Two `ok` syncs of one epoch whose seqs do not increase in completion order.
    SeqNotIncreasing { board: String, epoch: u64, earlier: OpRef, later: OpRef },
    /// `read` returned checkpoint `read_checkpoint` (epoch, seq) although `after` had
    /// established `expected` before the read was invoked.
    CheckpointWentBack { board: String, read_checkpoint: (u64, u64), expected: (u64, u64), read: OpRef, after: OpRef },
    /// An `ok` read that found no board (the setup created every board before the workers ran).
    BoardMissing { board: String, read: OpRef },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    /// From the setup (`None`: no `open-boards` op completed `ok`).
    pub boards: Option<usize>,
    pub assigns_ok: usize,
    pub assigns_fail: usize,
    pub assigns_info: usize,
    pub syncs_ok: usize,
    /// Refused syncs: mostly deposed owners told `STALE_EPOCH`.
    pub syncs_fail: usize,
    pub syncs_info: usize,
    /// Successful reads, final ones included.
    pub reads: usize,
    /// Boards with a successful final read.
    pub final_reads: usize,
    /// How many anomalies were found, and the first [`LISTED`] of them.
    pub anomaly_count: usize,
    pub anomalies: Vec<Anomaly>,
}

/// What one operation established about a board, at its completion.
#[derive(Clone, Copy)]
struct Evidence {
    complete: u64,
    /// (epoch, seq) for checkpoints, (epoch, 0) for owner-record epochs.
    value: (u64, u64),
    index: usize,
}

/// The highest `value` among `evidence` (sorted by completion) that completed before `at`.
struct PrefixMax {
    completes: Vec<u64>,
    best: Vec<Evidence>,
}

impl PrefixMax {
    fn new(mut evidence: Vec<Evidence>) -> PrefixMax {
        evidence.sort_by_key(|e| e.complete);
        let mut best: Vec<Evidence> = Vec::with_capacity(evidence.len());
        for e in &evidence {
            let keep = match best.last() {
                Some(b) if b.value >= e.value => *b,
                _ => *e,
            };
            best.push(keep);
        }
        PrefixMax { completes: evidence.iter().map(|e| e.complete).collect(), best }
    }

    fn before(&self, at: u64) -> Option<Evidence> {
        let n = self.completes.partition_point(|&c| c < at);
        n.checked_sub(1).map(|i| self.best[i])
    }
}

pub fn check(ops: &[Operation]) -> Report {
    let mut report = Report {
        valid: Validity::Unknown,
        boards: None,
        assigns_ok: 0,
        assigns_fail: 0,
        assigns_info: 0,
        syncs_ok: 0,
        syncs_fail: 0,
        syncs_info: 0,
        reads: 0,
        final_reads: 0,
        anomaly_count: 0,
        anomalies: Vec::new(),
    };
    let opened: Option<&Vec<String>> = ops.iter().find_map(|o| match (&o.op, o.outcome) {
        (Op::OpenBoards { boards, .. }, EventType::Ok) => Some(boards),
        _ => None,
    });
    report.boards = opened.map(Vec::len);

    // Per board: epochs shown (assigns, reads of the owner record), checkpoints established
    // (syncs, reads), and the ok syncs and reads to judge.
    let mut epochs: BTreeMap<&str, Vec<Evidence>> = BTreeMap::new();
    let mut checkpoints: BTreeMap<&str, Vec<Evidence>> = BTreeMap::new();
    let mut syncs: BTreeMap<(&str, u64), Vec<usize>> = BTreeMap::new();
    let mut reads: Vec<usize> = Vec::new();
    let mut finals: BTreeSet<&str> = BTreeSet::new();
    let mut anomalies: Vec<Anomaly> = Vec::new();
    for (index, o) in ops.iter().enumerate() {
        match (&o.op, o.outcome) {
            (Op::Assign { .. }, EventType::Fail) => report.assigns_fail += 1,
            (Op::Assign { .. }, EventType::Info | EventType::Invoke) => report.assigns_info += 1,
            (Op::Sync { .. }, EventType::Fail) => report.syncs_fail += 1,
            (Op::Sync { .. }, EventType::Info | EventType::Invoke) => report.syncs_info += 1,
            _ => {}
        }
        let (EventType::Ok, Some(complete)) = (o.outcome, o.complete) else { continue };
        match &o.op {
            Op::Assign { board, epoch: Some(epoch), .. } => {
                report.assigns_ok += 1;
                epochs.entry(board).or_default().push(Evidence { complete, value: (*epoch, 0), index });
            }
            Op::Sync { board, epoch, seq, .. } => {
                report.syncs_ok += 1;
                checkpoints.entry(board).or_default().push(Evidence { complete, value: (*epoch, *seq), index });
                syncs.entry((board, *epoch)).or_default().push(index);
            }
            Op::ReadBoard { board, state, final_read } => {
                report.reads += 1;
                if *final_read {
                    finals.insert(board);
                }
                match state {
                    Some(s) => {
                        epochs.entry(board).or_default().push(Evidence { complete, value: (s.epoch, 0), index });
                        let value = (s.checkpoint_epoch, s.seq);
                        checkpoints.entry(board).or_default().push(Evidence { complete, value, index });
                        reads.push(index);
                    }
                    None => anomalies.push(Anomaly::BoardMissing { board: board.clone(), read: OpRef::of(index, o) }),
                }
            }
            _ => {}
        }
    }
    report.final_reads = finals.len();

    // 1. Stale owners accepted.
    let epochs: BTreeMap<&str, PrefixMax> = epochs.into_iter().map(|(b, e)| (b, PrefixMax::new(e))).collect();
    for (&(board, epoch), indexes) in &syncs {
        let Some(shown) = epochs.get(board) else { continue };
        for &i in indexes {
            let sync = &ops[i];
            if let Some(e) = shown.before(sync.invoke).filter(|e| e.value.0 > epoch) {
                anomalies.push(Anomaly::StaleEpochAccepted {
                    board: board.to_string(),
                    epoch,
                    newer_epoch: e.value.0,
                    sync: OpRef::of(i, sync),
                    superseded_by: OpRef::of(e.index, &ops[e.index]),
                });
            }
        }
    }

    // 2. Seqs within an epoch.
    for (&(board, epoch), indexes) in &syncs {
        let mut by_completion = indexes.clone();
        by_completion.sort_by_key(|&i| ops[i].complete);
        for pair in by_completion.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if seq_of(&ops[b].op) <= seq_of(&ops[a].op) {
                anomalies.push(Anomaly::SeqNotIncreasing {
                    board: board.to_string(),
                    epoch,
                    earlier: OpRef::of(a, &ops[a]),
                    later: OpRef::of(b, &ops[b]),
                });
            }
        }
    }

    // 3. Checkpoints never go back.
    let checkpoints: BTreeMap<&str, PrefixMax> = checkpoints.into_iter().map(|(b, e)| (b, PrefixMax::new(e))).collect();
    for &i in &reads {
        let read = &ops[i];
        let Op::ReadBoard { board, state: Some(s), .. } = &read.op else { continue };
        let got = (s.checkpoint_epoch, s.seq);
        let Some(before) = checkpoints.get(board.as_str()).and_then(|c| c.before(read.invoke)) else { continue };
        if got < before.value {
            anomalies.push(Anomaly::CheckpointWentBack {
                board: board.clone(),
                read_checkpoint: got,
                expected: before.value,
                read: OpRef::of(i, read),
                after: OpRef::of(before.index, &ops[before.index]),
            });
        }
    }

    report.anomaly_count = anomalies.len();
    anomalies.truncate(LISTED);
    report.anomalies = anomalies;
    report.valid = if report.anomaly_count > 0 {
        Validity::False
    } else if report.boards.is_none_or(|n| report.final_reads < n) {
        Validity::Unknown
    } else {
        Validity::True
    };
    report
}

fn seq_of(op: &Op) -> u64 {
    match op {
        Op::Sync { seq, .. } => *seq,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::BoardState;

    const B: &str = "jepsen-board-0";

    fn op(process: Process, at: u64, op: Op, outcome: EventType) -> Operation {
        let complete = (outcome != EventType::Info).then_some(at + 5);
        Operation { process, op, outcome, invoke: at, complete }
    }

    fn open() -> Operation {
        let open = Op::OpenBoards { boards: vec![B.into()], owners: vec!["a".into(), "b".into()] };
        op(100, 0, open, EventType::Ok)
    }

    fn assign(process: Process, at: u64, owner: &str, epoch: u64) -> Operation {
        op(process, at, Op::Assign { board: B.into(), owner: owner.into(), epoch: Some(epoch) }, EventType::Ok)
    }

    fn sync(process: Process, at: u64, epoch: u64, seq: u64, outcome: EventType) -> Operation {
        let owner = if process == 0 { "a" } else { "b" };
        op(process, at, Op::Sync { board: B.into(), owner: owner.into(), epoch, seq }, outcome)
    }

    fn read(at: u64, epoch: u64, checkpoint: (u64, u64), final_read: bool) -> Operation {
        let state = Some(BoardState { epoch, checkpoint_epoch: checkpoint.0, seq: checkpoint.1 });
        op(7, at, Op::ReadBoard { board: B.into(), state, final_read }, EventType::Ok)
    }

    /// a takes the board (epoch 1) and syncs; b takes it (epoch 2) while a's sync is in flight
    /// (accepted: it was invoked before the assignment completed); a's next sync is refused.
    fn clean() -> Vec<Operation> {
        vec![
            open(),
            assign(0, 10, "a", 1),
            sync(0, 20, 1, 1, EventType::Ok),
            read(30, 1, (1, 1), false),
            sync(0, 40, 1, 2, EventType::Ok),
            // In flight across the reassignment (invoked at 41, completes at 46; b's assignment
            // completes at 47).
            sync(0, 41, 1, 3, EventType::Ok),
            assign(1, 42, "b", 2),
            sync(0, 60, 1, 4, EventType::Fail),
            sync(1, 70, 2, 1, EventType::Ok),
            sync(1, 80, 2, 2, EventType::Info),
            read(90, 2, (2, 1), false),
            read(200, 2, (2, 2), true),
        ]
    }

    #[test]
    fn a_clean_history_is_valid() {
        let r = check(&clean());
        assert_eq!(r.valid, Validity::True, "{r:?}");
        assert_eq!((r.boards, r.assigns_ok, r.syncs_ok, r.syncs_fail, r.syncs_info), (Some(1), 2, 4, 1, 1));
        assert_eq!((r.reads, r.final_reads, r.anomaly_count), (3, 1, 0));
    }

    #[test]
    fn a_deposed_owners_accepted_sync_is_caught_naming_both_ops() {
        let mut h = clean();
        // a's sync at 60 (after b's epoch 2 was acknowledged at 47) accepted.
        h[7] = sync(0, 60, 1, 4, EventType::Ok);
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        let Anomaly::StaleEpochAccepted { epoch, newer_epoch, sync, superseded_by, .. } = &r.anomalies[0] else {
            panic!("{r:?}")
        };
        assert_eq!((*epoch, *newer_epoch, sync.index, superseded_by.index), (1, 2, 7, 6));
    }

    #[test]
    fn a_stale_sync_is_caught_after_a_read_showed_the_newer_epoch() {
        let mut h = clean();
        h.remove(6); // b's assignment not in the history (e.g. its answer was lost)...
        h.push(read(300, 3, (2, 2), false)); // ...but a read shows epoch 3,
        h.push(sync(1, 310, 2, 3, EventType::Ok)); // and b's epoch-2 sync is accepted after it.
        let r = check(&h);
        assert_eq!(r.valid, Validity::False, "{r:?}");
        assert!(r.anomalies.iter().any(|a| matches!(a, Anomaly::StaleEpochAccepted { newer_epoch: 3, .. })));
    }

    #[test]
    fn seqs_going_back_within_an_epoch_are_caught() {
        let mut h = clean();
        h.insert(5, sync(0, 44, 1, 2, EventType::Ok));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert!(
            r.anomalies.iter().any(|a| matches!(a, Anomaly::SeqNotIncreasing { epoch: 1, .. })),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn a_lost_checkpoint_is_caught() {
        let mut h = clean();
        // After b's seq 1 of epoch 2 was acknowledged (75), a read shows a's (1, 3).
        h.push(read(100, 2, (1, 3), false));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        let Anomaly::CheckpointWentBack { read_checkpoint, expected, after, .. } = &r.anomalies[0] else {
            panic!("{r:?}")
        };
        assert_eq!((*read_checkpoint, *expected, after.index), ((1, 3), (2, 1), 8));
    }

    #[test]
    fn a_missing_board_is_caught() {
        let mut h = clean();
        h.push(op(7, 300, Op::ReadBoard { board: B.into(), state: None, final_read: false }, EventType::Ok));
        assert_eq!(check(&h).valid, Validity::False);
    }

    #[test]
    fn without_setup_or_final_reads_nothing_is_decided() {
        let mut h = clean();
        h.pop();
        assert_eq!(check(&h).valid, Validity::Unknown);
        let no_setup: Vec<Operation> = clean().into_iter().skip(1).collect();
        assert_eq!(check(&no_setup).valid, Validity::Unknown);
    }
}
