//! `hypercache inspect-log`: what a stopped node's Raft log holds, read offline.
//!
//! Why: after a chaos run (or a real incident) loses an acknowledged write, the question is which
//! node's log held its entry, at what index and term, and what each node's vote and committed
//! mark were. The chaos suite keeps the nodes' disk images of a failed run; this reads one
//! (mounted) without changing a byte: the log is opened read-only ([`Wal::open_read_only`]), so
//! a torn tail a start would cut off is reported, not cut. The node must be stopped: a running
//! node appends while this reads.
//!
//! Keys are printed only when asked (`--keys`): they are the operator's data, and the default
//! output (log ids, payload kinds and sizes) is enough to compare logs across nodes.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::Bound;
use std::path::Path;

use crate::machine::command::{Command, GameOp, LeaseOp, Op, Request};
use crate::raft_types::EntryPayload;
use crate::storage::wal::{self, Wal, WalError};
use crate::storage::OpenError;
use crate::types::ShardId;

/// What to print.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Only this shard (the meta group is shard 0).
    pub shard: Option<ShardId>,
    /// One line per entry, not only a summary per shard.
    pub entries: bool,
    /// With `entries`: the keys each entry writes or reads.
    pub keys: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("shard {0}: this log holds no replica of it (shards held: {1})")]
    NoShard(ShardId, String),
    #[error("{0}")]
    Read(#[from] WalError),
    #[error("writing the report: {0}")]
    Output(#[from] io::Error),
}

/// Writes the report on the log of the node whose data directory is `data_dir`.
pub fn inspect_log(data_dir: &Path, options: &InspectOptions, out: &mut impl Write) -> Result<(), InspectError> {
    let dir = wal::wal_dir(data_dir);
    let (log, notes) = Wal::open_read_only(&dir)?;
    let held = log.shards();
    writeln!(out, "raft log {}: {} shard(s), {} segment file(s)", dir.display(), held.len(), log.segments())?;
    for note in &notes {
        writeln!(out, "note: {note}")?;
    }
    let shards = match options.shard {
        Some(s) if held.contains(&s) => vec![s],
        Some(s) => {
            let list = held.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            return Err(InspectError::NoShard(s, list));
        }
        None => held,
    };
    for shard in shards {
        let (purged, last) = log.log_state(shard);
        let entries = log.entries(shard, (Bound::Unbounded, Bound::Unbounded))?;
        let first = entries.first().map(|e| e.log_id.index);
        writeln!(
            out,
            "shard {shard}: vote {}, committed {}, purged up to {}, {} entries{}, last {}",
            show(log.vote(shard)),
            show(log.committed(shard)),
            show(purged),
            entries.len(),
            first.map_or(String::new(), |f| format!(" from index {f}")),
            show(last),
        )?;
        if options.entries {
            for entry in &entries {
                writeln!(out, "  {} {}", entry.log_id, describe(&entry.payload, options.keys))?;
            }
        }
    }
    Ok(())
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// One entry's payload in a few words: its kind and requests, and with `keys` the keys.
fn describe(payload: &EntryPayload, keys: bool) -> String {
    match payload {
        EntryPayload::Blank => "blank".into(),
        EntryPayload::Membership(m) => format!("membership {m}"),
        EntryPayload::Normal(Command::Batch(requests)) => {
            format!("batch of {}:{}", requests.len(), requests_text(requests.iter(), keys))
        }
        EntryPayload::Normal(Command::Tracked { time_ms, requests }) => format!(
            "tracked batch of {} at {time_ms} ms:{}",
            requests.len(),
            requests_text(requests.iter().map(|t| &t.request), keys)
        ),
    }
}

fn requests_text<'a>(requests: impl Iterator<Item = &'a Request>, keys: bool) -> String {
    let mut text = String::new();
    for request in requests {
        let _ = write!(text, " {}", request_text(request, keys));
    }
    text
}

fn request_text(request: &Request, keys: bool) -> String {
    match request {
        Request::Txn(txn) => {
            let ops = txn.success.iter().chain(&txn.failure);
            if !keys {
                return format!("txn({} compares, {} ops)", txn.compares.len(), ops.count());
            }
            let named: Vec<String> = ops
                .map(|op| match op {
                    Op::Get { key } => format!("get {}", key_text(key)),
                    Op::Put { key, value, .. } => format!("put {} ({} bytes)", key_text(key), value.len()),
                    Op::Delete { key, .. } => format!("delete {}", key_text(key)),
                })
                .collect();
            format!("txn[{}]", named.join(", "))
        }
        Request::Lease(op) => match op {
            LeaseOp::Grant { .. } => "lease-grant".into(),
            LeaseOp::Revoke { .. } => "lease-revoke".into(),
            LeaseOp::Expire { ids } => format!("lease-expire({})", ids.len()),
            LeaseOp::HomeEnded { ids } => format!("lease-home-ended({})", ids.len()),
        },
        Request::Game(op) => match op {
            GameOp::Register { .. } => "game-register".into(),
            GameOp::CreateBoard { .. } => "board-create".into(),
            GameOp::SyncBoard { .. } => "board-sync".into(),
            GameOp::AssignBoard(_) => "board-assign".into(),
            GameOp::Deregister { .. } => "game-deregister".into(),
            GameOp::ReleaseBoard { .. } => "board-release".into(),
            GameOp::DeleteBoard { .. } => "board-delete".into(),
            GameOp::Campaign { .. } => "campaign".into(),
            GameOp::Resign { .. } => "resign".into(),
        },
    }
}

/// A key as text: printable ASCII as is, every other byte escaped.
fn key_text(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

    use bytes::Bytes;

    use super::*;
    use crate::encoding::record::seal;
    use crate::machine::command::{Attach, Tracked, Txn};
    use crate::raft_types::{CommittedLeaderId, Entry, LogId, Vote};

    fn put(key: &str) -> Request {
        Request::Txn(Txn {
            compares: vec![],
            success: vec![Op::Put {
                key: Bytes::from(key.to_string()),
                value: Bytes::from_static(b"v"),
                prev_kv: false,
                attach: Attach::None,
            }],
            failure: vec![],
        })
    }

    #[test]
    fn the_report_names_each_shards_log_and_with_keys_the_keys_of_each_entry() {
        let data = tempfile::tempdir().unwrap();
        let (a, b) = (ShardId(1), ShardId(2));
        {
            let log = Wal::open(&wal::wal_dir(data.path()), 1 << 20).unwrap();
            log.open_shard(a).unwrap();
            log.open_shard(b).unwrap();
            let id = |i| LogId::new(CommittedLeaderId { term: 3, node_id: 2 }, i);
            let entries: Vec<Entry> = vec![
                Entry { log_id: id(1), payload: EntryPayload::Blank },
                Entry {
                    log_id: id(2),
                    payload: EntryPayload::Normal(Command::Tracked {
                        time_ms: 7,
                        requests: vec![Tracked { write: None, request: put("set/000000001006") }],
                    }),
                },
            ];
            log.append(a, entries.iter().map(|e| (e.log_id, seal(e).unwrap())).collect()).unwrap();
            log.set_vote(a, &Vote::new_committed(3, 2)).unwrap();
            log.set_committed(a, Some(id(1))).unwrap();
            log.sync().unwrap();
        }
        let report = |options: &InspectOptions| {
            let mut out = Vec::new();
            inspect_log(data.path(), options, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let summary = report(&InspectOptions::default());
        assert!(summary.contains("2 shard(s)"), "{summary}");
        assert!(summary.contains("shard 1: vote ") && summary.contains("2 entries from index 1"), "{summary}");
        assert!(summary.contains("shard 2: vote none, committed none, purged up to none, 0 entries"), "{summary}");
        assert!(!summary.contains("set/"), "no key without --keys: {summary}");

        let quiet = report(&InspectOptions { shard: Some(a), entries: true, keys: false });
        assert!(quiet.contains("blank") && quiet.contains("txn(0 compares, 1 ops)"), "{quiet}");
        assert!(!quiet.contains("set/") && !quiet.contains("shard 2"), "{quiet}");

        let keyed = report(&InspectOptions { shard: Some(a), entries: true, keys: true });
        assert!(keyed.contains("put set/000000001006 (1 bytes)"), "{keyed}");

        let mut out = Vec::new();
        let err = inspect_log(data.path(), &InspectOptions { shard: Some(ShardId(9)), ..Default::default() }, &mut out)
            .unwrap_err();
        assert_eq!(err.to_string(), "shard 9: this log holds no replica of it (shards held: 1, 2)");
        let empty = tempfile::tempdir().unwrap();
        let err = inspect_log(empty.path(), &InspectOptions::default(), &mut out).unwrap_err();
        assert!(err.to_string().contains("no raft log at") && err.to_string().contains("data directory?"), "{err}");
    }
}
