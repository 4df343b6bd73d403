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

use std::io::Cursor;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};

use super::flusher::Flusher;
use super::reader::Progress;
use super::snapshot::{decode_payload, encode_payload, SnapshotBody, SnapshotFile};
use super::Retired;
use crate::encoding::record::{seal, unseal, RecordError};
use crate::lease_clock::LeaseClock;
use crate::machine::command::{Command, CommandResponse};
use crate::machine::overlay::{LeaseRecord, Overlay, LEASE, SESSION};
use crate::machine::session::{Limits, SessionRecord, Sessions};
use crate::raft_types::TypeConfig;
use crate::types::{home_of, ClientId, LeaseId, NodeId, NodeInfo, ShardId};
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

fn any(e: impl ToString) -> AnyError {
    AnyError::error(e.to_string())
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
    ) -> Result<Self, StorageError<NodeId>> {
        let sessions = load_sessions(shard, &tree).map_err(|e| StorageIOError::read_state_machine(any(e)))?;
        let sm =
            StateMachine { shard, tree, snapshot_file, retired, _flusher: flusher, progress, hub, clock, sessions };
        let (last, _) = sm.read_applied()?;
        sm.progress.applied.store(last.map_or(0, |l| l.index), Ordering::Release);
        let revision = sm.read_revision()?;
        sm.progress.revision.store(revision, Ordering::Release);
        sm.hub.lock().reset(revision);
        let (leases, followed) =
            load_leases(shard, &sm.tree).map_err(|e| StorageIOError::read_state_machine(any(e)))?;
        sm.clock.reset(leases, followed);
        Ok(sm)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<NodeId>> {
        match self.tree.get(key).map_err(|e| StorageIOError::read_state_machine(any(e)))? {
            None => Ok(None),
            Some(v) => unseal(&v).map(Some).map_err(|e| {
                StorageIOError::read_state_machine(any(format!(
                    "shard {}: state machine record {} is corrupt: {e}",
                    self.shard,
                    String::from_utf8_lossy(key)
                )))
                .into()
            }),
        }
    }

    fn read_revision(&self) -> Result<u64, StorageError<NodeId>> {
        Ok(self.read_meta(REVISION)?.unwrap_or(0))
    }

    #[allow(clippy::type_complexity)]
    fn read_applied(
        &self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>> {
        let last = self.read_meta::<Option<LogId<NodeId>>>(APPLIED)?.flatten();
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
pub(super) fn rebuild(
    tree: &sled::Tree,
    stored: Option<(SnapshotMeta<NodeId, NodeInfo>, Vec<u8>)>,
) -> Result<(), RebuildError> {
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

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>> {
        self.read_applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut ov = Overlay::new(self.shard, &self.tree);
        let mut responses = Vec::new();
        let mut last: Option<LogId<NodeId>> = None;
        let mut membership = None;
        let mut revision = self.progress.revision.load(Ordering::Acquire);
        for entry in entries {
            last = Some(entry.log_id);
            responses.push(match &entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Normal(Command::Batch(requests)) => {
                    let mut applied = Vec::with_capacity(requests.len());
                    for request in requests {
                        let a = crate::machine::apply(&mut ov, revision, request)
                            .map_err(|e| StorageIOError::apply(entry.log_id, any(e)))?;
                        revision = a.revision;
                        applied.push(a);
                    }
                    CommandResponse::Batch(applied)
                }
                EntryPayload::Normal(Command::Tracked { time_ms, requests }) => {
                    let fail = |e| StorageIOError::apply(entry.log_id, any(e));
                    let log_clock = self.sessions.advance(&mut ov, *time_ms).map_err(fail)?;
                    let mut applied = Vec::with_capacity(requests.len());
                    for t in requests {
                        let a = match &t.write {
                            None => crate::machine::apply(&mut ov, revision, &t.request),
                            Some(w) => self.sessions.apply(&mut ov, log_clock, revision, w, &t.request),
                        }
                        .map_err(fail)?;
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
        let fail = |e: sled::Error| StorageIOError::apply(last, any(e));
        let applied = seal(&Some(last)).map_err(|e| StorageIOError::apply(last, any(e)))?;
        let revision_rec = seal(&revision).map_err(|e| StorageIOError::apply(last, any(e)))?;
        let membership = match membership {
            Some(m) => Some(seal(&m).map_err(|e| StorageIOError::apply(last, any(e)))?),
            None => None,
        };
        {
            // Write and publish under the hub lock: see the module comment.
            let mut hub = self.hub.lock();
            for (key, value) in ov.into_changes() {
                match value {
                    Some(v) => self.tree.insert(key, v).map_err(fail)?,
                    None => self.tree.remove(key).map_err(fail)?,
                };
            }
            self.tree.insert(REVISION, revision_rec).map_err(fail)?;
            if let Some(m) = membership {
                self.tree.insert(MEMBERSHIP, m).map_err(fail)?;
            }
            self.tree.insert(APPLIED, applied).map_err(fail)?;
            hub.publish(self.hub.limits(), revision, events);
        }
        self.clock.apply(&lease_changes);
        self.progress.revision.store(revision, Ordering::Release);
        self.progress.applied.store(last.index, Ordering::Release);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Capture the rows now: the state-machine worker applies nothing until this returns, so
        // rows and applied index agree. Building the file happens later, off the apply path.
        let captured = match self.read_applied().and_then(|a| Ok((a, self.read_revision()?))) {
            Err(e) => Err(e),
            Ok(((last_applied, membership), revision)) => {
                let tree = self.tree.clone();
                tokio::task::spawn_blocking(move || -> Result<SnapshotBody, StorageError<NodeId>> {
                    let mut rows = Vec::new();
                    // Everything but the `m` records, which the snapshot carries as fields.
                    for item in tree.iter() {
                        let (k, v) = item.map_err(|e| StorageIOError::read_state_machine(any(e)))?;
                        if k.first() != Some(&META) {
                            rows.push((k.to_vec(), v.to_vec()));
                        }
                    }
                    Ok(SnapshotBody { last_applied, membership, revision, rows })
                })
                .await
                .map_err(|e| StorageIOError::read_state_machine(any(e)).into())
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let sig = Some(meta.signature());
        let payload = snapshot.into_inner();
        let body = decode_payload(&payload).map_err(|e| {
            StorageIOError::read_snapshot(sig.clone(), any(format!("shard {}: refusing snapshot: {e}", self.shard)))
        })?;
        tracing::info!(shard = %self.shard, snapshot = %meta.snapshot_id, rows = body.rows.len(), "installing snapshot");
        let revision = body.revision;
        let (tree, file, meta2) = (self.tree.clone(), self.snapshot_file.clone(), meta.clone());
        let (sig2, shard, hub, retired) = (sig.clone(), self.shard, self.hub.clone(), self.retired.clone());
        let result = tokio::task::spawn_blocking(move || -> Result<Reloaded, StorageError<NodeId>> {
            // The whole install runs while the replica is open; a Close waits for it to finish.
            let _open = retired.hold(shard).map_err(|e| StorageIOError::write_snapshot(sig2.clone(), any(e)))?;
            let mut batch = sled::Batch::default();
            for key in tree.iter().keys() {
                batch.remove(key.map_err(|e| StorageIOError::write_state_machine(any(e)))?);
            }
            for (k, v) in body.rows {
                batch.insert(k, v);
            }
            let seal_err = |e| StorageIOError::write_snapshot(sig2.clone(), any(e));
            batch.insert(APPLIED, seal(&meta2.last_log_id).map_err(seal_err)?);
            batch.insert(MEMBERSHIP, seal(&meta2.last_membership).map_err(seal_err)?);
            batch.insert(REVISION, seal(&body.revision).map_err(seal_err)?);
            {
                // The rows jump to another revision: watchers' histories no longer connect.
                let mut hub = hub.lock();
                tree.apply_batch(batch).map_err(|e| StorageIOError::write_state_machine(any(e)))?;
                hub.reset(body.revision);
            }
            let saved = file.save(&meta2, &payload).map_err(|e| StorageIOError::write_snapshot(sig2.clone(), any(e)))?;
            if !saved {
                tracing::info!(%shard, snapshot = %meta2.snapshot_id, "installed snapshot not stored: the stored one is as new");
            }
            let leases = load_leases(shard, &tree).map_err(|e| StorageIOError::read_state_machine(any(e)))?;
            let sessions = load_sessions(shard, &tree).map_err(|e| StorageIOError::read_state_machine(any(e)))?;
            Ok((leases, sessions))
        })
        .await;
        let ((leases, followed), sessions) =
            result.map_err(|e| StorageIOError::write_snapshot(sig.clone(), any(e)))??;
        self.clock.reset(leases, followed);
        self.sessions = sessions;
        self.progress.revision.store(revision, Ordering::Release);
        self.progress.applied.store(meta.last_log_id.map_or(0, |l| l.index), Ordering::Release);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let file = self.snapshot_file.clone();
        let loaded = tokio::task::spawn_blocking(move || file.load())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(loaded.map(|(meta, payload)| Snapshot { meta, snapshot: Box::new(Cursor::new(payload)) }))
    }
}

/// Builds a snapshot of the rows captured when it was created.
pub struct SnapshotBuilder {
    shard: ShardId,
    file: SnapshotFile,
    retired: Retired,
    captured: Option<Result<SnapshotBody, StorageError<NodeId>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let body = self
            .captured
            .take()
            .unwrap_or_else(|| Err(StorageIOError::write_snapshot(None, any("snapshot builder used twice")).into()))?;
        let (file, shard, retired) = (self.file.clone(), self.shard, self.retired.clone());
        let started = std::time::Instant::now();
        let snapshot = tokio::task::spawn_blocking(move || -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
            let payload = encode_payload(&body).map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
            let snapshot_id = match body.last_applied {
                Some(l) => format!("{shard}-{}-{}-{}", l.leader_id.term, l.index, unique_suffix()),
                None => format!("{shard}-empty-{}", unique_suffix()),
            };
            let meta = SnapshotMeta { last_log_id: body.last_applied, last_membership: body.membership, snapshot_id };
            // A build that started before a Close must not recreate the file it deleted.
            let _open = retired.hold(shard).map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
            let saved = file
                .save(&meta, &payload)
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)))?;
            if !saved {
                // An install overtook this build; openraft ignores the older snapshot too.
                tracing::info!(%shard, snapshot = %meta.snapshot_id, "built snapshot not stored: a newer one is");
            }
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(payload)) })
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, any(e)))??;
        tracing::info!(
            shard = %self.shard,
            snapshot = %snapshot.meta.snapshot_id,
            bytes = snapshot.snapshot.get_ref().len(),
            ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(snapshot)
    }
}

/// Distinguishes two snapshots built at the same log id (openraft requires distinct ids).
fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
