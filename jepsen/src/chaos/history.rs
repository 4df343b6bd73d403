//! The history of a chaos run: every client operation as an invocation and a completion, in the
//! order they happened, with Jepsen's semantics for the completion:
//!
//! - `ok`: the operation took effect (for a read: it returned the value recorded);
//! - `fail`: the operation certainly did not take effect (the client library says so: a
//!   refusal, `Unavailable`, `DeadlineExceeded` with nothing in flight, or a compare-and-swap
//!   whose comparison did not hold);
//! - `info`: the outcome is unknown (`OutcomeUnknown`, `Internal`, a client-side timeout): the
//!   operation may or may not have taken effect, at any time after its invocation, even after
//!   the history ends. The process that issued it is then considered crashed and never used
//!   again (its next operation comes from a fresh process id), as in Jepsen: a process has at
//!   most one operation in flight, and an `info` operation stays in flight forever.
//!
//! Times are nanoseconds since the run started, taken from one monotonic clock in the
//! `hcjepsen` process, so invocations and completions of different processes are comparable.
//! The file form is JSON lines (`history.jsonl`), one [`Event`] per line.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use hypercache_client::ShardId;
use serde::{Deserialize, Serialize};

/// The run's one clock: nanoseconds since the run started, for client ops and nemesis actions
/// alike.
#[derive(Debug, Clone, Copy)]
pub struct Clock(std::time::Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(std::time::Instant::now())
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A client process: one logical thread issuing one operation at a time.
pub type Process = u64;

/// How an event ends (or starts) an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does. The invocation carries the arguments; the completion the same
/// arguments and, for reads, what was read (`None` in a read's `value`: the key was absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// Linearizable read of a register.
    Read { key: String, value: Option<u64> },
    /// Blind write of a register.
    Write { key: String, value: u64 },
    /// Compare-and-swap: `to` if the register holds `from`.
    Cas { key: String, from: u64, to: u64 },
    /// Add one element to the set.
    Add { element: u64 },
    /// Read the whole set (the final read); `None` on the invocation.
    ReadSet { elements: Option<Vec<u64>> },
    /// Bank setup: create every account in `accounts` with `balance`, unless they exist
    /// already (`ok` either way: afterwards the accounts exist).
    OpenAccounts { accounts: Vec<String>, balance: i64 },
    /// Move `amount` from account `from` to account `to` in one transaction.
    Transfer { from: String, to: String, amount: i64 },
    /// Every account's balance, from one range read (one snapshot); `None` on the invocation.
    /// `final_read`: one of the reads after healing.
    ReadAll {
        balances: Option<BTreeMap<String, i64>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        final_read: bool,
    },
    /// Campaign for election `name` as `candidate` (unique to this op) with a fresh lease;
    /// the completion carries the term won (`None` on the invocation and when not `ok`).
    Campaign { name: String, candidate: String, term: Option<u64> },
    /// Give up the leadership of `name` that `candidate` won with `term`.
    Resign { name: String, candidate: String, term: u64 },
    /// Who leads `name` (`holder` and `term`, `None`: nobody) and the last term handed out;
    /// all `None` on the invocation. `final_read`: one of the reads after healing.
    Leader {
        name: String,
        holder: Option<String>,
        term: Option<u64>,
        last_term: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        final_read: bool,
    },
    /// Board setup: register every owner (a game server with a long lease) and create every
    /// board (unassigned, checkpoint seq 0); `ok` once all exist.
    OpenBoards { boards: Vec<String>, owners: Vec<String> },
    /// Read the board's epoch, then assign it to `owner` expecting that epoch; `epoch` on the
    /// `ok` completion: the new epoch handed out.
    Assign { board: String, owner: String, epoch: Option<u64> },
    /// Write checkpoint `seq` (data `owner/epoch/seq`), fenced by `epoch`.
    Sync { board: String, owner: String, epoch: u64, seq: u64 },
    /// Linearizable read of a board and its checkpoint; `None` on the invocation.
    ReadBoard {
        board: String,
        state: Option<BoardState>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        final_read: bool,
    },
    /// A list-append transaction: micro-operations on distinct keys of one shard, applied
    /// atomically; the completion carries what each read saw. `final_read`: one of the reads
    /// after healing.
    Txn {
        mops: Vec<Mop>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        final_read: bool,
    },
    /// Put unique `value` under `key` (a key of the watched prefix); the `ok` completion
    /// carries the key's shard and the revision the put was applied at.
    WatchPut { key: String, value: u64, shard: Option<u32>, revision: Option<u64> },
    /// Delete `key`; the `ok` completion carries its shard, the revision and whether the key
    /// existed (a delete of a missing key writes nothing and produces no event).
    WatchDelete { key: String, shard: Option<u32>, revision: Option<u64>, deleted: Option<bool> },
    /// Watcher `watcher` (re)opened its watch of the prefix; `start` per shard is the first
    /// revision to deliver (`None` on the invocation). `resume`: continuing after what it was
    /// delivered before (not a fresh start); `reconnect`: with a new client.
    WatchOpen {
        watcher: u64,
        #[serde(with = "shard_map::optional")]
        start: Option<BTreeMap<u32, u64>>,
        resume: bool,
        reconnect: bool,
    },
    /// One update delivered to `watcher`: the events of one shard, in delivery order (a read).
    /// A `fail` completion (no `shard`, no events) is an error the watcher met.
    WatchEvents { watcher: u64, shard: Option<u32>, events: Vec<WatchEvent> },
    /// Watcher `watcher` stopped; `last` per shard: the last revision it was told everything
    /// was delivered up to (events or progress notifications).
    WatchEnd {
        watcher: u64,
        #[serde(with = "shard_map")]
        last: BTreeMap<u32, u64>,
        end: WatchEndReason,
    },
    /// The final read after healing: every key of the prefix with its shard, value and
    /// revision, and each shard's revision at the read (`None` on the invocation).
    WatchFinalRead {
        kvs: Option<Vec<WatchKv>>,
        #[serde(with = "shard_map::optional")]
        revisions: Option<BTreeMap<u32, u64>>,
    },
    /// Grant a lease asking for `ttl_ms`, in the home shard or, with `for_key`, in that key's
    /// shard; the `ok` completion carries the lease id (home shard `id >> 48`) and the TTL the
    /// server granted.
    LeaseGrant { ttl_ms: u64, for_key: Option<String>, lease: Option<u64>, granted_ttl_ms: Option<u64> },
    /// Put unique `value` under `key` attached to `lease`; the `ok` completion carries the
    /// key's shard.
    LeasePut { key: String, value: u64, lease: u64, shard: Option<u32> },
    /// One keepalive of `lease`; the `ok` completion carries the TTL the server granted, `0`
    /// when the lease no longer exists (`None` on the invocation).
    LeaseKeepAlive { lease: u64, ttl_ms: Option<u64> },
    /// Revoke `lease` (`fail`: it was already gone).
    LeaseRevoke { lease: u64 },
    /// Linearizable read of a lease workload key: its value and lease (`None`: absent, or
    /// attached to no lease); `None` on the invocation.
    LeaseRead { key: String, value: Option<u64>, lease: Option<u64> },
}

/// The history records a shard as its number (the `shard` fields and the keys of per-shard
/// revisions), so the file stays plain JSON for the checker and for people; the client's
/// per-shard revisions are converted here, where they enter or leave the record.
pub fn recorded_revisions(revisions: &BTreeMap<ShardId, u64>) -> BTreeMap<u32, u64> {
    revisions.iter().map(|(shard, revision)| (shard.0, *revision)).collect()
}

/// Recorded per-shard revisions as the client takes them (a watch's start positions).
pub fn client_revisions(recorded: &BTreeMap<u32, u64>) -> BTreeMap<ShardId, u64> {
    recorded.iter().map(|(shard, revision)| (ShardId(*shard), *revision)).collect()
}

/// Per-shard revisions as a JSON object (`{"0": 12}`). An [`Event`] is read through serde's
/// buffered path (the op is flattened and internally tagged), which does not turn an object's
/// string key back into an integer, so the keys are parsed here.
mod shard_map {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<u32, u64>, s: S) -> Result<S::Ok, S::Error> {
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, u64>, D::Error> {
        let raw = BTreeMap::<String, u64>::deserialize(d)?;
        raw.into_iter()
            .map(|(shard, revision)| {
                let shard = shard.parse().map_err(|_| D::Error::custom(format!("shard {shard:?} is not a number")))?;
                Ok((shard, revision))
            })
            .collect()
    }

    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(map: &Option<BTreeMap<u32, u64>>, s: S) -> Result<S::Ok, S::Error> {
            map.serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<u32, u64>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(deserialize_with = "super::deserialize")] BTreeMap<u32, u64>);
            Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(map)| map))
        }
    }
}

/// One event delivered to a watcher. `value`: the put's value, `None` for a delete (a value
/// that does not parse is `u64::MAX`, which no writer writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub revision: u64,
    pub key: String,
    pub value: Option<u64>,
}

/// Why a watcher stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchEndReason {
    /// It reached the final read's revision of every shard.
    CaughtUp,
    /// Resuming was refused as `COMPACTED`: what came after `last` is not covered.
    Compacted,
    /// It had not reached the final read's revisions when its time ran out.
    NotCaughtUp,
    /// There was no successful final read to catch up to.
    NoFinalRead,
}

/// One key of a [`Op::WatchFinalRead`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchKv {
    pub key: String,
    pub shard: u32,
    pub value: u64,
    /// The key's `mod_revision`.
    pub revision: u64,
}

/// One micro-operation of an [`Op::Txn`], Elle's `[:r k v]` and `[:append k v]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Mop {
    /// Read the list at `key`; `None` on the invocation (an absent key reads as empty).
    R { key: String, value: Option<Vec<u64>> },
    /// Append `value` (unique in the run) to the list at `key`.
    Append { key: String, value: u64 },
}

impl Mop {
    pub fn key(&self) -> &str {
        match self {
            Mop::R { key, .. } | Mop::Append { key, .. } => key,
        }
    }
}

/// What a [`Op::ReadBoard`] saw: the owner record's epoch and the checkpoint's (epoch, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BoardState {
    pub epoch: u64,
    pub checkpoint_epoch: u64,
    pub seq: u64,
}

impl Op {
    /// The workload this operation belongs to (its name on the command line). The one
    /// exhaustive match over every operation: a new one is placed here, and the workloads and
    /// checkers match only their own.
    pub fn workload(&self) -> &'static str {
        match self {
            Op::Read { .. } | Op::Write { .. } | Op::Cas { .. } => "register",
            Op::Add { .. } | Op::ReadSet { .. } => "set",
            Op::OpenAccounts { .. } | Op::Transfer { .. } | Op::ReadAll { .. } => "bank",
            Op::Campaign { .. } | Op::Resign { .. } | Op::Leader { .. } => "election",
            Op::OpenBoards { .. } | Op::Assign { .. } | Op::Sync { .. } | Op::ReadBoard { .. } => "board",
            Op::Txn { .. } => "list-append",
            Op::WatchPut { .. }
            | Op::WatchDelete { .. }
            | Op::WatchOpen { .. }
            | Op::WatchEvents { .. }
            | Op::WatchEnd { .. }
            | Op::WatchFinalRead { .. } => "watch",
            Op::LeaseGrant { .. }
            | Op::LeasePut { .. }
            | Op::LeaseKeepAlive { .. }
            | Op::LeaseRevoke { .. }
            | Op::LeaseRead { .. } => "lease",
        }
    }

    /// Whether the operation only reads (a failed read changed nothing, whatever the error).
    pub fn is_read(&self) -> bool {
        match self {
            Op::Read { .. } | Op::ReadSet { .. } | Op::ReadAll { .. } | Op::Leader { .. } | Op::ReadBoard { .. } => {
                true
            }
            Op::Txn { mops, .. } => mops.iter().all(|m| matches!(m, Mop::R { .. })),
            Op::WatchOpen { .. } | Op::WatchEvents { .. } | Op::WatchEnd { .. } | Op::WatchFinalRead { .. } => true,
            Op::LeaseRead { .. } => true,
            Op::Write { .. }
            | Op::Cas { .. }
            | Op::Add { .. }
            | Op::OpenAccounts { .. }
            | Op::Transfer { .. }
            | Op::Campaign { .. }
            | Op::Resign { .. }
            | Op::OpenBoards { .. }
            | Op::Assign { .. }
            | Op::Sync { .. }
            | Op::WatchPut { .. }
            | Op::WatchDelete { .. }
            // A keepalive extends the lease: an uncertain one may have.
            | Op::LeaseGrant { .. }
            | Op::LeasePut { .. }
            | Op::LeaseKeepAlive { .. }
            | Op::LeaseRevoke { .. } => false,
        }
    }

    /// Whether the operation is a workload's setup, done once before the workers start.
    pub fn is_setup(&self) -> bool {
        matches!(self, Op::OpenAccounts { .. } | Op::OpenBoards { .. })
    }

    /// A short human label for plots and reports: `write 3`, `read nil`, `cas 3->4`; other
    /// operations as their JSON (they have no plot that labels single ops yet).
    pub fn label(&self) -> String {
        let opt = |v: &Option<u64>| v.map_or("nil".to_string(), |v| v.to_string());
        match self {
            Op::Read { value, .. } => format!("read {}", opt(value)),
            Op::Write { value, .. } => format!("write {value}"),
            Op::Cas { from, to, .. } => format!("cas {from}->{to}"),
            other => serde_json::to_string(other).unwrap_or_else(|_| other.workload().to_string()),
        }
    }

    /// The register key, for register operations.
    pub fn key(&self) -> Option<&str> {
        match self {
            Op::Read { key, .. } | Op::Write { key, .. } | Op::Cas { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(flatten)]
    pub op: Op,
    /// Nanoseconds since the run started.
    pub time: u64,
    /// For `fail` and `info`: the client's error, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub process: Process,
    /// The completion's arguments and result (the invocation's for an operation that never
    /// completed, which is then `info`).
    pub op: Op,
    /// `Ok`, `Fail` or `Info`.
    pub outcome: EventType,
    pub invoke: u64,
    /// `None` for `info`: the operation may take effect at any later time.
    pub complete: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} line {line}: {source}")]
    Parse { path: String, line: usize, source: serde_json::Error },
    #[error("event {index}: process {process} {problem}")]
    Malformed { index: usize, process: Process, problem: &'static str },
}

/// Pairs every invocation with its process's next completion. An invocation left open at the
/// end of the history becomes `info`.
pub fn pair(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    Ok(pair_returned(events)?.into_iter().map(|r| r.op).collect())
}

/// An operation and when its completion event was recorded. Unlike [`Operation::complete`]
/// this is set for `info` operations too (when the client gave up): a checker must treat them
/// as still in flight, but a latency plot wants the time the client waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    pub op: Operation,
    /// `None`: never completed (still open when the history ended).
    pub returned: Option<u64>,
}

/// [`pair`], keeping every completion's time.
pub fn pair_returned(events: &[Event]) -> Result<Vec<Returned>, HistoryError> {
    let mut open: BTreeMap<Process, (usize, &Event)> = BTreeMap::new();
    let mut ops: Vec<(usize, Returned)> = Vec::new();
    for (index, e) in events.iter().enumerate() {
        match e.kind {
            EventType::Invoke => {
                if open.insert(e.process, (index, e)).is_some() {
                    return Err(HistoryError::Malformed { index, process: e.process, problem: "invoked twice" });
                }
            }
            kind => {
                let Some((at, invoke)) = open.remove(&e.process) else {
                    return Err(HistoryError::Malformed {
                        index,
                        process: e.process,
                        problem: "completed unopened op",
                    });
                };
                let complete = (kind != EventType::Info).then_some(e.time);
                let op =
                    Operation { process: e.process, op: e.op.clone(), outcome: kind, invoke: invoke.time, complete };
                ops.push((at, Returned { op, returned: Some(e.time) }));
            }
        }
    }
    for (process, (at, invoke)) in open {
        let op =
            Operation { process, op: invoke.op.clone(), outcome: EventType::Info, invoke: invoke.time, complete: None };
        ops.push((at, Returned { op, returned: None }));
    }
    ops.sort_by_key(|(at, _)| *at);
    Ok(ops.into_iter().map(|(_, op)| op).collect())
}

/// Writes events as JSON lines.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), HistoryError> {
    let io = |source| HistoryError::Io { path: path.display().to_string(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|e| HistoryError::Parse {
            path: path.display().to_string(),
            line: 0,
            source: e,
        })?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Reads a JSON-lines file (blank lines ignored).
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, HistoryError> {
    let io = |source| HistoryError::Io { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut items = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.display().to_string(),
            line: n + 1,
            source,
        })?;
        items.push(item);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(process: Process, kind: EventType, op: Op, time: u64) -> Event {
        Event { process, kind, op, time, error: None }
    }

    #[test]
    fn events_round_trip_as_jepsen_style_json() {
        let e = ev(3, EventType::Ok, Op::Read { key: "r0".into(), value: Some(7) }, 12);
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(line, r#"{"process":3,"type":"ok","f":"read","key":"r0","value":7,"time":12}"#);
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);

        let balances = BTreeMap::from([("{bank}acct/00".to_string(), 100)]);
        let e = ev(4, EventType::Ok, Op::ReadAll { balances: Some(balances), final_read: true }, 13);
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"process":4,"type":"ok","f":"read-all","balances":{"{bank}acct/00":100},"final_read":true,"time":13}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let line = r#"{"process":1,"type":"invoke","f":"read-all","balances":null,"time":2}"#;
        let parsed: Event = serde_json::from_str(line).unwrap();
        assert_eq!(parsed.op, Op::ReadAll { balances: None, final_read: false });
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);

        let e = ev(5, EventType::Ok, Op::Campaign { name: "e/0".into(), candidate: "c7".into(), term: Some(3) }, 14);
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"process":5,"type":"ok","f":"campaign","name":"e/0","candidate":"c7","term":3,"time":14}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let line = r#"{"process":6,"type":"invoke","f":"leader","name":"e/1","holder":null,"term":null,"last_term":null,"time":15}"#;
        let parsed: Event = serde_json::from_str(line).unwrap();
        assert_eq!(
            parsed.op,
            Op::Leader { name: "e/1".into(), holder: None, term: None, last_term: None, final_read: false }
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
    }

    #[test]
    fn watch_ops_with_per_shard_revisions_round_trip() {
        let revisions = BTreeMap::from([(0, 12), (1, 7)]);
        for op in [
            Op::WatchOpen { watcher: 1, start: Some(revisions.clone()), resume: true, reconnect: false },
            Op::WatchOpen { watcher: 1, start: None, resume: false, reconnect: false },
            Op::WatchEnd { watcher: 1, last: revisions.clone(), end: WatchEndReason::CaughtUp },
            Op::WatchFinalRead {
                kvs: Some(vec![WatchKv { key: "watch/0".into(), shard: 1, value: 9, revision: 7 }]),
                revisions: Some(revisions.clone()),
            },
        ] {
            let e = ev(2, EventType::Ok, op, 3);
            let line = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e, "{line}");
        }
        let line =
            r#"{"process":2,"type":"ok","f":"watch-end","watcher":1,"last":{"0":12,"1":7},"end":"caught-up","time":3}"#;
        assert_eq!(serde_json::to_string(&serde_json::from_str::<Event>(line).unwrap()).unwrap(), line);
        let bad = r#"{"process":2,"type":"ok","f":"watch-end","watcher":1,"last":{"x":1},"end":"caught-up","time":3}"#;
        assert!(serde_json::from_str::<Event>(bad).unwrap_err().to_string().contains("\"x\" is not a number"));
    }

    #[test]
    fn pairing_keeps_invocation_order_and_opens_become_info() {
        let w = Op::Write { key: "k".into(), value: 1 };
        let r = Op::Read { key: "k".into(), value: None };
        let events = vec![
            ev(1, EventType::Invoke, w.clone(), 1),
            ev(2, EventType::Invoke, r.clone(), 2),
            ev(2, EventType::Ok, Op::Read { key: "k".into(), value: Some(1) }, 3),
            ev(1, EventType::Info, w.clone(), 9),
            ev(3, EventType::Invoke, w.clone(), 10),
        ];
        let ops = pair(&events).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].process, ops[0].outcome, ops[0].complete), (1, EventType::Info, None));
        assert_eq!((ops[1].process, ops[1].outcome, ops[1].complete), (2, EventType::Ok, Some(3)));
        assert_eq!((ops[2].process, ops[2].outcome, ops[2].complete), (3, EventType::Info, None));
        assert!(pair(&[ev(1, EventType::Ok, r, 1)]).is_err());
        let returned: Vec<Option<u64>> = pair_returned(&events).unwrap().iter().map(|r| r.returned).collect();
        assert_eq!(returned, [Some(9), Some(3), None], "an info op keeps the time the client gave up");
    }
}
