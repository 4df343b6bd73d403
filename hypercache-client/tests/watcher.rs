//! The resuming watcher against two scripted watch servers sharing one history: it resumes from
//! the last delivered revision + 1 on the other node after a dropped stream, a reset or
//! WATCHER_TOO_SLOW, delivers every event exactly once in order even when a server replays
//! old revisions, and returns COMPACTED instead of resuming.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::Duration;

use common::scripted::{history, lock, watch_script, StreamEnd, StreamPlan, WatchFake, WatchScript};
use common::{serve_routes, wait_until};
use hypercache_client::{Client, ClientConfig, WatchOptions, WatchUpdate};
use hypercache_proto::v1::kv_server::KvServer;
use tokio::time::timeout;
use tonic::service::Routes;

const LIMIT: Duration = Duration::from_secs(10);

fn plan(rewind: u64, messages: usize, end: StreamEnd) -> StreamPlan {
    StreamPlan { rewind, messages, end }
}

/// Two nodes, "A" (the first endpoint) and "B", serving one script.
async fn two_nodes(script: &WatchScript) -> Client {
    let mut endpoints = Vec::new();
    for name in ["A", "B"] {
        let fake = WatchFake { name, script: script.clone() };
        endpoints.push(serve_routes(Routes::new(KvServer::new(fake))).await);
    }
    let config = ClientConfig::new(endpoints).backoff(Duration::from_millis(1), Duration::from_millis(5));
    Client::new(config).expect("client")
}

#[tokio::test]
async fn resumes_after_breaks_and_never_delivers_a_revision_twice() {
    let plans = vec![
        // Revisions 1-3, then the stream just ends.
        plan(0, 3, StreamEnd::Close),
        // Replays two already delivered revisions (2, 3), sends 4, then sheds the watcher.
        plan(2, 3, StreamEnd::TooSlow),
        // Everything else, then a connection reset.
        plan(0, 100, StreamEnd::Reset),
    ];
    let script = watch_script(history(10), 1, plans, plan(0, 100, StreamEnd::Idle));
    let client = two_nodes(&script).await;
    let mut watcher = client.watch(WatchOptions::key("k").start_revision(1));

    let mut delivered = Vec::new();
    while watcher.last_revision() < 10 {
        match timeout(LIMIT, watcher.next()).await.expect("watch stalled").expect("watch failed") {
            WatchUpdate::Events { revision, events, .. } => {
                assert_eq!(revision, events.last().expect("non-empty batch").revision());
                delivered
                    .extend(events.iter().map(|e| (String::from_utf8_lossy(&e.kv.key).into_owned(), e.revision())));
            }
            WatchUpdate::Progress { .. } => {}
        }
    }
    let mut expected: Vec<(String, u64)> = (1..=10).map(|r| ("k".to_string(), r)).collect();
    expected.insert(4, ("k2".to_string(), 4));
    assert_eq!(delivered, expected, "every event exactly once, in order");

    let calls = lock(&script).calls.clone();
    assert_eq!(
        &calls[..3],
        &[("A", 1), ("B", 4), ("A", 5)],
        "each resume starts after the last delivered revision, on the other node"
    );
}

#[tokio::test]
async fn a_compacted_start_is_an_error_not_a_retry() {
    let script = watch_script(history(10), 5, vec![], plan(0, 100, StreamEnd::Idle));
    let client = two_nodes(&script).await;
    let mut watcher = client.watch(WatchOptions::prefix("k").start_revision(2));
    let err = timeout(LIMIT, watcher.next()).await.expect("no answer").expect_err("compacted");
    assert_eq!(err.compacted(), Some(5), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("compacted"), "the server's message is kept: {err}");
    assert_eq!(lock(&script).calls.len(), 1, "COMPACTED must not be retried on another node");
}

#[tokio::test]
async fn watching_from_now_starts_after_the_current_revision() {
    let script = watch_script(history(10), 1, vec![], plan(0, 100, StreamEnd::Idle));
    let client = two_nodes(&script).await;
    let mut watcher = client.watch(WatchOptions::key("k"));
    let task = tokio::spawn(async move { watcher.next().await });
    wait_until("the watch call", LIMIT, || !lock(&script).calls.is_empty()).await;
    let state = lock(&script);
    assert_eq!(state.ranges, 1, "the current revision is read once");
    assert_eq!(state.calls[0].1, 11, "current revision 10, so the watch starts at 11");
    drop(state);
    task.abort();
}
