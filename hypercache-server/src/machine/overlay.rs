//! The state machine's view of its rows while one apply batch runs.
//!
//! Committed rows sit in sled underneath; the batch's writes sit in `changes` on top, keyed by
//! the raw sled key and holding sealed (checksummed) bytes, so committing is a straight copy into
//! one `sled::Batch`. Every write also pushes an undo record: a request that is rejected halfway
//! is rolled back to its [`Savepoint`], which is what makes each request atomic without the
//! request logic having to check everything before writing anything.
//!
//! Alongside the rows the overlay collects what the rest of the node must learn after the commit:
//! watch [`Event`]s (key-space changes) and [`LeaseChange`]s (for the leader's lease clock).
//!
//! Sled key layout of a shard's `sm` tree:
//! - `d<key>`: a row (`StoredValue`, read and written through `rows.rs`);
//! - `l<lease id, big-endian>`: a lease ([`LeaseRecord`]);
//! - `c<name>`: a counter (u64);
//! - `s<client id>`: a client's write session, `r<client id><seq, big-endian>`: the outcome of one
//!   of its writes (`machine/session.rs`);
//! - `m<name>`: applied log id, revision, membership (written by the state machine itself).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::command::Rejection;
use crate::encoding::record::{seal, unseal};
use crate::types::{ClientId, KeyValue, LeaseId, ShardId};

pub const DATA: u8 = b'd';
pub const LEASE: u8 = b'l';
pub const COUNTER: u8 = b'c';
pub const SESSION: u8 = b's';
pub const REPLY: u8 = b'r';

pub fn data_key(key: &[u8]) -> Vec<u8> {
    prefixed(DATA, key)
}

pub fn lease_key(id: LeaseId) -> Vec<u8> {
    prefixed(LEASE, &id.0.to_be_bytes())
}

pub fn session_key(client: &ClientId) -> Vec<u8> {
    prefixed(SESSION, &client.0)
}

pub fn reply_key(client: &ClientId, seq: u64) -> Vec<u8> {
    let mut k = prefixed(REPLY, &client.0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefixed(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(rest.len() + 1);
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// A lease as the state machine stores it. Deadlines are not here: time is the leader's
/// business (`lease_clock.rs`); the state machine only knows which leases exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub ttl_ms: u64,
    /// Keys attached to the lease, deleted with it.
    pub keys: BTreeSet<Bytes>,
    /// A per-key TTL lease: it ends when its last key is deleted or detached.
    pub auto: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One key-space change, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    /// For a delete: the key with `mod_revision` = the delete's revision and nothing else.
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    /// Approximate memory held by the event (history accounting).
    pub fn bytes(&self) -> usize {
        let prev = self.prev.as_ref().map_or(0, |p| p.key.len() + p.value.len());
        self.kv.key.len() + self.kv.value.len() + prev + 96
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    Granted {
        id: LeaseId,
        ttl_ms: u64,
    },
    /// A follower record for another shard's lease was created (its first key here).
    Followed {
        id: LeaseId,
    },
    Ended {
        id: LeaseId,
    },
}

/// A row store or a corrupt record: the state machine cannot go on (the node stops rather than
/// diverge from its peers).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

/// A request failed: refused (rolled back, reported to the caller) or the store is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    Reject(Rejection),
    Fatal(String),
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Self {
        Fail::Reject(r)
    }
}

impl From<ApplyError> for Fail {
    fn from(e: ApplyError) -> Self {
        Fail::Fatal(e.0)
    }
}

/// Where committed rows come from.
pub trait Base {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError>;
}

impl Base for sled::Tree {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        self.get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| ApplyError(format!("sled read: {e}")))
    }
}

impl<T: Base> Base for &T {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        (**self).get_raw(key)
    }
}

impl Base for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        Ok(self.get(key).cloned())
    }
}

/// Lengths to truncate back to when a request is rejected.
#[derive(Debug, Clone, Copy)]
pub struct Savepoint {
    undo: usize,
    events: usize,
    lease_changes: usize,
}

impl Savepoint {
    /// Events recorded before the savepoint.
    pub fn events(&self) -> usize {
        self.events
    }
}

/// A pending write: sealed bytes, or None for a delete.
type Pending = Option<Vec<u8>>;

pub struct Overlay<B> {
    pub shard: ShardId,
    base: B,
    changes: BTreeMap<Vec<u8>, Pending>,
    /// (key, what `changes` held for it before the write: None = nothing).
    undo: Vec<(Vec<u8>, Option<Pending>)>,
    pub events: Vec<Event>,
    pub lease_changes: Vec<LeaseChange>,
}

impl<B: Base> Overlay<B> {
    pub fn new(shard: ShardId, base: B) -> Self {
        Overlay {
            shard,
            base,
            changes: BTreeMap::new(),
            undo: Vec::new(),
            events: Vec::new(),
            lease_changes: Vec::new(),
        }
    }

    pub fn savepoint(&self) -> Savepoint {
        Savepoint { undo: self.undo.len(), events: self.events.len(), lease_changes: self.lease_changes.len() }
    }

    pub fn rollback(&mut self, sp: Savepoint) {
        while self.undo.len() > sp.undo {
            let Some((key, before)) = self.undo.pop() else { break };
            match before {
                Some(entry) => self.changes.insert(key, entry),
                None => self.changes.remove(&key),
            };
        }
        self.events.truncate(sp.events);
        self.lease_changes.truncate(sp.lease_changes);
    }

    /// Accepts the current state: undo records are no longer needed (one per request).
    pub fn release(&mut self) {
        self.undo.clear();
    }

    /// The writes to commit: raw sled key -> sealed value (None = delete).
    pub fn into_changes(self) -> BTreeMap<Vec<u8>, Pending> {
        self.changes
    }

    /// Reads the sealed record at `raw_key`; `what` names it in the error if it is corrupt.
    pub(super) fn get<T: serde::de::DeserializeOwned>(
        &self,
        raw_key: &[u8],
        what: &dyn Fn() -> String,
    ) -> Result<Option<T>, ApplyError> {
        let bytes = match self.changes.get(raw_key) {
            Some(entry) => entry.clone(),
            None => self.base.get_raw(raw_key)?,
        };
        match bytes {
            None => Ok(None),
            Some(b) => unseal(&b)
                .map(Some)
                .map_err(|e| ApplyError(format!("shard {}: {} is corrupt: {e}", self.shard, what()))),
        }
    }

    /// Writes (or with None deletes) the record at `raw_key`, keeping what it replaces for undo.
    pub(super) fn set<T: Serialize>(&mut self, raw_key: Vec<u8>, value: Option<&T>) -> Result<(), ApplyError> {
        let sealed = match value {
            Some(v) => Some(seal(v).map_err(|e| ApplyError(format!("shard {}: encoding a row: {e}", self.shard)))?),
            None => None,
        };
        let before = self.changes.insert(raw_key.clone(), sealed);
        self.undo.push((raw_key, before));
        Ok(())
    }

    pub fn lease(&self, id: LeaseId) -> Result<Option<LeaseRecord>, ApplyError> {
        self.get(&lease_key(id), &|| format!("lease {id}"))
    }

    /// Writes a lease record; `granted` records a new lease for the lease clock.
    pub fn set_lease(&mut self, id: LeaseId, lease: &LeaseRecord, granted: bool) -> Result<(), ApplyError> {
        self.set(lease_key(id), Some(lease))?;
        if granted {
            self.lease_changes.push(LeaseChange::Granted { id, ttl_ms: lease.ttl_ms });
        }
        Ok(())
    }

    pub fn remove_lease(&mut self, id: LeaseId) -> Result<(), ApplyError> {
        self.set::<LeaseRecord>(lease_key(id), None)?;
        self.lease_changes.push(LeaseChange::Ended { id });
        Ok(())
    }

    /// A client's write session record (the type is `machine/session.rs`'s).
    pub fn session<T: serde::de::DeserializeOwned>(&self, client: &ClientId) -> Result<Option<T>, ApplyError> {
        self.get(&session_key(client), &|| format!("session of client {client}"))
    }

    pub fn set_session<T: Serialize>(&mut self, client: &ClientId, record: Option<&T>) -> Result<(), ApplyError> {
        self.set(session_key(client), record)
    }

    /// The stored outcome of a client's write `seq`.
    pub fn reply<T: serde::de::DeserializeOwned>(&self, client: &ClientId, seq: u64) -> Result<Option<T>, ApplyError> {
        self.get(&reply_key(client, seq), &|| format!("reply {seq} of client {client}"))
    }

    pub fn set_reply<T: Serialize>(
        &mut self,
        client: &ClientId,
        seq: u64,
        reply: Option<&T>,
    ) -> Result<(), ApplyError> {
        self.set(reply_key(client, seq), reply)
    }

    pub fn counter(&self, name: &str) -> Result<u64, ApplyError> {
        Ok(self.get(&prefixed(COUNTER, name.as_bytes()), &|| format!("counter {name}"))?.unwrap_or(0))
    }

    pub fn set_counter(&mut self, name: &str, value: u64) -> Result<(), ApplyError> {
        self.set(prefixed(COUNTER, name.as_bytes()), Some(&value))
    }
}
