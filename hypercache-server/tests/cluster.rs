//! In-process 3-node cluster tests: replication, failover, restart and snapshot catch-up.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, put_via, TestCluster};
use hypercache_proto::v1 as pb;
use hypercache_server::types::ShardId;
use tokio::sync::Mutex;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_put_get_cas_delete_range() {
    let c = TestCluster::start(3, |_| {}).await;
    let l = c.wait_leader(T).await;
    let r1 = c.put("player/1", "alice").await.expect("put");
    let r2 = c.put("player/1", "alice-2").await.expect("put");
    assert!(r2 > r1, "revisions increase: {r1} then {r2}");
    let kv = c.get("player/1").await.expect("present");
    assert_eq!(kv.value, "alice-2");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (r1, r2, 2));

    // Every replica applies it: serializable reads on each node see it.
    for i in 0..3 {
        eventually("replica has the write", T, || async {
            c.local_get(i, "player/1").await.filter(|kv| kv.mod_revision == r2).map(|_| ())
        })
        .await;
    }

    // A follower refuses a linearizable read and names the leader.
    let f = (l + 1) % 3;
    let st = c.kv(f).await.get(pb::GetRequest { key: "player/1".into(), ..Default::default() }).await.unwrap_err();
    let info = hypercache_proto::error_info::info_of(&st).expect("error info");
    assert_eq!(info.reason, "NOT_LEADER", "{st:?}");
    assert_eq!(info.leader_endpoint, c.endpoint(l));

    let mut kv_client = c.kv(l).await;
    // CAS on mod_revision: stale fails and reports the current state, current succeeds.
    let cas = |rev: Option<u64>, val: Option<&str>, new: &str| pb::CompareAndSwapRequest {
        key: "player/1".into(),
        expected_mod_revision: rev,
        expected_value: val.map(|v| v.to_string().into()),
        new_value: new.to_string().into(),
        ..Default::default()
    };
    let stale = kv_client.compare_and_swap(cas(Some(r1), None, "x")).await.unwrap().into_inner();
    assert!(!stale.succeeded);
    assert_eq!(stale.kv.unwrap().mod_revision, r2);
    let ok = kv_client.compare_and_swap(cas(Some(r2), Some("alice-2"), "bob")).await.unwrap().into_inner();
    assert!(ok.succeeded);
    assert_eq!(ok.kv.as_ref().unwrap().value, "bob");
    let wrong_value = kv_client.compare_and_swap(cas(None, Some("alice"), "y")).await.unwrap().into_inner();
    assert!(!wrong_value.succeeded);
    // CAS with expected_mod_revision = 0 creates only if absent.
    let create = pb::CompareAndSwapRequest {
        key: "player/2".into(),
        expected_mod_revision: Some(0),
        new_value: "carol".into(),
        ..Default::default()
    };
    assert!(kv_client.compare_and_swap(create.clone()).await.unwrap().into_inner().succeeded);
    assert!(!kv_client.compare_and_swap(create).await.unwrap().into_inner().succeeded);

    // Range: prefix, limit and continuation visit every key once, in order.
    for i in 0..25 {
        c.put(&format!("room/{i:03}"), &format!("v{i}")).await.unwrap();
    }
    c.put("roon", "outside the prefix").await.unwrap();
    let mut seen = Vec::new();
    let mut continuation = bytes::Bytes::new();
    loop {
        let page = kv_client
            .range(pb::RangeRequest {
                prefix: "room/".into(),
                limit: 10,
                continuation: continuation.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.kvs.len() <= 10);
        seen.extend(page.kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()));
        if page.continuation.is_empty() {
            break;
        }
        continuation = page.continuation;
    }
    let want: Vec<String> = (0..25).map(|i| format!("room/{i:03}")).collect();
    assert_eq!(seen, want);
    let r = kv_client
        .range(pb::RangeRequest {
            start: "room/010".into(),
            end: "room/013".into(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kvs.len(), 3);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));

    // Delete: present then absent.
    let d = kv_client
        .delete(pb::DeleteRequest { key: "player/2".into(), prev_kv: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(d.deleted);
    assert_eq!(d.prev_kv.unwrap().value, "carol");
    let d = kv_client
        .delete(pb::DeleteRequest { key: "player/2".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(!d.deleted);
    assert!(c.get("player/2").await.is_none());
    c.shutdown().await;
}

/// Writers run while the leader crashes. Every acknowledged write must survive, a new leader
/// must take over, and writes must resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_crash_under_concurrent_writes_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let old = c.wait_leader(T).await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let unknown: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let endpoints = c.endpoints();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, unknown, stop, endpoints) = (acked.clone(), unknown.clone(), stop.clone(), endpoints.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                let (key, value) = (format!("w{w}/{i:05}"), format!("value-{w}-{i}"));
                let result = put_via(&endpoints, &key, &value).await;
                match result {
                    Ok(_) => {
                        acked.lock().await.insert(key, value);
                    }
                    Err(_) => unknown.lock().await.push(key),
                }
                i += 1;
            }
        }));
    }
    eventually("100 writes acknowledged before the crash", T, || async {
        (acked.lock().await.len() >= 100).then_some(())
    })
    .await;
    c.crash(old).await;
    let at_crash = acked.lock().await.len();
    eventually("writes resume after the crash", T, || async {
        (acked.lock().await.len() >= at_crash + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    let new = c.wait_leader(T).await;
    assert_ne!(new, old, "a different node leads after the crash");

    // Linearizable reads after the fact see every acknowledged write.
    let acked = acked.lock().await.clone();
    for (key, value) in &acked {
        let got = c.get(key).await;
        assert_eq!(got.map(|kv| kv.value), Some(value.clone().into()), "acknowledged write {key} lost");
    }
    // A write after the reads is visible to the next read (no stale leader serving).
    let rev = c.put("after", "x").await.unwrap();
    assert_eq!(c.get("after").await.unwrap().mod_revision, rev);
    eprintln!("acknowledged {} writes, {} with unknown outcome", acked.len(), unknown.lock().await.len());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_node_catches_up_from_its_own_data() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let l = c.wait_leader(T).await;
    let f = (l + 1) % 3;
    c.put("before", "1").await.unwrap();
    c.stop(f).await;
    let mut last = 0;
    for i in 0..50 {
        last = c.put(&format!("while-down/{i}"), "v").await.unwrap();
    }
    c.restart(f).await;
    eventually("restarted follower applies everything", T, || async {
        let kv = c.local_get(f, "while-down/49").await?;
        (kv.mod_revision == last).then_some(())
    })
    .await;
    assert_eq!(c.local_get(f, "before").await.unwrap().value, "1");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn far_behind_node_catches_up_by_snapshot() {
    let mut c = TestCluster::start(3, |cfg| {
        cfg.raft.snapshot_after_entries = 40;
        cfg.raft.logs_kept_after_snapshot = 0;
    })
    .await;
    let l = c.wait_leader(T).await;
    let f = (l + 1) % 3;
    c.stop(f).await;
    let mut last = 0;
    for i in 0..200 {
        last = c.put(&format!("k/{i:04}"), &format!("v{i}")).await.unwrap();
    }
    // The leader must have compacted past what the stopped follower has.
    eventually("leader purged its log", T, || async {
        let m = c.node(l).shards().get(ShardId(0))?.metrics();
        (m.purged.map_or(0, |p| p.index) > 50).then_some(())
    })
    .await;
    c.restart(f).await;
    eventually("follower installed a snapshot and caught up", T, || async {
        let kv = c.local_get(f, "k/0199").await?;
        (kv.mod_revision == last).then_some(())
    })
    .await;
    let m = c.node(f).shards().get(ShardId(0)).unwrap().metrics();
    assert!(m.snapshot.is_some(), "the follower caught up through a snapshot: {m:?}");
    for i in [0, 57, 123, 199] {
        assert_eq!(c.local_get(f, &format!("k/{i:04}")).await.unwrap().value, format!("v{i}"));
    }
    c.shutdown().await;
}

/// Concurrent writes are packed into shared log entries; each must still be its own atomic
/// transaction with its own revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_concurrent_writes_stay_atomic_and_get_distinct_revisions() {
    let c = TestCluster::start(3, |_| {}).await;
    let l = c.wait_leader(T).await;
    let kv = c.kv(l).await;

    // 64 racing "create if absent" on one key: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let req = pb::CompareAndSwapRequest {
                key: "lock".into(),
                expected_mod_revision: Some(0),
                new_value: format!("owner-{i}").into(),
                ..Default::default()
            };
            kv.compare_and_swap(req).await.expect("cas").into_inner().succeeded
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one create-if-absent succeeds");

    // 128 concurrent puts: 128 distinct revisions, each readable with its own value.
    let mut tasks = Vec::new();
    for i in 0..128 {
        let mut kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let req =
                pb::PutRequest { key: format!("p/{i}").into(), value: format!("v{i}").into(), ..Default::default() };
            kv.put(req).await.expect("put").into_inner().header.unwrap().revision
        }));
    }
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap());
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 128, "every put got its own revision");
    for i in [0, 64, 127] {
        let kv = c.get(&format!("p/{i}")).await.unwrap();
        assert_eq!(kv.value, format!("v{i}"));
        assert!(revisions.binary_search(&kv.mod_revision).is_ok());
    }
    // How much batching happened (informational: depends on scheduling).
    let last_log = c.node(l).shards().get(ShardId(0)).unwrap().metrics().last_log_index.unwrap_or(0);
    let revision = c.node(l).shards().get(ShardId(0)).unwrap().reader.revision();
    assert!(revision > 128);
    eprintln!("{revision} revisions in {last_log} log entries");
    c.shutdown().await;
}

/// Nodes of a version before the Placement and LeaseHome services send placement steps and lease
/// questions on the Raft service: a node of this version still answers them there, the same as on
/// the new services.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_old_peer_paths_are_still_answered() {
    use hypercache_proto::raft::v1::raft_client::RaftClient;
    use hypercache_proto::raft::v1::RaftMessage;
    use hypercache_server::encoding::codec;
    use hypercache_server::lease_home::LeaseEndsReply;
    use hypercache_server::placement_driver::ops::{OpReply, ShardOp};

    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    let mut raft = RaftClient::connect(format!("http://{}", cluster.endpoint(0))).await.unwrap();

    // Opening a replica the node already has succeeds (steps are idempotent).
    let open =
        RaftMessage { shard_id: 0, payload: codec::encode(&ShardOp::Open).unwrap().into(), ..Default::default() };
    let reply: OpReply = codec::decode(&raft.shard_op(open).await.unwrap().into_inner().payload).unwrap();
    assert_eq!(reply, OpReply::Done);

    // A lease that never existed in shard 0 has ended there.
    let ids = vec![hypercache_server::types::LeaseId(12345)];
    let ask = RaftMessage { shard_id: 0, payload: codec::encode(&ids).unwrap().into(), ..Default::default() };
    let reply: LeaseEndsReply = codec::decode(&raft.lease_ends(ask).await.unwrap().into_inner().payload).unwrap();
    assert_eq!(reply, LeaseEndsReply::Ended(ids));
    cluster.shutdown().await;
}

/// A leader stopped gracefully (SIGTERM) hands its shards to another voter before it stops, so
/// writes move on without waiting for an election timer. The timers are set long here (4-5 s):
/// a leader that just stopped would leave the shard leaderless for at least 4 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_stopped_gracefully_hands_over_without_waiting_for_an_election() {
    let mut c = TestCluster::start(3, |cfg| {
        cfg.raft.election_timeout_min_ms = 4_000;
        cfg.raft.election_timeout_max_ms = 5_000;
        cfg.raft.quiet_after_ms = 0;
    })
    .await;
    let old = c.wait_leader(T).await;
    c.put("before", "1").await.unwrap();
    let stopping = tokio::time::Instant::now();
    c.stop(old).await;
    let new = c.wait_leader(T).await;
    let took = stopping.elapsed();
    assert_ne!(new, old, "another node leads");
    assert!(took < Duration::from_millis(3_000), "the next leader took {took:?}: no hand-over, an election timeout");
    let rev = c.put("after", "2").await.unwrap();
    assert_eq!(c.get("before").await.map(|kv| kv.value), Some("1".into()));
    assert_eq!(c.get("after").await.map(|kv| kv.mod_revision), Some(rev));
    c.shutdown().await;
}

/// A leader's hand-over names its last log position, and the successor waits for its log to
/// reach it for only `election_timeout_min`; past that it ignores the request, for good. Under
/// load the successor is usually an entry or two behind when the request comes (entries in
/// flight). Here the lag outlasts that wait: the leader's appends are held back while a write
/// reaches its log and let through 1.5 s into the hand-over, with a 1 s minimum timeout. The
/// leader must ask again once the successor has caught up, instead of leading on until its
/// shutdown wait runs out and leaving the shard to an election (5 s lease and 1-5 s timer here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hand_over_to_a_lagging_successor_is_asked_again_once_it_caught_up() {
    use hypercache_server::network::RaftRpc;
    let mut c = TestCluster::start(3, |cfg| {
        cfg.raft.election_timeout_min_ms = 1_000;
        cfg.raft.election_timeout_max_ms = 5_000;
        cfg.raft.quiet_after_ms = 0;
    })
    .await;
    let old = c.wait_leader(T).await;
    c.put("before", "1").await.unwrap();
    let links = c.node(old).raft_links().clone();
    links.set((0..3).filter(|i| *i != old).map(|i| (c.endpoint(i), RaftRpc::Append)));
    // A write that only the leader's log holds until the appends flow again.
    let last = |c: &TestCluster| c.node(old).shards().get(ShardId(0)).and_then(|s| s.metrics().last_log_index);
    let before = last(&c);
    let endpoints = c.endpoints();
    let pending = tokio::spawn(async move { put_via(&endpoints, "pending", "2").await });
    eventually("the pending write in the leader's log", T, || async { (last(&c) > before).then_some(()) }).await;
    let heal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        links.heal();
    });
    let stopping = tokio::time::Instant::now();
    c.stop(old).await;
    let new = c.wait_leader(T).await;
    let took = stopping.elapsed();
    eprintln!("next leader {took:?} after the stop began");
    heal.await.unwrap();
    assert_ne!(new, old, "another node leads");
    assert!(took < Duration::from_millis(3_000), "the next leader took {took:?}: the hand-over was not completed");
    // The pending write committed once or was refused; either way the shard is consistent.
    if let Ok(Ok(rev)) = pending.await {
        assert_eq!(c.get("pending").await.map(|kv| kv.mod_revision), Some(rev));
    }
    assert_eq!(c.get("before").await.map(|kv| kv.value), Some("1".into()));
    c.put("after", "3").await.unwrap();
    c.shutdown().await;
}

/// Pre-Vote: a follower cut off from the others does not raise its term while it cannot win an
/// election, so when it comes back the leader keeps leading in the same term. Without Pre-Vote
/// its term rose by one per election timeout, and its return deposed the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_back_from_a_partition_does_not_depose_the_leader() {
    use hypercache_server::network::RaftRpc;
    let c = TestCluster::start(3, |cfg| cfg.raft.quiet_after_ms = 0).await;
    let l = c.wait_leader(T).await;
    c.put("before", "1").await.unwrap();
    let f = (l + 1) % 3;
    let term_of = |i: usize| c.node(i).shards().get(ShardId(0)).map(|s| s.metrics().current_term);
    let term = term_of(l).expect("leader's replica");
    // Cut f off both ways: it hears nothing and nobody hears it.
    for from in 0..3 {
        let blocked: std::collections::HashSet<(String, RaftRpc)> = (0..3)
            .filter(|to| *to != from && (from == f || *to == f))
            .flat_map(|to| RaftRpc::ALL.into_iter().map(move |k| (to, k)))
            .map(|(to, k)| (c.endpoint(to), k))
            .collect();
        c.node(from).raft_links().set(blocked);
    }
    // Several election timeouts (600-1200 ms by default).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(term_of(f), Some(term), "the cut-off follower raised its term");
    for i in 0..3 {
        c.node(i).raft_links().heal();
    }
    c.put("after", "2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(c.wait_leader(T).await, l, "the leader kept leading");
    assert_eq!(term_of(l), Some(term), "no election after the follower came back");
    c.shutdown().await;
}
