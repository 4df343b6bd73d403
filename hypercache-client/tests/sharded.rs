//! The client against a fake two-shard cluster (`common::sharded`): keys go to their shard's
//! leader, NOT_LEADER moves one shard's leader only, UNKNOWN_SHARD and WRONG_SHARD refresh the
//! routing table (even for writes), ranges merge shards in key order across pages, a prefix
//! watch merges the shards' streams and resumes each from its own revision, and lease
//! operations follow the shard in the lease id (a put with a lease, the key's shard).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use common::scripted::lock;
use common::sharded::{cluster, Shared};
use hypercache_client::{
    Client, ClientConfig, Compare, Error, LeaseId, Op, RangeOptions, ShardId, Txn, WatchOptions, WatchUpdate,
};
use hypercache_proto::routing::Router;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// The first key `{prefix}{i}` that lives in `shard` of 2.
fn key_in(shard: u32, prefix: &str) -> Bytes {
    let router = Router::new(2);
    (0..).map(|i| format!("{prefix}{i}")).find(|k| router.shard_of(k.as_bytes()) == shard).expect("some key").into()
}

fn client(endpoints: &[String]) -> Client {
    let config = ClientConfig::new(endpoints.iter().take(1).cloned())
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .request_timeout(Duration::from_secs(5));
    Client::new(config).expect("client")
}

fn place(state: &Shared, hosts: &[(&str, &[u32])], leaders: &[(u32, &str)]) {
    let mut s = lock(state);
    s.hosts = hosts.iter().map(|(name, shards)| (name.to_string(), shards.to_vec())).collect();
    s.leaders = leaders.iter().map(|(shard, name)| (*shard, name.to_string())).collect();
    let table = s.table(1);
    s.tables = [Some(table)].into();
}

fn calls(state: &Shared, op: &str) -> Vec<(String, u32)> {
    lock(state).calls.iter().filter(|(_, o, _)| *o == op).map(|(n, _, s)| (n.clone(), *s)).collect()
}

fn at(name: &str, shard: u32) -> (String, u32) {
    (name.to_string(), shard)
}

#[tokio::test]
async fn keys_go_to_their_shard_leader_and_not_leader_moves_that_shard_only() {
    let (state, endpoints) = cluster(&["A", "B"], 2).await;
    place(&state, &[("A", &[0, 1]), ("B", &[0, 1])], &[(0, "A"), (1, "B")]);
    {
        // The table's hint for shard 1 is stale: it names A.
        let mut s = lock(&state);
        let mut table = s.table(1);
        table.shards[1].leader_id = table.shards[0].leader_id;
        s.tables = [Some(table)].into();
    }
    let client = client(&endpoints);
    let (k0, k1) = (key_in(0, "k"), key_in(1, "k"));

    client.put(k0.clone(), "v").await.expect("put shard 0");
    client.put(k1.clone(), "v").await.expect("put shard 1");
    assert_eq!(client.leader_hint(ShardId(0)).as_deref(), Some(endpoints[0].as_str()));
    assert_eq!(
        client.leader_hint(ShardId(1)).as_deref(),
        Some(endpoints[1].as_str()),
        "NOT_LEADER for shard 1 moved it"
    );

    client.put(k1, "v2").await.expect("put shard 1 again");
    client.put(k0.clone(), "v2").await.expect("put shard 0 again");
    assert_eq!(
        calls(&state, "put"),
        vec![at("A", 0), at("A", 1), at("B", 1), at("B", 1), at("A", 0)],
        "shard 1's redirect did not move shard 0"
    );
    assert_eq!(client.get(k0).await.expect("get").map(|kv| kv.value), Some(Bytes::from_static(b"v2")));
    assert!(client.endpoints().contains(&endpoints[1]), "the table's nodes joined the endpoint table");
}

#[tokio::test]
async fn unknown_shard_refreshes_the_table_and_even_a_write_is_retried() {
    let (state, endpoints) = cluster(&["A", "B"], 2).await;
    place(&state, &[("A", &[0]), ("B", &[1])], &[(0, "A"), (1, "B")]);
    {
        // Version 1 still says A hosts shard 1 (it moved to B); version 2 is right.
        let mut s = lock(&state);
        let right = s.table(2);
        let mut stale = right.clone();
        stale.version = 1;
        stale.shards[1] = stale.shards[0].clone();
        stale.shards[1].shard_id = 1;
        s.tables = [Some(stale), Some(right)].into();
    }
    let client = client(&endpoints);
    client.put(key_in(1, "k"), "v").await.expect("rerouted put");
    assert_eq!(calls(&state, "put"), vec![at("A", 1), at("B", 1)]);
    assert_eq!(lock(&state).routing_calls, 2, "one refresh");
    assert_eq!(client.routing().await.expect("table").version, 2);
}

#[tokio::test]
async fn wrong_shard_after_a_legacy_answer_refreshes_to_the_sharded_table() {
    let (state, endpoints) = cluster(&["A"], 2).await;
    place(&state, &[("A", &[0, 1])], &[(0, "A"), (1, "A")]);
    {
        let mut s = lock(&state);
        let table = s.table(1);
        // The first answer is UNIMPLEMENTED: the client believes in one shard.
        s.tables = [None, Some(table)].into();
    }
    let client = client(&endpoints);
    client.put(key_in(1, "k"), "v").await.expect("put");
    assert_eq!(calls(&state, "put"), vec![at("A", 0), at("A", 1)], "WRONG_SHARD, then the right shard");
    assert!(!client.routing().await.expect("table").is_legacy());
}

#[tokio::test]
async fn ranges_merge_the_shards_in_key_order_across_pages() {
    let (state, endpoints) = cluster(&["A", "B"], 2).await;
    place(&state, &[("A", &[0, 1]), ("B", &[0, 1])], &[(0, "A"), (1, "B")]);
    let client = client(&endpoints);
    let mut expected = BTreeSet::new();
    for i in 0..11 {
        let key = format!("p/{i:02}");
        client.put(key.clone(), "v").await.expect("put");
        expected.insert(Bytes::from(key));
    }
    client.put("q/other", "v").await.expect("put outside the prefix");
    let router = Router::new(2);
    assert!(expected.iter().any(|k| router.shard_of(k) == 0) && expected.iter().any(|k| router.shard_of(k) == 1));

    let mut options = RangeOptions { limit: 3, ..RangeOptions::prefix("p/") };
    let mut listed = Vec::new();
    loop {
        let page = client.range(options.clone()).await.expect("page");
        assert!(page.kvs.len() <= 3, "the limit holds for the merged page");
        assert_eq!(
            page.revisions.keys().copied().collect::<Vec<_>>(),
            vec![ShardId(0), ShardId(1)],
            "both shards answered"
        );
        assert_eq!(page.revision, 0, "no single revision for a merged page");
        listed.extend(page.kvs.into_iter().map(|kv| kv.key));
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, expected.into_iter().collect::<Vec<_>>(), "every key once, in key order");

    // A prefix with a hash tag lives in one shard: one request, the server's continuation.
    lock(&state).calls.clear();
    let page = client.range(RangeOptions::prefix("t/{x}/")).await.expect("tagged range");
    let shard = ShardId(router.shard_of(b"x"));
    assert_eq!(page.revisions.keys().copied().collect::<Vec<_>>(), vec![shard]);
    assert_eq!(calls(&state, "range").len(), 1);
}

#[tokio::test]
async fn transactions_across_shards_are_refused_without_sending() {
    let (state, endpoints) = cluster(&["A"], 2).await;
    place(&state, &[("A", &[0, 1])], &[(0, "A"), (1, "A")]);
    let client = client(&endpoints);
    let txn = Txn::new().when(Compare::exists(key_in(0, "k"))).then(Op::put(key_in(1, "k"), "v"));
    let err = client.txn(txn).await.expect_err("two shards");
    assert!(err.is_reason(hypercache_client::Reason::CrossShard), "{err:?}");
    assert!(err.to_string().contains("hash tag"), "{err}");
    assert!(lock(&state).calls.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_prefix_watch_merges_shards_and_resumes_each_from_its_own_revision() {
    let (state, endpoints) = cluster(&["A", "B"], 2).await;
    place(&state, &[("A", &[0, 1]), ("B", &[0, 1])], &[(0, "A"), (1, "A")]);
    let client = client(&endpoints);
    for i in 0..8 {
        client.put(format!("w/{i}"), "v").await.expect("put");
    }
    let per_shard: BTreeMap<ShardId, u64> = (0..2).map(|s| (ShardId(s), lock(&state).revision(s))).collect();
    assert!(per_shard.values().all(|r| *r >= 2), "both shards have history: {per_shard:?}");
    // Every shard's first stream ends after one message: each must resume on its own.
    lock(&state).first_stream_messages = 1;

    let err = client.watch(WatchOptions::prefix("w/").start_revision(1)).next().await.expect_err("two shards");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");

    let mut watcher =
        client.watch(WatchOptions::prefix("w/").start_revisions(BTreeMap::from([(ShardId(0), 1), (ShardId(1), 1)])));
    let mut seen: BTreeMap<ShardId, Vec<u64>> = BTreeMap::new();
    while seen.values().map(Vec::len).sum::<usize>() < 8 {
        match timeout(LIMIT, watcher.next()).await.expect("watch stalled").expect("watch failed") {
            WatchUpdate::Events { shard, revision, events } => {
                assert!(events.iter().all(|e| e.shard == shard));
                assert_eq!(revision, events.last().expect("non-empty").revision());
                seen.entry(shard).or_default().extend(events.iter().map(|e| e.revision()));
            }
            WatchUpdate::Progress { .. } => {}
        }
    }
    for (shard, revisions) in &seen {
        let all: Vec<u64> = (1..=per_shard[shard]).collect();
        assert_eq!(revisions, &all, "shard {shard}: every revision once, in order");
    }
    assert_eq!(watcher.last_revisions(), per_shard);
    let watches = lock(&state).watches.clone();
    for shard in 0..2 {
        let starts: Vec<(String, u64)> =
            watches.iter().filter(|(_, s, _)| *s == shard).map(|(n, _, r)| (n.clone(), *r)).collect();
        assert_eq!(&starts[..2], &[("A".to_string(), 1), ("B".to_string(), 2)], "shard {shard} resumed after rev 1");
    }
}

#[tokio::test]
async fn lease_operations_follow_the_shard_in_the_id() {
    let (state, endpoints) = cluster(&["A", "B"], 2).await;
    place(&state, &[("A", &[0]), ("B", &[1])], &[(0, "A"), (1, "B")]);
    let client = client(&endpoints);

    let renewed = client.keep_alive_once(LeaseId(1 << 48 | 7)).await.expect("keepalive");
    assert!(renewed.is_some());
    client.revoke(LeaseId(3)).await.expect("revoke");
    assert_eq!(calls(&state, "lease_keep_alive_once"), vec![at("B", 1)]);
    assert_eq!(calls(&state, "lease_revoke"), vec![at("A", 0)]);

    let k1 = key_in(1, "k");
    let lease = client.grant_for_key(k1.clone(), Duration::from_secs(1)).await.expect("grant for key");
    assert_eq!(lease.id.shard(), ShardId(1));
    let home = client.home_shard().await.expect("home");
    assert_eq!(home, ShardId(Router::new(2).shard_of(b"hypercache")));
    let lease = client.grant(Duration::from_secs(1)).await.expect("grant");
    assert_eq!(lease.id.shard(), home, "plain grants go to the home shard");

    // A key attached to a lease of another shard goes to the key's shard (which asks the
    // lease's home shard itself).
    let k0 = key_in(0, "k");
    let options = hypercache_client::PutOptions::lease(LeaseId(1 << 48 | 7));
    client.put_with(k0, "v", options).await.expect("a put with a lease of another shard");
    assert_eq!(calls(&state, "put"), vec![at("A", 0)]);

    let err = client.keep_alive_once(LeaseId(5 << 48 | 1)).await.expect_err("no shard 5");
    assert!(matches!(err, Error::UnknownShard { .. }), "{err:?}");
}
