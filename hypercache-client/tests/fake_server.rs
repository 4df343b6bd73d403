//! The client against tiny in-process fake KV servers: proves that redirects are followed, that
//! not-applied errors are retried on another node, that a write whose outcome is unknown is
//! retried with the same write id (exactly-once), and that a deadline passing with an attempt in
//! flight is reported as an unknown outcome (the fakes count calls and record write ids).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{closed_port, serve, Behaviour, Fake};
use hypercache_client::{Client, ClientConfig, Error, ShardId};

fn config(endpoints: Vec<String>) -> ClientConfig {
    ClientConfig::new(endpoints).backoff(Duration::from_millis(1), Duration::from_millis(5))
}

#[tokio::test]
async fn follows_not_leader_redirects_and_caches_the_leader() {
    let leader = Fake::new(Behaviour::Serve);
    let leader_addr = serve(leader.clone()).await;
    let follower = Fake::new(Behaviour::NotLeader(leader_addr.clone()));
    let follower_addr = serve(follower.clone()).await;

    // Only the follower is configured: the leader is learned from the redirect.
    let client = Client::new(config(vec![follower_addr])).expect("client");
    let put = client.put("k", "v").await.expect("put follows the redirect");
    assert_eq!(put.revision, 5);
    assert_eq!(follower.puts.load(Ordering::SeqCst), 1);
    assert_eq!(leader.puts.load(Ordering::SeqCst), 1);
    assert_eq!(client.leader_hint(ShardId(0)), Some(leader_addr));

    // Later requests go straight to the cached leader.
    client.put("k", "v2").await.expect("second put");
    let got = client.get("present").await.expect("get").expect("present");
    assert_eq!(got.value, Bytes::from_static(b"value"));
    assert_eq!(client.get("absent").await.expect("get"), None);
    assert_eq!(follower.puts.load(Ordering::SeqCst), 1);
    assert_eq!(follower.gets.load(Ordering::SeqCst), 0);
    assert_eq!(leader.puts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_put_that_times_out_is_outcome_unknown_and_not_retried() {
    let slow_a = Fake::new(Behaviour::SlowPut(Duration::from_secs(3)));
    let slow_b = Fake::new(Behaviour::SlowPut(Duration::from_secs(3)));
    let endpoints = vec![serve(slow_a.clone()).await, serve(slow_b.clone()).await];
    let client = Client::new(config(endpoints).request_timeout(Duration::from_millis(300))).expect("client");

    let started = std::time::Instant::now();
    let err = client.put("k", "v").await.expect_err("the put cannot finish in time");
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("may or may not"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "the deadline was not enforced");
    // The one attempt was still in flight at the deadline: nothing more was sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = slow_a.puts.load(Ordering::SeqCst) + slow_b.puts.load(Ordering::SeqCst);
    assert_eq!(sent, 1, "no attempt after the deadline");
}

#[tokio::test]
async fn outcome_unknown_from_the_server_is_retried_with_the_same_write_id() {
    let unsure = Fake::new(Behaviour::OutcomeUnknown);
    let healthy = Fake::new(Behaviour::Serve);
    let client = Client::new(config(vec![serve(unsure.clone()).await, serve(healthy.clone()).await])).expect("client");
    client.put("k", "v").await.expect("retried on the healthy node");
    assert_eq!(unsure.puts.load(Ordering::SeqCst), 1);
    assert_eq!(healthy.puts.load(Ordering::SeqCst), 1);
    let first = unsure.put_ids.lock().unwrap()[0].clone().expect("a write id");
    let retry = healthy.put_ids.lock().unwrap()[0].clone().expect("a write id");
    assert_eq!(first, retry, "every attempt of one write carries the same id");
    assert_eq!((first.client_id.len(), first.seq, first.first_incomplete), (16, 1, 1));

    // The next write gets the next seq; the first one is done.
    client.put("k", "v2").await.expect("second put");
    let second = healthy.put_ids.lock().unwrap()[1].clone().expect("a write id");
    assert_eq!((second.client_id.clone(), second.seq, second.first_incomplete), (first.client_id, 2, 2));
    // A read may be retried elsewhere: it has no effect.
    assert!(client.get("present").await.expect("read retried on the healthy node").is_some());
}

#[tokio::test]
async fn a_write_that_never_got_a_definite_answer_is_outcome_unknown() {
    let unsure = Fake::new(Behaviour::OutcomeUnknown);
    let client = Client::new(config(vec![serve(unsure.clone()).await]).max_attempts(3)).expect("client");
    let err = client.put("k", "v").await.expect_err("outcome unknown");
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(unsure.puts.load(Ordering::SeqCst), 3, "retried: the server deduplicates by write id");
}

#[tokio::test]
async fn not_applied_errors_and_refused_connections_move_to_the_next_node() {
    let electing = Fake::new(Behaviour::NoLeader);
    let healthy = Fake::new(Behaviour::Serve);
    let endpoints = vec![closed_port(), serve(electing.clone()).await, serve(healthy.clone()).await];
    let client = Client::new(config(endpoints)).expect("client");
    client.put("k", "v").await.expect("put lands on the healthy node");
    assert_eq!(electing.puts.load(Ordering::SeqCst), 1);
    assert_eq!(healthy.puts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_unavailable() {
    let electing = Fake::new(Behaviour::NoLeader);
    let client = Client::new(config(vec![serve(electing.clone()).await]).max_attempts(3)).expect("client");
    let err = client.put("k", "v").await.expect_err("no leader");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("3 attempts"), "{err}");
    assert_eq!(electing.puts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn invalid_arguments_keep_the_server_message_and_are_not_retried() {
    let healthy = Fake::new(Behaviour::Serve);
    let client = Client::new(config(vec![serve(healthy.clone()).await])).expect("client");
    let err = client.put("", "v").await.expect_err("empty key");
    assert_eq!(
        err,
        Error::InvalidArgument {
            reason: hypercache_client::Reason::EmptyKey,
            message: "key is empty; keys must be 1..=4096 bytes".into()
        }
    );
    assert_eq!(healthy.puts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_reads_end_with_deadline_exceeded() {
    let slow = Fake::new(Behaviour::SlowGet(Duration::from_secs(3)));
    let client = Client::new(config(vec![serve(slow.clone()).await]).request_timeout(Duration::from_millis(200)))
        .expect("client");
    let err = client.get("present").await.expect_err("too slow");
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn single_node_reads_report_not_leader_without_following_it() {
    let leader = Fake::new(Behaviour::Serve);
    let leader_addr = serve(leader.clone()).await;
    let follower_addr = serve(Fake::new(Behaviour::NotLeader(leader_addr.clone()))).await;
    let client = Client::new(config(vec![follower_addr.clone()])).expect("client");
    let err = client.get_from(&follower_addr, "present", false).await.expect_err("follower");
    assert!(matches!(&err, Error::NotLeader { leader_endpoint: Some(l), .. } if *l == leader_addr), "{err:?}");
    assert_eq!(leader.gets.load(Ordering::SeqCst), 0);
    let err = client.status(&closed_port()).await.expect_err("nobody there");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn client_new_rejects_bad_endpoints_by_name() {
    let err = Client::new(ClientConfig::new(["127.0.0.1:7001", "nohost"])).expect_err("bad endpoint");
    assert!(err.to_string().contains("\"nohost\""), "{err}");
    assert!(Client::new(ClientConfig::new(Vec::<String>::new())).is_err());
}
