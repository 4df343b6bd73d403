//! A corrupted log entry is a clear startup error naming the shard and index, never silent.
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

    // Flip one bit in the value of log entry 5, as a bad disk would.
    {
        let db = sled::open(c.data_dir(0).join("sled")).expect("open sled");
        let log = db.open_tree("shard-0/log").unwrap();
        let key = 5u64.to_be_bytes();
        let mut value = log.get(key).unwrap().expect("entry 5 exists").to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        log.insert(key, value).unwrap();
        db.flush().unwrap();
    }

    let err = match start_again(&c.configs[0]).await {
        Ok(_) => panic!("a node with a corrupted log must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("shard 0"), "{err}");
    assert!(err.contains("index 5"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}
