//! Helpers the game-state services share: reading all records under a prefix, decoding them,
//! and opening a typed stream that starts with a consistent snapshot.

use std::sync::Arc;

use bytes::Bytes;
use hypercache_proto::keys::prefix_end;
use serde::de::DeserializeOwned;

use super::ctx::{read_error, under_hub_lock};
use crate::error::ServiceError;
use crate::machine::command::{GameReply, Rejection, Reply};
use crate::machine::rows::decode;
use crate::shard::Shard;
use crate::types::KeyValue;
use crate::watch_hub::{HubState, KeyFilter, Subscription};

/// Every row under `prefix`, in key order (read from this node's state machine), as one snapshot:
/// the caller holds the hub lock (`locked`) for the whole scan. Only for small record sets (the
/// registry, one server's boards at watch start).
pub fn scan(shard: &Shard, locked: &HubState, prefix: &[u8]) -> Result<Vec<KeyValue>, ServiceError> {
    let end = prefix_end(prefix);
    let mut start = prefix.to_vec();
    let mut out = Vec::new();
    loop {
        let page = shard
            .reader
            .range(locked, &start, end.as_deref(), 10_000, false, usize::MAX)
            .map_err(|e| read_error(shard, e))?;
        out.extend(page.kvs);
        match page.next {
            Some(next) => start = next.to_vec(),
            None => return Ok(out),
        }
    }
}

pub fn decode_kv<T: DeserializeOwned>(shard: &Shard, kv: &KeyValue) -> Result<T, ServiceError> {
    decode(&kv.key, &kv.value).map_err(|e| read_error(shard, e))
}

/// The id part of a record key.
pub fn id_of(prefix: &[u8], key: &Bytes) -> String {
    String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned()
}

/// Under the hub lock (rows and revision agree), on a blocking thread: reads the snapshot with
/// `read`, and subscribes to every change of `filter` after it.
pub async fn snapshot_then_watch<T, F>(
    shard: &Arc<Shard>,
    filter: KeyFilter,
    read: F,
) -> Result<(T, u64, Subscription), ServiceError>
where
    T: Send + 'static,
    F: FnOnce(&Shard, &HubState) -> Result<T, ServiceError> + Send + 'static,
{
    under_hub_lock(shard, move |s, hub| {
        let snapshot = read(s, hub)?;
        let revision = hub.revision;
        let sub = hub.subscribe(filter, revision + 1).map_err(|e| s.subscribe_error(e))?;
        Ok((snapshot, revision, sub))
    })
    .await
}

/// A game reply, or INTERNAL if the state machine answered something else (a bug).
pub fn game_reply(shard: &Shard, op: &str, reply: Reply) -> Result<GameReply, ServiceError> {
    match reply {
        Reply::Game(g) => Ok(g),
        other => Err(super::ctx::unexpected(shard, op, other)),
    }
}

pub fn rejected(shard: &Shard, rejection: Rejection) -> ServiceError {
    ServiceError::Rejected { shard: shard.id, revision: shard.reader.revision(), rejection }
}
