//! The admin port: /livez always answers, /readyz follows readiness and shutdown, /metrics
//! exposes the Raft and request metrics.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Minimal HTTP/1.0 GET: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_readyz_and_metrics() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let l = c.wait_leader(Duration::from_secs(20)).await;
    c.put("k", "v").await.unwrap();
    for i in 0..3 {
        let admin = c.node(i).admin_addr();
        assert_eq!(http_get(admin, "/livez").await.unwrap().0, 200);
        eventually("node ready", Duration::from_secs(10), || async {
            (http_get(admin, "/readyz").await?.0 == 200).then_some(())
        })
        .await;
    }
    let (code, metrics) = http_get(c.node(l).admin_addr(), "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for name in [
        "hypercache_raft_term{shard=\"0\"}",
        "hypercache_raft_commit_index{shard=\"0\"}",
        "hypercache_raft_applied_index{shard=\"0\"}",
        "hypercache_raft_is_leader{shard=\"0\"} 1",
        "hypercache_grpc_requests_total{code=\"OK\",method=\"Put\"}",
        "hypercache_grpc_request_duration_seconds_bucket{method=\"Put\"",
        "hypercache_storage_flush_duration_seconds_count",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }

    // Liveness never depends on quorum: with two of three nodes down the survivor is live but
    // not ready once it notices the leader is gone.
    let survivor = (l + 1) % 3;
    let admin = c.node(survivor).admin_addr();
    for i in 0..3 {
        if i != survivor {
            c.crash(i).await;
        }
    }
    assert_eq!(http_get(admin, "/livez").await.unwrap().0, 200);
    eventually("survivor reports not ready", Duration::from_secs(20), || async {
        let (code, body) = http_get(admin, "/readyz").await?;
        (code == 503 && body.contains("not ready")).then_some(())
    })
    .await;
    assert_eq!(http_get(admin, "/livez").await.unwrap().0, 200);
}
