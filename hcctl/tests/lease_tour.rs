//! The README's lease tour ("Game-state primitives") with the real `hcctl` against real nodes in
//! this process, on the default cluster shape (3 nodes, 16 shards, 3 replicas): a lease granted
//! without a key carries keys of any name, whatever shard they map to; keepalive keeps all of
//! them; expiry and revoke delete all of them, and no key goes before the lease's home shard has
//! committed the end (checked at every observation: a key seen gone while the home shard still
//! knows the lease is a failure). The lag between the home shard's end and the last key's
//! deletion is printed (`cargo test -p hcctl --test lease_tour -- --nocapture`).
//! Also: a put that attached after the end (it raced with it) is deleted too, and the keys go
//! with the lease when its home shard's leader crashed before the expiry.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hypercache_client::{Client, ClientConfig, LeaseId, PutOptions};
use hypercache_proto::routing::Router;
use hypercache_server::local_cluster;
use hypercache_server::machine::command::{Attach, Op, Reply, Request, Txn};
use hypercache_server::node::Node;
use hypercache_server::types::ShardId;
use tempfile::TempDir;
use tokio::process::Command;

const SHARDS: u32 = 16;
const SETTLE: Duration = Duration::from_secs(90);
/// How long after the home shard's end every other key must be gone. The design's lag is one
/// poll period (100 ms) plus a round trip and a commit; this bound leaves room for a noisy
/// 2-core machine.
const LAG_BOUND: Duration = Duration::from_secs(3);

struct Cluster {
    _root: TempDir,
    /// None: crashed.
    nodes: Vec<Option<Node>>,
    endpoints: Vec<String>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        let mut endpoints = Vec::new();
        for mut planned in local_cluster::plan(n, root.path()).await.expect("loopback ports") {
            planned.config.shards = SHARDS;
            planned.config.replication = 3;
            let (config, node) = planned.start().await.expect("node starts");
            endpoints.push(config.advertise_addr);
            nodes.push(Some(node));
        }
        let cluster = Cluster { _root: root, nodes, endpoints };
        cluster.wait_ready().await;
        cluster
    }

    /// Every data shard has a ready leader.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let led: BTreeSet<u32> = self
                .nodes
                .iter()
                .flatten()
                .flat_map(|n| n.shards().data())
                .filter(|s| s.leader_term().is_ok() && s.is_ready())
                .map(|s| s.id.0)
                .collect();
            if led.len() == SHARDS as usize {
                return;
            }
            assert!(Instant::now() < deadline, "only shards {led:?} have a leader after {SETTLE:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn client(&self) -> Client {
        let config = ClientConfig::new(self.endpoints.clone()).request_timeout(Duration::from_secs(10));
        Client::new(config).expect("client")
    }

    async fn hcctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hcctl"));
        cmd.arg("--endpoints").arg(self.endpoints.join(",")).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let run = cmd.output();
        tokio::time::timeout(Duration::from_secs(30), run).await.expect("hcctl hung").expect("run hcctl")
    }

    /// hcctl that must succeed; returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.hcctl(args).await;
        assert_eq!(out.status.code(), Some(0), "hcctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The node leading `shard`, if one does.
    fn leader_of(&self, shard: ShardId) -> Option<usize> {
        let leads = |n: &Option<Node>| n.as_ref()?.shards().get(shard).filter(|s| s.leader_term().is_ok());
        self.nodes.iter().position(|n| leads(n).is_some())
    }

    async fn shutdown(self) {
        for node in self.nodes.into_iter().flatten() {
            node.shutdown().await.expect("graceful shutdown");
        }
    }
}

/// `session/p1` (the README's key) and more `session/pN` keys, until they cover the lease's
/// home shard and at least three other shards.
fn tour_keys(home: u32) -> Vec<String> {
    let router = Router::new(SHARDS);
    let mut keys = vec!["session/p1".to_string()];
    let mut shards: BTreeSet<u32> = keys.iter().map(|k| router.shard_of(k.as_bytes())).collect();
    for i in 2.. {
        if shards.contains(&home) && shards.len() >= 4 {
            break;
        }
        let key = format!("session/p{i}");
        if shards.insert(router.shard_of(key.as_bytes())) {
            keys.push(key);
        }
    }
    keys
}

/// Watches `keys` disappear after the end of `lease` (in flight or just done), checking at every
/// observation that a key seen gone was deleted after the home shard committed the end: the
/// keys are read first, then the lease at its home (linearizable), so a key gone while the home
/// still holds the lease is a violation. Returns the lag from the first observation of the
/// lease gone at its home to the last key gone.
async fn watch_keys_go(client: &Client, lease: LeaseId, keys: &[String]) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut home_gone_at = None;
    loop {
        let reads = futures::future::join_all(keys.iter().map(|k| client.get(Bytes::from(k.clone())))).await;
        let gone: Vec<&String> =
            keys.iter().zip(&reads).filter(|(_, r)| matches!(r, Ok(None))).map(|(k, _)| k).collect();
        let home_has_it = match client.time_to_live(lease, false).await {
            Ok(ttl) => ttl.is_some(),
            // The home shard is electing a leader (a crash test): nothing known this round.
            Err(e) if Instant::now() < deadline => {
                println!("time to live of {lease}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => panic!("time to live of {lease}: {e}"),
        };
        let now = Instant::now();
        assert!(
            !home_has_it || gone.is_empty(),
            "keys {gone:?} were deleted while lease {lease}'s home shard {} still holds it",
            lease.shard()
        );
        if !home_has_it && home_gone_at.is_none() {
            home_gone_at = Some(now);
        }
        if let (Some(home_gone_at), true) = (home_gone_at, gone.len() == keys.len()) {
            return now.saturating_duration_since(home_gone_at);
        }
        assert!(now < deadline, "keys of lease {lease} still there 30 s after its end: {reads:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_lease_tour_runs_on_sixteen_shards() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let router = Router::new(SHARDS);

    // hcctl lease grant; hcctl put session/p1 alive --lease ID (and keys of other shards).
    let id: u64 = cluster.ok(&["lease", "grant", "2000"]).await.parse().expect("a lease id");
    let lease = LeaseId(id);
    let keys = tour_keys(lease.shard().0);
    let shards: BTreeSet<u32> = keys.iter().map(|k| router.shard_of(k.as_bytes())).collect();
    println!("lease {id} (home shard {}) carries {keys:?} in shards {shards:?}", lease.shard());
    for key in &keys {
        cluster.ok(&["put", key, "alive", "--lease", &id.to_string()]).await;
    }

    // hcctl lease keepalive ID: every key lives for three TTLs.
    let mut keepalive = Command::new(env!("CARGO_BIN_EXE_hcctl"))
        .arg("--endpoints")
        .arg(cluster.endpoints.join(","))
        .args(["lease", "keepalive", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn keepalive");
    let kept_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < kept_until {
        for key in &keys {
            let kv = client.get(Bytes::from(key.clone())).await.expect("get").expect("kept alive");
            assert_eq!(kv.lease, id, "{key} is attached to the lease");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ctrl-C on the keepalive: the lease expires and takes every key with it.
    keepalive.start_kill().expect("stop keepalive");
    let _ = keepalive.wait().await;
    let lag = watch_keys_go(&client, lease, &keys).await;
    println!("expiry: last key of {} shards gone {} ms after the home shard's end", shards.len(), lag.as_millis());
    assert!(lag < LAG_BOUND, "expiry lag {lag:?}");

    // hcctl lease revoke: the same with an explicit end.
    let id: u64 = cluster.ok(&["lease", "grant", "60000"]).await.parse().expect("a lease id");
    let lease = LeaseId(id);
    let keys = tour_keys(lease.shard().0);
    for key in &keys {
        cluster.ok(&["put", key, "alive", "--lease", &id.to_string()]).await;
    }
    cluster.ok(&["lease", "revoke", &id.to_string()]).await;
    let lag = watch_keys_go(&client, lease, &keys).await;
    println!("revoke: last key gone {} ms after the home shard's end", lag.as_millis());
    assert!(lag < LAG_BOUND, "revoke lag {lag:?}");

    // Attaching to the revoked lease fails in any shard (exit 7: lease not found), and writes nothing.
    let foreign = keys.iter().find(|k| router.shard_of(k.as_bytes()) != lease.shard().0).expect("a foreign key");
    let out = cluster.hcctl(&["put", foreign, "late", "--lease", &id.to_string()]).await;
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(client.get(Bytes::from(foreign.clone())).await.expect("get"), None);

    cluster.shutdown().await;
}

/// A put whose check at the home shard passed just before the lease ended commits after the
/// end: the key must not outlive the lease. Simulated by proposing the attachment to the key's
/// shard directly, after the revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_attachment_to_an_ended_lease_is_deleted_too() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let router = Router::new(SHARDS);
    let lease = client.grant(Duration::from_secs(60)).await.expect("grant").id;
    client.revoke(lease).await.expect("revoke");
    let key = tour_keys(lease.shard().0)
        .into_iter()
        .find(|k| router.shard_of(k.as_bytes()) != lease.shard().0)
        .expect("a key of another shard");
    let shard = ShardId(router.shard_of(key.as_bytes()));
    let leader = cluster.leader_of(shard).expect("a leader of the key's shard");
    let leader = cluster.nodes[leader].as_ref().and_then(|n| n.shards().get(shard)).expect("its replica");
    let put = Op::Put {
        key: Bytes::from(key.clone()),
        value: Bytes::from_static(b"late"),
        prev_kv: false,
        attach: Attach::Lease(hypercache_server::types::LeaseId(lease.0)),
    };
    let applied = leader.write(None, Request::Txn(Txn { success: vec![put], ..Txn::default() })).await.expect("write");
    assert!(matches!(applied.outcome, Ok(Reply::Txn(_))), "{applied:?}");
    let started = Instant::now();
    let lag = watch_keys_go(&client, lease, &[key]).await;
    println!("late attachment deleted {} ms after it was written", started.elapsed().as_millis());
    assert!(lag < LAG_BOUND, "late attachment lag {lag:?}");
    cluster.shutdown().await;
}

/// The home shard's leader crashes with the lease and its keys in place: the next leader decides
/// the expiry (a full TTL after its election), the other shards' leaders find the new home leader
/// and delete their keys after it committed the end, never before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_with_the_lease_after_its_home_leader_crashed() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let lease = client.grant(Duration::from_secs(3)).await.expect("grant").id;
    let keys = tour_keys(lease.shard().0);
    for key in &keys {
        client.put_with(key.clone(), "alive", PutOptions::lease(lease)).await.expect("put with the lease");
    }
    let leader = cluster.leader_of(ShardId(lease.shard().0)).expect("a home leader");
    cluster.nodes[leader].take().expect("running").crash().await;
    let lag = watch_keys_go(&client, lease, &keys).await;
    println!("after a home leader crash: last key gone {} ms after the home shard's end", lag.as_millis());
    assert!(lag < LAG_BOUND, "lag {lag:?}");
    cluster.shutdown().await;
}
