//! The register workload: a few keys (`reg/<k>`), each a register of unique `u64` values
//! (every write and compare-and-swap writes a value never written before, so a read names the
//! write it saw). Each process picks a key at random and reads it (half the time), writes a
//! new value, or compare-and-swaps from the value it last saw there (or last wrote) to a new one.
//! Values are stored as decimal text; a value that does not parse is recorded as 0, which is
//! never written, so the checker reports it.
//!
//! Every third worker is node-bound for its reads, as Jepsen's clients are bound to one node:
//! it reads through that node alone ([`Client::get_from`]: no redirect, no retry, no health
//! table), whatever the node believes. A correct node that does not lead the key's shard
//! refuses (`NOT_LEADER`, a `fail`), and an isolated old leader cannot pass its read index; a
//! node that answers linearizable reads from its own state (the `stale-read` failpoint) is
//! caught, by a follower's lag or by an isolated node answering from before the majority's
//! writes. The routed client alone rarely shows it: it caches leaders and skips a node whose
//! requests time out, so it seldom asks a stale node after a newer write was acknowledged.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use hypercache_client::{Client, Error};
use rand::rngs::StdRng;
use rand::Rng;

use super::Context;
use crate::chaos::history::{EventType, Op};

pub fn key(k: usize) -> String {
    format!("reg/{k}")
}

/// One read per key.
pub fn final_ops(keys: usize) -> Vec<Op> {
    (0..keys).map(|k| Op::Read { key: key(k), value: None }).collect()
}

#[derive(Default)]
pub struct Generator {
    /// The last value this process saw or wrote per key: the compare-and-swap's `from`.
    seen: HashMap<String, u64>,
}

impl Generator {
    pub fn next(&mut self, ctx: &Context, rng: &mut StdRng) -> Op {
        let key = key(rng.gen_range(0..ctx.keys.max(1)));
        let roll = rng.gen_range(0..4);
        let fresh = || ctx.next_value.fetch_add(1, Ordering::Relaxed);
        match (roll, self.seen.get(&key)) {
            (0 | 1, _) => Op::Read { key, value: None },
            (2, Some(&from)) => Op::Cas { key, from, to: fresh() },
            _ => Op::Write { key, value: fresh() },
        }
    }

    pub fn observe(&mut self, op: &Op, kind: EventType) {
        if kind != EventType::Ok {
            return;
        }
        match op {
            Op::Read { key, value: Some(v) } | Op::Write { key, value: v } | Op::Cas { key, to: v, .. } => {
                self.seen.insert(key.clone(), *v);
            }
            _ => {}
        }
    }
}

fn parse(value: &[u8]) -> u64 {
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The endpoint worker `w` reads through, if it is node-bound: every third worker, spread over
/// the nodes.
pub fn bound_node(w: u64, endpoints: &[String]) -> Option<&str> {
    if !w.is_multiple_of(3) || endpoints.is_empty() {
        return None;
    }
    let node = (w / 3) as usize % endpoints.len();
    Some(endpoints[node].as_str())
}

/// Runs a register op: `Ok` with the value read, `Fail` for a compare-and-swap whose
/// comparison did not hold (it certainly did not write). Reads go through `bound` alone if
/// given, else through the key's leader.
pub async fn apply(client: &Client, op: &Op, bound: Option<&str>) -> Result<(EventType, Op), Error> {
    match op {
        Op::Read { key, .. } => {
            let kv = match bound {
                Some(endpoint) => client.get_from(endpoint, key.clone(), false).await?,
                None => client.get(key.clone()).await?,
            };
            Ok((EventType::Ok, Op::Read { key: key.clone(), value: kv.map(|kv| parse(&kv.value)) }))
        }
        Op::Write { key, value } => {
            client.put(key.clone(), value.to_string()).await?;
            Ok((EventType::Ok, op.clone()))
        }
        Op::Cas { key, from, to } => {
            let r = client.compare_and_swap(key.clone(), None, Some(from.to_string().into()), to.to_string()).await?;
            Ok((if r.succeeded { EventType::Ok } else { EventType::Fail }, op.clone()))
        }
        other => Err(super::wrong_workload("register", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_third_worker_reads_through_one_node_spread_over_the_nodes() {
        let endpoints: Vec<String> = ["a:1", "b:1", "c:1"].iter().map(|s| s.to_string()).collect();
        let bound: Vec<Option<&str>> = (0..10).map(|w| bound_node(w, &endpoints)).collect();
        assert_eq!(bound, [Some("a:1"), None, None, Some("b:1"), None, None, Some("c:1"), None, None, Some("a:1")]);
        assert_eq!(bound_node(0, &[]), None);
    }
}
