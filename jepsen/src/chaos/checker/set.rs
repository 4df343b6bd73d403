//! The set checker (durability): after the faults are healed, one final read of the whole set
//! must contain every element whose add was acknowledged (`ok`), none whose add certainly
//! failed (`fail`), and nothing never added. Elements whose add is `info` may be present or
//! not; the report counts how many were.
//!
//! The final read is the last successful `read-set` in the history. Without one the verdict is
//! `unknown`: nothing was checked.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    pub acknowledged: usize,
    /// Acknowledged adds missing from the final read.
    pub lost: Vec<u64>,
    /// Elements read whose add certainly failed.
    pub failed_but_present: Vec<u64>,
    /// Elements read that nobody tried to add.
    pub never_added: Vec<u64>,
    /// Uncertain adds, and how many of them the final read holds.
    pub uncertain: usize,
    pub uncertain_present: usize,
    /// Elements in the final read (`None`: there was no successful final read).
    pub final_read: Option<usize>,
}

pub fn check(ops: &[Operation]) -> Report {
    let (mut ok, mut failed, mut uncertain) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut last_read: Option<&Vec<u64>> = None;
    for o in ops {
        match (&o.op, o.outcome) {
            (Op::Add { element }, EventType::Ok) => {
                ok.insert(*element);
            }
            (Op::Add { element }, EventType::Fail) => {
                failed.insert(*element);
            }
            (Op::Add { element }, _) => {
                uncertain.insert(*element);
            }
            (Op::ReadSet { elements: Some(read) }, EventType::Ok) => last_read = Some(read),
            _ => {}
        }
    }
    let mut report = Report {
        valid: Validity::Unknown,
        acknowledged: ok.len(),
        lost: Vec::new(),
        failed_but_present: Vec::new(),
        never_added: Vec::new(),
        uncertain: uncertain.len(),
        uncertain_present: 0,
        final_read: last_read.map(Vec::len),
    };
    let Some(read) = last_read else { return report };
    let read: BTreeSet<u64> = read.iter().copied().collect();
    report.lost = ok.difference(&read).copied().collect();
    for e in &read {
        if failed.contains(e) {
            report.failed_but_present.push(*e);
        } else if uncertain.contains(e) {
            report.uncertain_present += 1;
        } else if !ok.contains(e) {
            report.never_added.push(*e);
        }
    }
    let clean = report.lost.is_empty() && report.failed_but_present.is_empty() && report.never_added.is_empty();
    report.valid = if clean { Validity::True } else { Validity::False };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(e: u64, outcome: EventType) -> Operation {
        let complete = (outcome != EventType::Info).then_some(e * 2 + 1);
        Operation { process: e, op: Op::Add { element: e }, outcome, invoke: e * 2, complete }
    }
    fn final_read(elements: &[u64]) -> Operation {
        let op = Op::ReadSet { elements: Some(elements.to_vec()) };
        Operation { process: 99, op, outcome: EventType::Ok, invoke: 1000, complete: Some(1001) }
    }

    #[test]
    fn acknowledged_adds_present_is_valid_whatever_uncertain_ones_did() {
        let h = [add(1, EventType::Ok), add(2, EventType::Info), add(3, EventType::Info), add(4, EventType::Fail)];
        let mut with_read = h.to_vec();
        with_read.push(final_read(&[1, 3]));
        let r = check(&with_read);
        assert_eq!(r.valid, Validity::True);
        assert_eq!((r.acknowledged, r.uncertain, r.uncertain_present), (1, 2, 1));
    }

    #[test]
    fn a_lost_add_a_resurrected_failure_and_a_stranger_are_caught() {
        let mut h = vec![add(1, EventType::Ok), add(2, EventType::Ok), add(3, EventType::Fail)];
        h.push(final_read(&[1, 3, 77]));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert_eq!((r.lost, r.failed_but_present, r.never_added), (vec![2], vec![3], vec![77]));
    }

    #[test]
    fn no_final_read_is_unknown() {
        let h = [add(1, EventType::Ok), Operation { outcome: EventType::Fail, ..final_read(&[]) }];
        assert_eq!(check(&h).valid, Validity::Unknown);
    }
}
