//! Quiet shards (`hypercache-server/src/quiet/`) with real nodes in one process: idle shards stop
//! ticking without elections, wake for a write that every replica then applies, and fail over
//! when the node leading them crashes, as fast as ticking shards would.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{eventually, get_in, put_in, TestCluster};
use hypercache_proto::routing::Router;
use openraft::ServerState;

const SHARDS: u32 = 4;

async fn start() -> TestCluster {
    TestCluster::start(3, |c| {
        c.shards = SHARDS;
        c.replication = 3;
    })
    .await
}

fn key_in(s: u32, tag: &str) -> String {
    let r = Router::new(SHARDS);
    (0..).map(|i| format!("{tag}-{i}")).find(|k| r.shard_of(k.as_bytes()) == s).expect("some key maps to s")
}

/// Every data shard has a leader, and every running node reports all its data-shard replicas
/// quiet; returns each shard's (leader index, term).
fn all_quiet(c: &TestCluster) -> Option<BTreeMap<u32, (usize, u64)>> {
    let mut out = BTreeMap::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let data = node.shards().data();
        if data.len() != SHARDS as usize || (node.metrics().quiet_replicas.get() as usize) < data.len() {
            return None;
        }
        for shard in data {
            let m = shard.metrics();
            if m.state == ServerState::Leader {
                out.insert(shard.id.0, (i, m.vote.leader_id().term));
            }
        }
    }
    (out.len() == SHARDS as usize).then_some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shards_go_quiet_without_elections_and_wake_for_a_write() {
    let c = start().await;
    let endpoints = c.endpoints();
    // Placement settles (replicas, leaders), then 2 s of no entry: every replica goes quiet.
    let quiet = eventually("every replica quiet", Duration::from_secs(60), || async { all_quiet(&c) }).await;
    // Several election timeouts later nothing has changed: no follower campaigned.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(all_quiet(&c), Some(quiet.clone()), "same leaders and terms while quiet");

    // A write to a quiet shard commits at once, and every replica applies it.
    let key = key_in(1, "wake");
    let started = Instant::now();
    put_in(&endpoints, 1, &key, "v").await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "a write to a quiet shard took {took:?}");
    assert_eq!(get_in(&endpoints, 1, &key).await.map(|kv| kv.value), Some("v".into()));
    for i in 0..3 {
        eventually("every replica applies the write", Duration::from_secs(5), || async {
            c.local_get_in(i, 1, &key).await.filter(|kv| kv.value == "v")
        })
        .await;
    }
    // ... and goes quiet again, still under the same leader and term.
    let again = eventually("quiet again", Duration::from_secs(30), || async { all_quiet(&c) }).await;
    assert_eq!(again.get(&1), quiet.get(&1), "the write woke shard 1 without an election");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_leading_quiet_shards_is_failed_over() {
    let mut c = start().await;
    let quiet = eventually("every replica quiet", Duration::from_secs(60), || async { all_quiet(&c) }).await;
    let mut led: BTreeMap<usize, u32> = BTreeMap::new();
    for (leader, _) in quiet.values() {
        *led.entry(*leader).or_default() += 1;
    }
    let victim = led.iter().max_by_key(|(_, n)| **n).map(|(i, _)| *i).unwrap();
    c.crash(victim).await;
    let started = Instant::now();
    let endpoints = c.endpoints();
    for (s, (leader, _)) in &quiet {
        let key = key_in(*s, "after-crash");
        put_in(&endpoints, *s, &key, "v").await.unwrap_or_else(|e| panic!("shard {s} not writable: {e:?}"));
        assert_eq!(get_in(&endpoints, *s, &key).await.map(|kv| kv.value), Some("v".into()));
        if *leader == victim {
            eprintln!(
                "shard {s} (led by the crashed node) written {} ms after the crash",
                started.elapsed().as_millis()
            );
        }
    }
    // The beats stopped, so the followers elected as ticking shards would have: well within
    // what the election timeout (0.6-1.2 s) and the client's retries need.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "every shard writable only after {took:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_of_quiet_shards_learns_their_leaders() {
    let mut c = start().await;
    eventually("every replica quiet", Duration::from_secs(60), || async { all_quiet(&c) }).await;
    // Node 0 restarts knowing no leader; the shards led elsewhere stay quiet unless told.
    c.crash(0).await;
    c.restart(0).await;
    let started = Instant::now();
    eventually("the restarted node knows every shard's leader", Duration::from_secs(15), || async {
        let node = c.nodes[0].as_ref()?;
        let data = node.shards().data();
        (data.len() == SHARDS as usize && data.iter().all(|s| s.metrics().current_leader.is_some())).then_some(())
    })
    .await;
    eprintln!("every leader known {} ms after the restart", started.elapsed().as_millis());
    c.shutdown().await;
}
