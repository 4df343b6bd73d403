//! A frozen node must not stall the client (issue 16, defect 7). A frozen node is simulated the
//! way SIGSTOP leaves one (`common::frozen`): connects succeed, requests are sent, nothing
//! answers. Real processes under SIGSTOP are in `hypercache-server/tests/frozen_leader.rs`.
//!
//! Time is measured against the configured per-attempt timeout with a margin for a loaded
//! machine, never against a fixed number: the contract is "one attempt timeout, not the whole
//! deadline", and the deadline is set far above both. The same contract for the `hcctl` binary
//! is tested in `hcctl/tests/frozen_endpoint.rs`.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::scripted::lock;
use common::{frozen, serve, Behaviour, Fake};
use hypercache_client::{Client, ClientConfig, Error};

const ATTEMPT: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(20);
/// Scheduling noise allowed on a shared 2-core machine.
const MARGIN: Duration = Duration::from_millis(700);

fn config(endpoints: Vec<String>) -> ClientConfig {
    ClientConfig::new(endpoints)
        .request_timeout(DEADLINE)
        .attempt_timeout(ATTEMPT)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_first_endpoint_costs_one_attempt_timeout_then_is_skipped() {
    let (_frozen, frozen_addr) = frozen();
    let good = Fake::new(Behaviour::Serve);
    let good_addr = serve(good.clone()).await;
    let client = Client::new(config(vec![frozen_addr, good_addr])).expect("client");

    // A fresh client asks the first endpoint for the routing table: it gives up on it after
    // one attempt timeout, not the 20 s deadline.
    let started = Instant::now();
    client.put("k", "v").await.expect("the put is served by the other endpoint");
    let first = started.elapsed();
    assert!(first < ATTEMPT * 2 + MARGIN, "first put took {first:?}; attempt timeout {ATTEMPT:?}");
    assert_eq!(good.puts.load(Ordering::SeqCst), 1);

    // The frozen endpoint is skipped now: no attempt waits on it.
    for _ in 0..5 {
        let started = Instant::now();
        client.get("present").await.expect("get").expect("present");
        client.put("k", "v").await.expect("put");
        let took = started.elapsed();
        assert!(took < ATTEMPT, "a get and a put took {took:?}: something waited on the frozen node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_to_a_frozen_leader_is_reported_after_one_attempt_timeout() {
    let (_frozen, frozen_addr) = frozen();
    // The follower names the frozen node as the leader (as followers do until they elect one).
    let follower = Fake::new(Behaviour::NotLeader(frozen_addr.clone()));
    let follower_addr = serve(follower.clone()).await;
    let client = Client::new(config(vec![follower_addr])).expect("client");

    let started = Instant::now();
    let err = client.put("k", "v").await.expect_err("nobody can take the write");
    let took = started.elapsed();
    // It may have reached the frozen leader's socket buffer: outcome unknown, promptly.
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert!(took < ATTEMPT * 2 + MARGIN, "took {took:?}; attempt timeout {ATTEMPT:?}");

    // Reads are retried elsewhere; the follower's redirect to the skipped leader is not
    // followed again, so nothing waits on it: the read ends with "unavailable" after the
    // attempt budget (the follower never serves), not at the deadline.
    let started = Instant::now();
    let err = client.get("present").await.expect_err("only a follower and a frozen leader");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < ATTEMPT + MARGIN, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_reads_never_go_behind_what_the_client_saw() {
    let (state, endpoints) = common::sharded::cluster(&["A", "B"], 1).await;
    {
        let mut s = lock(&state);
        s.hosts = [("A".to_string(), vec![0]), ("B".to_string(), vec![0])].into();
        s.leaders = [(0, "A".to_string())].into();
        let table = s.table(1);
        s.tables = [Some(table)].into();
        // B never applies anything.
        s.lagging.insert("B".to_string(), 0);
    }
    // Only B is a seed, so serializable reads go to B first.
    let client = Client::new(config(vec![endpoints[1].clone()])).expect("client");
    let fresh = Client::new(config(vec![endpoints[1].clone()])).expect("client");

    client.put("k", "v1").await.expect("put through the leader");
    let kv = client.get_serializable("k").await.expect("get").expect("B is behind this client's own write: not used");
    assert_eq!(kv.value, "v1");
    let gets: Vec<String> = lock(&state).calls.iter().filter(|c| c.1 == "get").map(|c| c.0.clone()).collect();
    assert_eq!(gets, ["B", "A"], "the stale answer from B was refused, the leader answered");

    // A client that saw nothing of the shard may read B's (stale but not backwards) state.
    assert_eq!(fresh.get_serializable("k").await.expect("get"), None);
}
