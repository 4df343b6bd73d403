//! The list-append workload (Elle's): every key holds a list of unique numbers, and each
//! transaction reads some keys' lists and appends to others, atomically. Because a read returns
//! the whole list, every read names the order of every append it saw, which lets the checker
//! (`checker/append.rs`) infer who must have come before whom and search for cycles.
//!
//! - **Keys**: [`GROUPS`] groups, each with its own hash tag (`{la<g>}/<k>`), so one group is one
//!   shard and a transaction within it is one atomic HyperCache transaction. A group has
//!   [`ACTIVE_KEYS`] keys in use at a time; after about [`WRITES_PER_KEY`] appends per key the
//!   window moves on to fresh keys (as Jepsen's `max-writes-per-key`), which keeps lists short
//!   and the search small.
//! - **`txn`**: 1 to [`MAX_MOPS`] micro-operations on distinct keys of one group, each a read
//!   (1/2) or an append of a value never used before (1/2). HyperCache has no append, so a
//!   transaction is optimistic: one read-only transaction gets every key it touches (the reads'
//!   results, and each key's `mod_revision`), then, if it appends, one transaction writes the
//!   extended lists **if no key it touched changed since** (a compare on every `mod_revision`,
//!   reads included, so the reads still hold when the writes commit). A comparison that did not
//!   hold is `fail`: nothing was written. A read-only transaction is the first step alone.
//! - **Final reads**: after healing, one read of every key ever in use, a transaction per group
//!   (`final_read: true`).
//!
//! Lists are stored as decimal numbers separated by commas; an element that does not parse is
//! recorded as `u64::MAX`, which is never appended, so the checker reports it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use hypercache_client::{Client, Compare, Error, OpResult, Txn};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::Rng;

use super::Context;
use crate::chaos::history::{EventType, Mop, Op};

/// Key groups (hash tags).
pub const GROUPS: u64 = 2;
/// Keys in use per group at a time.
pub const ACTIVE_KEYS: u64 = 4;
/// Appends per key (on average) before the window moves to fresh keys.
pub const WRITES_PER_KEY: u64 = 24;
/// Micro-operations per transaction, at most.
const MAX_MOPS: usize = 3;
/// Keys per final-read transaction.
const FINAL_READ_CHUNK: usize = 64;

pub fn key(group: u64, k: u64) -> String {
    format!("{{la{group}}}/{k}")
}

/// The first key of the window in use once `values` values have been handed out. Every value
/// is an append to one of `GROUPS * ACTIVE_KEYS` keys, so after `WRITES_PER_KEY` appends per key
/// the window moves on.
fn window(values: u64) -> u64 {
    values / (GROUPS * ACTIVE_KEYS * WRITES_PER_KEY) * ACTIVE_KEYS
}

/// A transaction on random distinct keys of a random group's current window.
pub fn next(ctx: &Context, rng: &mut StdRng) -> Op {
    let group = rng.gen_range(0..GROUPS);
    let base = window(ctx.next_value.load(Ordering::Relaxed));
    let n = rng.gen_range(1..=MAX_MOPS);
    let mops = sample(rng, ACTIVE_KEYS as usize, n)
        .into_iter()
        .map(|k| {
            let key = key(group, base + k as u64);
            if rng.gen_bool(0.5) {
                Mop::R { key, value: None }
            } else {
                Mop::Append { key, value: ctx.next_value.fetch_add(1, Ordering::Relaxed) }
            }
        })
        .collect();
    Op::Txn { mops, final_read: false }
}

/// One read of every key that can have been in use so far (the window's keys and all before).
pub fn final_reads(ctx: &Context) -> Vec<Op> {
    let last = window(ctx.next_value.load(Ordering::Relaxed)) + ACTIVE_KEYS;
    let mut ops = Vec::new();
    for group in 0..GROUPS {
        let keys: Vec<u64> = (0..last).collect();
        for chunk in keys.chunks(FINAL_READ_CHUNK) {
            let mops = chunk.iter().map(|&k| Mop::R { key: key(group, k), value: None }).collect();
            ops.push(Op::Txn { mops, final_read: true });
        }
    }
    ops
}

fn encode(list: &[u64]) -> String {
    list.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn decode(value: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(value);
    if text.is_empty() {
        return Vec::new();
    }
    text.split(',').map(|e| e.parse().unwrap_or(u64::MAX)).collect()
}

/// Runs a transaction: `Ok` with what its reads saw, `Fail` when a key changed between its
/// read and its write (nothing written).
pub async fn apply(client: &Client, op: &Op) -> Result<(EventType, Op), Error> {
    let Op::Txn { mops, final_read } = op else {
        return Err(super::wrong_workload("list-append", op));
    };
    use hypercache_client::Op as TxnOp;
    // Step 1: every key's list and mod_revision, at one revision.
    let read = client.txn(mops.iter().fold(Txn::new(), |txn, m| txn.then(TxnOp::get(m.key().to_string())))).await?;
    if read.responses.len() != mops.len() {
        return Err(Error::Internal {
            message: format!("list-append: {} gets answered with {} results", mops.len(), read.responses.len()),
        });
    }
    let mut seen: BTreeMap<&str, (Vec<u64>, u64)> = BTreeMap::new();
    for (m, result) in mops.iter().zip(&read.responses) {
        let state = match result {
            OpResult::Get(Some(kv)) => (decode(&kv.value), kv.mod_revision),
            // Absent: an empty list, and "must still be absent" (mod_revision 0).
            _ => (Vec::new(), 0),
        };
        seen.insert(m.key(), state);
    }
    let done: Vec<Mop> = mops
        .iter()
        .map(|m| match m {
            Mop::R { key, .. } => Mop::R { key: key.clone(), value: seen.get(key.as_str()).map(|(l, _)| l.clone()) },
            append => append.clone(),
        })
        .collect();
    let completed = Op::Txn { mops: done, final_read: *final_read };
    if !mops.iter().any(|m| matches!(m, Mop::Append { .. })) {
        return Ok((EventType::Ok, completed));
    }
    // Step 2: the appends, if nothing this transaction touched changed since step 1.
    let mut write = Txn::new();
    for (key, (_, mod_revision)) in &seen {
        write = write.when(Compare::mod_revision(key.to_string(), *mod_revision));
    }
    for m in mops {
        if let Mop::Append { key, value } = m {
            let mut list = seen.get(key.as_str()).map(|(l, _)| l.clone()).unwrap_or_default();
            list.push(*value);
            write = write.then(TxnOp::put(key.clone(), encode(&list)));
        }
    }
    let result = client.txn(write).await?;
    Ok((if result.succeeded { EventType::Ok } else { EventType::Fail }, completed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_garbage_is_never_an_appended_value() {
        assert_eq!(decode(encode(&[3, 1, 20]).as_bytes()), vec![3, 1, 20]);
        assert_eq!(decode(b""), Vec::<u64>::new());
        assert_eq!(decode(b"1,x"), vec![1, u64::MAX]);
    }

    #[test]
    fn the_window_moves_after_writes_per_key_appends_per_key() {
        assert_eq!(window(0), 0);
        assert_eq!(window(GROUPS * ACTIVE_KEYS * WRITES_PER_KEY - 1), 0);
        assert_eq!(window(GROUPS * ACTIVE_KEYS * WRITES_PER_KEY), ACTIVE_KEYS);
    }
}
