#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use crate::raft_types::{CommittedLeaderId, EntryPayload};

use super::*;

fn id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId { term, node_id: 1 }, index)
}

fn sealed(term: u64, index: u64) -> (LogId, Vec<u8>) {
    let entry: Entry = Entry { log_id: id(term, index), payload: EntryPayload::Blank };
    (entry.log_id, seal(&entry).unwrap())
}

fn indexes(wal: &Wal, shard: ShardId) -> Vec<u64> {
    wal.entries(shard, (Bound::Unbounded, Bound::Unbounded)).unwrap().iter().map(|e| e.log_id.index).collect()
}

const A: ShardId = ShardId(1);
const B: ShardId = ShardId(2);

#[test]
fn what_was_written_and_synced_is_there_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        assert!(wal.open_shard(A).unwrap());
        assert!(!wal.open_shard(A).unwrap());
        wal.append(A, (1..=5).map(|i| sealed(1, i)).collect()).unwrap();
        // A new leader overwrites the tail.
        wal.truncate(A, 4).unwrap();
        wal.append(A, vec![sealed(2, 4)]).unwrap();
        wal.set_vote(A, &Vote::new(2, 3)).unwrap();
        wal.set_committed(A, Some(id(2, 4))).unwrap();
        wal.purge(A, id(1, 1)).unwrap();
        wal.open_shard(B).unwrap();
        wal.drop_shard(B).unwrap();
        assert!(matches!(wal.append(B, vec![sealed(1, 1)]), Err(WalError::NoShard(_))));
        wal.sync().unwrap();
    }
    let wal = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(wal.shards(), vec![A]);
    assert_eq!(indexes(&wal, A), vec![2, 3, 4]);
    assert_eq!(wal.log_state(A), (Some(id(1, 1)), Some(id(2, 4))));
    assert_eq!(wal.vote(A), Some(Vote::new(2, 3)));
    assert_eq!(wal.committed(A), Some(id(2, 4)));
    let got = wal.entries(A, (Bound::Included(3), Bound::Excluded(5))).unwrap();
    assert_eq!(got.iter().map(|e| e.log_id).collect::<Vec<_>>(), vec![id(1, 3), id(2, 4)]);
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names.pop().unwrap()
}

/// Appends half a batch (an entry of shard A at index 4) to the newest segment: a crash in the
/// middle of a write that was never synced nor acknowledged. Returns the segment and its length
/// before the torn bytes.
fn tear_newest_segment(dir: &Path) -> (PathBuf, u64) {
    let path = newest_segment(dir);
    let mut b = BatchBuilder::new();
    b.record(Kind::Entry, A, &sealed(1, 4).1);
    let batch = b.finish();
    let len = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&batch[..batch.len() / 2], len).unwrap();
    (path, len)
}

#[test]
fn a_torn_write_at_the_end_is_cut_off_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        wal.open_shard(A).unwrap();
        wal.append(A, (1..=3).map(|i| sealed(1, i)).collect()).unwrap();
        wal.sync().unwrap();
    }
    let (path, len) = tear_newest_segment(dir.path());
    let wal = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&wal, A), vec![1, 2, 3]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "the torn bytes are cut off");
    // And the cut segment reads clean at the next start, behind the newer one.
    drop(wal);
    let wal = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&wal, A), vec![1, 2, 3]);
}

#[test]
fn a_damaged_batch_with_valid_ones_after_it_is_a_startup_error_naming_shard_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offset) = {
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        wal.open_shard(A).unwrap();
        for i in 1..=6 {
            wal.append(A, vec![sealed(1, i)]).unwrap();
        }
        wal.sync().unwrap();
        wal.entry_position(A, 3).unwrap()
    };
    let mut data = std::fs::read(&path).unwrap();
    data[offset as usize + 6] ^= 0x10;
    std::fs::write(&path, data).unwrap();
    let err = match Wal::open(dir.path(), 1 << 20) {
        Ok(_) => panic!("a damaged log must not open"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("storage is corrupt"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("shard 1"), "{err}");
}

#[test]
fn old_segments_are_deleted_and_an_idle_shard_does_not_pin_them() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 8 << 10;
    let wal = Wal::open(dir.path(), segment).unwrap();
    wal.open_shard(A).unwrap();
    wal.open_shard(B).unwrap();
    // A writes three entries once and stays idle; B writes on and purges what it snapshotted.
    wal.append(A, (1..=3).map(|i| sealed(1, i)).collect()).unwrap();
    wal.set_vote(A, &Vote::new(1, 1)).unwrap();
    for i in 1..=2_000u64 {
        wal.append(B, vec![sealed(1, i)]).unwrap();
        if i % 100 == 0 {
            wal.purge(B, id(1, i - 50)).unwrap();
            wal.sync().unwrap();
            assert!(wal.segments() <= MAX_SEGMENTS + 2, "{} segments live at entry {i}", wal.segments());
        }
    }
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files <= MAX_SEGMENTS + 2, "{files} segment files on disk");
    assert_eq!(indexes(&wal, A), vec![1, 2, 3]);
    drop(wal);
    let wal = Wal::open(dir.path(), segment).unwrap();
    assert_eq!(indexes(&wal, A), vec![1, 2, 3]);
    assert_eq!(wal.vote(A), Some(Vote::new(1, 1)));
    assert_eq!(indexes(&wal, B), (1951..=2000).collect::<Vec<_>>());
    assert_eq!(wal.log_state(B).0, Some(id(1, 1950)));
}

#[test]
fn segments_left_behind_a_gap_are_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        wal.open_shard(A).unwrap();
        wal.append(A, vec![sealed(1, 1)]).unwrap();
        wal.purge(A, id(1, 1)).unwrap();
        wal.sync().unwrap();
    }
    // Segment 2 starts with a checkpoint; segment 1 is needed by nothing, and its deletion
    // reached the disk, but the unlink of a segment 0 before it did not survive a power cut.
    drop(Wal::open(dir.path(), 1 << 20).unwrap());
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    let stale = segment_path(dir.path(), 0);
    std::fs::write(&stale, b"not even a segment").unwrap();
    let wal = Wal::open(dir.path(), 1 << 20).unwrap();
    assert!(!stale.exists());
    assert_eq!(wal.shards(), vec![A]);
    assert!(indexes(&wal, A).is_empty());
    assert_eq!(wal.log_state(A), (Some(id(1, 1)), Some(id(1, 1))));
}

/// An offline look (a post-mortem of a stopped node's disk) must leave the log exactly as the
/// crash left it: what a start would repair is reported, not repaired.
#[test]
fn a_read_only_open_reports_a_torn_tail_changes_nothing_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        wal.open_shard(A).unwrap();
        wal.append(A, (1..=3).map(|i| sealed(1, i)).collect()).unwrap();
        wal.set_vote(A, &Vote::new(1, 2)).unwrap();
        wal.set_committed(A, Some(id(1, 2))).unwrap();
        wal.sync().unwrap();
    }
    let (path, len) = tear_newest_segment(dir.path());
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let (files_before, bytes_before) = (listing(dir.path()), std::fs::read(&path).unwrap());

    let (wal, notes) = Wal::open_read_only(dir.path()).unwrap();
    assert_eq!(indexes(&wal, A), vec![1, 2, 3]);
    assert_eq!(wal.vote(A), Some(Vote::new(1, 2)));
    assert_eq!(wal.committed(A), Some(id(1, 2)));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&format!("byte {len}")) && notes[0].contains("torn"), "{notes:?}");
    assert!(matches!(wal.append(A, vec![sealed(1, 4)]), Err(WalError::ReadOnly)));
    assert!(matches!(wal.sync(), Err(WalError::ReadOnly)));
    drop(wal);
    assert_eq!(listing(dir.path()), files_before, "no segment created or removed");
    assert_eq!(std::fs::read(&path).unwrap(), bytes_before, "the torn tail is still there");

    let missing = dir.path().join("nothing-here");
    assert!(matches!(Wal::open_read_only(&missing), Err(OpenError::NoLog(p)) if p == missing));
    assert!(!missing.exists(), "a look creates no directory");
}
