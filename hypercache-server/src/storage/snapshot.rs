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
//!
//! openraft may build a snapshot while it installs one (the build runs off the state-machine
//! worker), so two saves of one shard can overlap. Each save therefore writes its own temporary
//! file (`shard-<id>.snap.<n>.tmp`), and the saves of a shard are serialized by a lock that also
//! remembers the stored snapshot's last log id: a snapshot no newer than the stored one is not
//! written. The newest snapshot always wins, as in openraft's own bookkeeping (`update_snapshot`
//! ignores older ones), so the file is never older than the snapshot openraft purges the log up
//! to. Leftover temporary files of a crash are removed when the shard opens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::raft_types::{LogId, SnapshotMeta, StoredMembership};
use hypercache_proto::poison::lock;
use serde::{Deserialize, Serialize};

use crate::encoding::record::{self, seal, unseal};
use crate::types::ShardId;

const MAGIC: &[u8; 8] = b"HCSNAP01";

/// The state machine at one log index.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
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
pub type Stored = (SnapshotMeta, Vec<u8>);

/// The snapshot file of one shard. Clones share the save lock.
#[derive(Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    shard: ShardId,
    /// Held for a whole save; what the file holds, once known.
    stored: Arc<Mutex<Known>>,
}

/// What the snapshot file holds, as far as this handle knows.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// Not read yet: the first save reads the file.
    Unknown,
    /// No snapshot (or an unreadable one, which a save may replace).
    Nothing,
    /// A snapshot up to this log id.
    At(Option<LogId>),
}

/// Makes every temporary file name unique within the process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    payload: Vec<u8>,
}

impl SnapshotFile {
    pub fn new(data_dir: &Path, shard: ShardId) -> SnapshotFile {
        SnapshotFile {
            path: data_dir.join("snapshots").join(format!("shard-{shard}.snap")),
            shard,
            stored: Arc::new(Mutex::new(Known::Unknown)),
        }
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Whether `name` is one of this shard's temporary files (`shard-<id>.snap.tmp` is the name
    /// earlier versions used).
    fn is_tmp(&self, name: &str) -> bool {
        name.strip_prefix(&format!("shard-{}.snap.", self.shard)).is_some_and(|rest| rest.ends_with("tmp"))
    }

    /// Removes temporary files a crash left behind. Call before the shard's first save. Blocking.
    pub fn remove_leftovers(&self) -> Result<(), SnapshotError> {
        let entries = match std::fs::read_dir(self.dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io(e))?;
            if entry.file_name().to_str().is_some_and(|name| self.is_tmp(name)) {
                std::fs::remove_file(entry.path()).map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> SnapshotError {
        SnapshotError::Io { path: self.path.clone(), source }
    }

    /// Durably replaces the stored snapshot, unless the stored one is at least as new (then
    /// nothing is written and the answer is `false`). Blocking: call from a blocking thread; it
    /// waits for a concurrent save of the same shard.
    pub fn save(&self, meta: &SnapshotMeta, payload: &[u8]) -> Result<bool, SnapshotError> {
        // A panic in another save leaves nothing half-done that the lock protects: the file is
        // replaced by rename, and `Known` is updated only after it.
        let mut stored = lock(&self.stored);
        if let Known::Unknown = *stored {
            *stored = match self.load() {
                Ok(Some((m, _))) => Known::At(m.last_log_id),
                Ok(None) | Err(_) => Known::Nothing,
            };
        }
        if let Known::At(current) = *stored {
            if meta.last_log_id <= current {
                return Ok(false);
            }
        }
        let dir = self.dir();
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let rec = seal(&StoredSnapshot { meta: meta.clone(), payload: payload.to_vec() })?;
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("shard-{}.snap.{seq}.tmp", self.shard));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&rec)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            // Best effort: a leftover is also removed at the next open.
            let _ = std::fs::remove_file(&tmp);
            return Err(self.io(e));
        }
        *stored = Known::At(meta.last_log_id);
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| self.io(e))?;
        Ok(true)
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
    use crate::raft_types::CommittedLeaderId;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId { term: 1, node_id: 1 }, index)),
            last_membership: StoredMembership::default(),
        }
    }

    fn payload(index: u64, rows: usize) -> Vec<u8> {
        let rows = (0..rows).map(|i| (format!("k{i:06}").into_bytes(), vec![index as u8; 64])).collect();
        let body = SnapshotBody {
            last_applied: meta(index).last_log_id,
            membership: Default::default(),
            revision: index,
            rows,
        };
        encode_payload(&body).unwrap()
    }

    fn stored_index(file: &SnapshotFile) -> Option<u64> {
        file.load().unwrap().and_then(|(m, _)| m.last_log_id).map(|l| l.index)
    }

    /// A build that captured its rows before an install finishes after it: the older snapshot
    /// must not replace the newer one (openraft already purged the log up to the newer one).
    #[test]
    fn an_older_snapshot_saved_last_does_not_replace_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path(), ShardId(3));
        file.save(&meta(200), &payload(200, 10)).unwrap();
        file.save(&meta(100), &payload(100, 10)).unwrap();
        assert_eq!(stored_index(&file), Some(200), "the stored snapshot went back");
        file.save(&meta(300), &payload(300, 10)).unwrap();
        assert_eq!(stored_index(&file), Some(300));
        // Another handle on the same file (a reopened shard) knows what is stored too.
        let reopened = SnapshotFile::new(dir.path(), ShardId(3));
        reopened.save(&meta(250), &payload(250, 10)).unwrap();
        assert_eq!(stored_index(&reopened), Some(300));
    }

    #[test]
    fn leftover_temporary_files_of_this_shard_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path(), ShardId(3));
        file.save(&meta(5), &payload(5, 1)).unwrap();
        let snaps = dir.path().join("snapshots");
        for name in ["shard-3.snap.7.tmp", "shard-3.snap.tmp", "shard-30.snap.1.tmp"] {
            std::fs::write(snaps.join(name), b"half").unwrap();
        }
        file.remove_leftovers().unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&snaps).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["shard-3.snap", "shard-30.snap.1.tmp"]);
    }

    /// A build and an install saving at the same time (openraft allows it): every save succeeds,
    /// and the stored snapshot is whole and the newest.
    #[test]
    fn concurrent_saves_never_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path(), ShardId(3));
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let file = file.clone();
                std::thread::spawn(move || {
                    for round in 0..40u64 {
                        let index = 10 + round * 2 + t;
                        file.save(&meta(index), &payload(index, 2_000)).unwrap_or_else(|e| panic!("save {index}: {e}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stored_index(&file), Some(10 + 39 * 2 + 1));
    }

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
