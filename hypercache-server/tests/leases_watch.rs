//! Leases, transactions and watches on real in-process clusters.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{eventually, TestCluster};
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::lease_client::LeaseClient;
use hypercache_proto::v1::{self as pb};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

async fn channel(c: &TestCluster, i: usize) -> Channel {
    Channel::from_shared(format!("http://{}", c.endpoint(i))).expect("uri").connect().await.expect("connect")
}

async fn leader_channel(c: &TestCluster) -> (usize, Channel) {
    let l = c.wait_leader(Duration::from_secs(20)).await;
    (l, channel(c, l).await)
}

fn put(key: &str, value: &str, lease: u64) -> pb::PutRequest {
    pb::PutRequest { key: key.to_string().into(), value: value.to_string().into(), lease, ..Default::default() }
}

fn reason(st: &tonic::Status) -> String {
    info_of(st).map(|i| i.reason).unwrap_or_default()
}

async fn grant(ch: &Channel, ttl_ms: i64) -> u64 {
    LeaseClient::new(ch.clone())
        .grant(pb::LeaseGrantRequest { shard_id: 0, ttl_ms, write: None })
        .await
        .expect("grant")
        .into_inner()
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expires_after_keepalives_stop_and_watchers_see_the_deletes() {
    let c = TestCluster::start(3, |_| {}).await;
    let (_, ch) = leader_channel(&c).await;
    let mut kv = KvClient::new(ch.clone());
    let mut leases = LeaseClient::new(ch.clone());
    let id = grant(&ch, 1000).await;
    kv.put(put("players/a", "1", id)).await.expect("put a");
    kv.put(put("players/b", "2", id)).await.expect("put b");
    let mut watch = kv
        .watch(pb::WatchRequest { prefix: "players/".into(), prev_kv: true, ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    // Kept alive well past its TTL, it survives.
    let started = Instant::now();
    let mut last_ok = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let sent = Instant::now();
        let r = leases.keep_alive_once(pb::LeaseKeepAliveRequest { shard_id: 0, id }).await.expect("keepalive");
        assert_eq!(r.into_inner().ttl_ms, 1000);
        last_ok = sent;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(c.get("players/a").await.is_some(), "kept alive, the key must exist");
    // Stop: the keys go, in one revision, no earlier than last keepalive + TTL.
    let resp = loop {
        let r = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("delete event");
        let r = r.expect("stream open").expect("no error");
        if !r.events.is_empty() {
            break r;
        }
        assert!(r.progress, "an empty message is a progress notification");
    };
    let seen = Instant::now();
    assert!(
        seen >= last_ok + Duration::from_millis(1000),
        "expired early: {:?} after the last keepalive",
        seen - last_ok
    );
    assert!(seen < last_ok + Duration::from_millis(3000), "expired far too late: {:?}", seen - last_ok);
    let mut events = resp.events;
    while events.len() < 2 {
        events.extend(watch.next().await.unwrap().unwrap().events);
    }
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.r#type == pb::event::Type::Delete as i32));
    let revs: Vec<u64> = events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
    assert_eq!(revs[0], revs[1], "attached keys are deleted atomically at one revision");
    assert_eq!(events[0].prev_kv.as_ref().unwrap().lease, id);
    // A keepalive for the expired lease says it is gone; TimeToLive is NOT_FOUND.
    let r = leases.keep_alive_once(pb::LeaseKeepAliveRequest { shard_id: 0, id }).await.unwrap().into_inner();
    assert_eq!(r.ttl_ms, 0);
    let st = leases.time_to_live(pb::LeaseTimeToLiveRequest { shard_id: 0, id, keys: true }).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::NotFound, "LEASE_NOT_FOUND"));
    c.shutdown().await;
}

/// A lease whose deadline passes while its shard is quiet (no entry for `quiet_after_ms`, so
/// no heartbeats) still expires. openraft 0.10's leader refuses new entries once no quorum has
/// acked it within `election_timeout_max`; a quiet leader's expiry proposal was refused that
/// way, the lease stayed marked expiring, and nothing proposed it again before a new term: the
/// keys lived on. Client writes already woke the shard and proposed again; expiry did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_on_a_quiet_shard_expires() {
    let c = TestCluster::start(3, |_| {}).await;
    let (_, ch) = leader_channel(&c).await;
    let ttl = Duration::from_millis(4000);
    let id = grant(&ch, ttl.as_millis() as i64).await;
    KvClient::new(ch.clone()).put(put("quiet/a", "1", id)).await.expect("put");
    let sent = Instant::now();
    // No keepalive: 2 s on the shard goes quiet; its leader's quorum ack is then older than
    // `election_timeout_max` when the deadline passes. Watched through each node's local copy:
    // a linearizable read would confirm the leadership with a quorum round, which renews it.
    let gone = eventually("the lease expires on the quiet shard", Duration::from_secs(20), || async {
        for i in 0..3 {
            if c.local_get(i, "quiet/a").await.is_some() {
                return None;
            }
        }
        Some(Instant::now())
    })
    .await;
    assert!(gone >= sent + ttl, "expired early: {:?} after the grant", gone - sent);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_not_expired_early_across_a_leader_failover() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let (l, ch) = leader_channel(&c).await;
    let ttl = Duration::from_millis(3000);
    let id = grant(&ch, ttl.as_millis() as i64).await;
    KvClient::new(ch.clone()).put(put("session", "x", id)).await.expect("put");
    let sent = Instant::now();
    let r = LeaseClient::new(ch.clone()).keep_alive_once(pb::LeaseKeepAliveRequest { shard_id: 0, id }).await;
    assert_eq!(r.expect("keepalive").into_inner().ttl_ms, 3000);
    let vouched = sent + ttl;
    c.crash(l).await;
    // Until the deadline the holder could vouch for, every linearizable read must still see it.
    while Instant::now() + Duration::from_millis(100) < vouched {
        let l2 = c.wait_leader(Duration::from_secs(20)).await;
        let req = pb::GetRequest { key: "session".into(), ..Default::default() };
        match c.kv(l2).await.get(req).await {
            Ok(r) => assert!(
                r.into_inner().kv.is_some(),
                "lease expired early, {:?} before its deadline",
                vouched - Instant::now()
            ),
            Err(st) => assert_eq!(st.code(), Code::FailedPrecondition, "{st}"), // leadership moved meanwhile
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A leader change may extend a lease, never shorten it; but it does expire.
    eventually("the lease expires under the new leader", Duration::from_secs(15), || async {
        c.get("session").await.is_none().then_some(())
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_ttl_transactions_and_bad_lease_inputs() {
    let c = TestCluster::start(1, |_| {}).await;
    let (_, ch) = leader_channel(&c).await;
    let mut kv = KvClient::new(ch.clone());
    let mut leases = LeaseClient::new(ch.clone());
    // Per-key TTL.
    let r = kv
        .put(pb::PutRequest { key: "ttl".into(), value: "v".into(), ttl_ms: 300, ..Default::default() })
        .await
        .expect("put with ttl")
        .into_inner();
    assert_ne!(r.kv.unwrap().lease, 0);
    eventually("the ttl key disappears", Duration::from_secs(5), || async {
        c.get("ttl").await.is_none().then_some(())
    })
    .await;
    // Bad inputs: each a clear error, nothing changed.
    let before = c.get("x").await;
    let st = kv.put(put("x", "v", 424242)).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::NotFound, "LEASE_NOT_FOUND"), "{st}");
    assert!(st.message().contains("424242"), "{}", st.message());
    assert_eq!(c.get("x").await, before);
    for ttl in [-5, 0, i64::MAX] {
        let st = leases.grant(pb::LeaseGrantRequest { shard_id: 0, ttl_ms: ttl, write: None }).await.unwrap_err();
        assert_eq!((st.code(), reason(&st).as_str()), (Code::InvalidArgument, "INVALID_TTL"), "{ttl}: {st}");
    }
    let st = leases.revoke(pb::LeaseRevokeRequest { shard_id: 0, id: 99, write: None }).await.unwrap_err();
    assert_eq!(reason(&st), "LEASE_NOT_FOUND");
    let st = kv.put(put("\u{ff}", "v", 0)).await;
    assert!(st.is_ok(), "U+00FF is two UTF-8 bytes (0xc3 0xbf), not the reserved byte");
    let st = kv
        .put(pb::PutRequest { key: vec![0xff, b'x'].into(), value: "v".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(reason(&st), "RESERVED_KEY");
    // Transactions: compare on lease and version, then / else branches.
    let id = grant(&ch, 10_000).await;
    kv.put(put("t", "1", id)).await.unwrap();
    let op_put = |k: &str, v: &str| pb::RequestOp {
        op: Some(pb::request_op::Op::Put(pb::PutRequest {
            key: k.to_string().into(),
            value: v.to_string().into(),
            ..Default::default()
        })),
    };
    let cmp = |target| pb::Compare { key: "t".into(), target: Some(target) };
    let txn = pb::TxnRequest {
        shard_id: 0,
        compares: vec![cmp(pb::compare::Target::Lease(id)), cmp(pb::compare::Target::Version(1))],
        success: vec![op_put("t", "2"), op_put("u", "2")],
        failure: vec![pb::RequestOp { op: Some(pb::request_op::Op::Get(pb::GetOp { key: "t".into() })) }],
        write: None,
    };
    let r = kv.txn(txn.clone()).await.expect("txn").into_inner();
    assert!(r.succeeded);
    assert_eq!(r.responses.len(), 2);
    let t = c.get("t").await.unwrap();
    let u = c.get("u").await.unwrap();
    assert_eq!((t.mod_revision, t.lease), (u.mod_revision, 0), "one revision; the put without a lease detached t");
    let r = kv.txn(txn).await.expect("txn again").into_inner();
    assert!(!r.succeeded, "lease and version no longer match");
    let Some(pb::response_op::Op::Get(g)) = &r.responses[0].op else { panic!("{r:?}") };
    assert_eq!(g.kv.as_ref().unwrap().value, "2");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resume_across_a_leader_change_delivers_every_event_once_in_order() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let l = c.wait_leader(Duration::from_secs(20)).await;
    let follower = (l + 1) % 3;
    let total = 60usize;
    let writer = {
        let endpoints = c.endpoints();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..total {
                let rev = common::put_via(&endpoints, &format!("w/{i:03}"), "v").await.expect("put");
                acked.push((format!("w/{i:03}"), rev));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        })
    };
    // Watch from the start on the node that will lose leadership, then resume elsewhere.
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut last = 0u64;
    let mut target = l;
    let mut crashed = false;
    while seen.len() < total {
        let req = pb::WatchRequest { prefix: "w/".into(), start_revision: last + 1, ..Default::default() };
        let mut kv = KvClient::new(channel(&c, target).await);
        let mut stream = match kv.watch(req).await {
            Ok(s) => s.into_inner(),
            Err(st) => panic!("watch from {} failed: {st}", last + 1),
        };
        loop {
            let item = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("watch stalled");
            match item {
                Some(Ok(resp)) => {
                    for e in resp.events {
                        let kv = e.kv.unwrap();
                        assert!(
                            kv.mod_revision > last,
                            "revision {} after {last}: duplicate or out of order",
                            kv.mod_revision
                        );
                        last = kv.mod_revision;
                        seen.push((String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision));
                    }
                    if resp.progress {
                        last = last.max(resp.header.unwrap().revision);
                    }
                }
                Some(Err(_)) | None => break,
            }
            if seen.len() >= total / 3 && !crashed {
                crashed = true;
                c.crash(target).await;
                target = follower;
                break;
            }
            if seen.len() >= total {
                break;
            }
        }
    }
    let acked = writer.await.expect("writer");
    assert_eq!(seen, acked, "every acknowledged write exactly once, in revision order");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_cut_off_without_slowing_writes_and_old_revisions_are_compacted() {
    let c = TestCluster::start(1, |cfg| cfg.watch.history_events = 200).await;
    let (_, ch) = leader_channel(&c).await;
    let mut kv = KvClient::new(ch.clone());
    // A watcher that never reads, and one that does.
    let mut slow = kv.watch(pb::WatchRequest { prefix: "s/".into(), ..Default::default() }).await.unwrap().into_inner();
    let mut fast = kv.watch(pb::WatchRequest { prefix: "s/".into(), ..Default::default() }).await.unwrap().into_inner();
    let fast_reader = tokio::spawn(async move {
        let mut n = 0usize;
        while n < 1500 {
            match fast.next().await {
                Some(Ok(r)) => n += r.events.len(),
                other => panic!("fast watcher ended early: {other:?}"),
            }
        }
        n
    });
    let value = "x".repeat(4096);
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..1500 {
        let t = Instant::now();
        kv.put(put(&format!("s/{i}"), &value, 0)).await.expect("write while a watcher stalls");
        worst = worst.max(t.elapsed());
    }
    let elapsed = started.elapsed();
    assert!(worst < Duration::from_secs(2), "a write took {worst:?} while a watcher stalled");
    assert_eq!(tokio::time::timeout(Duration::from_secs(20), fast_reader).await.unwrap().unwrap(), 1500);
    // The slow watcher: whatever was queued, then WATCHER_TOO_SLOW naming where to resume.
    let mut resume = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), slow.next()).await.expect("slow stream ends") {
        if let Err(st) = item {
            assert_eq!((st.code(), reason(&st).as_str()), (Code::ResourceExhausted, "WATCHER_TOO_SLOW"), "{st}");
            resume = Some(info_of(&st).unwrap().revision);
            break;
        }
    }
    let resume = resume.expect("the slow watcher was cut off");
    assert!(resume > 1, "{resume}");
    // Where it was cut off depends on how much the transport buffered; 250 more writes push its
    // resume point out of the 200-event history whatever that was.
    for i in 0..250 {
        kv.put(put(&format!("s/more-{i}"), "v", 0)).await.expect("write");
    }
    // Its resume point fell out of the 200-event history: COMPACTED names the oldest revision.
    let st = kv
        .watch(pb::WatchRequest { prefix: "s/".into(), start_revision: resume, ..Default::default() })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::OutOfRange, "COMPACTED"), "{st}");
    let oldest = info_of(&st).unwrap().oldest_revision;
    assert!(st.message().contains(&oldest.to_string()), "{}", st.message());
    let mut from_oldest = kv
        .watch(pb::WatchRequest { prefix: "s/".into(), start_revision: oldest, ..Default::default() })
        .await
        .expect("the oldest revision is available")
        .into_inner();
    let first = from_oldest.next().await.unwrap().unwrap();
    assert_eq!(first.events[0].kv.as_ref().unwrap().mod_revision, oldest);
    eprintln!("1500 x 4 KiB puts with a stalled watcher: {elapsed:?} (worst single put {worst:?})");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let mut c = TestCluster::start(1, |cfg| cfg.shutdown_grace_ms = 10_000).await;
    let (_, ch) = leader_channel(&c).await;
    let mut kv = KvClient::new(ch.clone());
    let mut watch =
        kv.watch(pb::WatchRequest { prefix: "p/".into(), ..Default::default() }).await.unwrap().into_inner();
    let id = grant(&ch, 5000).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::LeaseKeepAliveRequest { shard_id: 0, id }).await.unwrap();
    let mut keepalive = LeaseClient::new(ch.clone())
        .keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("keepalive stream")
        .into_inner();
    assert_eq!(keepalive.next().await.unwrap().unwrap().ttl_ms, 5000);
    let started = Instant::now();
    c.stop(0).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown waited {took:?} for open streams (grace is 10 s)");
    let end = tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("watch stream ends");
    if let Some(Err(st)) = end {
        assert_eq!(reason(&st), "SHUTTING_DOWN", "{st}");
    }
    drop(tx);
}
