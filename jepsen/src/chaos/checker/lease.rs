//! The lease checker: **no key attached to a lease disappears before the deadline its holder
//! can vouch for**, and a revoked lease's keys go.
//!
//! The guarantee (`docs/api.md`, "Lease safety"): a lease granted or renewed by a request sent
//! at `s` that was answered with TTL `t > 0` is not ended before `s + t`. The answer proves the
//! home leader had not ended (nor marked for expiry) the lease when it processed the request,
//! after `s`, and then set its deadline to at least `s + t`. So every `ok` grant and every `ok`
//! keepalive with `ttl_ms > 0` gives a **vouched deadline** `invoke + ttl`, whenever it
//! completed (the history's invocation is stamped before the client takes its own send
//! instant, so it is earlier still); a lease's vouched deadline is the latest of them, minus
//! [`MARGIN`]. Uncertain (`info`) keepalives may have extended the lease, or not: they are left
//! out, which can only make the deadline earlier and so judge fewer reads (never a false
//! alarm). Grants and keepalives of unknown outcome give no deadline either.
//!
//! **`expired-early`**: an `ok` read of key K finds it absent, where
//! - K's last put before the read is an `ok` put attached to lease L, completed before the read
//!   was invoked, and no other put of K that did not certainly fail was invoked before the read
//!   completed (only the holder writes K, so its puts are sequential; once a put of K is
//!   uncertain, K is not judged again: that put may land at any later time);
//! - the read **completed** before L's vouched deadline (a read invoked before it but
//!   completing after may be linearized after the deadline, when absence is allowed);
//! - no revoke of L that did not certainly fail was invoked before the read completed.
//!
//! Such a read is a **checkable read** (present or not). Keys of another shard than the
//! lease's home are judged the same way: ADR 31 promises they never go early either.
//!
//! **`present-after-revoke`**: an `ok` read invoked after an `ok` revoke of L completed (plus an
//! allowance) finds K with the value of its last put, attached to L. A key in L's home shard is
//! deleted by the revoke's own command, so the allowance is 0. A key of another shard follows
//! within ~0.2 s in a healthy cluster (ADR 31), but its shard learns of the end by polling the
//! home's leader, and under faults (two of three nodes killed for 4 s, then elections) that
//! poll can be held up for seconds; [`CROSS_SHARD_ALLOWANCE`] (10 s, longer than a default
//! fault plus an election) catches keys that are never deleted without flagging slow healing.
//! The longest such lag seen is reported as a figure.
//!
//! Margins: every node and `hcjepsen` run on one machine and time leases with the one
//! `CLOCK_MONOTONIC`, so holder and leader clocks advance at the same rate; [`MARGIN`] (50 ms)
//! covers millisecond rounding of TTLs and deadlines. Under the `clock` nemesis a node's clocks
//! leave real time, outside the server's stated assumption (bounded clock rate difference): a
//! leader whose clock jumps ahead expires leases early in real time, and this checker will
//! say so.
//!
//! Not checked: that a lease nobody keeps alive ends soon after its deadline (a new leader
//! restarts every deadline at `now + ttl`, so how late is unbounded under faults), the
//! `lease` field of a present key, and reads of keys whose last put is unknown. No checkable
//! read: `unknown`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation, Process};

/// Subtracted from every vouched deadline, nanoseconds (see the module essay).
pub const MARGIN: u64 = 50_000_000;
/// How long after an `ok` revoke a key of another shard than the lease's may still be seen.
pub const CROSS_SHARD_ALLOWANCE: u64 = 10_000_000_000;
/// At most this many anomalies are listed (all are counted).
const LISTED: usize = 20;

/// One operation as the anomalies name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    /// The operation's position in the paired history.
    pub index: usize,
    pub process: Process,
    pub invoke: u64,
    pub complete: Option<u64>,
    pub op: Op,
}

fn op_ref(index: usize, o: &Operation) -> OpRef {
    OpRef { index, process: o.process, invoke: o.invoke, complete: o.complete, op: o.op.clone() }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    /// `read` found `key` absent before `lease`'s vouched `deadline` (ns, margin subtracted),
    /// which `vouched_by` (the grant or keepalive giving the latest deadline) proves.
    ExpiredEarly { lease: u64, key: String, deadline: u64, put: OpRef, vouched_by: OpRef, read: OpRef },
    /// `read` found `key` still holding `put`'s value after `revoke` of its lease completed
    /// (plus `allowance_ms`).
    PresentAfterRevoke { lease: u64, key: String, allowance_ms: u64, put: OpRef, revoke: OpRef, read: OpRef },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

impl Counts {
    fn add(&mut self, kind: EventType) {
        match kind {
            EventType::Ok => self.ok += 1,
            EventType::Fail => self.fail += 1,
            EventType::Info | EventType::Invoke => self.info += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    pub leases: usize,
    pub grants: Counts,
    pub puts: Counts,
    /// Puts (`ok`) of a key in another shard than its lease's home.
    pub cross_shard_puts: usize,
    /// `ok` keepalives that renewed the lease.
    pub keepalives_renewed: usize,
    /// `ok` keepalives that found the lease gone (`ttl_ms` 0).
    pub keepalives_gone: usize,
    pub keepalives: Counts,
    pub revokes: Counts,
    pub reads: Counts,
    /// Reads judged for `expired-early` (see the module essay), and how many of them were of a
    /// key in another shard than its lease.
    pub checkable_reads: usize,
    pub checkable_cross_shard_reads: usize,
    /// Reads invoked after an `ok` revoke of their key's lease completed, judged for
    /// `present-after-revoke`.
    pub reads_after_revoke: usize,
    /// The longest a key of another shard was seen after its lease's `ok` revoke completed
    /// (the read's completion minus the revoke's), milliseconds.
    pub longest_cross_shard_lag_ms: Option<u64>,
    pub anomaly_count: usize,
    pub anomalies: Vec<Anomaly>,
}

/// What the history says about one lease.
#[derive(Default)]
struct LeaseFacts {
    home: u32,
    /// `(invoke + ttl, index)` of every `ok` grant and renewing keepalive.
    vouched: Vec<(u64, usize)>,
    /// `(invoke, index)` of every revoke that did not certainly fail.
    revokes: Vec<(u64, usize)>,
    /// `(complete, index)` of every `ok` revoke.
    revoked: Vec<(u64, usize)>,
}

impl LeaseFacts {
    /// The latest vouched deadline (margin not yet subtracted), with the op proving it.
    fn deadline(&self) -> Option<(u64, usize)> {
        self.vouched.iter().copied().max()
    }
}

fn home(lease: u64) -> u32 {
    u32::try_from(lease >> 48).unwrap_or(u32::MAX)
}

pub fn check(ops: &[Operation]) -> Report {
    let mut report = Report {
        valid: Validity::Unknown,
        leases: 0,
        grants: Counts::default(),
        puts: Counts::default(),
        cross_shard_puts: 0,
        keepalives_renewed: 0,
        keepalives_gone: 0,
        keepalives: Counts::default(),
        revokes: Counts::default(),
        reads: Counts::default(),
        checkable_reads: 0,
        checkable_cross_shard_reads: 0,
        reads_after_revoke: 0,
        longest_cross_shard_lag_ms: None,
        anomaly_count: 0,
        anomalies: Vec::new(),
    };
    let mut leases: BTreeMap<u64, LeaseFacts> = BTreeMap::new();
    // Per key, the indices of its puts that did not certainly fail, in invocation order.
    let mut puts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut reads = Vec::new();
    for (index, o) in ops.iter().enumerate() {
        match &o.op {
            Op::LeaseGrant { lease, granted_ttl_ms, .. } => {
                report.grants.add(o.outcome);
                if let (EventType::Ok, Some(lease), Some(ttl)) = (o.outcome, lease, granted_ttl_ms) {
                    let facts = leases.entry(*lease).or_default();
                    facts.home = home(*lease);
                    facts.vouched.push((o.invoke + ttl * 1_000_000, index));
                }
            }
            Op::LeaseKeepAlive { lease, ttl_ms } => {
                report.keepalives.add(o.outcome);
                match (o.outcome, ttl_ms) {
                    (EventType::Ok, Some(ttl)) if *ttl > 0 => {
                        report.keepalives_renewed += 1;
                        leases.entry(*lease).or_default().vouched.push((o.invoke + ttl * 1_000_000, index));
                    }
                    (EventType::Ok, _) => report.keepalives_gone += 1,
                    _ => {}
                }
            }
            Op::LeaseRevoke { lease } => {
                report.revokes.add(o.outcome);
                let facts = leases.entry(*lease).or_default();
                if o.outcome != EventType::Fail {
                    facts.revokes.push((o.invoke, index));
                }
                if let (EventType::Ok, Some(complete)) = (o.outcome, o.complete) {
                    facts.revoked.push((complete, index));
                }
            }
            Op::LeasePut { key, lease, shard, .. } => {
                report.puts.add(o.outcome);
                if o.outcome == EventType::Ok && shard.is_some_and(|s| s != home(*lease)) {
                    report.cross_shard_puts += 1;
                }
                if o.outcome != EventType::Fail {
                    puts.entry(key).or_default().push(index);
                }
            }
            Op::LeaseRead { .. } => {
                report.reads.add(o.outcome);
                if o.outcome == EventType::Ok {
                    reads.push(index);
                }
            }
            _ => {}
        }
    }
    report.leases = leases.len();
    let mut anomalies = Vec::new();
    for &r in &reads {
        let read = &ops[r];
        let (Op::LeaseRead { key, value, .. }, Some(read_done)) = (&read.op, read.complete) else { continue };
        let Some(key_puts) = puts.get(key.as_str()) else { continue };
        // Puts invoked before the read completed: the last must be `ok` and completed before
        // the read began; any uncertain one before makes the key's state unknown.
        let before: Vec<usize> = key_puts.iter().copied().filter(|&p| ops[p].invoke < read_done).collect();
        let Some(&p) = before.last() else { continue };
        if before.iter().any(|&q| ops[q].outcome != EventType::Ok) {
            continue;
        }
        let put = &ops[p];
        if put.complete.is_none_or(|c| c >= read.invoke) {
            continue;
        }
        let Op::LeasePut { lease, value: put_value, shard, .. } = &put.op else { continue };
        let Some(facts) = leases.get(lease) else { continue };
        let cross = shard.is_some_and(|s| s != facts.home);
        // Expired early?
        if let Some((deadline, by)) = facts.deadline() {
            let deadline = deadline.saturating_sub(MARGIN);
            let revoked = facts.revokes.iter().any(|&(invoke, _)| invoke < read_done);
            if read_done < deadline && !revoked {
                report.checkable_reads += 1;
                report.checkable_cross_shard_reads += usize::from(cross);
                if value.is_none() {
                    anomalies.push(Anomaly::ExpiredEarly {
                        lease: *lease,
                        key: key.clone(),
                        deadline,
                        put: op_ref(p, put),
                        vouched_by: op_ref(by, &ops[by]),
                        read: op_ref(r, read),
                    });
                }
            }
        }
        // Still there after a revoke?
        if let Some(&(revoke_done, v)) = facts.revoked.iter().min() {
            if read.invoke > revoke_done {
                report.reads_after_revoke += 1;
                let present = *value == Some(*put_value);
                if present && cross {
                    let lag = (read_done - revoke_done) / 1_000_000;
                    report.longest_cross_shard_lag_ms =
                        Some(report.longest_cross_shard_lag_ms.map_or(lag, |l| l.max(lag)));
                }
                let allowance = if cross { CROSS_SHARD_ALLOWANCE } else { 0 };
                if present && read.invoke > revoke_done + allowance {
                    anomalies.push(Anomaly::PresentAfterRevoke {
                        lease: *lease,
                        key: key.clone(),
                        allowance_ms: allowance / 1_000_000,
                        put: op_ref(p, put),
                        revoke: op_ref(v, &ops[v]),
                        read: op_ref(r, read),
                    });
                }
            }
        }
    }
    report.anomaly_count = anomalies.len();
    anomalies.truncate(LISTED);
    report.anomalies = anomalies;
    report.valid = if report.anomaly_count > 0 {
        Validity::False
    } else if report.checkable_reads == 0 {
        Validity::Unknown
    } else {
        Validity::True
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// A lease of shard 0, and one of shard 1.
    const L: u64 = 7;
    const L1: u64 = 1 << 48 | 8;

    fn op(process: Process, invoke_ms: u64, complete_ms: Option<u64>, op: Op, outcome: EventType) -> Operation {
        Operation { process, op, outcome, invoke: invoke_ms * MS, complete: complete_ms.map(|c| c * MS) }
    }

    fn ok(invoke_ms: u64, o: Op) -> Operation {
        op(1, invoke_ms, Some(invoke_ms + 5), o, EventType::Ok)
    }

    fn grant(at: u64, lease: u64, ttl_ms: u64) -> Operation {
        ok(at, Op::LeaseGrant { ttl_ms, for_key: None, lease: Some(lease), granted_ttl_ms: Some(ttl_ms) })
    }

    fn put(at: u64, key: &str, value: u64, lease: u64, shard: u32) -> Operation {
        ok(at, Op::LeasePut { key: key.into(), value, lease, shard: Some(shard) })
    }

    fn keepalive(at: u64, lease: u64, ttl_ms: u64, outcome: EventType) -> Operation {
        let ttl = (outcome == EventType::Ok).then_some(ttl_ms);
        op(1, at, (outcome != EventType::Info).then_some(at + 5), Op::LeaseKeepAlive { lease, ttl_ms: ttl }, outcome)
    }

    fn read(at: u64, key: &str, value: Option<u64>, lease: u64) -> Operation {
        op(2, at, Some(at + 5), Op::LeaseRead { key: key.into(), value, lease: value.map(|_| lease) }, EventType::Ok)
    }

    /// A holder grants a 2 s lease at 0, puts k0 (home shard) and k1 (another shard), keeps it
    /// alive at 1000 ms (deadline 3000 ms), and reads both keys present before the deadline.
    fn clean() -> Vec<Operation> {
        vec![
            grant(0, L, 2000),
            put(10, "k0", 1, L, 0),
            put(20, "k1", 2, L, 1),
            read(100, "k0", Some(1), L),
            keepalive(1000, L, 2000, EventType::Ok),
            read(2500, "k1", Some(2), L),
            read(2900, "k0", Some(1), L),
        ]
    }

    #[test]
    fn keys_present_until_the_vouched_deadline_are_valid() {
        let r = check(&clean());
        assert_eq!(r.valid, Validity::True, "{r:?}");
        assert_eq!((r.leases, r.checkable_reads, r.checkable_cross_shard_reads, r.cross_shard_puts), (1, 3, 1, 1));
        assert_eq!((r.keepalives_renewed, r.puts.ok, r.reads.ok), (1, 2, 3));
    }

    #[test]
    fn a_key_gone_before_the_vouched_deadline_expired_early() {
        let mut h = clean();
        // Absent at 2500-2505 ms: the keepalive sent at 1000 ms vouched for 3000 ms.
        h[5] = read(2500, "k1", None, L);
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(r.anomaly_count, 1, "{:?}", r.anomalies);
        let Anomaly::ExpiredEarly { lease, key, deadline, put, vouched_by, read } = &r.anomalies[0] else {
            panic!("{:?}", r.anomalies)
        };
        assert_eq!((*lease, key.as_str(), *deadline), (L, "k1", 3000 * MS - MARGIN));
        assert_eq!((put.index, vouched_by.index, read.index), (2, 4, 5));
    }

    #[test]
    fn a_key_gone_after_the_deadline_or_a_revoke_is_fine() {
        // After the deadline (3000 ms, less the margin), or a read that may linearize after it.
        let mut h = clean();
        h.push(read(2990, "k0", None, L));
        h.push(read(3100, "k1", None, L));
        let r = check(&h);
        assert_eq!(r.valid, Validity::True, "{:?}", r.anomalies);
        assert_eq!(r.checkable_reads, 3);
        // After a revoke was invoked, even one of unknown outcome.
        for outcome in [EventType::Ok, EventType::Info] {
            let mut h = clean();
            h.pop();
            let complete = (outcome == EventType::Ok).then_some(1210);
            h.insert(5, op(1, 1200, complete, Op::LeaseRevoke { lease: L }, outcome));
            h[6] = read(1205, "k1", None, L);
            let r = check(&h);
            assert_eq!(r.valid, Validity::True, "{outcome:?}: {:?}", r.anomalies);
        }
        // A revoke that certainly failed ended nothing.
        let mut h = clean();
        h.pop();
        h.insert(5, op(1, 1200, Some(1210), Op::LeaseRevoke { lease: L }, EventType::Fail));
        h[6] = read(1300, "k1", None, L);
        assert_eq!(check(&h).valid, Validity::False);
    }

    #[test]
    fn an_uncertain_keepalive_vouches_for_nothing() {
        let mut h = clean();
        h[4] = keepalive(1000, L, 2000, EventType::Info);
        // Without the keepalive the grant's 2000 ms is the deadline: gone at 2500 is allowed.
        h[5] = read(2500, "k1", None, L);
        h[6] = read(1500, "k0", Some(1), L);
        let r = check(&h);
        assert_eq!(r.valid, Validity::True, "{:?}", r.anomalies);
        assert_eq!((r.checkable_reads, r.keepalives.info), (2, 1));
        // But gone before the grant's deadline is still early.
        h.push(read(1800, "k0", None, L));
        assert_eq!(check(&h).valid, Validity::False);
        // A keepalive that found the lease gone vouches for nothing either.
        let mut h = clean();
        h[4] = keepalive(1000, L, 0, EventType::Ok);
        h[5] = read(2500, "k1", None, L);
        let r = check(&h);
        assert_eq!((r.valid, r.keepalives_gone), (Validity::True, 1));
    }

    #[test]
    fn a_key_overwritten_or_uncertainly_written_is_not_judged_on_the_old_lease() {
        let mut h = clean();
        // k1 moved to lease L1 (granted at 1100 for 500 ms, ended): absent at 2500 is L1's end.
        h.insert(5, grant(1100, L1, 500));
        h.insert(6, put(1110, "k1", 3, L1, 1));
        h[7] = read(2500, "k1", None, L1);
        let r = check(&h);
        assert_eq!(r.valid, Validity::True, "{:?}", r.anomalies);
        // An uncertain put of k1: nothing about k1 is judged from then on.
        let mut h = clean();
        h.insert(
            5,
            op(3, 1100, None, Op::LeasePut { key: "k1".into(), value: 3, lease: L, shard: None }, EventType::Info),
        );
        h[6] = read(2500, "k1", None, L);
        assert_eq!(check(&h).valid, Validity::True);
        // A read overlapping the put is not judged either.
        let h = vec![grant(0, L, 2000), put(10, "k0", 1, L, 0), read(12, "k0", None, L)];
        assert_eq!(check(&h).valid, Validity::Unknown);
    }

    #[test]
    fn a_key_seen_after_its_lease_was_revoked() {
        let revoke = ok(1200, Op::LeaseRevoke { lease: L });
        // k0 lives in the lease's home shard: gone with the revoke's own command.
        let mut h = clean();
        h.pop();
        h.insert(5, revoke.clone());
        h.push(read(1300, "k0", Some(1), L));
        let r = check(&h);
        assert_eq!(r.valid, Validity::False);
        assert!(matches!(&r.anomalies[..], [Anomaly::PresentAfterRevoke { key, allowance_ms: 0, .. }] if key == "k0"));
        // k1 (another shard) may lag a little, not beyond the allowance.
        let mut h = clean();
        h.pop();
        h.insert(5, revoke.clone());
        h[6] = read(1300, "k1", Some(2), L);
        let r = check(&h);
        assert_eq!((r.valid, r.longest_cross_shard_lag_ms), (Validity::True, Some(100)), "{:?}", r.anomalies);
        h.push(read(1205 + 10_001, "k1", Some(2), L));
        assert!(matches!(&check(&h).anomalies[..], [Anomaly::PresentAfterRevoke { allowance_ms: 10_000, .. }]));
    }

    #[test]
    fn without_a_checkable_read_nothing_is_decided() {
        assert_eq!(check(&clean()[..3]).valid, Validity::Unknown);
        assert_eq!(check(&[]).valid, Validity::Unknown);
    }
}
