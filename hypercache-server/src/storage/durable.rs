//! A flush that survives a power cut.
//!
//! sled 0.34's `Db::flush` writes its log buffers and, on Linux, ends with `sync_file_range`
//! (sled's `pagecache/iobuf.rs`): the pages are written, but neither the file's size and extents
//! (metadata) nor the disk's write cache are committed. Only its background flusher thread calls
//! `fsync`, and we run without it (`flush_every_ms(None)`: group commit is ours). After a power
//! cut the data file was as long as its last real fsync, often its first few hundred bytes: a
//! node came back with no Raft state at all, and a cluster whose nodes all did re-initialized
//! itself empty, every acknowledged write lost. The chaos suite's `power` nemesis found it
//! (`jepsen/src/chaos/target/disk.rs`, docs/chaos.md): `hcjepsen test --workload set --nemesis
//! power --time-limit 30`, seeds 1-3, kept 248, 276 and 284 of 2,346, 2,510 and 2,486
//! acknowledged adds before this fix, all of them after. A bare loop of single-key sled batches,
//! each followed by `Db::flush`, kept 0 of 21,053 acknowledged keys across a cut, and all 4,523
//! with the `fdatasync` (2026-12-06, this 2-core machine).
//!
//! [`DurableFlush::flush`] is therefore `Db::flush` followed by `fdatasync` of sled's data file
//! and of every value file sled wrote since (items over ~128 KiB are stored in files of their
//! own under `blobs/`, written without any sync), then of that directory. sled's `conf` file
//! and directories are synced once when the database opens ([`super::open_db`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hypercache_proto::poison::lock;

/// sled's data file in its directory.
const DATA_FILE: &str = "db";
/// sled's directory of large items.
const BLOBS: &str = "blobs";

/// Why a flush did not make the writes durable. Every waiter of a group flush gets the same
/// error, hence `Clone` (the sources are shared).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    #[error("sled flush failed: {0}")]
    Sled(Arc<sled::Error>),
    #[error("fdatasync of sled's data file failed: {0}")]
    DataSync(Arc<std::io::Error>),
    #[error("syncing sled's blob files failed: {0}")]
    BlobSync(Arc<std::io::Error>),
    /// The blocking thread running the flush panicked or was cancelled.
    #[error("sled flush task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Log(#[from] super::wal::WalError),
    #[error("flusher stopped: node is shutting down")]
    Stopped,
    #[error("flusher stopped before completing")]
    Abandoned,
}

/// Flushes a sled `Db` and makes what it wrote durable (see the module docs). Clones share the
/// open data file.
#[derive(Clone)]
pub struct DurableFlush {
    db: sled::Db,
    data: Arc<File>,
    blobs: PathBuf,
    /// Blob files already synced (they never change once written).
    synced: Arc<Mutex<HashSet<OsString>>>,
}

impl DurableFlush {
    /// For `db`, opened by [`super::open_db`] on `data_dir`.
    pub fn new(db: &sled::Db, data_dir: &Path) -> std::io::Result<DurableFlush> {
        let dir = super::sled_dir(data_dir);
        let data = File::open(dir.join(DATA_FILE))?;
        Ok(DurableFlush { db: db.clone(), data: Arc::new(data), blobs: dir.join(BLOBS), synced: Arc::default() })
    }

    /// Everything written to the `Db` before the call is on disk when it returns `Ok`.
    /// Blocking: call from a blocking thread.
    pub fn flush(&self) -> Result<(), FlushError> {
        self.db.flush().map_err(|e| FlushError::Sled(Arc::new(e)))?;
        self.data.sync_data().map_err(|e| FlushError::DataSync(Arc::new(e)))?;
        self.sync_new_blobs().map_err(|e| FlushError::BlobSync(Arc::new(e)))
    }

    fn sync_new_blobs(&self) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = lock(&self.synced);
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // sled removed it meanwhile (an obsolete item): nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            File::open(&self.blobs)?.sync_all()?;
        }
        *synced = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_and_syncs_blob_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_db(dir.path(), 4 << 20).unwrap();
        let durable = DurableFlush::new(&db, dir.path()).unwrap();
        db.insert(b"small", &b"v"[..]).unwrap();
        // Over sled's blob threshold: stored in a file of its own.
        db.insert(b"large", vec![7u8; 600 * 1024]).unwrap();
        durable.flush().unwrap();
        let blobs = std::fs::read_dir(dir.path().join("sled").join(BLOBS)).unwrap().count();
        assert!(blobs >= 1, "the large value should be a blob file");
        assert_eq!(durable.synced.lock().unwrap().len(), blobs);
        durable.flush().unwrap();
        drop((durable, db));
        let db = super::super::open_db(dir.path(), 4 << 20).unwrap();
        assert_eq!(db.get(b"large").unwrap().map(|v| v.len()), Some(600 * 1024));
    }
}
