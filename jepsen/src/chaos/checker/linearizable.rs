//! Linearizability of read / write / compare-and-swap registers, checked per key.
//!
//! Linearizability is compositional (Herlihy & Wing), so a history of many independent keys is
//! linearizable iff each key's sub-history is; checking keys one by one keeps each search small.
//!
//! The search is Wing & Gong's, with Lowe's memoization, as in Porcupine
//! (github.com/anishathalye/porcupine, `checker.go`): the operations' invocations and
//! completions form one time-ordered list; the search repeatedly picks a not yet linearized
//! operation whose invocation comes before every pending completion, applies it to the model
//! and removes it from the list ("lifts" it), and backtracks when a completion is reached whose
//! operation cannot be placed. A cache of (set of linearized operations, model state) pairs
//! already explored prunes the search; it is what keeps realistic histories tractable.
//!
//! Unknown outcomes (`info`): a write or compare-and-swap whose outcome is unknown may take
//! effect at any time after its invocation or never. It gets a completion at infinity (after
//! every definite completion), and once the search reaches such a completion, every definite
//! operation has been placed and the remaining uncertain ones are taken never to have happened.
//! An `info` read constrains nothing and is dropped; so is every `fail` operation (it certainly
//! did not happen). Equal times order an invocation before a completion, which can only make
//! more histories linearizable: the checker never reports an anomaly the clock's resolution
//! could explain.
//!
//! For a key that is not linearizable, [`check`] also finds a small failing sub-history (see
//! [`smallest_failing`]): the earliest cut of the history that already fails, then the latest
//! start, then without every read that is not needed. Each of these relaxations keeps every
//! linearizable history linearizable, so the sub-history reported is itself a proof.
//!
//! Uncertain writes would make the plain search exponential: before a read that needs one of
//! them, it would try every subset of the others, in every order. But an uncertain write (or
//! compare-and-swap) that is overwritten by a blind write before anything observes it changes
//! nothing, and leaving it out is always allowed; so the search only considers linearizations
//! in which every uncertain operation it applies is observed (by a read or a compare-and-swap)
//! before the next blind write. Any linearization can be reduced to such a one by dropping the
//! unobserved uncertain operations, so no valid history is rejected.
//!
//! Not done: a search budget per key (`MAX_STEPS`) makes pathological histories (hundreds of
//! concurrent uncertain writes) `unknown` instead of running for hours; Porcupine's
//! per-partition timeout plays the same role.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Op, Operation};

/// Search steps per check before the verdict is `unknown`.
const MAX_STEPS: u64 = 20_000_000;

/// The register's value as the model knows it. `Any` is the state at the start of a
/// sub-history cut from the middle of a history: whatever earlier operations left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    Any,
    Value(Option<u64>),
}

/// What a register operation does to the model, `None` if it cannot happen in `state`.
fn step(state: State, op: &Op) -> Option<State> {
    match (op, state) {
        (Op::Read { value, .. }, State::Any) => Some(State::Value(*value)),
        (Op::Read { value, .. }, State::Value(v)) => (v == *value).then_some(state),
        (Op::Write { value, .. }, _) => Some(State::Value(Some(*value))),
        (Op::Cas { to, .. }, State::Any) => Some(State::Value(Some(*to))),
        (Op::Cas { from, to, .. }, State::Value(v)) => (v == Some(*from)).then_some(State::Value(Some(*to))),
        // Not a register operation (`Op::workload`): no step.
        _ => None,
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyResult {
    pub key: String,
    pub valid: Validity,
    /// Operations checked (after dropping `fail` ops and `info` reads).
    pub ops: usize,
    /// For an invalid key: a small sub-history that is itself not linearizable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// `"empty"` when the sub-history starts at the beginning of the history (the key did not
    /// exist), `"any"` when it starts later (the register may hold anything).
    pub initial: String,
    /// The operations, in invocation order; `info` ones may or may not have happened.
    pub ops: Vec<Operation>,
}

/// The verdict for a whole register history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    pub keys: Vec<KeyResult>,
}

/// Checks every key's sub-history.
pub fn check(ops: &[Operation]) -> Report {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in ops {
        if let Some(key) = op.op.key() {
            by_key.entry(key).or_default().push(op.clone());
        }
    }
    let keys: Vec<KeyResult> = by_key.into_iter().map(|(key, ops)| check_key(key, ops)).collect();
    let valid = if keys.is_empty() { Validity::Unknown } else { Validity::all(keys.iter().map(|k| k.valid)) };
    Report { valid, keys }
}

fn check_key(key: &str, ops: Vec<Operation>) -> KeyResult {
    let ops = relevant(ops);
    let valid = search(&ops, State::Value(None));
    let anomaly = (valid == Validity::False).then(|| {
        let (initial, ops) = smallest_failing(&ops);
        Anomaly { initial: if initial == State::Any { "any" } else { "empty" }.into(), ops }
    });
    KeyResult { key: key.to_string(), valid, ops: ops.len(), anomaly }
}

/// Drops what constrains nothing: `fail` operations (they did not happen) and `info` reads.
fn relevant(ops: Vec<Operation>) -> Vec<Operation> {
    ops.into_iter()
        .filter(|o| match o.outcome {
            EventType::Ok => true,
            EventType::Info => !matches!(o.op, Op::Read { .. }),
            EventType::Fail | EventType::Invoke => false,
        })
        .collect()
}

/// One entry of the time-ordered list: an operation's invocation (`call`) or completion.
struct Entry {
    op: usize,
    call: bool,
    time: u64,
    /// For a call: the index of its completion entry.
    ret: usize,
}

const NIL: usize = usize::MAX;

/// Wing & Gong / Lowe search (see the module essay).
fn search(ops: &[Operation], initial: State) -> Validity {
    if ops.is_empty() {
        return Validity::True;
    }
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.invoke, false, i));
        order.push((o.complete.unwrap_or(u64::MAX), true, i));
    }
    // Calls sort before completions at equal times (`false < true`).
    order.sort_unstable();
    let mut entries: Vec<Entry> =
        order.iter().map(|&(time, is_ret, op)| Entry { op, call: !is_ret, time, ret: NIL }).collect();
    let mut ret_of = vec![NIL; ops.len()];
    for (i, e) in entries.iter().enumerate() {
        if !e.call {
            ret_of[e.op] = i;
        }
    }
    for e in entries.iter_mut().filter(|e| e.call) {
        e.ret = ret_of[e.op];
    }
    // A doubly linked list over `entries`, with a head sentinel at index `n`.
    let n = entries.len();
    let head = n;
    let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NIL } else { i }).collect();
    next.push(0);
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { head } else { i - 1 }).collect();
    prev.push(NIL);

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize, r: usize| {
        for x in [e, r] {
            let (p, nx) = (prev[x], next[x]);
            next[p] = nx;
            if nx != NIL {
                prev[nx] = p;
            }
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize, r: usize| {
        for x in [r, e] {
            let (p, nx) = (prev[x], next[x]);
            next[p] = x;
            if nx != NIL {
                prev[nx] = x;
            }
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    // `fresh`: the last operation applied was uncertain and nothing has observed it yet.
    let mut cache: HashSet<(Vec<u64>, State, bool)> = HashSet::new();
    let mut stack: Vec<(usize, State, bool)> = Vec::new();
    let mut state = initial;
    let mut fresh = false;
    let mut entry = next[head];
    let mut steps = 0u64;
    while next[head] != NIL {
        steps += 1;
        if steps > MAX_STEPS {
            return Validity::Unknown;
        }
        let e = &entries[entry];
        if e.call {
            let o = &ops[e.op];
            let blind = matches!(o.op, Op::Write { .. });
            let new_fresh = o.outcome == EventType::Info;
            let advanced = step(state, &o.op).filter(|_| !(fresh && blind)).and_then(|new_state| {
                let mut bits = linearized.clone();
                bits[e.op / 64] |= 1 << (e.op % 64);
                cache.insert((bits, new_state, new_fresh)).then_some(new_state)
            });
            match advanced {
                Some(new_state) => {
                    stack.push((entry, state, fresh));
                    state = new_state;
                    fresh = new_fresh;
                    linearized[e.op / 64] |= 1 << (e.op % 64);
                    lift(&mut next, &mut prev, entry, e.ret);
                    entry = next[head];
                }
                None => entry = next[entry],
            }
        } else if e.time == u64::MAX {
            // Only uncertain operations are left: they never happened.
            return Validity::True;
        } else {
            let Some((call, saved, saved_fresh)) = stack.pop() else { return Validity::False };
            let op = entries[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = saved;
            fresh = saved_fresh;
            unlift(&mut next, &mut prev, call, entries[call].ret);
            entry = next[call];
        }
    }
    Validity::True
}

/// The sub-history of `ops` between times `start` and `end`, relaxed so that it is
/// linearizable whenever `ops` is (see [`smallest_failing`]). `start = None`: from the
/// beginning, with the key absent.
fn window(ops: &[Operation], start: Option<u64>, end: u64) -> (State, Vec<Operation>) {
    let s = start.unwrap_or(0);
    let mut out = Vec::new();
    for o in ops {
        let is_read = matches!(o.op, Op::Read { .. });
        let done_by_end = o.complete.is_some_and(|c| c <= end);
        if o.invoke >= s && done_by_end {
            out.push(o.clone());
        } else if is_read || o.invoke > end || o.complete.is_some_and(|c| c < s) {
            // A read outside the window constrains nothing; a write invoked after the cut
            // takes effect after everything the window observed; one completed before the
            // start is summarized by the `Any` state.
        } else {
            // A write that may take effect inside the window: it may or may not have.
            out.push(Operation { outcome: EventType::Info, complete: None, ..o.clone() });
        }
    }
    (if start.is_some() { State::Any } else { State::Value(None) }, out)
}

/// A small failing sub-history of a non-linearizable key history: the earliest cut `T` (a
/// completion time) whose prefix already fails, then the latest start `S` whose window
/// `[S, T]` still fails from an arbitrary initial state, then without each read whose removal
/// keeps it failing. Every step only relaxes the history (drops reads, drops writes that
/// happened before the window, turns writes that straddle its edges into `info`), so a
/// linearizable history can never yield a failing window: what is reported is a proof.
pub fn smallest_failing_ops(ops: &[Operation]) -> Vec<Operation> {
    smallest_failing(&relevant(ops.to_vec())).1
}

fn smallest_failing(ops: &[Operation]) -> (State, Vec<Operation>) {
    let fails = |(initial, sub): &(State, Vec<Operation>)| search(sub, *initial) == Validity::False;
    let mut ends: Vec<u64> = ops.iter().filter_map(|o| o.complete).collect();
    ends.sort_unstable();
    ends.dedup();
    let Some(end) = ends.iter().copied().find(|&t| fails(&window(ops, None, t))) else {
        return (State::Value(None), ops.to_vec());
    };
    let mut starts: Vec<u64> = ops.iter().map(|o| o.invoke).filter(|&t| t <= end).collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    starts.dedup();
    let mut best = window(ops, None, end);
    if let Some(w) = starts.into_iter().map(|s| window(ops, Some(s), end)).find(|w| fails(w)) {
        best = w;
    }
    let mut i = 0;
    while i < best.1.len() {
        if matches!(best.1[i].op, Op::Read { .. }) && best.1.len() > 1 {
            let mut fewer = best.clone();
            fewer.1.remove(i);
            if fails(&fewer) {
                best = fewer;
                continue;
            }
        }
        i += 1;
    }
    best.1.sort_by_key(|o| o.invoke);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, outcome: EventType, op: Op, invoke: u64, complete: Option<u64>) -> Operation {
        Operation { process, op, outcome, invoke, complete }
    }
    fn w(p: u64, v: u64, t0: u64, t1: u64) -> Operation {
        op(p, EventType::Ok, Op::Write { key: "k".into(), value: v }, t0, Some(t1))
    }
    fn r(p: u64, v: Option<u64>, t0: u64, t1: u64) -> Operation {
        op(p, EventType::Ok, Op::Read { key: "k".into(), value: v }, t0, Some(t1))
    }
    fn cas(p: u64, from: u64, to: u64, t0: u64, t1: u64) -> Operation {
        op(p, EventType::Ok, Op::Cas { key: "k".into(), from, to }, t0, Some(t1))
    }
    fn info(mut o: Operation) -> Operation {
        o.outcome = EventType::Info;
        o.complete = None;
        o
    }
    fn fail(mut o: Operation) -> Operation {
        o.outcome = EventType::Fail;
        o
    }
    fn verdict(ops: &[Operation]) -> Validity {
        check(ops).valid
    }

    #[test]
    fn sequential_and_concurrent_good_histories_pass() {
        assert_eq!(
            verdict(&[r(1, None, 0, 1), w(1, 1, 2, 3), r(2, Some(1), 4, 5), cas(1, 1, 2, 6, 7)]),
            Validity::True
        );
        // Concurrent writes: the read may see either; the later read must agree.
        let h = [w(1, 1, 0, 10), w(2, 2, 1, 9), r(3, Some(1), 11, 12), r(3, Some(1), 13, 14)];
        assert_eq!(verdict(&h), Validity::True);
        // A read concurrent with a write may see the old or the new value.
        assert_eq!(verdict(&[w(1, 1, 0, 1), w(1, 2, 2, 10), r(2, Some(1), 3, 4), r(2, Some(2), 5, 6)]), Validity::True);
    }

    #[test]
    fn info_writes_may_or_may_not_have_happened() {
        // Timed out, yet later read: it happened.
        let happened = [info(w(1, 1, 0, 1)), r(2, Some(1), 5, 6)];
        assert_eq!(verdict(&happened), Validity::True);
        // Timed out and never seen: it did not happen (or not yet).
        let never = [info(w(1, 1, 0, 1)), r(2, None, 5, 6), w(3, 2, 7, 8), r(2, Some(2), 9, 10)];
        assert_eq!(verdict(&never), Validity::True);
        // It may even take effect long after it was invoked, after later writes.
        let late = [info(w(1, 1, 0, 1)), w(2, 2, 3, 4), r(3, Some(2), 5, 6), r(3, Some(1), 7, 8)];
        assert_eq!(verdict(&late), Validity::True);
        // An uncertain compare-and-swap and failed operations.
        let mixed = [w(1, 1, 0, 1), info(cas(2, 1, 3, 2, 3)), fail(w(3, 9, 2, 4)), r(4, Some(3), 5, 6)];
        assert_eq!(verdict(&mixed), Validity::True);
        // An uncertain read constrains nothing.
        assert_eq!(verdict(&[w(1, 1, 0, 1), info(r(2, Some(7), 2, 3))]), Validity::True);
    }

    #[test]
    fn a_stale_read_is_caught_with_its_proof() {
        // Write 2 completed before the read started, yet the read saw 1.
        let h = [r(9, None, 0, 1), w(1, 1, 2, 3), w(1, 2, 4, 5), r(2, Some(1), 6, 7), r(3, Some(2), 8, 9)];
        let report = check(&h);
        assert_eq!(report.valid, Validity::False);
        let anomaly = report.keys[0].anomaly.clone().unwrap();
        // The proof: write 2 completed, then a read saw something else with no write in
        // between; whatever the register held before (`any`). The other reads and the write of
        // 1, which completed before, are not needed.
        let ops: Vec<&Op> = anomaly.ops.iter().map(|o| &o.op).collect();
        assert_eq!(ops, [&Op::Write { key: "k".into(), value: 2 }, &Op::Read { key: "k".into(), value: Some(1) }]);
        assert_eq!(anomaly.initial, "any");
        assert_eq!(
            search(&anomaly.ops, if anomaly.initial == "any" { State::Any } else { State::Value(None) }),
            Validity::False
        );
    }

    #[test]
    fn a_lost_write_is_caught() {
        // Write 5 was acknowledged; every later read sees the older value.
        let h = [w(1, 4, 0, 1), w(1, 5, 2, 3), r(2, Some(4), 10, 11), r(2, Some(4), 12, 13)];
        let report = check(&h);
        assert_eq!(report.valid, Validity::False);
        let anomaly = report.keys[0].anomaly.clone().unwrap();
        // The acknowledged write of 5 and the first read that missed it.
        let ops: Vec<(&Op, u64)> = anomaly.ops.iter().map(|o| (&o.op, o.invoke)).collect();
        assert_eq!(
            ops,
            [(&Op::Write { key: "k".into(), value: 5 }, 2), (&Op::Read { key: "k".into(), value: Some(4) }, 10)]
        );
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught() {
        let h = [w(1, 1, 0, 1), r(2, Some(42), 2, 3)];
        let report = check(&h);
        assert_eq!(report.valid, Validity::False);
        // Even a failed write of 42 does not explain it: fail means it did not happen.
        let h = [w(1, 1, 0, 1), fail(w(3, 42, 0, 1)), r(2, Some(42), 2, 3)];
        assert_eq!(verdict(&h), Validity::False);
        let report = check(&[r(2, Some(42), 2, 3)]);
        assert_eq!(report.keys[0].anomaly.as_ref().unwrap().initial, "empty");
    }

    #[test]
    fn a_cas_that_could_not_have_succeeded_is_caught() {
        let h = [w(1, 1, 0, 1), w(1, 2, 2, 3), cas(2, 1, 3, 4, 5)];
        assert_eq!(verdict(&h), Validity::False);
    }

    #[test]
    fn keys_are_checked_independently() {
        let other = |o: Operation| Operation {
            op: match o.op {
                Op::Write { value, .. } => Op::Write { key: "j".into(), value },
                Op::Read { value, .. } => Op::Read { key: "j".into(), value },
                x => x,
            },
            ..o
        };
        // Value 1 on key j must not explain a read of 1 on key k after k was written 2.
        let h = [w(1, 2, 0, 1), other(w(2, 1, 2, 3)), r(3, Some(1), 4, 5)];
        let report = check(&h);
        assert_eq!(report.valid, Validity::False);
        assert_eq!(
            report.keys.iter().map(|k| (k.key.as_str(), k.valid)).collect::<Vec<_>>(),
            [("j", Validity::True), ("k", Validity::False)]
        );
    }

    #[test]
    fn many_concurrent_uncertain_writes_stay_tractable() {
        // 40 processes each leave an uncertain write; reads then see a few of them in turn.
        let mut h: Vec<Operation> = (0..40).map(|p| info(w(p, p + 1, p, p + 1))).collect();
        h.push(r(100, Some(7), 100, 101));
        h.push(r(100, Some(30), 102, 103));
        h.push(r(100, Some(3), 104, 105));
        assert_eq!(verdict(&h), Validity::True);
        h.push(w(101, 99, 106, 107));
        h.push(r(100, Some(12), 108, 109));
        // Write 12 may land after 99: still fine. Write 3 cannot land twice, and a read of a
        // never-written value is never fine.
        assert_eq!(verdict(&h), Validity::True);
        let mut twice = h.clone();
        twice.push(r(100, Some(3), 110, 111));
        assert_eq!(verdict(&twice), Validity::False);
        h.push(r(100, Some(1000), 110, 111));
        assert_eq!(verdict(&h), Validity::False);
    }
}
