//! The watch workload's writers and final read (the watchers are in [`super::watcher`]).
//!
//! Writers put unique values (the run's counter, so a value names the one put that wrote it) to
//! [`KEYS`] keys under [`PREFIX`], which has no hash tag, so the keys spread over the shards and
//! a watch of the prefix covers every shard. One op in [`DELETE_ONE_IN`] deletes a key instead.
//! An `ok` put records its key's shard (from the routing table, looked up before the put so
//! that a routing failure can only fail an op that never wrote) and the revision the shard
//! applied it at (the key's `mod_revision`); an `ok` delete records the revision and whether
//! the key existed (deleting a missing key writes nothing, so no event is due).
//!
//! The final read, after healing: one linearizable range page of the prefix, every key with its
//! shard, value and `mod_revision`, and each shard's revision at the read. The watchers must
//! reach those revisions (the checker compares their last event per key with it). The prefix
//! holds [`KEYS`] keys, far below a page, so a second page means something else is wrong and is
//! an error rather than a read at two revisions.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use hypercache_client::{Client, Error, RangeOptions};
use rand::rngs::StdRng;
use rand::Rng;

use super::Context;
use crate::chaos::history::{recorded_revisions, EventType, Op, WatchKv};

/// The watched prefix: no hash tag, so its keys spread over every shard.
pub const PREFIX: &str = "watch/";
/// Keys written under [`PREFIX`].
pub const KEYS: usize = 8;
/// One writer op in this many is a delete.
const DELETE_ONE_IN: u32 = 10;

pub fn key(i: usize) -> String {
    format!("{PREFIX}{i}")
}

/// A put of a fresh value to a random key, or now and then a delete.
pub fn next(ctx: &Context, rng: &mut StdRng) -> Op {
    let key = key(rng.gen_range(0..KEYS));
    if rng.gen_ratio(1, DELETE_ONE_IN) {
        return Op::WatchDelete { key, shard: None, revision: None, deleted: None };
    }
    Op::WatchPut { key, value: ctx.next_value.fetch_add(1, Ordering::Relaxed), shard: None, revision: None }
}

/// The final read after healing.
pub fn final_read() -> Op {
    Op::WatchFinalRead { kvs: None, revisions: None }
}

/// A value as the workload wrote it; anything else is `u64::MAX`, a value nobody wrote.
pub fn parse(value: &[u8]) -> u64 {
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

/// Runs a writer op or the final read.
pub async fn apply(client: &Client, op: &Op) -> Result<(EventType, Op), Error> {
    match op {
        Op::WatchPut { key, value, .. } => {
            let shard = client.routing().await?.shard_of(key.as_bytes());
            let put = client.put(key.clone(), value.to_string()).await?;
            let revision = put.kv.as_ref().map_or(put.revision, |kv| kv.mod_revision);
            let done = Op::WatchPut { key: key.clone(), value: *value, shard: Some(shard.0), revision: Some(revision) };
            Ok((EventType::Ok, done))
        }
        Op::WatchDelete { key, .. } => {
            let shard = client.routing().await?.shard_of(key.as_bytes());
            let deleted = client.delete(key.clone()).await?;
            let done = Op::WatchDelete {
                key: key.clone(),
                shard: Some(shard.0),
                revision: Some(deleted.revision),
                deleted: Some(deleted.deleted),
            };
            Ok((EventType::Ok, done))
        }
        Op::WatchFinalRead { .. } => {
            let table = client.routing().await?;
            let page = client.range(RangeOptions::prefix(PREFIX)).await?;
            if page.continuation.is_some() {
                return Err(Error::Config {
                    message: format!("watch: the {KEYS} keys under {PREFIX} did not come back as one page"),
                });
            }
            let kvs = page
                .kvs
                .iter()
                .map(|kv| WatchKv {
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    shard: table.shard_of(&kv.key).0,
                    value: parse(&kv.value),
                    revision: kv.mod_revision,
                })
                .collect();
            let revisions: BTreeMap<u32, u64> = recorded_revisions(&page.revisions);
            Ok((EventType::Ok, Op::WatchFinalRead { kvs: Some(kvs), revisions: Some(revisions) }))
        }
        other => Err(super::wrong_workload("watch", other)),
    }
}
