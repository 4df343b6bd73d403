//! The bank checker (snapshot isolation of one shard's transactions and ranges): money only
//! moves between accounts, so every successful `read-all` (one range page, one snapshot) must
//! show exactly the accounts the setup opened, none negative, and the total the setup put in.
//! A read with another total saw part of a transfer (read skew: one account before the
//! transaction, the other after) or a transfer lost or applied twice; a missing account is a
//! lost write or a broken range.
//!
//! The accounts and the expected total come from the history's `open-accounts` op (its
//! arguments); without one that completed `ok` nothing can be checked: `unknown`. A final read
//! (`final_read`, after healing) must have succeeded and is checked like every other read;
//! without one the verdict is `unknown`, as for the set.
//!
//! What this does not check: that transfers reported `fail` had no effect or that `ok` ones
//! did (only totals are conserved, so a lost or phantom transfer between two accounts shows
//! only if it breaks the total, e.g. a half-applied one); whether reads are linearizable with
//! respect to each other (a stale but consistent snapshot passes).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation, Process};

/// At most this many bad reads are listed (all are counted).
const LISTED: usize = 20;

/// What is wrong with one read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// Opened accounts the read did not show.
    Missing { accounts: Vec<String> },
    /// Accounts shown that the setup never opened.
    Unexpected { accounts: Vec<String> },
    /// Accounts with a negative balance (`i64::MIN`: a value that did not parse).
    Negative { accounts: Vec<String> },
    /// The sum of the balances shown is not the total put in.
    Total { expected: i64, actual: i128 },
}

/// One read that broke the invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRead {
    /// The operation's position in the paired history.
    pub index: usize,
    pub process: Process,
    pub invoke: u64,
    pub complete: Option<u64>,
    pub final_read: bool,
    pub balances: BTreeMap<String, i64>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    /// From the setup (`None`: no `open-accounts` op completed `ok`).
    pub accounts: Option<usize>,
    pub total: Option<i64>,
    /// Transfers by completion.
    pub transfers_ok: usize,
    pub transfers_fail: usize,
    pub transfers_info: usize,
    /// Successful reads checked, final ones included.
    pub reads: usize,
    /// Successful final reads.
    pub final_reads: usize,
    /// How many reads broke the invariant, and the first [`LISTED`] of them.
    pub bad_reads: usize,
    pub anomalies: Vec<BadRead>,
}

pub fn check(ops: &[Operation]) -> Report {
    let mut report = Report {
        valid: Validity::Unknown,
        accounts: None,
        total: None,
        transfers_ok: 0,
        transfers_fail: 0,
        transfers_info: 0,
        reads: 0,
        final_reads: 0,
        bad_reads: 0,
        anomalies: Vec::new(),
    };
    let opened = ops.iter().find_map(|o| match (&o.op, o.outcome) {
        (Op::OpenAccounts { accounts, balance }, EventType::Ok) => Some((accounts, *balance)),
        _ => None,
    });
    for o in ops {
        match (&o.op, o.outcome) {
            (Op::Transfer { .. }, EventType::Ok) => report.transfers_ok += 1,
            (Op::Transfer { .. }, EventType::Fail) => report.transfers_fail += 1,
            (Op::Transfer { .. }, _) => report.transfers_info += 1,
            _ => {}
        }
    }
    let Some((accounts, balance)) = opened else { return report };
    let accounts: BTreeSet<&str> = accounts.iter().map(String::as_str).collect();
    let expected = balance.saturating_mul(i64::try_from(accounts.len()).unwrap_or(i64::MAX));
    report.accounts = Some(accounts.len());
    report.total = Some(expected);
    for (index, o) in ops.iter().enumerate() {
        let (Op::ReadAll { balances: Some(balances), final_read }, EventType::Ok) = (&o.op, o.outcome) else {
            continue;
        };
        report.reads += 1;
        report.final_reads += usize::from(*final_read);
        let problems = problems(&accounts, expected, balances);
        if problems.is_empty() {
            continue;
        }
        report.bad_reads += 1;
        if report.anomalies.len() < LISTED {
            report.anomalies.push(BadRead {
                index,
                process: o.process,
                invoke: o.invoke,
                complete: o.complete,
                final_read: *final_read,
                balances: balances.clone(),
                problems,
            });
        }
    }
    report.valid = if report.bad_reads > 0 {
        Validity::False
    } else if report.final_reads == 0 {
        Validity::Unknown
    } else {
        Validity::True
    };
    report
}

/// Everything wrong with one read's balances.
fn problems(accounts: &BTreeSet<&str>, expected: i64, balances: &BTreeMap<String, i64>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let missing: Vec<String> = accounts.iter().filter(|a| !balances.contains_key(**a)).map(|a| a.to_string()).collect();
    if !missing.is_empty() {
        problems.push(Problem::Missing { accounts: missing });
    }
    let unexpected: Vec<String> = balances.keys().filter(|k| !accounts.contains(k.as_str())).cloned().collect();
    if !unexpected.is_empty() {
        problems.push(Problem::Unexpected { accounts: unexpected });
    }
    let negative: Vec<String> = balances.iter().filter(|(_, b)| **b < 0).map(|(k, _)| k.clone()).collect();
    if !negative.is_empty() {
        problems.push(Problem::Negative { accounts: negative });
    }
    // i128: a sum of i64s (one maybe i64::MIN) cannot overflow it.
    let actual: i128 = balances.values().map(|b| i128::from(*b)).sum();
    if actual != i128::from(expected) {
        problems.push(Problem::Total { expected, actual });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(i: usize) -> String {
        format!("{{bank}}acct/{i:02}")
    }

    fn op(at: u64, op: Op, outcome: EventType) -> Operation {
        let complete = (outcome != EventType::Info).then_some(at + 1);
        Operation { process: at, op, outcome, invoke: at, complete }
    }

    fn open() -> Operation {
        op(0, Op::OpenAccounts { accounts: (0..8).map(acct).collect(), balance: 100 }, EventType::Ok)
    }

    fn read(at: u64, balances: &[i64], final_read: bool) -> Operation {
        let balances = balances.iter().enumerate().map(|(i, b)| (acct(i), *b)).collect();
        op(at, Op::ReadAll { balances: Some(balances), final_read }, EventType::Ok)
    }

    fn transfer(at: u64, from: usize, to: usize, outcome: EventType) -> Operation {
        op(at, Op::Transfer { from: acct(from), to: acct(to), amount: 10 }, outcome)
    }

    /// Setup, transfers of every outcome, reads during and after: all totals 800.
    fn clean() -> Vec<Operation> {
        vec![
            open(),
            transfer(10, 0, 1, EventType::Ok),
            read(20, &[90, 110, 100, 100, 100, 100, 100, 100], false),
            transfer(30, 2, 3, EventType::Fail),
            transfer(40, 3, 0, EventType::Info),
            read(50, &[100, 110, 100, 90, 100, 100, 100, 100], false),
            // A read that failed carries nothing and is not checked.
            op(55, Op::ReadAll { balances: None, final_read: false }, EventType::Fail),
            read(60, &[100, 110, 100, 90, 100, 100, 100, 100], true),
        ]
    }

    #[test]
    fn a_clean_history_is_valid() {
        let r = check(&clean());
        assert_eq!(r.valid, Validity::True, "{r:?}");
        assert_eq!((r.accounts, r.total), (Some(8), Some(800)));
        assert_eq!((r.transfers_ok, r.transfers_fail, r.transfers_info), (1, 1, 1));
        assert_eq!((r.reads, r.final_reads, r.bad_reads), (3, 1, 0));
    }

    #[test]
    fn read_skew_a_total_of_790_is_caught_with_its_index_time_and_balances() {
        let mut h = clean();
        // Account 0 after the transfer of 10 (90), account 1 before it (100).
        h.insert(3, read(25, &[90, 100, 100, 100, 100, 100, 100, 100], false));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.bad_reads, 1);
        let bad = &r.anomalies[0];
        assert_eq!((bad.index, bad.invoke, bad.complete, bad.final_read), (3, 25, Some(26), false));
        assert_eq!(bad.balances[&acct(0)], 90);
        assert_eq!(bad.problems, vec![Problem::Total { expected: 800, actual: 790 }]);
    }

    #[test]
    fn a_missing_account_is_caught() {
        let mut h = clean();
        h.push(read(70, &[100, 110, 100, 90, 100, 100, 100], true));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        let problems = &r.anomalies[0].problems;
        assert_eq!(problems[0], Problem::Missing { accounts: vec![acct(7)] });
        assert!(problems.contains(&Problem::Total { expected: 800, actual: 700 }), "{problems:?}");
        assert!(r.anomalies[0].final_read);
    }

    #[test]
    fn a_negative_balance_is_caught_even_when_the_total_holds() {
        let mut h = clean();
        h.push(read(70, &[-10, 210, 100, 100, 100, 100, 100, 100], false));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.anomalies[0].problems, vec![Problem::Negative { accounts: vec![acct(0)] }]);
    }

    #[test]
    fn a_stranger_account_and_an_unparsed_balance_are_caught() {
        let mut h = clean();
        let mut balances: BTreeMap<String, i64> = (0..8).map(|i| (acct(i), 100)).collect();
        balances.insert("{bank}acct/99".into(), 0);
        balances.insert(acct(2), i64::MIN);
        h.push(op(70, Op::ReadAll { balances: Some(balances), final_read: false }, EventType::Ok));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        let problems = &r.anomalies[0].problems;
        assert!(problems.contains(&Problem::Unexpected { accounts: vec!["{bank}acct/99".into()] }), "{problems:?}");
        assert!(problems.contains(&Problem::Negative { accounts: vec![acct(2)] }), "{problems:?}");
    }

    #[test]
    fn without_setup_or_final_read_nothing_is_decided() {
        let no_final: Vec<Operation> = clean().into_iter().take(7).collect();
        assert_eq!(check(&no_final).valid, Validity::Unknown);
        let no_setup: Vec<Operation> = clean().into_iter().skip(1).collect();
        let r = check(&no_setup);
        assert_eq!((r.valid, r.accounts), (Validity::Unknown, None));
        let mut uncertain_setup = clean();
        uncertain_setup[0].outcome = EventType::Info;
        assert_eq!(check(&uncertain_setup).valid, Validity::Unknown);
        // A bad read still makes a history without a final read invalid.
        let mut bad = no_final;
        bad.push(read(70, &[0, 0, 0, 0, 0, 0, 0, 0], false));
        assert_eq!(check(&bad).valid, Validity::False);
    }

    #[test]
    fn bad_reads_are_all_counted_and_the_first_ones_listed() {
        let mut h = clean();
        for at in 0..30 {
            h.push(read(100 + at, &[1; 8], false));
        }
        let r = check(&h);
        assert_eq!((r.bad_reads, r.anomalies.len()), (30, LISTED));
    }
}
