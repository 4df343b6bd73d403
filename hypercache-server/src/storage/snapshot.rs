//! Snapshot payloads and snapshot files.
//!
//! A snapshot payload (what openraft ships to a follower, in chunks of at most 1 MiB) is
//! `MAGIC ++ crc32(body) ++ body` with `body = postcard(SnapshotBody)`: the raw state-machine
//! rows. The receiver verifies the checksum before installing anything, so a damaged transfer is
//! refused instead of becoming a divergent replica.
//!
//! The latest snapshot of a shard is kept in `<data_dir>/snapshots/shard-<id>.snap` as a sealed
//! record of `(SnapshotMeta, payload)`, written to a temporary file, fsynced and renamed over the
//! old one, so a crash leaves either the old or the new snapshot, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use openraft::{LogId, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use super::record::{self, seal, unseal};
use crate::types::{NodeId, NodeInfo, ShardId};

const MAGIC: &[u8; 8] = b"HCSNAP01";

/// The state machine at one log index.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, NodeInfo>,
    /// The shard's revision counter.
    pub revision: u64,
    /// Every row of the `sm` tree except the `m` records, as stored: (sled key, sealed value).
    /// Rows, leases and counters (see `machine/overlay.rs`).
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot payload does not start with {MAGIC:?}")]
    BadMagic,
    #[error("snapshot payload: {0}")]
    Record(#[from] record::RecordError),
    #[error("snapshot file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub fn encode_payload(body: &SnapshotBody) -> Result<Vec<u8>, SnapshotError> {
    let sealed = seal(body)?;
    let mut out = Vec::with_capacity(MAGIC.len() + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&sealed);
    Ok(out)
}

pub fn decode_payload(payload: &[u8]) -> Result<SnapshotBody, SnapshotError> {
    let rest = payload.strip_prefix(MAGIC.as_slice()).ok_or(SnapshotError::BadMagic)?;
    Ok(unseal(rest)?)
}

/// A stored snapshot: its metadata and payload.
pub type Stored = (SnapshotMeta<NodeId, NodeInfo>, Vec<u8>);

/// The snapshot file of one shard.
#[derive(Clone)]
pub struct SnapshotFile {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    payload: Vec<u8>,
}

impl SnapshotFile {
    pub fn new(data_dir: &Path, shard: ShardId) -> SnapshotFile {
        SnapshotFile { path: data_dir.join("snapshots").join(format!("shard-{shard}.snap")) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> SnapshotError {
        SnapshotError::Io { path: self.path.clone(), source }
    }

    /// Durably replaces the stored snapshot. Blocking: call from a blocking thread.
    pub fn save(&self, meta: &SnapshotMeta<NodeId, NodeInfo>, payload: &[u8]) -> Result<(), SnapshotError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let rec = seal(&StoredSnapshot { meta: meta.clone(), payload: payload.to_vec() })?;
        let tmp = self.path.with_extension("snap.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
        f.write_all(&rec).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Reads and verifies the stored snapshot, if any. Blocking.
    pub fn load(&self) -> Result<Option<Stored>, SnapshotError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let stored: StoredSnapshot = unseal(&bytes)?;
        // The payload carries its own checksum too; check it now rather than on first send.
        decode_payload(&stored.payload)?;
        Ok(Some((stored.meta, stored.payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_corruption() {
        let body = SnapshotBody {
            last_applied: None,
            membership: StoredMembership::default(),
            revision: 7,
            rows: vec![(b"k".to_vec(), b"v".to_vec())],
        };
        let mut p = encode_payload(&body).unwrap();
        assert_eq!(decode_payload(&p).unwrap().rows, body.rows);
        let n = p.len() - 1;
        p[n] ^= 0x40;
        assert!(matches!(decode_payload(&p), Err(SnapshotError::Record(_))));
        assert!(matches!(decode_payload(b"nope"), Err(SnapshotError::BadMagic)));
    }
}
