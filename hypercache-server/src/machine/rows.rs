//! Rows: the primitives every request writes the key space through.
//!
//! A row ([`StoredValue`]) is a value with its revisions and the lease it hangs on, and a lease
//! lists the keys attached to it. The two sides of that attachment change together, here and
//! nowhere else: [`write_row`] and [`delete_row`] attach and detach as they write (granting a
//! per-key TTL lease where asked), so KV transactions (`kv.rs`), lease operations (`lease.rs`)
//! and game-state operations (`game/`) all sit above this module and keep no lease bookkeeping
//! of their own. Game records are postcard values in ordinary rows ([`read_record`],
//! [`write_record`]). Which leases exist, and when one ends, is `lease.rs`'s model; this module
//! only keeps each lease's key list in step with the rows.
//!
//! Reading and writing a row in the [`Overlay`] is defined here, beside the row type, so the
//! overlay itself (sealed records, undo, events) does not depend on what a row is.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::command::{Attach, Rejection, MAX_TTL_MS, MIN_TTL_MS};
use super::overlay::{data_key, ApplyError, Base, Event, EventKind, Fail, LeaseChange, LeaseRecord, Overlay};
use crate::types::{home_of, KeyValue, LeaseId};

/// A row of the state machine: a value and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    pub value: Bytes,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    /// 0: no lease.
    pub lease: LeaseId,
}

impl StoredValue {
    pub fn to_kv(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

impl<B: Base> Overlay<B> {
    pub fn row(&self, key: &[u8]) -> Result<Option<StoredValue>, ApplyError> {
        self.get(&data_key(key), &|| format!("row {:?}", String::from_utf8_lossy(key)))
    }

    /// Writes a row and records the watch event. Lease bookkeeping is the caller's ([`write_row`]).
    pub fn set_row(&mut self, key: &Bytes, row: StoredValue, prev: Option<&StoredValue>) -> Result<(), ApplyError> {
        self.set(data_key(key), Some(&row))?;
        self.events.push(Event {
            revision: row.mod_revision,
            kind: EventKind::Put,
            kv: row.to_kv(key),
            prev: prev.map(|p| p.to_kv(key)),
        });
        Ok(())
    }

    /// Deletes a row and records the watch event. Lease bookkeeping is the caller's ([`delete_row`]).
    pub fn remove_row(&mut self, key: &Bytes, revision: u64, prev: &StoredValue) -> Result<(), ApplyError> {
        self.set::<StoredValue>(data_key(key), None)?;
        let kv = KeyValue {
            key: key.clone(),
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: LeaseId::NONE,
        };
        self.events.push(Event { revision, kind: EventKind::Delete, kv, prev: Some(prev.to_kv(key)) });
        Ok(())
    }
}

/// Writes `value` under `key` at `revision`, attaching it as asked, and returns (previous, new).
/// Fails with LEASE_NOT_FOUND if `attach` names a lease that does not exist.
pub fn write_row<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    key: &Bytes,
    value: Bytes,
    attach: Attach,
) -> Result<(Option<StoredValue>, StoredValue), Fail> {
    let prev = ov.row(key)?;
    let lease = match attach {
        Attach::None => LeaseId::NONE,
        Attach::Lease(id) => {
            attach_to_lease(ov, id, key)?;
            id
        }
        Attach::Ttl(ttl_ms) => {
            let id = grant(ov, ttl_ms, true)?;
            attach_to_lease(ov, id, key)?;
            id
        }
    };
    if let Some(p) = &prev {
        if !p.lease.is_none() && p.lease != lease {
            detach_from_lease(ov, p.lease, key)?;
        }
    }
    let row = StoredValue {
        value,
        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
        mod_revision: revision,
        version: prev.as_ref().map_or(1, |p| p.version + 1),
        lease,
    };
    ov.set_row(key, row.clone(), prev.as_ref())?;
    Ok((prev, row))
}

/// Deletes `key` at `revision` if it exists, detaching it from its lease; returns the old row.
pub fn delete_row<B: Base>(ov: &mut Overlay<B>, revision: u64, key: &Bytes) -> Result<Option<StoredValue>, Fail> {
    let Some(prev) = ov.row(key)? else { return Ok(None) };
    if !prev.lease.is_none() {
        detach_from_lease(ov, prev.lease, key)?;
    }
    ov.remove_row(key, revision, &prev)?;
    Ok(Some(prev))
}

const NEXT_LEASE: &str = "next_lease";

/// Refuses a TTL outside the bounds of the command language.
pub fn check_ttl(ttl_ms: u64) -> Result<(), Rejection> {
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(Rejection::InvalidTtl { ttl_ms: ttl_ms as i64 })
    }
}

/// Whether lease `id` belongs to another shard (this shard can only hold a follower record).
pub fn is_foreign<B: Base>(ov: &Overlay<B>, id: LeaseId) -> bool {
    home_of(id) != ov.shard
}

/// Creates a lease and returns its id: `shard << 48 | n`, n counting from 1, never reused.
pub fn grant<B: Base>(ov: &mut Overlay<B>, ttl_ms: u64, auto: bool) -> Result<LeaseId, Fail> {
    check_ttl(ttl_ms)?;
    let n = ov.counter(NEXT_LEASE)? + 1;
    ov.set_counter(NEXT_LEASE, n)?;
    let id = LeaseId::new(ov.shard, n);
    ov.set_lease(id, &LeaseRecord { ttl_ms, keys: Default::default(), auto }, true)?;
    Ok(id)
}

/// Attaches `key` to lease `id`. A lease of another shard gets a follower record here on its
/// first key (the service checked with the home shard that the lease exists).
fn attach_to_lease<B: Base>(ov: &mut Overlay<B>, id: LeaseId, key: &Bytes) -> Result<(), Fail> {
    let mut lease = match ov.lease(id)? {
        Some(lease) => lease,
        None if is_foreign(ov, id) => {
            ov.lease_changes.push(LeaseChange::Followed { id });
            LeaseRecord { ttl_ms: 0, keys: Default::default(), auto: false }
        }
        None => return Err(Rejection::LeaseNotFound { id }.into()),
    };
    if lease.keys.insert(key.clone()) {
        ov.set_lease(id, &lease, false)?;
    }
    Ok(())
}

/// Removes `key` from lease `id`'s keys; a per-key TTL lease and a follower record end with
/// their last key.
fn detach_from_lease<B: Base>(ov: &mut Overlay<B>, id: LeaseId, key: &Bytes) -> Result<(), Fail> {
    let Some(mut lease) = ov.lease(id)? else { return Ok(()) };
    if !lease.keys.remove(key) {
        return Ok(());
    }
    if (lease.auto || is_foreign(ov, id)) && lease.keys.is_empty() {
        ov.remove_lease(id)?;
    } else {
        ov.set_lease(id, &lease, false)?;
    }
    Ok(())
}

/// Decodes a game record (a postcard value in a row); the services decode watched rows with it.
pub fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, ApplyError> {
    postcard::from_bytes(value)
        .map_err(|e| ApplyError(format!("game record {:?} does not decode: {e}", String::from_utf8_lossy(key))))
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, ApplyError> {
    postcard::to_allocvec(value).map(Bytes::from).map_err(|e| ApplyError(format!("encoding a game record: {e}")))
}

/// Reads a game record row: (record, its row).
pub fn read_record<B: Base, T: DeserializeOwned>(
    ov: &Overlay<B>,
    key: &Bytes,
) -> Result<Option<(T, StoredValue)>, ApplyError> {
    match ov.row(key)? {
        None => Ok(None),
        Some(row) => Ok(Some((decode(key, &row.value)?, row))),
    }
}

/// Writes a game record row, attached to `lease` (0: none).
pub fn write_record<B: Base, T: Serialize>(
    ov: &mut Overlay<B>,
    revision: u64,
    key: &Bytes,
    record: &T,
    lease: LeaseId,
) -> Result<StoredValue, Fail> {
    let attach = if lease.is_none() { Attach::None } else { Attach::Lease(lease) };
    Ok(write_row(ov, revision, key, encode(record)?, attach)?.1)
}

/// A counter row that never goes backwards (incarnations, epochs, terms, each stored as its
/// bare number); 0 if absent.
pub fn counter_row<B: Base, N: DeserializeOwned + Default>(ov: &Overlay<B>, key: &Bytes) -> Result<N, ApplyError> {
    Ok(read_record::<B, N>(ov, key)?.map_or_else(N::default, |(n, _)| n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ShardId;
    use std::collections::{BTreeMap, BTreeSet};

    fn row(v: &str, rev: u64) -> StoredValue {
        StoredValue {
            value: Bytes::from(v.to_string()),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: LeaseId::NONE,
        }
    }

    #[test]
    fn rollback_restores_rows_events_and_lease_changes() {
        let mut ov = Overlay::new(ShardId(0), BTreeMap::new());
        let k = Bytes::from_static(b"k");
        ov.set_row(&k, row("a", 1), None).unwrap();
        ov.release();
        let sp = ov.savepoint();
        ov.set_row(&k, row("b", 2), None).unwrap();
        ov.set_lease(LeaseId(7), &LeaseRecord { ttl_ms: 5, keys: BTreeSet::new(), auto: false }, true).unwrap();
        ov.set_counter("x", 3).unwrap();
        assert_eq!(ov.row(b"k").unwrap().unwrap().value, "b");
        ov.rollback(sp);
        assert_eq!(ov.row(b"k").unwrap().unwrap().value, "a");
        assert!(ov.lease(LeaseId(7)).unwrap().is_none());
        assert_eq!(ov.counter("x").unwrap(), 0);
        assert_eq!(ov.events.len(), 1);
        assert!(ov.lease_changes.is_empty());
    }

    #[test]
    fn corrupt_base_rows_are_errors_not_panics() {
        let mut base = BTreeMap::new();
        base.insert(data_key(b"k"), vec![1, 2, 3, 4, 5]);
        let ov = Overlay::new(ShardId(3), base);
        let err = ov.row(b"k").unwrap_err();
        assert!(err.0.contains("shard 3"), "{err}");
    }
}
