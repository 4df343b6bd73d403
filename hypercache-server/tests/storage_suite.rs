//! openraft's storage conformance suite against our sled log store and state machine.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use hypercache_server::raft_types::TypeConfig;
use hypercache_server::storage::{open_db, DurableFlush, Flusher, LogStore, ShardStorage, StateMachine};
use hypercache_server::types::{NodeId, ShardId};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path(), 4 * 1024 * 1024).expect("open sled");
        let (flusher, _task) = Flusher::spawn(DurableFlush::new(&db, dir.path()).expect("data file"), None);
        let history = hypercache_server::watch_hub::HistoryLimits { events: 1000, bytes: 1 << 20 };
        let s = ShardStorage::open(&db, dir.path(), ShardId(0), flusher, history).expect("open shard storage");
        Ok((dir, s.log, s.state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes_on_sled_store() {
    if let Err(e) = Suite::test_all(SledStoreBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
