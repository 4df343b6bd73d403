//! A corrupted log entry is a clear startup error naming the shard and its position, never silent.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::Duration;

use common::{start_again, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_log_entry_is_detected_at_startup() {
    let mut c = TestCluster::start(1, |_| {}).await;
    c.wait_leader(Duration::from_secs(20)).await;
    for i in 0..10 {
        c.put(&format!("k{i}"), "value").await.unwrap();
    }
    c.stop(0).await;

    // Flip one bit in log entry 5 of shard 0, as a bad disk would.
    let (path, offset) = {
        let wal =
            hypercache_server::storage::Wal::open(&hypercache_server::storage::wal::wal_dir(&c.data_dir(0)), 64 << 20)
                .expect("open the stopped node's log");
        wal.entry_position(hypercache_server::types::ShardId(0), 5).expect("entry 5 is in the log")
    };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize + 8] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let err = match start_again(&c.configs[0]).await {
        Ok(_) => panic!("a node with a corrupted log must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("shard 0"), "{err}");
    assert!(err.contains(&format!("{} at byte", path.display())), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}
