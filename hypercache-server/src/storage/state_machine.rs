//! The replicated state machine of one shard, in the sled tree `shard-<id>/sm`.
//!
//! Rows, leases and counters (layout in `machine/overlay.rs`) and the applied log id, revision
//! counter and membership (`m<name>`) live in ONE tree. An `apply` writes them with plain
//! inserts, never synced: sled's atomic batch rolls and writes its I/O buffer on every call,
//! which cost a third of a node's CPU under a 16-shard put load (ADR 44). The log is the durable
//! record: after a clean stop (the tree flushed last) the tree is as the applies left it; after
//! any other, it is rebuilt from the snapshot file ([`rebuild`]) and openraft re-applies the log
//! after it.
//!
//! The request logic is in `machine/`; this file runs it over sled, commits the batch while
//! holding the watch hub's lock (so watchers and snapshot readers see rows and revision agree)
//! and tells the lease clock which leases came and went.
//!
//! Client write sessions (exactly-once writes, `machine/session.rs`) are rows of this tree too
//! (`s<client id>`, plus the log clock counter), so they commit atomically with the writes they
//! describe and travel in snapshots with the other rows; [`Sessions`], their in-memory index, is
//! rebuilt from them at start and after a snapshot install.
//!
//! Snapshots copy the rows on a blocking thread while the state-machine worker waits (sled has no
//! point-in-time view, and openraft applies nothing while `get_snapshot_builder` runs), then
//! serialize and write the file off the apply path. That write can overlap an install's;
//! `snapshot.rs` keeps them apart and lets the newer snapshot win.

use std::io::{self, Cursor};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::RaftSnapshotBuilder;

use super::flusher::Flusher;
use super::reader::Progress;
use super::snapshot::{decode_payload, encode_payload, SnapshotBody, SnapshotFile};
use super::Retired;
use crate::encoding::record::{seal, unseal, RecordError};
use crate::lease_clock::LeaseClock;
use crate::machine::command::{Command, CommandResponse};
use crate::machine::overlay::{LeaseRecord, Overlay, LEASE, SESSION};
use crate::machine::session::{Limits, SessionRecord, Sessions};
use crate::raft_types::{EntryPayload, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::types::{home_of, ClientId, LeaseId, ShardId};
use crate::watch_hub::WatchHub;

const META: u8 = b'm';
const APPLIED: &[u8] = b"mapplied";
const REVISION: &[u8] = b"mrevision";
const MEMBERSHIP: &[u8] = b"mmembership";

/// The leases in `tree`: this shard's own as (id, ttl_ms), and the ids of other shards' leases
/// it holds follower records for (`machine/lease.rs`).
pub(super) type Leases = (Vec<(LeaseId, u64)>, Vec<LeaseId>);

/// Why the leases or sessions rows of a shard could not be loaded into memory.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("shard {shard}: malformed {kind} key {key:?}")]
    MalformedKey { shard: ShardId, kind: &'static str, key: sled::IVec },
    /// `row` names it: "lease 7", "session of client ...".
    #[error("shard {shard}: {row} is corrupt: {source}")]
    Corrupt { shard: ShardId, row: String, source: RecordError },
}

pub(super) fn load_leases(shard: ShardId, tree: &sled::Tree) -> Result<Leases, LoadError> {
    let (mut out, mut followed) = (Vec::new(), Vec::new());
    for item in tree.scan_prefix([LEASE]) {
        let (k, v) = item?;
        let id = k.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(|b| LeaseId(u64::from_be_bytes(b)));
        let id = id.ok_or_else(|| LoadError::MalformedKey { shard, kind: "lease", key: k.clone() })?;
        let lease: LeaseRecord =
            unseal(&v).map_err(|source| LoadError::Corrupt { shard, row: format!("lease {id}"), source })?;
        if home_of(id) == shard {
            out.push((id, lease.ttl_ms));
        } else {
            followed.push(id);
        }
    }
    Ok((out, followed))
}

/// The index of every client session in `tree`.
pub(super) fn load_sessions(shard: ShardId, tree: &sled::Tree) -> Result<Sessions, LoadError> {
    let mut rows = Vec::new();
    for item in tree.scan_prefix([SESSION]) {
        let (k, v) = item?;
        let id = k.get(1..).and_then(|b| <[u8; 16]>::try_from(b).ok());
        let id = ClientId(id.ok_or_else(|| LoadError::MalformedKey { shard, kind: "session", key: k.clone() })?);
        let record: SessionRecord = unseal(&v).map_err(|source| LoadError::Corrupt {
            shard,
            row: format!("session of client {id}"),
            source,
        })?;
        rows.push((id, record.last_seen_ms));
    }
    Ok(Sessions::new(Limits::DEFAULT, rows))
}

/// What an installed snapshot's rows give the in-memory state: the leases (id, ttl) and the
/// session index.
type Reloaded = (Leases, Sessions);

/// The snapshot a shard stores and sends: its metadata and the encoded payload.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>;

/// An I/O error that says what was being done (openraft 0.10's storage errors are `io::Error`;
/// it adds the subject, e.g. the log id being applied).
fn fail(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

pub struct StateMachine {
    shard: ShardId,
    tree: sled::Tree,
    snapshot_file: SnapshotFile,
    /// Set when the replica is closed: no snapshot is written after that (see [`Retired`]).
    retired: Retired,
    /// Held so the state flusher outlives every state machine: its last flush, after they are
    /// all gone, is what marks a stop clean.
    _flusher: Flusher,
    /// Applied index and revision, shared with readers (response headers, readiness).
    progress: Arc<Progress>,
    hub: Arc<WatchHub>,
    clock: Arc<LeaseClock>,
    /// Index of the client sessions rows (exactly-once writes).
    sessions: Sessions,
}

impl StateMachine {
    pub(super) fn new(
        shard: ShardId,
        tree: sled::Tree,
        // The snapshot file and the flag that stops writing it once the replica is closed.
        (snapshot_file, retired): (SnapshotFile, Retired),
        flusher: Flusher,
        progress: Arc<Progress>,
        hub: Arc<WatchHub>,
        clock: Arc<LeaseClock>,
    ) -> Result<Self, io::Error> {
        let sessions = load_sessions(shard, &tree).map_err(|e| fail("reading state machine", e))?;
        let sm =
            StateMachine { shard, tree, snapshot_file, retired, _flusher: flusher, progress, hub, clock, sessions };
        let (last, _) = sm.read_applied()?;
        sm.progress.applied.store(last.map_or(0, |l| l.index), Ordering::Release);
        let revision = sm.read_revision()?;
        sm.progress.revision.store(revision, Ordering::Release);
        sm.hub.lock().reset(revision);
        let (leases, followed) = load_leases(shard, &sm.tree).map_err(|e| fail("reading state machine", e))?;
        sm.clock.reset(leases, followed);
        Ok(sm)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, io::Error> {
        match self.tree.get(key).map_err(|e| fail("reading state machine", e))? {
            None => Ok(None),
            Some(v) => unseal(&v).map(Some).map_err(|e| {
                io::Error::other(format!(
                    "shard {}: state machine record {} is corrupt: {e}",
                    self.shard,
                    String::from_utf8_lossy(key)
                ))
            }),
        }
    }

    fn read_revision(&self) -> Result<u64, io::Error> {
        Ok(self.read_meta(REVISION)?.unwrap_or(0))
    }

    #[allow(clippy::type_complexity)]
    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let last = self.read_meta::<Option<LogId>>(APPLIED)?.flatten();
        let membership = self.read_meta(MEMBERSHIP)?.unwrap_or_default();
        Ok((last, membership))
    }
}

/// Why a state machine could not be rebuilt from its snapshot file.
#[derive(Debug, thiserror::Error)]
pub(super) enum RebuildError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("snapshot payload: {0}")]
    Payload(String),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Replaces every row of `tree` with the snapshot `stored` holds (empty if none): the state after
/// an unclean stop, before openraft re-applies the log. Blocking; idempotent, so a crash in the
/// middle only means doing it again at the next start.
pub(super) fn rebuild(tree: &sled::Tree, stored: Option<(SnapshotMeta, Vec<u8>)>) -> Result<(), RebuildError> {
    tree.clear()?;
    let Some((meta, payload)) = stored else { return Ok(()) };
    let body = decode_payload(&payload).map_err(|e| RebuildError::Payload(e.to_string()))?;
    for (k, v) in body.rows {
        tree.insert(k, v)?;
    }
    tree.insert(REVISION, seal(&body.revision)?)?;
    tree.insert(MEMBERSHIP, seal(&meta.last_membership)?)?;
    tree.insert(APPLIED, seal(&meta.last_log_id)?)?;
    Ok(())
}

impl StateMachine {
    /// Applies `entries` as one batch: the request logic runs over an overlay, then every change
    /// is written, and the watchers told, under the hub lock. Answers one response per entry.
    pub fn apply_batch(&mut self, entries: &[crate::raft_types::Entry]) -> Result<Vec<CommandResponse>, io::Error> {
        let mut ov = Overlay::new(self.shard, &self.tree);
        let mut responses = Vec::with_capacity(entries.len());
        let mut last: Option<LogId> = None;
        let mut membership = None;
        let mut revision = self.progress.revision.load(Ordering::Acquire);
        for entry in entries {
            last = Some(entry.log_id);
            let apply_err =
                |e: &dyn std::fmt::Display| fail(&format!("shard {}: applying {}", self.shard, entry.log_id), e);
            responses.push(match &entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Normal(Command::Batch(requests)) => {
                    let mut applied = Vec::with_capacity(requests.len());
                    for request in requests {
                        let a = crate::machine::apply(&mut ov, revision, request).map_err(|e| apply_err(&e))?;
                        revision = a.revision;
                        applied.push(a);
                    }
                    CommandResponse::Batch(applied)
                }
                EntryPayload::Normal(Command::Tracked { time_ms, requests }) => {
                    let log_clock = self.sessions.advance(&mut ov, *time_ms).map_err(|e| apply_err(&e))?;
                    let mut applied = Vec::with_capacity(requests.len());
                    for t in requests {
                        let a = match &t.write {
                            None => crate::machine::apply(&mut ov, revision, &t.request),
                            Some(w) => self.sessions.apply(&mut ov, log_clock, revision, w, &t.request),
                        }
                        .map_err(|e| apply_err(&e))?;
                        // A repeated write answers with its original (lower) revision.
                        revision = revision.max(a.revision);
                        applied.push(a);
                    }
                    CommandResponse::Batch(applied)
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    CommandResponse::None
                }
            });
        }
        let Some(last) = last else { return Ok(responses) };
        let events = std::mem::take(&mut ov.events);
        let lease_changes = std::mem::take(&mut ov.lease_changes);
        let what = format!("shard {}: storing entries up to {last}", self.shard);
        let applied = seal(&Some(last)).map_err(|e| fail(&what, e))?;
        let revision_rec = seal(&revision).map_err(|e| fail(&what, e))?;
        let membership = match membership {
            Some(m) => Some(seal(&m).map_err(|e| fail(&what, e))?),
            None => None,
        };
        {
            // Write and publish under the hub lock: see the module comment.
            let err = |e: sled::Error| fail(&what, e);
            let mut hub = self.hub.lock();
            for (key, value) in ov.into_changes() {
                match value {
                    Some(v) => self.tree.insert(key, v).map_err(err)?,
                    None => self.tree.remove(key).map_err(err)?,
                };
            }
            self.tree.insert(REVISION, revision_rec).map_err(err)?;
            if let Some(m) = membership {
                self.tree.insert(MEMBERSHIP, m).map_err(err)?;
            }
            self.tree.insert(APPLIED, applied).map_err(err)?;
            hub.publish(self.hub.limits(), revision, events);
        }
        self.clock.apply(&lease_changes);
        self.progress.revision.store(revision, Ordering::Release);
        self.progress.applied.store(last.index, Ordering::Release);
        Ok(responses)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        self.read_applied()
    }

    /// Takes the entries that are ready as one batch (one overlay, one hub publication), then
    /// answers their writers, only after the batch is written: a client never hears of a write
    /// a read on this replica could still miss.
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch.push(entry);
            responders.push(responder);
        }
        let responses = self.apply_batch(&batch)?;
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Capture the rows now: the state-machine worker applies nothing until this returns, so
        // rows and applied index agree. Building the file happens later, off the apply path.
        let captured = match self.read_applied().and_then(|a| Ok((a, self.read_revision()?))) {
            Err(e) => Err(e),
            Ok(((last_applied, membership), revision)) => {
                let tree = self.tree.clone();
                tokio::task::spawn_blocking(move || -> Result<SnapshotBody, io::Error> {
                    let mut rows = Vec::new();
                    // Everything but the `m` records, which the snapshot carries as fields.
                    for item in tree.iter() {
                        let (k, v) = item.map_err(|e| fail("reading state machine", e))?;
                        if k.first() != Some(&META) {
                            rows.push((k.to_vec(), v.to_vec()));
                        }
                    }
                    Ok(SnapshotBody { last_applied, membership, revision, rows })
                })
                .await
                .map_err(|e| fail("reading state machine", e))
                .and_then(|r| r)
            }
        };
        SnapshotBuilder {
            shard: self.shard,
            file: self.snapshot_file.clone(),
            retired: self.retired.clone(),
            captured: Some(captured),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Cursor<Vec<u8>>) -> Result<(), io::Error> {
        let at = meta.last_log_id.map_or_else(|| "nothing".to_string(), |l| l.to_string());
        let what = format!("shard {}: installing snapshot up to {at}", self.shard);
        let payload = snapshot.into_inner();
        let body = decode_payload(&payload).map_err(|e| fail(&format!("{what}: refusing it"), e))?;
        tracing::info!(shard = %self.shard, snapshot = %at, rows = body.rows.len(), "installing snapshot");
        let revision = body.revision;
        let (tree, file, meta2) = (self.tree.clone(), self.snapshot_file.clone(), meta.clone());
        let (what2, shard, hub, retired) = (what.clone(), self.shard, self.hub.clone(), self.retired.clone());
        let result = tokio::task::spawn_blocking(move || -> Result<Reloaded, io::Error> {
            let err = |e: &dyn std::fmt::Display| fail(&what2, e);
            // The whole install runs while the replica is open; a Close waits for it to finish.
            let _open = retired.hold(shard).map_err(|e| err(&e))?;
            let mut batch = sled::Batch::default();
            for key in tree.iter().keys() {
                batch.remove(key.map_err(|e| err(&e))?);
            }
            for (k, v) in body.rows {
                batch.insert(k, v);
            }
            batch.insert(APPLIED, seal(&meta2.last_log_id).map_err(|e| err(&e))?);
            batch.insert(MEMBERSHIP, seal(&meta2.last_membership).map_err(|e| err(&e))?);
            batch.insert(REVISION, seal(&body.revision).map_err(|e| err(&e))?);
            {
                // The rows jump to another revision: watchers' histories no longer connect.
                let mut hub = hub.lock();
                tree.apply_batch(batch).map_err(|e| err(&e))?;
                hub.reset(body.revision);
            }
            let saved = file.save(&meta2, &payload).map_err(|e| err(&e))?;
            if !saved {
                tracing::info!(%shard, "installed snapshot not stored: the stored one is as new");
            }
            let leases = load_leases(shard, &tree).map_err(|e| err(&e))?;
            let sessions = load_sessions(shard, &tree).map_err(|e| err(&e))?;
            Ok((leases, sessions))
        })
        .await;
        let ((leases, followed), sessions) = result.map_err(|e| fail(&what, e))??;
        self.clock.reset(leases, followed);
        self.sessions = sessions;
        self.progress.revision.store(revision, Ordering::Release);
        self.progress.applied.store(meta.last_log_id.map_or(0, |l| l.index), Ordering::Release);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let file = self.snapshot_file.clone();
        let what = format!("shard {}: reading the snapshot file", self.shard);
        let loaded = tokio::task::spawn_blocking(move || file.load())
            .await
            .map_err(|e| fail(&what, e))?
            .map_err(|e| fail(&what, e))?;
        Ok(loaded.map(|(meta, payload)| Snapshot { meta, snapshot: Cursor::new(payload) }))
    }
}

/// Builds a snapshot of the rows captured when it was created.
pub struct SnapshotBuilder {
    shard: ShardId,
    file: SnapshotFile,
    retired: Retired,
    captured: Option<Result<SnapshotBody, io::Error>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let body = self.captured.take().unwrap_or_else(|| Err(io::Error::other("snapshot builder used twice")))?;
        let (file, shard, retired) = (self.file.clone(), self.shard, self.retired.clone());
        let started = std::time::Instant::now();
        let what = format!("shard {shard}: building a snapshot");
        let what2 = what.clone();
        let snapshot = tokio::task::spawn_blocking(move || -> Result<Snapshot, io::Error> {
            let payload = encode_payload(&body).map_err(|e| fail(&what2, e))?;
            let meta = SnapshotMeta { last_log_id: body.last_applied, last_membership: body.membership };
            // A build that started before a Close must not recreate the file it deleted.
            let _open = retired.hold(shard).map_err(|e| fail(&what2, e))?;
            let saved = file.save(&meta, &payload).map_err(|e| fail(&what2, e))?;
            if !saved {
                // An install overtook this build; openraft ignores the older snapshot too.
                tracing::info!(%shard, "built snapshot not stored: a newer one is");
            }
            Ok(Snapshot { meta, snapshot: Cursor::new(payload) })
        })
        .await
        .map_err(|e| fail(&what, e))??;
        tracing::info!(
            shard = %self.shard,
            snapshot = %snapshot.meta.last_log_id.map_or_else(|| "nothing".to_string(), |l| l.to_string()),
            bytes = snapshot.snapshot.get_ref().len(),
            ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(snapshot)
    }
}
