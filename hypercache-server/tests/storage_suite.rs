//! openraft's storage conformance suite against our log store (the node's shared Raft log) and
//! state machine (sled).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use hypercache_server::raft_types::TypeConfig;
use hypercache_server::storage::{LogStore, NodeStore, ShardStorage, StateMachine, StoreLimits};
use hypercache_server::types::ShardId;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

struct NodeStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for NodeStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = StoreLimits { cache_capacity_bytes: 4 << 20, segment_bytes: 1 << 20 };
        let (store, _tasks) = NodeStore::open(dir.path(), limits, None).expect("open store");
        let history = hypercache_server::watch_hub::HistoryLimits { events: 1000, bytes: 1 << 20 };
        let s = ShardStorage::open(&store, ShardId(0), history).expect("open shard storage");
        Ok((dir, s.log, s.state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_our_store() {
    if let Err(e) = Suite::test_all(NodeStoreBuilder).await {
        panic!("openraft storage suite failed: {e}");
    }
}
