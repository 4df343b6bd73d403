//! The node's Raft log: one append-only log of segment files shared by every shard (issue 19).
//!
//! Every shard's entries, votes, committed marks, truncations and purges are records in the same
//! files (`<data dir>/wal/<sequence>.wal`, format in [`format`]), so one group commit (`write` of
//! the batches, then one `fdatasync`, driven by a [`super::Flusher`]) makes a node's appends of
//! all shards durable at once, as one sequential write. sled keeps only the state machines.
//!
//! - **Index.** Each shard's live entries are known by position ([`index::ShardLog`]); reads are
//!   positional reads of the sealed entry, verified again. A write goes to the page cache under
//!   the log's lock (like sled's insert before) and is durable after the next [`Wal::sync`].
//! - **Segments.** A segment is closed at about `segment_bytes`: it is synced, and the next one
//!   starts with a *checkpoint* (every shard's Open, vote, committed mark and purge point), so a
//!   segment older than the oldest live entry of every shard holds nothing needed and is
//!   deleted after a sync. A shard that stays idle would pin old segments forever: when more
//!   than [`MAX_SEGMENTS`] are live, the entries of the shards pinning the oldest are rewritten
//!   into the newest.
//! - **Recovery.** [`Wal::open`] replays every segment in order, verifying every batch and every
//!   entry. A bad batch at the end of the newest segment with nothing valid after it is a write
//!   torn by a crash (never acknowledged: it was not synced) and is cut off; anything else is
//!   corruption, a startup error naming the file, the byte and the shards whose records it held.
//!   Every start begins a new segment.
//! - **Failure.** A failed write or sync leaves the log unusable until the node restarts (an
//!   fsync error must not be retried: the kernel may have dropped the pages).

pub mod format;
mod index;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::raft_types::{Entry, LogId, Vote};
use hypercache_proto::poison::lock;

use self::format::{BatchBuilder, Kind, BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use self::index::{Loc, ShardLog};
use super::OpenError;
use crate::encoding::record::{seal, unseal, RecordError};
use crate::types::ShardId;

/// Live segments beyond which idle shards' entries are rewritten forward.
pub const MAX_SEGMENTS: usize = 4;

/// The log's directory in a node's data dir.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn segment_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

/// Why a write to or read from the log failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("raft log {path}: {source}")]
    Io { path: PathBuf, source: Arc<io::Error> },
    #[error("raft log: encoding a record: {0}")]
    Encode(Arc<RecordError>),
    #[error("raft log unusable after an earlier failure ({0}); the node must restart")]
    Failed(String),
    #[error("raft log opened read-only (for inspection): nothing may be written")]
    ReadOnly,
    #[error("raft log: shard {0} has no replica on this node (closed)")]
    NoShard(ShardId),
    #[error("raft log: shard {shard}: no entry at index {index}")]
    Missing { shard: ShardId, index: u64 },
    #[error("raft log: shard {shard}: log entry at index {index} ({path} byte {offset}) is corrupt: {detail}")]
    Corrupt { shard: ShardId, index: u64, path: PathBuf, offset: u64, detail: String },
}

fn io_error(path: &Path, e: io::Error) -> WalError {
    WalError::Io { path: path.to_owned(), source: Arc::new(e) }
}

/// Handle to the node's log. Clones share it.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    segment_bytes: u64,
    /// Opened for an offline look ([`Wal::open_read_only`]): every write and sync is refused.
    read_only: bool,
    state: Mutex<State>,
}

struct State {
    shards: BTreeMap<ShardId, ShardLog>,
    /// Every live segment, oldest first.
    files: BTreeMap<u64, Arc<File>>,
    current: u64,
    /// Bytes written to the current segment.
    len: u64,
    /// Where the current segment's own records start (after its header and checkpoint).
    start: u64,
    failed: Option<String>,
}

impl State {
    fn file(&self, seq: u64) -> Option<Arc<File>> {
        self.files.get(&seq).cloned()
    }

    /// Segments older than this hold no live entry.
    fn needed_from(&self) -> u64 {
        self.shards.values().filter_map(ShardLog::first_segment).min().unwrap_or(self.current).min(self.current)
    }
}

/// Every shard's metadata, as the records that begin a new segment.
fn checkpoint(shards: &BTreeMap<ShardId, ShardLog>) -> Result<BatchBuilder, WalError> {
    let enc = |e| WalError::Encode(Arc::new(e));
    let mut b = BatchBuilder::new();
    for (&shard, s) in shards {
        b.record(Kind::Open, shard, &[]);
        if let Some(v) = &s.vote {
            b.record(Kind::Vote, shard, &seal(v).map_err(enc)?);
        }
        if let Some(p) = &s.last_purged {
            b.record(Kind::Purge, shard, &seal(p).map_err(enc)?);
        }
        if s.committed.is_some() {
            b.record(Kind::Committed, shard, &seal(&s.committed).map_err(enc)?);
        }
    }
    Ok(b)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, replaying and verifying every segment, and starts a
    /// new segment. Blocking.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Wal, OpenError> {
        let files = |e: io::Error| OpenError::Files(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(files)?;
        let (stale, replayed) = Self::replay(dir, true)?;
        for seq in stale {
            let path = segment_path(dir, seq);
            std::fs::remove_file(&path).map_err(|e| OpenError::Files(format!("{}: {e}", path.display())))?;
        }
        let current = replayed.next_seq;
        let state = State {
            shards: replayed.shards,
            files: replayed.files,
            current: current - 1,
            len: 0,
            start: 0,
            failed: None,
        };
        let inner = Inner { dir: dir.to_owned(), segment_bytes, read_only: false, state: Mutex::new(state) };
        let wal = Wal { inner: Arc::new(inner) };
        {
            let mut st = lock(&wal.inner.state);
            wal.start_segment(&mut st, current).map_err(|e| OpenError::Files(e.to_string()))?;
        }
        Ok(wal)
    }

    /// Opens the log in `dir` for reading only, as it is on disk (an offline post-mortem: the
    /// node is stopped): nothing is cut, removed, created or synced, and every write is refused.
    /// Returns it with what a start would repair (a torn tail, an interrupted segment, segments
    /// left behind a gap), in words. Blocking.
    pub fn open_read_only(dir: &Path) -> Result<(Wal, Vec<String>), OpenError> {
        if !dir.is_dir() {
            return Err(OpenError::NoLog(dir.to_owned()));
        }
        let (stale, replayed) = Self::replay(dir, false)?;
        let mut notes = replayed.notes;
        if !stale.is_empty() {
            notes.push(format!(
                "segments {stale:?} are left behind a gap (deleted, the unlink not yet durable): ignored"
            ));
        }
        let current = replayed.files.keys().next_back().copied().unwrap_or(0);
        let state = State { shards: replayed.shards, files: replayed.files, current, len: 0, start: 0, failed: None };
        let inner = Inner { dir: dir.to_owned(), segment_bytes: u64::MAX, read_only: true, state: Mutex::new(state) };
        Ok((Wal { inner: Arc::new(inner) }, notes))
    }

    /// Replays the live segments of `dir` (repairing what a crash left, if `repair`). Returns the
    /// stale segments (left behind a gap) and what was replayed.
    fn replay(dir: &Path, repair: bool) -> Result<(Vec<u64>, replay::Replayed), OpenError> {
        let files = |e: io::Error| OpenError::Files(format!("{}: {e}", dir.display()));
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(files)? {
            let name = entry.map_err(files)?.file_name();
            if let Some(seq) = name.to_str().and_then(segment_seq) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        // Only the run of consecutive segments ending at the newest counts: older ones left
        // behind a gap were deleted (their unlink was not yet durable) and hold nothing needed,
        // as every segment starts with a checkpoint.
        let mut first = seqs.len();
        while first > 0 && (first == seqs.len() || seqs[first - 1] + 1 == seqs[first]) {
            first -= 1;
        }
        let (stale, live) = seqs.split_at(first);
        let mut replay = replay::Replay::new(repair);
        let mut open_files = BTreeMap::new();
        for (i, &seq) in live.iter().enumerate() {
            let path = segment_path(dir, seq);
            let last = i + 1 == live.len();
            if let Some(file) = replay.segment(&path, seq, last)? {
                open_files.insert(seq, Arc::new(file));
            }
        }
        let (shards, notes) = replay.finish()?;
        // After the newest segment kept (one whose creation a crash interrupted was removed, and
        // a gap before the new one would hide every older segment at the next start).
        let next_seq = open_files.keys().next_back().or(seqs.last()).map_or(1, |s| s + 1);
        Ok((stale.to_vec(), replay::Replayed { shards, files: open_files, notes, next_seq }))
    }

    /// Syncs the current segment, creates segment `seq` with its checkpoint and makes it current.
    fn start_segment(&self, st: &mut State, seq: u64) -> Result<(), WalError> {
        if let Some(old) = st.file(st.current) {
            old.sync_data().map_err(|e| io_error(&segment_path(&self.inner.dir, st.current), e))?;
        }
        let path = segment_path(&self.inner.dir, seq);
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(|e| io_error(&path, e))?;
        let mut bytes = format::segment_header(seq).to_vec();
        bytes.extend(checkpoint(&st.shards)?.finish());
        file.write_all_at(&bytes, 0).and_then(|()| file.sync_data()).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.inner.dir)?;
        st.files.insert(seq, Arc::new(file));
        st.current = seq;
        st.len = bytes.len() as u64;
        st.start = st.len;
        Ok(())
    }

    /// Writes one batch about `shard` and, once it is written, lets `apply` update the index
    /// with the segment and byte offset the batch starts at. Unless `opening`, the shard must be
    /// open, checked under the same lock as the write: a late write racing a Drop must not put
    /// records of a closed replica after its Drop (replay would bring the replica back).
    fn write(
        &self,
        shard: ShardId,
        opening: bool,
        batch: BatchBuilder,
        apply: impl FnOnce(&mut State, u64, u64),
    ) -> Result<(), WalError> {
        if self.inner.read_only {
            return Err(WalError::ReadOnly);
        }
        let bytes = batch.finish();
        let mut st = lock(&self.inner.state);
        if let Some(why) = &st.failed {
            return Err(WalError::Failed(why.clone()));
        }
        if !opening && !st.shards.contains_key(&shard) {
            return Err(WalError::NoShard(shard));
        }
        let result = self.write_locked(&mut st, &bytes);
        match result {
            Ok((segment, at)) => {
                apply(&mut st, segment, at);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "raft log write failed: the log takes no more writes until restart");
                st.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn write_locked(&self, st: &mut State, bytes: &[u8]) -> Result<(u64, u64), WalError> {
        if st.len + bytes.len() as u64 > self.inner.segment_bytes && st.len > st.start {
            self.start_segment(st, st.current + 1)?;
            if st.files.len() > MAX_SEGMENTS {
                self.rewrite_oldest(st)?;
            }
        }
        let file = st.file(st.current).ok_or_else(|| WalError::Failed("current segment missing".into()))?;
        let at = st.len;
        file.write_all_at(bytes, at).map_err(|e| io_error(&segment_path(&self.inner.dir, st.current), e))?;
        st.len += bytes.len() as u64;
        Ok((st.current, at))
    }

    /// Copies the live entries of the shards that keep the oldest segment alive into the current
    /// one, so the oldest can go at the next sync.
    fn rewrite_oldest(&self, st: &mut State) -> Result<(), WalError> {
        let Some(oldest) = st.files.keys().next().copied() else { return Ok(()) };
        let pinning: Vec<ShardId> =
            st.shards.iter().filter(|(_, s)| s.first_segment() == Some(oldest)).map(|(id, _)| *id).collect();
        let mut batch = BatchBuilder::new();
        let mut moved = Vec::new();
        for shard in pinning {
            let slots: Vec<_> = st.shards[&shard].entries.values().copied().collect();
            for slot in slots {
                let bytes = self.read_at(st, shard, slot.log_id.index, slot.loc)?;
                let at = batch.record(Kind::Entry, shard, &bytes);
                moved.push((shard, slot.log_id.index, at, bytes.len() as u32));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        tracing::info!(
            segment = oldest,
            entries = moved.len(),
            "rewriting idle shards' entries out of the oldest log segment"
        );
        let bytes = batch.finish();
        let file = st.file(st.current).ok_or_else(|| WalError::Failed("current segment missing".into()))?;
        file.write_all_at(&bytes, st.len).map_err(|e| io_error(&segment_path(&self.inner.dir, st.current), e))?;
        let (segment, base) = (st.current, st.len);
        st.len += bytes.len() as u64;
        for (shard, index, at, len) in moved {
            if let Some(s) = st.shards.get_mut(&shard) {
                s.relocate(index, Loc { segment, offset: base + at as u64, len });
            }
        }
        Ok(())
    }

    fn read_at(&self, st: &State, shard: ShardId, index: u64, loc: Loc) -> Result<Vec<u8>, WalError> {
        let file = st.file(loc.segment).ok_or(WalError::Missing { shard, index })?;
        read_loc(&self.inner.dir, &file, loc)
    }

    /// Makes everything written so far durable, then deletes segments nothing needs any more.
    /// Blocking: the flusher calls it on a blocking thread.
    pub fn sync(&self) -> Result<(), WalError> {
        if self.inner.read_only {
            return Err(WalError::ReadOnly);
        }
        let (file, seq, needed_from) = {
            let st = lock(&self.inner.state);
            if let Some(why) = &st.failed {
                return Err(WalError::Failed(why.clone()));
            }
            (st.file(st.current), st.current, st.needed_from())
        };
        if let Some(file) = file {
            if let Err(e) = file.sync_data() {
                let e = io_error(&segment_path(&self.inner.dir, seq), e);
                tracing::error!(error = %e, "raft log sync failed: the log takes no more writes until restart");
                lock(&self.inner.state).failed = Some(e.to_string());
                return Err(e);
            }
        }
        // Everything the bound was computed from was written before the sync began, so the
        // purges and truncations that freed those segments are durable now.
        let doomed: Vec<u64> = {
            let mut st = lock(&self.inner.state);
            let doomed: Vec<u64> = st.files.range(..needed_from).map(|(s, _)| *s).collect();
            for s in &doomed {
                st.files.remove(s);
            }
            doomed
        };
        if !doomed.is_empty() {
            for s in &doomed {
                let path = segment_path(&self.inner.dir, *s);
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
            sync_dir(&self.inner.dir)?;
            tracing::debug!(segments = ?doomed, "deleted raft log segments no shard needs");
        }
        Ok(())
    }

    /// The shards with a replica in the log.
    pub fn shards(&self) -> Vec<ShardId> {
        lock(&self.inner.state).shards.keys().copied().collect()
    }

    /// Records that `shard` has a replica here; true if the log did not know it before.
    pub fn open_shard(&self, shard: ShardId) -> Result<bool, WalError> {
        if lock(&self.inner.state).shards.contains_key(&shard) {
            return Ok(false);
        }
        let mut b = BatchBuilder::new();
        b.record(Kind::Open, shard, &[]);
        self.write(shard, true, b, |st, _, _| {
            st.shards.entry(shard).or_default();
        })?;
        Ok(true)
    }

    /// Forgets everything about `shard` (its replica was closed). Durable after the next sync.
    pub fn drop_shard(&self, shard: ShardId) -> Result<(), WalError> {
        let mut b = BatchBuilder::new();
        b.record(Kind::Drop, shard, &[]);
        self.write(shard, true, b, |st, _, _| {
            st.shards.remove(&shard);
        })
    }

    /// Appends sealed entries (their log ids and bytes), in index order. Durable after the next
    /// sync.
    pub fn append(&self, shard: ShardId, entries: Vec<(LogId, Vec<u8>)>) -> Result<(), WalError> {
        let mut b = BatchBuilder::new();
        let mut at = Vec::with_capacity(entries.len());
        for (log_id, bytes) in &entries {
            at.push((*log_id, b.record(Kind::Entry, shard, bytes), bytes.len() as u32));
        }
        self.write(shard, false, b, |st, segment, base| {
            if let Some(s) = st.shards.get_mut(&shard) {
                for (log_id, off, len) in at {
                    s.append(log_id, Loc { segment, offset: base + off as u64, len });
                }
            }
        })
    }

    pub fn set_vote(&self, shard: ShardId, vote: &Vote) -> Result<(), WalError> {
        let mut b = BatchBuilder::new();
        b.record(Kind::Vote, shard, &seal(vote).map_err(|e| WalError::Encode(Arc::new(e)))?);
        let vote = *vote;
        self.write(shard, false, b, |st, _, _| {
            if let Some(s) = st.shards.get_mut(&shard) {
                s.vote = Some(vote);
            }
        })
    }

    pub fn set_committed(&self, shard: ShardId, committed: Option<LogId>) -> Result<(), WalError> {
        let mut b = BatchBuilder::new();
        b.record(Kind::Committed, shard, &seal(&committed).map_err(|e| WalError::Encode(Arc::new(e)))?);
        self.write(shard, false, b, |st, _, _| {
            if let Some(s) = st.shards.get_mut(&shard) {
                s.committed = committed;
            }
        })
    }

    /// Deletes entries from index `from` on.
    pub fn truncate(&self, shard: ShardId, from: u64) -> Result<(), WalError> {
        let mut b = BatchBuilder::new();
        b.record(Kind::Truncate, shard, &from.to_le_bytes());
        self.write(shard, false, b, |st, _, _| {
            if let Some(s) = st.shards.get_mut(&shard) {
                s.truncate(from);
            }
        })
    }

    /// Deletes entries up to and including `upto`.
    pub fn purge(&self, shard: ShardId, upto: LogId) -> Result<(), WalError> {
        let mut b = BatchBuilder::new();
        b.record(Kind::Purge, shard, &seal(&upto).map_err(|e| WalError::Encode(Arc::new(e)))?);
        self.write(shard, false, b, |st, _, _| {
            if let Some(s) = st.shards.get_mut(&shard) {
                s.purge(upto);
            }
        })
    }

    pub fn vote(&self, shard: ShardId) -> Option<Vote> {
        lock(&self.inner.state).shards.get(&shard).and_then(|s| s.vote)
    }

    pub fn committed(&self, shard: ShardId) -> Option<LogId> {
        lock(&self.inner.state).shards.get(&shard).and_then(|s| s.committed)
    }

    /// (last purged, last) log ids of `shard`.
    pub fn log_state(&self, shard: ShardId) -> (Option<LogId>, Option<LogId>) {
        let st = lock(&self.inner.state);
        st.shards.get(&shard).map_or((None, None), |s| (s.last_purged, s.last_log_id()))
    }

    /// The entries of `shard` in `range` that the log holds, in order. Blocking (positional
    /// reads, usually from the page cache).
    pub fn entries(&self, shard: ShardId, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, WalError> {
        let wanted: Vec<(u64, Loc, Arc<File>)> = {
            let st = lock(&self.inner.state);
            let Some(s) = st.shards.get(&shard) else { return Ok(Vec::new()) };
            let mut wanted = Vec::new();
            for (&index, slot) in s.entries.range(range) {
                let file = st.file(slot.loc.segment).ok_or(WalError::Missing { shard, index })?;
                wanted.push((index, slot.loc, file));
            }
            wanted
        };
        let mut out = Vec::with_capacity(wanted.len());
        for (index, loc, file) in wanted {
            let bytes = read_loc(&self.inner.dir, &file, loc)?;
            let entry: Entry = unseal(&bytes).map_err(|e| WalError::Corrupt {
                shard,
                index,
                path: segment_path(&self.inner.dir, loc.segment),
                offset: loc.offset,
                detail: e.to_string(),
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The file and byte offset of an entry's sealed bytes (diagnostics and tests).
    pub fn entry_position(&self, shard: ShardId, index: u64) -> Option<(PathBuf, u64)> {
        let st = lock(&self.inner.state);
        let slot = st.shards.get(&shard)?.entries.get(&index)?;
        Some((segment_path(&self.inner.dir, slot.loc.segment), slot.loc.offset))
    }

    /// How many segment files are live.
    pub fn segments(&self) -> usize {
        lock(&self.inner.state).files.len()
    }
}

fn read_loc(dir: &Path, file: &File, loc: Loc) -> Result<Vec<u8>, WalError> {
    let mut buf = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset).map_err(|e| io_error(&segment_path(dir, loc.segment), e))?;
    Ok(buf)
}

mod replay {
    //! Rebuilding the index from the segments at startup.

    use super::*;

    pub(super) struct Replay {
        shards: BTreeMap<ShardId, ShardLog>,
        /// Cut a torn tail and remove an interrupted segment (a start), or only say so (a look).
        repair: bool,
        /// What a start would repair, found while not repairing.
        notes: Vec<String>,
    }

    /// A replayed log: the shards, the live segments, what a start would repair, and the
    /// sequence number the next segment gets.
    pub(super) struct Replayed {
        pub shards: BTreeMap<ShardId, ShardLog>,
        pub files: BTreeMap<u64, Arc<File>>,
        pub notes: Vec<String>,
        pub next_seq: u64,
    }

    fn corrupt(path: &Path, offset: u64, detail: String) -> OpenError {
        OpenError::CorruptLog { path: path.to_owned(), offset, detail }
    }

    /// Names the shards (and first entry) a damaged batch seems to hold, as far as its record
    /// headers still parse: the operator learns which replicas to rebuild.
    fn describe_damaged(bytes: &[u8]) -> String {
        if bytes.len() < BATCH_HEADER_LEN {
            return String::new();
        }
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let payload = &bytes[BATCH_HEADER_LEN..(BATCH_HEADER_LEN + len).min(bytes.len())];
        let Ok(records) = format::records(payload) else { return String::new() };
        let mut shards: Vec<String> = records.iter().map(|r| format!("shard {}", r.shard)).collect();
        shards.dedup();
        if shards.is_empty() {
            return String::new();
        }
        format!("; the batch holds records of {}", shards.join(", "))
    }

    impl Replay {
        pub(super) fn new(repair: bool) -> Replay {
            Replay { shards: BTreeMap::new(), repair, notes: Vec::new() }
        }

        /// Replays one segment. Returns its file, opened for reading and writing, or None when it
        /// was the newest and held nothing (a segment whose creation a crash interrupted).
        pub(super) fn segment(&mut self, path: &Path, seq: u64, last: bool) -> Result<Option<File>, OpenError> {
            let files = |e: io::Error| OpenError::Files(format!("{}: {e}", path.display()));
            let file = OpenOptions::new().read(true).write(self.repair).open(path).map_err(files)?;
            let data = std::fs::read(path).map_err(files)?;
            match format::parse_segment_header(&data) {
                Some(s) if s == seq => {}
                _ if last
                    && !(SEGMENT_HEADER_LEN as usize..data.len()).any(|q| format::read_batch(&data[q..]).is_ok()) =>
                {
                    if !self.repair {
                        self.notes.push(format!("{}: a segment whose creation was interrupted", path.display()));
                        return Ok(None);
                    }
                    tracing::warn!(path = %path.display(), "removing a raft log segment whose creation was interrupted");
                    drop(file);
                    std::fs::remove_file(path).map_err(files)?;
                    return Ok(None);
                }
                _ => return Err(corrupt(path, 0, "not a raft log segment header (or another segment's)".into())),
            }
            let mut at = SEGMENT_HEADER_LEN as usize;
            while at < data.len() {
                match format::read_batch(&data[at..]) {
                    Ok((payload, len)) => {
                        self.batch(path, seq, at as u64, payload)?;
                        at += len;
                    }
                    Err(e) => {
                        let valid_later = (at + 1..data.len()).any(|q| format::read_batch(&data[q..]).is_ok());
                        if !last || valid_later {
                            return Err(corrupt(path, at as u64, format!("{e}{}", describe_damaged(&data[at..]))));
                        }
                        if !self.repair {
                            self.notes.push(format!(
                                "{} byte {at}: a write torn by a crash ({} bytes, {e}); a start cuts it off",
                                path.display(),
                                data.len() - at
                            ));
                            break;
                        }
                        tracing::warn!(path = %path.display(), offset = at, bytes = data.len() - at, error = %e,
                            "cutting off a raft log write torn by a crash (it was never acknowledged)");
                        file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(files)?;
                        break;
                    }
                }
            }
            Ok(Some(file))
        }

        fn batch(&mut self, path: &Path, seq: u64, at: u64, payload: &[u8]) -> Result<(), OpenError> {
            let records = format::records(payload).map_err(|e| corrupt(path, at, e.to_string()))?;
            for r in records {
                let offset = at + (BATCH_HEADER_LEN + r.body_at) as u64;
                let bad = |what: &str, e: &dyn std::fmt::Display| OpenError::Corrupt {
                    shard: r.shard,
                    what: format!("{what} in raft log {} at byte {offset}", path.display()),
                    detail: e.to_string(),
                };
                match r.kind {
                    Kind::Open => {
                        self.shards.entry(r.shard).or_default();
                    }
                    Kind::Entry => {
                        let entry: Entry = unseal(r.body).map_err(|e| bad("log entry", &e))?;
                        let loc = Loc { segment: seq, offset, len: r.body.len() as u32 };
                        self.shards.entry(r.shard).or_default().append(entry.log_id, loc);
                    }
                    Kind::Vote => {
                        let vote: Vote = unseal(r.body).map_err(|e| bad("vote", &e))?;
                        self.shards.entry(r.shard).or_default().vote = Some(vote);
                    }
                    Kind::Committed => {
                        let c: Option<LogId> = unseal(r.body).map_err(|e| bad("committed index", &e))?;
                        self.shards.entry(r.shard).or_default().committed = c;
                    }
                    Kind::Truncate => {
                        let from: [u8; 8] = r.body.try_into().map_err(|_| bad("truncation", &"not 8 bytes"))?;
                        self.shards.entry(r.shard).or_default().truncate(u64::from_le_bytes(from));
                    }
                    Kind::Purge => {
                        let upto: LogId = unseal(r.body).map_err(|e| bad("purge point", &e))?;
                        self.shards.entry(r.shard).or_default().purge(upto);
                    }
                    Kind::Drop => {
                        self.shards.remove(&r.shard);
                    }
                }
            }
            Ok(())
        }

        /// The replayed shards, each checked for a contiguous log.
        pub(super) fn finish(self) -> Result<(BTreeMap<ShardId, ShardLog>, Vec<String>), OpenError> {
            for (&shard, s) in &self.shards {
                if let Some((expected, found)) = s.gap() {
                    return Err(OpenError::Corrupt {
                        shard,
                        what: format!("raft log at index {expected}"),
                        detail: format!("gap in the log: the next entry held is {found}"),
                    });
                }
            }
            Ok((self.shards, self.notes))
        }
    }
}

#[cfg(test)]
mod tests;
