//! The watch checker (issue 17: "every committed change is delivered once, in revision order
//! per shard, across reconnects and resumes; compared with the final state"). Per watcher, per
//! shard, over everything the watcher was delivered across all its resumes:
//!
//! 1. **In order, once.** Revisions never go back (`out-of-order`); no event is delivered twice
//!    (`duplicate`: the same revision and key again, or the same put value again, since every
//!    value is written by one put); nothing is delivered from before the watch's first start
//!    revision (`before-start`).
//! 2. **No gap.** Every `ok` write (a put, or a delete that found its key) whose revision lies in
//!    the watcher's covered interval, from its first start revision to the position it reached
//!    (events and progress notifications: `watch-end`), is delivered at that revision with the
//!    same key and value (`missed`). Without a `watch-end` the interval ends at the last event.
//! 3. **Nothing invented.** A delivered put's value was written by a put of the same key that
//!    did not certainly fail, and if that put is `ok` at the same shard and revision; a delivered
//!    delete is an `ok` delete of that key at that revision or an `info` one (`phantom`).
//!    `info` writes may or may not be delivered, but at most once (1).
//! 4. **Compared with the final state.** A watcher that reached the final read's revision of
//!    every shard: per key, its last event up to that revision must be the put of the final
//!    value at the key's `mod_revision`, or, for a key the final read does not hold, a delete
//!    (or no event at all, for a watcher that started at revision 1) (`final-mismatch`).
//!
//! Verdict: `false` if any watcher shows an anomaly; otherwise `unknown` if there is no
//! successful final read, no `ok` write, or a watcher that did not reach the final read's
//! revisions (never caught up, or its resume was refused as compacted: what came after is not
//! covered, and saying `true` would claim coverage it did not have); `true` otherwise.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation, Process, WatchEndReason, WatchKv};

/// At most this many anomalies are listed (all are counted).
const LISTED: usize = 20;

/// One write named in an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    /// Its position in the paired history.
    pub index: usize,
    pub process: Process,
    pub outcome: EventType,
    pub op: Op,
    pub invoke: u64,
    pub complete: Option<u64>,
}

impl OpRef {
    fn of(index: usize, o: &Operation) -> OpRef {
        OpRef {
            index,
            process: o.process,
            outcome: o.outcome,
            op: o.op.clone(),
            invoke: o.invoke,
            complete: o.complete,
        }
    }
}

/// One delivered event, with the `watch-events` op that delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The `watch-events` op's position in the paired history.
    pub index: usize,
    pub time: u64,
    pub shard: u32,
    pub revision: u64,
    pub key: String,
    /// The put's value; `None`: a delete.
    pub value: Option<u64>,
}

/// Why a delivered event is a phantom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhantomWhy {
    /// No put wrote this value.
    NeverWritten,
    /// The put of this value wrote another key.
    OtherKey,
    /// The put of this value certainly failed.
    WriteFailed,
    /// The put of this value is `ok` at another shard or revision.
    OtherRevision,
    /// No `ok` delete of the key at this revision, and no `info` one.
    NoSuchDelete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    /// The same change delivered twice.
    Duplicate { watcher: u64, first: Delivered, again: Delivered },
    /// `event` came after `previous` in the same shard with a lower revision.
    OutOfOrder { watcher: u64, previous: Delivered, event: Delivered },
    /// An event older than the watch's first start revision in its shard.
    BeforeStart { watcher: u64, start: u64, event: Delivered },
    /// An `ok` write inside the covered interval `[from, to]` of its shard, never delivered.
    Missed { watcher: u64, from: u64, to: u64, write: OpRef },
    /// A delivered change no writer made.
    Phantom { watcher: u64, why: PhantomWhy, event: Delivered, write: Option<OpRef> },
    /// The watcher's last event for `key` (up to the final read's revision) disagrees with the
    /// final read (`final_kv`: `None`, the key is absent).
    FinalMismatch { watcher: u64, key: String, final_kv: Option<WatchKv>, last_delivered: Option<Delivered> },
}

/// One watcher's coverage and counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherReport {
    pub watcher: u64,
    pub valid: Validity,
    /// Per shard, the first revision of its first `watch-open` (`None`: it never opened).
    pub start: Option<BTreeMap<u32, u64>>,
    /// Per shard, the position its `watch-end` recorded (`None`: no `watch-end`).
    pub last: Option<BTreeMap<u32, u64>>,
    pub end: Option<WatchEndReason>,
    /// It reached the final read's revision of every shard.
    pub caught_up: bool,
    pub updates: usize,
    pub events: usize,
    /// `info` writes among the events.
    pub uncertain_delivered: usize,
    /// `watch-open`s after the first, and how many of them on a new client.
    pub resumes: usize,
    pub reconnects: usize,
    pub errors: usize,
    pub anomalies: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    pub puts_ok: usize,
    pub puts_fail: usize,
    pub puts_info: usize,
    pub deletes_ok: usize,
    pub deletes_fail: usize,
    pub deletes_info: usize,
    /// The final read's revision per shard (`None`: no successful final read).
    pub final_revisions: Option<BTreeMap<u32, u64>>,
    pub watchers: Vec<WatcherReport>,
    /// How many anomalies were found, and the first [`LISTED`] of them.
    pub anomaly_count: usize,
    pub anomalies: Vec<Anomaly>,
}

/// The writes of the history, indexed for the checks.
#[derive(Default)]
struct Writes {
    /// Put value -> its op's index.
    puts: BTreeMap<u64, usize>,
    /// (shard, revision) -> the `ok` write applied there (a put, or a delete that found its key).
    ok_at: BTreeMap<(u32, u64), usize>,
    /// Keys with a delete of unknown outcome.
    uncertain_deletes: BTreeSet<String>,
}

/// What one watcher did, gathered from its ops.
#[derive(Default)]
struct Watched {
    start: Option<BTreeMap<u32, u64>>,
    end: Option<(BTreeMap<u32, u64>, WatchEndReason)>,
    events: Vec<Delivered>,
    updates: usize,
    resumes: usize,
    reconnects: usize,
    errors: usize,
}

pub fn check(ops: &[Operation]) -> Report {
    let mut report = Report {
        valid: Validity::Unknown,
        puts_ok: 0,
        puts_fail: 0,
        puts_info: 0,
        deletes_ok: 0,
        deletes_fail: 0,
        deletes_info: 0,
        final_revisions: None,
        watchers: Vec::new(),
        anomaly_count: 0,
        anomalies: Vec::new(),
    };
    let mut writes = Writes::default();
    let mut watched: BTreeMap<u64, Watched> = BTreeMap::new();
    let mut final_read: Option<(&Vec<WatchKv>, &BTreeMap<u32, u64>)> = None;
    for (index, o) in ops.iter().enumerate() {
        let ok = o.outcome == EventType::Ok;
        match &o.op {
            Op::WatchPut { value, shard, revision, .. } => {
                writes.puts.insert(*value, index);
                match (o.outcome, shard, revision) {
                    (EventType::Ok, Some(shard), Some(revision)) => {
                        report.puts_ok += 1;
                        writes.ok_at.insert((*shard, *revision), index);
                    }
                    (EventType::Fail, ..) => report.puts_fail += 1,
                    _ => report.puts_info += 1,
                }
            }
            Op::WatchDelete { key, shard, revision, deleted } => match (o.outcome, shard, revision, deleted) {
                (EventType::Ok, Some(shard), Some(revision), Some(deleted)) => {
                    report.deletes_ok += 1;
                    if *deleted {
                        writes.ok_at.insert((*shard, *revision), index);
                    }
                }
                (EventType::Fail, ..) => report.deletes_fail += 1,
                _ => {
                    report.deletes_info += 1;
                    writes.uncertain_deletes.insert(key.clone());
                }
            },
            Op::WatchOpen { watcher, start: Some(start), resume, reconnect } if ok => {
                let w = watched.entry(*watcher).or_default();
                if w.start.is_none() {
                    w.start = Some(start.clone());
                } else if *resume {
                    w.resumes += 1;
                    w.reconnects += usize::from(*reconnect);
                }
            }
            Op::WatchEvents { watcher, shard, events } => {
                let w = watched.entry(*watcher).or_default();
                match (o.outcome, shard) {
                    (EventType::Ok, Some(shard)) => {
                        w.updates += 1;
                        let time = o.complete.unwrap_or(o.invoke);
                        w.events.extend(events.iter().map(|e| Delivered {
                            index,
                            time,
                            shard: *shard,
                            revision: e.revision,
                            key: e.key.clone(),
                            value: e.value,
                        }));
                    }
                    _ => w.errors += 1,
                }
            }
            Op::WatchEnd { watcher, last, end } if ok => {
                watched.entry(*watcher).or_default().end = Some((last.clone(), *end));
            }
            Op::WatchFinalRead { kvs: Some(kvs), revisions: Some(revisions) } if ok => {
                final_read = Some((kvs, revisions));
            }
            _ => {}
        }
    }
    report.final_revisions = final_read.map(|(_, revisions)| revisions.clone());

    let mut anomalies = Vec::new();
    let mut verdicts = Vec::new();
    for (id, w) in &watched {
        let mut found = Vec::new();
        order_and_once(*id, w, ops, &writes, &mut found);
        no_gap(*id, w, ops, &writes, &mut found);
        let caught_up = match (final_read, &w.end) {
            (Some((_, revisions)), Some((last, _))) => {
                revisions.iter().all(|(shard, r)| last.get(shard).is_some_and(|l| l >= r))
            }
            _ => false,
        };
        if let (true, Some((kvs, revisions))) = (caught_up, final_read) {
            final_state(*id, w, kvs, revisions, &mut found);
        }
        let valid = if !found.is_empty() {
            Validity::False
        } else if caught_up {
            Validity::True
        } else {
            Validity::Unknown
        };
        verdicts.push(valid);
        let uncertain_delivered = w
            .events
            .iter()
            .filter_map(|e| e.value.and_then(|v| writes.puts.get(&v)))
            .filter(|i| !matches!(ops[**i].outcome, EventType::Ok | EventType::Fail))
            .count();
        report.watchers.push(WatcherReport {
            watcher: *id,
            valid,
            start: w.start.clone(),
            last: w.end.as_ref().map(|(last, _)| last.clone()),
            end: w.end.as_ref().map(|(_, end)| *end),
            caught_up,
            updates: w.updates,
            events: w.events.len(),
            uncertain_delivered,
            resumes: w.resumes,
            reconnects: w.reconnects,
            errors: w.errors,
            anomalies: found.len(),
        });
        anomalies.extend(found);
    }
    report.anomaly_count = anomalies.len();
    let nothing_to_check = final_read.is_none() || watched.is_empty() || report.puts_ok == 0;
    report.valid = if !anomalies.is_empty() {
        Validity::False
    } else if nothing_to_check {
        Validity::Unknown
    } else {
        Validity::all(verdicts)
    };
    anomalies.truncate(LISTED);
    report.anomalies = anomalies;
    report
}

/// Check 1 and 3: order, once, from the start on, and every event a real write.
fn order_and_once(id: u64, w: &Watched, ops: &[Operation], writes: &Writes, found: &mut Vec<Anomaly>) {
    let mut previous: BTreeMap<u32, &Delivered> = BTreeMap::new();
    let mut seen: BTreeMap<(u32, u64, &str), &Delivered> = BTreeMap::new();
    let mut values: BTreeMap<u64, &Delivered> = BTreeMap::new();
    for e in &w.events {
        if let Some(start) = w.start.as_ref().and_then(|s| s.get(&e.shard)).filter(|s| e.revision < **s) {
            found.push(Anomaly::BeforeStart { watcher: id, start: *start, event: e.clone() });
        }
        if let Some(p) = previous.get(&e.shard).filter(|p| p.revision > e.revision) {
            found.push(Anomaly::OutOfOrder { watcher: id, previous: (*p).clone(), event: e.clone() });
        }
        previous.insert(e.shard, e);
        let first = seen.insert((e.shard, e.revision, e.key.as_str()), e);
        let first = first.or_else(|| e.value.and_then(|v| values.insert(v, e)));
        if let Some(first) = first {
            found.push(Anomaly::Duplicate { watcher: id, first: first.clone(), again: e.clone() });
            continue;
        }
        if let Some((why, write)) = phantom(e, ops, writes) {
            found.push(Anomaly::Phantom {
                watcher: id,
                why,
                event: e.clone(),
                write: write.map(|i| OpRef::of(i, &ops[i])),
            });
        }
    }
}

/// Why `e` is no change a writer made, with the write it was compared with.
fn phantom(e: &Delivered, ops: &[Operation], writes: &Writes) -> Option<(PhantomWhy, Option<usize>)> {
    let Some(value) = e.value else {
        let ok_delete = writes
            .ok_at
            .get(&(e.shard, e.revision))
            .filter(|i| matches!(&ops[**i].op, Op::WatchDelete { key, .. } if *key == e.key));
        let explained = ok_delete.is_some() || writes.uncertain_deletes.contains(&e.key);
        return (!explained).then_some((PhantomWhy::NoSuchDelete, None));
    };
    let Some(&i) = writes.puts.get(&value) else { return Some((PhantomWhy::NeverWritten, None)) };
    let Op::WatchPut { key, shard, revision, .. } = &ops[i].op else { return Some((PhantomWhy::NeverWritten, None)) };
    let why = if *key != e.key {
        PhantomWhy::OtherKey
    } else if ops[i].outcome == EventType::Fail {
        PhantomWhy::WriteFailed
    } else if ops[i].outcome == EventType::Ok && (*shard, *revision) != (Some(e.shard), Some(e.revision)) {
        PhantomWhy::OtherRevision
    } else {
        return None;
    };
    Some((why, Some(i)))
}

/// Check 2: every `ok` write in the covered interval of its shard was delivered as written.
fn no_gap(id: u64, w: &Watched, ops: &[Operation], writes: &Writes, found: &mut Vec<Anomaly>) {
    let Some(start) = &w.start else { return };
    let delivered: BTreeSet<(u32, u64, &str, Option<u64>)> =
        w.events.iter().map(|e| (e.shard, e.revision, e.key.as_str(), e.value)).collect();
    for (shard, from) in start {
        // Up to where it was told everything was delivered; without a `watch-end`, up to its
        // last event.
        let reached = w.end.as_ref().and_then(|(last, _)| last.get(shard)).copied();
        let last_event = w.events.iter().filter(|e| e.shard == *shard).map(|e| e.revision).max();
        let Some(to) = reached.max(last_event).filter(|to| to >= from) else { continue };
        for (_, &i) in writes.ok_at.range((*shard, *from)..=(*shard, to)) {
            let wanted = match &ops[i].op {
                Op::WatchPut { key, value, revision: Some(r), .. } => (*shard, *r, key.as_str(), Some(*value)),
                Op::WatchDelete { key, revision: Some(r), .. } => (*shard, *r, key.as_str(), None),
                _ => continue,
            };
            if !delivered.contains(&wanted) {
                found.push(Anomaly::Missed { watcher: id, from: *from, to, write: OpRef::of(i, &ops[i]) });
            }
        }
    }
}

/// Check 4: the last event per key agrees with the final read.
fn final_state(id: u64, w: &Watched, kvs: &[WatchKv], revisions: &BTreeMap<u32, u64>, found: &mut Vec<Anomaly>) {
    let Some(start) = &w.start else { return };
    // The last event per key at or below the final read's revision of its shard.
    let mut last: BTreeMap<&str, &Delivered> = BTreeMap::new();
    for e in &w.events {
        if revisions.get(&e.shard).is_some_and(|r| e.revision <= *r) {
            let slot = last.entry(&e.key).or_insert(e);
            if e.revision >= slot.revision {
                *slot = e;
            }
        }
    }
    let finals: BTreeMap<&str, &WatchKv> = kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let keys: BTreeSet<&str> = finals.keys().chain(last.keys()).copied().collect();
    for key in keys {
        let (kv, e) = (finals.get(key).copied(), last.get(key).copied());
        let agrees = match (kv, e) {
            (Some(kv), Some(e)) => e.value == Some(kv.value) && e.revision == kv.revision,
            // Written before the watch began and never since: nothing to deliver.
            (Some(kv), None) => start.get(&kv.shard).is_some_and(|s| kv.revision < *s),
            (None, Some(e)) => e.value.is_none(),
            (None, None) => true,
        };
        if !agrees {
            found.push(Anomaly::FinalMismatch {
                watcher: id,
                key: key.to_string(),
                final_kv: kv.cloned(),
                last_delivered: e.cloned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::WatchEvent;

    /// A history under construction: every op completes one tick after its invocation.
    #[derive(Default)]
    struct H(Vec<Operation>);

    impl H {
        fn push(&mut self, process: Process, op: Op, outcome: EventType) -> &mut Self {
            let t = self.0.len() as u64 * 10;
            let complete = (outcome != EventType::Info).then_some(t + 1);
            self.0.push(Operation { process, op, outcome, invoke: t, complete });
            self
        }
        fn put(&mut self, value: u64, key: &str, at: (u32, u64), outcome: EventType) -> &mut Self {
            let (shard, revision) = if outcome == EventType::Ok { (Some(at.0), Some(at.1)) } else { (None, None) };
            self.push(value, Op::WatchPut { key: key.into(), value, shard, revision }, outcome)
        }
        fn delete(&mut self, key: &str, at: (u32, u64), outcome: EventType) -> &mut Self {
            let ok = outcome == EventType::Ok;
            let op = Op::WatchDelete {
                key: key.into(),
                shard: ok.then_some(at.0),
                revision: ok.then_some(at.1),
                deleted: ok.then_some(true),
            };
            self.push(50, op, outcome)
        }
        fn open(&mut self, watcher: u64, start: &[(u32, u64)], resume: bool) -> &mut Self {
            let op = Op::WatchOpen { watcher, start: Some(start.iter().copied().collect()), resume, reconnect: resume };
            self.push(100 + watcher, op, EventType::Ok)
        }
        fn events(&mut self, watcher: u64, shard: u32, events: &[(u64, &str, Option<u64>)]) -> &mut Self {
            let events = events
                .iter()
                .map(|(revision, key, value)| WatchEvent { revision: *revision, key: key.to_string(), value: *value })
                .collect();
            self.push(100 + watcher, Op::WatchEvents { watcher, shard: Some(shard), events }, EventType::Ok)
        }
        fn error(&mut self, watcher: u64) -> &mut Self {
            self.push(100 + watcher, Op::WatchEvents { watcher, shard: None, events: vec![] }, EventType::Fail)
        }
        fn end(&mut self, watcher: u64, last: &[(u32, u64)], end: WatchEndReason) -> &mut Self {
            let op = Op::WatchEnd { watcher, last: last.iter().copied().collect(), end };
            self.push(100 + watcher, op, EventType::Ok)
        }
        fn final_read(&mut self, kvs: &[(&str, u32, u64, u64)], revisions: &[(u32, u64)]) -> &mut Self {
            let kvs = kvs
                .iter()
                .map(|(key, shard, value, revision)| WatchKv {
                    key: key.to_string(),
                    shard: *shard,
                    value: *value,
                    revision: *revision,
                })
                .collect();
            let op = Op::WatchFinalRead { kvs: Some(kvs), revisions: Some(revisions.iter().copied().collect()) };
            self.push(99, op, EventType::Ok)
        }
    }

    use EventType::{Fail, Info, Ok};

    /// Watcher 0 opened at `start`, then writes on two shards: an uncertain put that was applied
    /// and one that was not, a failed put, a delete.
    fn writes_from(start: &[(u32, u64)]) -> H {
        let mut h = H::default();
        h.open(0, start, false)
            .put(1, "watch/0", (0, 1), Ok)
            .put(2, "watch/1", (1, 1), Ok)
            .put(3, "watch/0", (0, 2), Info)
            .put(4, "watch/1", (1, 0), Info)
            .put(6, "watch/1", (1, 0), Fail)
            .delete("watch/1", (1, 2), Ok)
            .put(5, "watch/0", (0, 3), Ok);
        h
    }

    fn writes() -> H {
        writes_from(&[(0, 1), (1, 1)])
    }

    /// A watcher from revision 1 that meets an error and resumes, catching up to the final read.
    fn good() -> H {
        let mut h = writes();
        h.events(0, 0, &[(1, "watch/0", Some(1))])
            .events(0, 1, &[(1, "watch/1", Some(2))])
            .error(0)
            .open(0, &[(0, 2), (1, 2)], true)
            .events(0, 0, &[(2, "watch/0", Some(3)), (3, "watch/0", Some(5))])
            .events(0, 1, &[(2, "watch/1", None)])
            .final_read(&[("watch/0", 0, 5, 3)], &[(0, 3), (1, 4)])
            .end(0, &[(0, 3), (1, 4)], WatchEndReason::CaughtUp);
        h
    }

    fn kinds(r: &Report) -> Vec<&'static str> {
        r.anomalies
            .iter()
            .map(|a| match a {
                Anomaly::Duplicate { .. } => "duplicate",
                Anomaly::OutOfOrder { .. } => "out-of-order",
                Anomaly::BeforeStart { .. } => "before-start",
                Anomaly::Missed { .. } => "missed",
                Anomaly::Phantom { .. } => "phantom",
                Anomaly::FinalMismatch { .. } => "final-mismatch",
            })
            .collect()
    }

    #[test]
    fn everything_once_in_order_across_a_resume_is_valid() {
        let r = check(&good().0);
        assert_eq!(r.valid, Validity::True, "{:?}", r.anomalies);
        assert_eq!((r.puts_ok, r.puts_fail, r.puts_info, r.deletes_ok), (3, 1, 2, 1));
        let w = &r.watchers[0];
        assert_eq!((w.events, w.updates, w.resumes, w.reconnects, w.errors), (5, 4, 1, 1, 1));
        assert_eq!((w.uncertain_delivered, w.caught_up), (1, true));
    }

    #[test]
    fn a_gap_is_missed() {
        let mut h = writes();
        h.events(0, 0, &[(1, "watch/0", Some(1)), (2, "watch/0", Some(3))])
            .events(0, 1, &[(1, "watch/1", Some(2)), (2, "watch/1", None)])
            .final_read(&[("watch/0", 0, 5, 3)], &[(0, 3), (1, 4)])
            .end(0, &[(0, 3), (1, 4)], WatchEndReason::CaughtUp);
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::False);
        assert_eq!(kinds(&r), vec!["missed", "final-mismatch"]);
        assert!(matches!(&r.anomalies[0], Anomaly::Missed { write, from: 1, to: 3, .. }
            if matches!(write.op, Op::WatchPut { value: 5, .. })));
    }

    #[test]
    fn a_change_delivered_twice_is_a_duplicate() {
        let mut h = good();
        // After another resume, revision 3 of shard 0 again (as from a resume at `last`, not
        // `last + 1`).
        h.0.truncate(h.0.len() - 1);
        h.open(0, &[(0, 3), (1, 3)], true).events(0, 0, &[(3, "watch/0", Some(5))]).end(
            0,
            &[(0, 3), (1, 4)],
            WatchEndReason::CaughtUp,
        );
        let r = check(&h.0);
        assert_eq!(kinds(&r), vec!["duplicate"]);
        assert_eq!(r.valid, Validity::False);
    }

    #[test]
    fn a_revision_going_back_is_out_of_order() {
        let mut h = writes();
        h.events(0, 0, &[(1, "watch/0", Some(1)), (3, "watch/0", Some(5))])
            .events(0, 0, &[(2, "watch/0", Some(3))])
            .events(0, 1, &[(1, "watch/1", Some(2)), (2, "watch/1", None)])
            .final_read(&[("watch/0", 0, 5, 3)], &[(0, 3), (1, 4)])
            .end(0, &[(0, 3), (1, 4)], WatchEndReason::CaughtUp);
        let r = check(&h.0);
        assert_eq!(kinds(&r), vec!["out-of-order"]);
    }

    #[test]
    fn changes_nobody_made_are_phantoms() {
        let mut h = good();
        h.0.truncate(h.0.len() - 2);
        // A value never written, a failed put's value, an ok put's value again at another
        // revision (a duplicate first), and a delete nobody sent.
        h.events(0, 1, &[(3, "watch/1", Some(77)), (4, "watch/1", Some(6))])
            .events(0, 0, &[(4, "watch/0", Some(1))])
            .events(0, 0, &[(5, "watch/0", None)])
            .final_read(&[("watch/0", 0, 5, 3)], &[(0, 5), (1, 4)])
            .end(0, &[(0, 5), (1, 4)], WatchEndReason::CaughtUp);
        let r = check(&h.0);
        let whys: Vec<PhantomWhy> = r
            .anomalies
            .iter()
            .filter_map(|a| match a {
                Anomaly::Phantom { why, .. } => Some(*why),
                _ => None,
            })
            .collect();
        assert_eq!(whys, vec![PhantomWhy::NeverWritten, PhantomWhy::WriteFailed, PhantomWhy::NoSuchDelete]);
        // The ok put of value 1 delivered again at revision 4 is a duplicate first.
        assert!(kinds(&r).contains(&"duplicate"));
        assert_eq!(r.valid, Validity::False);
    }

    #[test]
    fn a_last_event_that_disagrees_with_the_final_read_is_a_mismatch() {
        let mut h = good();
        h.0.truncate(h.0.len() - 2);
        // The final read holds the uncertain put 4 at shard 1 revision 3, never delivered.
        h.final_read(&[("watch/0", 0, 5, 3), ("watch/1", 1, 4, 3)], &[(0, 3), (1, 4)]).end(
            0,
            &[(0, 3), (1, 4)],
            WatchEndReason::CaughtUp,
        );
        let r = check(&h.0);
        assert_eq!(kinds(&r), vec!["final-mismatch"]);
        assert!(matches!(&r.anomalies[0], Anomaly::FinalMismatch { key, last_delivered: Some(d), .. }
            if key == "watch/1" && d.value.is_none()));
    }

    #[test]
    fn no_final_read_or_no_catch_up_or_a_compaction_is_unknown() {
        let mut h = good();
        h.0.truncate(h.0.len() - 2);
        h.end(0, &[(0, 3), (1, 4)], WatchEndReason::NoFinalRead);
        assert_eq!(check(&h.0).valid, Validity::Unknown);

        let mut h = good();
        h.0.truncate(h.0.len() - 1);
        h.end(0, &[(0, 3), (1, 3)], WatchEndReason::NotCaughtUp);
        let r = check(&h.0);
        assert_eq!((r.valid, r.watchers[0].caught_up), (Validity::Unknown, false));

        // A second watcher compacted away: the run is unknown although watcher 0 is fine.
        let mut h = good();
        h.open(1, &[(0, 1), (1, 1)], false).events(1, 0, &[(1, "watch/0", Some(1))]).error(1).end(
            1,
            &[(0, 1), (1, 0)],
            WatchEndReason::Compacted,
        );
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.watchers.iter().map(|w| w.valid).collect::<Vec<_>>(), vec![Validity::True, Validity::Unknown]);
    }

    #[test]
    fn a_watcher_started_late_is_judged_from_its_start() {
        // From revision 3 of shard 0 and 3 of shard 1: only put 5 is due.
        let mut h = writes_from(&[(0, 3), (1, 3)]);
        h.events(0, 0, &[(3, "watch/0", Some(5))]).final_read(&[("watch/0", 0, 5, 3)], &[(0, 3), (1, 4)]).end(
            0,
            &[(0, 3), (1, 4)],
            WatchEndReason::CaughtUp,
        );
        assert_eq!(check(&h.0).valid, Validity::True);
    }
}
