//! The exactly-once session table travels in snapshots: a replica that installed a snapshot
//! answers a repeated write with the original outcome and applies nothing (and so does a replica
//! reopened from its data directory).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use bytes::Bytes;
use hypercache_server::machine::command::{Applied, Command, CommandResponse, Op, Request, Tracked, Txn, WriteId};
use hypercache_server::raft_types::{CommittedLeaderId, Entry, EntryPayload, LogId};
use hypercache_server::storage::{NodeStore, ShardStorage, StoreLimits, StoreTasks};
use hypercache_server::types::{ClientId, ShardId};
use hypercache_server::watch_hub::HistoryLimits;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use tempfile::TempDir;

fn put(key: &str, value: &str) -> Request {
    Request::Txn(Txn {
        success: vec![Op::Put {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(value.to_string()),
            prev_kv: false,
            attach: Default::default(),
        }],
        ..Txn::default()
    })
}

fn entry(index: u64, requests: Vec<Tracked>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId { term: 1, node_id: 1 }, index),
        payload: EntryPayload::Normal(Command::Tracked { time_ms: 1_000 + index, requests }),
    }
}

struct Replica {
    store: NodeStore,
    _tasks: StoreTasks,
}

impl Replica {
    fn new(dir: &TempDir) -> Self {
        let limits = StoreLimits { cache_capacity_bytes: 4 << 20, segment_bytes: 1 << 20 };
        let (store, _tasks) = NodeStore::open(dir.path(), limits, None).expect("open store");
        Replica { store, _tasks }
    }

    /// The shard's storage, opened (again) from the node's database.
    fn open(&self) -> ShardStorage {
        let history = HistoryLimits { events: 1000, bytes: 1 << 20 };
        ShardStorage::open(&self.store, ShardId(0), history).expect("open shard")
    }
}

fn apply_one(s: &mut ShardStorage, e: Entry) -> Applied {
    match s.state_machine.apply_batch(&[e]).expect("apply").pop() {
        Some(CommandResponse::Batch(mut v)) if v.len() == 1 => v.remove(0),
        other => panic!("unexpected response {other:?}"),
    }
}

fn version(s: &ShardStorage, key: &str) -> Option<u64> {
    s.reader.get(key.as_bytes()).expect("read").map(|kv| kv.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_snapshot_install_returns_the_original_outcome() {
    let w = WriteId { client: ClientId([9; 16]), seq: 4, first_incomplete: 4 };
    let tracked = |value: &str| Tracked { write: Some(w), request: put("k", value) };

    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mut a = Replica::new(&dir_a).open();
    let original = apply_one(&mut a, entry(1, vec![tracked("v")]));
    assert_eq!(original.revision, 1);
    let other = Tracked { write: None, request: put("x", "y") };
    apply_one(&mut a, entry(2, vec![other]));

    let mut builder = a.state_machine.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.expect("build snapshot");

    let node_b = Replica::new(&dir_b);
    let mut b = node_b.open();
    b.state_machine.install_snapshot(&snapshot.meta, snapshot.snapshot).await.expect("install");
    assert_eq!(version(&b, "k"), Some(1));
    let repeat = apply_one(&mut b, entry(3, vec![tracked("v")]));
    assert_eq!(repeat, original, "the installed table answers with the original revision and reply");
    assert_eq!(version(&b, "k"), Some(1), "the repeat applied nothing");

    // The same after the state machine is opened again: the index is rebuilt from the rows.
    drop(b);
    let mut b = node_b.open();
    let repeat = apply_one(&mut b, entry(4, vec![tracked("v")]));
    assert_eq!(repeat, original);
    assert_eq!(version(&b, "k"), Some(1));
    // A new seq of the same client is applied.
    let next = Tracked { write: Some(WriteId { seq: 5, ..w }), request: put("k", "v2") };
    let applied = apply_one(&mut b, entry(5, vec![next]));
    assert!(applied.revision > original.revision);
    assert_eq!(version(&b, "k"), Some(2));
}
