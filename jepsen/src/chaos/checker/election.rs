//! The election checker: terms are fencing tokens, so per election name
//!
//! 1. **no split term**: no two `ok` campaigns were handed one term (each campaign runs as its
//!    own candidate with its own lease, so two of them with one term are two leaders at once);
//! 2. **terms never go back**: the election's counter only grows, and every `ok` campaign's
//!    term and every `ok` leader read's `last_term` is its value at some instant inside the
//!    op. So an op invoked after another completed must see at least the same value, and a
//!    campaign (which increments it) a strictly larger one. A later election with a lower or
//!    equal term, or a read that sees an older `last_term`, is a stale or forked counter;
//! 3. **reads agree with the winners**: a leader read showing holder H with term T, where an
//!    `ok` campaign won T, must show that campaign's candidate; and T is at most the read's
//!    `last_term`.
//!
//! Campaigns that ended `info` may or may not have won (at any time after their invocation)
//! and never make a history invalid by themselves: they are in none of the checks, so a read
//! showing their candidate passes. `fail` campaigns do not occur (the workload records every
//! campaign error as `info`); resignations are counted, not checked. Without any `ok` campaign
//! or a successful final read the verdict is `unknown`.
//!
//! What this does not check: that a leader read's holder still held a live lease, that a
//! resigned leader is gone from later reads, or mutual exclusion in real time between a
//! deposed leader still acting and its successor (that is what the fencing term is for, and
//! the board workload's business).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation, Process};

/// At most this many anomalies are listed (all are counted).
const LISTED: usize = 20;

/// One op as the anomalies name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The operation's position in the paired history.
    pub index: usize,
    pub process: Process,
    pub invoke: u64,
    pub complete: Option<u64>,
    /// `campaign` or `leader`.
    pub f: String,
    /// The campaign's candidate or the read's holder.
    pub candidate: Option<String>,
    /// The term won (campaign) or the `last_term` read (leader read).
    pub term: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    /// Two `ok` campaigns were handed the same term: two leaders at once.
    SplitTerm { name: String, term: u64, first: Seen, second: Seen },
    /// `later` was invoked after `earlier` completed, yet saw a smaller term (or, for a
    /// campaign, one not larger).
    TermWentBack { name: String, earlier: Seen, later: Seen },
    /// A leader read showed `read.candidate` holding the term `campaign` won as another
    /// candidate.
    WrongHolder { name: String, term: u64, campaign: Seen, read: Seen },
    /// A leader read showed a holder's term above the last term handed out.
    TermAboveLast { name: String, term: u64, read: Seen },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    /// Election names seen in the history.
    pub names: usize,
    pub campaigns_ok: usize,
    pub campaigns_fail: usize,
    pub campaigns_info: usize,
    pub resigns_ok: usize,
    pub resigns_fail: usize,
    pub resigns_info: usize,
    /// Successful leader reads, final ones included.
    pub reads: usize,
    pub final_reads: usize,
    /// Per name, the highest term an `ok` campaign won.
    pub highest_term: BTreeMap<String, u64>,
    /// How many anomalies were found, and the first [`LISTED`] of them.
    pub anomaly_count: usize,
    pub anomalies: Vec<Anomaly>,
}

/// An `ok` campaign or leader read: one value of a name's term counter.
struct Observation<'a> {
    name: &'a str,
    seen: Seen,
    /// A campaign increments the counter: it must exceed everything completed before it.
    campaign: bool,
    /// A leader read's holder and its term.
    holder: Option<(&'a str, u64)>,
}

fn seen(index: usize, o: &Operation, f: &str, candidate: Option<&str>, term: u64) -> Seen {
    Seen {
        index,
        process: o.process,
        invoke: o.invoke,
        complete: o.complete,
        f: f.to_string(),
        candidate: candidate.map(str::to_string),
        term,
    }
}

pub fn check(ops: &[Operation]) -> Report {
    let mut report = Report {
        valid: Validity::Unknown,
        names: 0,
        campaigns_ok: 0,
        campaigns_fail: 0,
        campaigns_info: 0,
        resigns_ok: 0,
        resigns_fail: 0,
        resigns_info: 0,
        reads: 0,
        final_reads: 0,
        highest_term: BTreeMap::new(),
        anomaly_count: 0,
        anomalies: Vec::new(),
    };
    let mut by_name: BTreeMap<&str, Vec<Observation>> = BTreeMap::new();
    for (index, o) in ops.iter().enumerate() {
        match (&o.op, o.outcome) {
            (Op::Campaign { name, candidate, term }, EventType::Ok) => {
                report.campaigns_ok += 1;
                // An `ok` campaign without a term is not one the workload records; skip it
                // rather than guess.
                let Some(term) = *term else { continue };
                let highest = report.highest_term.entry(name.clone()).or_insert(term);
                *highest = (*highest).max(term);
                let seen = seen(index, o, "campaign", Some(candidate), term);
                by_name.entry(name).or_default().push(Observation { name, seen, campaign: true, holder: None });
            }
            (Op::Campaign { name, .. }, kind) => {
                by_name.entry(name).or_default();
                if kind == EventType::Fail {
                    report.campaigns_fail += 1;
                } else {
                    report.campaigns_info += 1;
                }
            }
            (Op::Resign { .. }, EventType::Ok) => report.resigns_ok += 1,
            (Op::Resign { .. }, EventType::Fail) => report.resigns_fail += 1,
            (Op::Resign { .. }, _) => report.resigns_info += 1,
            (Op::Leader { name, holder, term, last_term: Some(last_term), final_read }, EventType::Ok) => {
                report.reads += 1;
                report.final_reads += usize::from(*final_read);
                let holder = holder.as_deref().zip(*term);
                let seen = seen(index, o, "leader", holder.map(|(h, _)| h), *last_term);
                by_name.entry(name).or_default().push(Observation { name, seen, campaign: false, holder });
            }
            _ => {}
        }
    }
    report.names = by_name.len();
    let mut anomalies = Vec::new();
    for observations in by_name.values() {
        split_terms_and_holders(observations, &mut anomalies);
        terms_never_go_back(observations, &mut anomalies);
    }
    report.anomaly_count = anomalies.len();
    anomalies.truncate(LISTED);
    report.anomalies = anomalies;
    report.valid = if report.anomaly_count > 0 {
        Validity::False
    } else if report.campaigns_ok == 0 || report.final_reads == 0 {
        Validity::Unknown
    } else {
        Validity::True
    };
    report
}

/// Checks 1 and 3 of the module essay, for one name.
fn split_terms_and_holders(observations: &[Observation], anomalies: &mut Vec<Anomaly>) {
    let mut winners: BTreeMap<u64, &Observation> = BTreeMap::new();
    for o in observations.iter().filter(|o| o.campaign) {
        if let Some(first) = winners.get(&o.seen.term) {
            anomalies.push(Anomaly::SplitTerm {
                name: o.name.to_string(),
                term: o.seen.term,
                first: first.seen.clone(),
                second: o.seen.clone(),
            });
        } else {
            winners.insert(o.seen.term, o);
        }
    }
    for read in observations.iter().filter(|o| !o.campaign) {
        let Some((holder, term)) = read.holder else { continue };
        if term > read.seen.term {
            anomalies.push(Anomaly::TermAboveLast { name: read.name.to_string(), term, read: read.seen.clone() });
        }
        if let Some(winner) = winners.get(&term) {
            if winner.seen.candidate.as_deref() != Some(holder) {
                anomalies.push(Anomaly::WrongHolder {
                    name: read.name.to_string(),
                    term,
                    campaign: winner.seen.clone(),
                    read: read.seen.clone(),
                });
            }
        }
    }
}

/// Check 2 of the module essay, for one name: a sweep over the ops in invocation order,
/// keeping the largest value among those completed before each invocation.
fn terms_never_go_back(observations: &[Observation], anomalies: &mut Vec<Anomaly>) {
    let mut by_complete: Vec<&Observation> = observations.iter().filter(|o| o.seen.complete.is_some()).collect();
    by_complete.sort_by_key(|o| o.seen.complete);
    let mut by_invoke: Vec<&Observation> = observations.iter().collect();
    by_invoke.sort_by_key(|o| o.seen.invoke);
    let mut done = by_complete.iter().peekable();
    let mut highest: Option<&Observation> = None;
    for later in by_invoke {
        while let Some(earlier) = done.next_if(|e| e.seen.complete.is_some_and(|c| c < later.seen.invoke)) {
            if highest.is_none_or(|h| earlier.seen.term > h.seen.term) {
                highest = Some(earlier);
            }
        }
        let Some(earlier) = highest else { continue };
        let back = later.seen.term < earlier.seen.term || (later.campaign && later.seen.term == earlier.seen.term);
        if back {
            anomalies.push(Anomaly::TermWentBack {
                name: later.name.to_string(),
                earlier: earlier.seen.clone(),
                later: later.seen.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: &str = "e/0";

    fn op(at: u64, op: Op, outcome: EventType) -> Operation {
        let complete = (outcome != EventType::Info).then_some(at + 5);
        Operation { process: at, op, outcome, invoke: at, complete }
    }

    fn campaign(at: u64, candidate: &str, term: u64) -> Operation {
        op(at, Op::Campaign { name: E.into(), candidate: candidate.into(), term: Some(term) }, EventType::Ok)
    }

    fn resign(at: u64, candidate: &str, term: u64, outcome: EventType) -> Operation {
        op(at, Op::Resign { name: E.into(), candidate: candidate.into(), term }, outcome)
    }

    fn read(at: u64, holder: Option<(&str, u64)>, last_term: u64, final_read: bool) -> Operation {
        let leader = Op::Leader {
            name: E.into(),
            holder: holder.map(|(h, _)| h.to_string()),
            term: holder.map(|(_, t)| t),
            last_term: Some(last_term),
            final_read,
        };
        op(at, leader, EventType::Ok)
    }

    /// Two leaderships, an uncertain campaign that won term 3 unseen, overlapping ops.
    fn clean() -> Vec<Operation> {
        vec![
            campaign(10, "c1", 1),
            read(20, Some(("c1", 1)), 1, false),
            resign(30, "c1", 1, EventType::Ok),
            // Overlaps c2's campaign: may see the counter before or after it.
            read(38, None, 1, false),
            campaign(40, "c2", 2),
            resign(50, "c2", 2, EventType::Fail),
            op(60, Op::Campaign { name: E.into(), candidate: "c3".into(), term: None }, EventType::Info),
            // The uncertain campaign did win: nothing knows its term, so any holder passes.
            read(70, Some(("c3", 3)), 3, false),
            campaign(80, "c4", 4),
            // Another election's terms are its own.
            op(81, Op::Campaign { name: "e/1".into(), candidate: "c5".into(), term: Some(1) }, EventType::Ok),
            read(90, Some(("c4", 4)), 4, true),
        ]
    }

    #[test]
    fn a_clean_history_is_valid() {
        let r = check(&clean());
        assert_eq!(r.valid, Validity::True, "{r:?}");
        assert_eq!((r.names, r.campaigns_ok, r.campaigns_info), (2, 4, 1));
        assert_eq!((r.resigns_ok, r.resigns_fail, r.reads, r.final_reads), (1, 1, 4, 1));
        assert_eq!(r.highest_term[E], 4);
    }

    #[test]
    fn two_candidates_with_one_term_are_a_split_naming_both() {
        let mut h = clean();
        // c6's campaign overlaps c4's and got the same term.
        h.insert(9, campaign(78, "c6", 4));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        let split = r.anomalies.iter().find_map(|a| match a {
            Anomaly::SplitTerm { term, first, second, .. } => Some((*term, first, second)),
            _ => None,
        });
        let (term, first, second) = split.unwrap_or_else(|| panic!("no split in {:?}", r.anomalies));
        assert_eq!(term, 4);
        let mut both = [first.candidate.clone(), second.candidate.clone()];
        both.sort();
        assert_eq!(both, [Some("c4".to_string()), Some("c6".to_string())]);
    }

    #[test]
    fn a_later_election_with_a_lower_term_is_caught() {
        let mut h = clean();
        // Invoked after c4 (term 4) completed, handed term 3.
        h.push(campaign(100, "c7", 3));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert!(
            r.anomalies.iter().any(|a| matches!(a, Anomaly::TermWentBack { earlier, later, .. }
                if earlier.term == 4 && later.candidate.as_deref() == Some("c7"))),
            "{:?}",
            r.anomalies
        );
        // The same term again, after it completed, is as bad.
        let mut h = clean();
        h.push(campaign(100, "c7", 4));
        assert_eq!(check(&h).valid, Validity::False);
    }

    #[test]
    fn a_stale_leader_read_is_caught() {
        let mut h = clean();
        // After c4 won term 4, a read says the last term handed out is 2.
        h.push(read(100, Some(("c2", 2)), 2, false));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert!(r.anomalies.iter().any(|a| matches!(a, Anomaly::TermWentBack { .. })), "{:?}", r.anomalies);
    }

    #[test]
    fn a_read_with_the_wrong_holder_for_a_term_is_caught() {
        let mut h = clean();
        h.push(read(100, Some(("c9", 4)), 4, false));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.anomaly_count, 1, "{:?}", r.anomalies);
        let Anomaly::WrongHolder { term, campaign, read: shown, .. } = &r.anomalies[0] else {
            panic!("{:?}", r.anomalies)
        };
        assert_eq!((*term, campaign.candidate.as_deref(), shown.candidate.as_deref()), (4, Some("c4"), Some("c9")));
        // A holder's term above the last term handed out.
        let mut h = clean();
        h.push(read(100, Some(("c8", 5)), 4, false));
        let r = check(&h);
        assert!(matches!(r.anomalies[..], [Anomaly::TermAboveLast { term: 5, .. }]), "{:?}", r.anomalies);
    }

    #[test]
    fn without_a_won_campaign_or_a_final_read_nothing_is_decided() {
        let no_final: Vec<Operation> =
            clean().into_iter().filter(|o| !matches!(o.op, Op::Leader { final_read: true, .. })).collect();
        assert_eq!(check(&no_final).valid, Validity::Unknown);
        let no_win = vec![read(1, None, 0, true)];
        assert_eq!(check(&no_win).valid, Validity::Unknown);
        // An anomaly still makes it invalid.
        let mut bad = no_final;
        bad.push(campaign(100, "c7", 1));
        assert_eq!(check(&bad).valid, Validity::False);
    }

    #[test]
    fn anomalies_are_all_counted_and_the_first_ones_listed() {
        let mut h = clean();
        for at in 0..30 {
            h.push(read(100 + at * 10, Some(("x", 4)), 4, false));
        }
        let r = check(&h);
        assert_eq!((r.anomaly_count, r.anomalies.len()), (30, LISTED));
    }
}
