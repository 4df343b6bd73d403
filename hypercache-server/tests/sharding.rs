//! Multi-Raft sharding with real nodes in one process: 5 nodes, 8 shards, 3 replicas each.
//!
//! Placement (replicas, leaders), losing a node, replacing a node that stays down, adding a
//! node, decommissioning a node, and the earlier issues' guarantees on a shard other than 0.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, get_in, put_in, TestCluster};
use hypercache_proto::error_info::info_of;
use hypercache_proto::routing::Router;
use hypercache_proto::v1 as pb;
use hypercache_proto::v1::boards_client::BoardsClient;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::lease_client::LeaseClient;
use hypercache_proto::v1::registry_client::RegistryClient;
use hypercache_server::node::Node;
use openraft::ServerState;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

const SHARDS: u32 = 8;
const SETTLE: Duration = Duration::from_secs(60);

async fn start(n: usize) -> TestCluster {
    TestCluster::start(n, |c| {
        c.shards = SHARDS;
        c.replication = 3;
    })
    .await
}

/// One shard as the running nodes report it.
#[derive(Debug, Clone, Default)]
struct ShardView {
    /// Node indexes hosting a replica.
    hosts: BTreeSet<usize>,
    leader: Option<usize>,
    /// As the leader's membership has them (node indexes).
    voters: BTreeSet<usize>,
    learners: BTreeSet<usize>,
}

fn view(c: &TestCluster) -> BTreeMap<u32, ShardView> {
    let mut out: BTreeMap<u32, ShardView> = (0..SHARDS).map(|s| (s, ShardView::default())).collect();
    for (i, node) in c.nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        for shard in node.shards().data() {
            let v = out.entry(shard.id.0).or_default();
            v.hosts.insert(i);
            let m = shard.metrics();
            if m.state == ServerState::Leader {
                let membership = m.membership_config.membership();
                v.leader = Some(i);
                v.voters = membership.voter_ids().map(|id| id as usize - 1).collect();
                v.learners = membership.learner_ids().map(|id| id as usize - 1).collect();
            }
        }
    }
    out
}

/// Every shard has a leader, exactly 3 voters on distinct running nodes, no learners, and no
/// replica outside its voters; leaders are spread (at most ceil(S/N)+1 per node).
fn settled(c: &TestCluster) -> Option<BTreeMap<u32, ShardView>> {
    let v = view(c);
    let running = c.nodes.iter().filter(|n| n.is_some()).count() as u32;
    let mut leaders: BTreeMap<usize, u32> = BTreeMap::new();
    for s in v.values() {
        let leader = s.leader?;
        if s.voters.len() != 3 || !s.learners.is_empty() || s.hosts != s.voters {
            return None;
        }
        if s.voters.iter().any(|i| c.nodes[*i].is_none()) {
            return None;
        }
        *leaders.entry(leader).or_default() += 1;
    }
    let max = SHARDS.div_ceil(running) + 1;
    leaders.values().all(|n| *n <= max).then_some(v)
}

/// A key that maps to shard `s`.
fn key_in(s: u32, tag: &str) -> String {
    let r = Router::new(SHARDS);
    (0..).map(|i| format!("{tag}-{i}")).find(|k| r.shard_of(k.as_bytes()) == s).expect("some key maps to s")
}

fn shard_of(key: &str) -> u32 {
    Router::new(SHARDS).shard_of(key.as_bytes())
}

/// A linearizable get of `key` from its shard, trying every endpoint until one leads.
async fn get_routed(endpoints: &[String], key: &str) -> Option<pb::KeyValue> {
    get_in(endpoints, shard_of(key), key).await
}

async fn meta_client(c: &TestCluster) -> ClusterClient<tonic::transport::Channel> {
    let l = c.wait_meta_leader(SETTLE).await;
    ClusterClient::connect(format!("http://{}", c.endpoint(l))).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_leaders_spread_and_the_routing_table_shows_them() {
    let c = start(5).await;
    let v =
        eventually("8 shards settled with 3 voters each and leaders spread", SETTLE, || async { settled(&c) }).await;
    let mut leaders: BTreeMap<usize, u32> = BTreeMap::new();
    for s in v.values() {
        *leaders.entry(s.leader.unwrap()).or_default() += 1;
    }
    eprintln!("leaders per node index: {leaders:?}");
    assert!(leaders.values().all(|n| *n <= SHARDS.div_ceil(5) + 1), "{leaders:?}");

    // The routing table agrees: 8 shards, 3 distinct replicas each, every node listed.
    let mut cluster = ClusterClient::connect(format!("http://{}", c.endpoint(0))).await.unwrap();
    let table = cluster.routing(pb::RoutingRequest {}).await.unwrap().into_inner();
    assert!(table.version > 0);
    assert_eq!((table.shard_count, table.replication, table.nodes.len()), (SHARDS, 3, 5));
    for (s, route) in table.shards.iter().enumerate() {
        assert_eq!(route.shard_id, s as u32);
        let replicas: BTreeSet<u64> = route.replicas.iter().copied().collect();
        assert_eq!(replicas.len(), 3, "{route:?}");
        let voters: BTreeSet<u64> = v[&(s as u32)].voters.iter().map(|i| *i as u64 + 1).collect();
        assert_eq!(replicas, voters, "shard {s}: the table and the shard agree");
    }

    // A node without a replica of a shard answers with a routing error, not a hang.
    let (s, outsider) = v
        .iter()
        .find_map(|(s, sv)| (0..5).find(|i| !sv.hosts.contains(i)).map(|i| (*s, i)))
        .expect("with 3 of 5 nodes per shard some node lacks each shard");
    let mut kv = KvClient::connect(format!("http://{}", c.endpoint(outsider))).await.unwrap();
    let key = key_in(s, "probe");
    let st = tokio::time::timeout(
        Duration::from_secs(2),
        kv.get(pb::GetRequest { shard_id: s, key: key.into(), serializable: false }),
    )
    .await
    .expect("answered at once")
    .unwrap_err();
    assert_eq!(info_of(&st).unwrap().reason, "UNKNOWN_SHARD", "{st:?}");
    // A key sent to the wrong shard is refused as such.
    let leader = v[&s].leader.unwrap();
    let mut kv = KvClient::connect(format!("http://{}", c.endpoint(leader))).await.unwrap();
    let elsewhere = key_in((s + 1) % SHARDS, "probe");
    let st = kv.get(pb::GetRequest { shard_id: s, key: elsewhere.into(), serializable: false }).await.unwrap_err();
    assert_eq!(info_of(&st).unwrap().reason, "WRONG_SHARD", "{st:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_any_one_node_leaves_every_shard_writable() {
    let mut c = start(5).await;
    let v = eventually("settled", SETTLE, || async { settled(&c) }).await;
    // The node leading the most shards is the hardest one to lose.
    let mut leaders: BTreeMap<usize, u32> = BTreeMap::new();
    for s in v.values() {
        *leaders.entry(s.leader.unwrap()).or_default() += 1;
    }
    let victim = leaders.iter().max_by_key(|(_, n)| **n).map(|(i, _)| *i).unwrap();
    c.crash(victim).await;
    let endpoints = c.endpoints();
    let started = Instant::now();
    for s in 0..SHARDS {
        let key = key_in(s, "after-crash");
        put_in(&endpoints, s, &key, "v").await.unwrap_or_else(|e| panic!("shard {s} not writable: {e:?}"));
        assert_eq!(get_routed(&endpoints, &key).await.map(|kv| kv.value), Some("v".into()));
    }
    eprintln!("every shard written {} ms after node {victim} crashed", started.elapsed().as_millis());
    c.shutdown().await;
}

/// Whether the meta leader's routing table marks node `id` down (None: no answer).
async fn marked_down(c: &TestCluster, id: u64) -> Option<bool> {
    let mut cluster = meta_client(c).await;
    cluster.routing(pb::RoutingRequest {}).await.ok().map(|r| r.into_inner().down.contains(&id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_node_is_replaced_and_gets_replicas_again_when_it_returns() {
    down_node_is_replaced_and_gets_replicas_again(|_| {}).await;
}

/// The same with 250-450 ms election timers: a quiet leader's lease (`election_timeout_max`)
/// runs out sooner, and its refusal of the placement driver's `AddLearner` (188 times in 60 s)
/// left the crashed node's replica unreplaced until membership changes renewed the lease too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_node_is_replaced_when_its_shards_leaders_are_quiet_with_short_leases() {
    down_node_is_replaced_and_gets_replicas_again(|r| {
        r.election_timeout_min_ms = 250;
        r.election_timeout_max_ms = 450;
    })
    .await;
}

async fn down_node_is_replaced_and_gets_replicas_again(timers: impl Fn(&mut hypercache_server::config::RaftSettings)) {
    let mut c = TestCluster::start(5, |c| {
        c.shards = SHARDS;
        c.replication = 3;
        c.replace_down_node_after_ms = 2_000;
        timers(&mut c.raft);
    })
    .await;
    let v = eventually("settled", SETTLE, || async { settled(&c) }).await;
    // A node holding replicas and not leading the meta group (its successor's silence clock
    // would start later, which only slows the test down).
    let meta = c.wait_meta_leader(SETTLE).await;
    let victim = (0..5).find(|i| *i != meta && v.values().any(|s| s.voters.contains(i))).expect("a victim");
    let endpoints = c.endpoints();
    let mut written = Vec::new();
    for s in 0..SHARDS {
        let key = key_in(s, "before-down");
        put_in(&endpoints, s, &key, "v").await.unwrap_or_else(|e| panic!("shard {s}: {e:?}"));
        written.push(key);
    }

    c.crash(victim).await;
    let crashed = Instant::now();
    // `settled` wants 3 voters per shard, all on running nodes: the victim's replicas were
    // re-created on the other four and it was removed from every shard.
    eventually("every shard back at 3 voters on the 4 running nodes", SETTLE, || async { settled(&c) }).await;
    eprintln!("replicas of node {victim} re-created {} ms after the crash", crashed.elapsed().as_millis());
    let victim_id = victim as u64 + 1;
    assert_eq!(marked_down(&c, victim_id).await, Some(true), "the routing table marks node {victim_id} down");
    for s in 0..SHARDS {
        let key = key_in(s, "while-down");
        put_in(&endpoints, s, &key, "v").await.unwrap_or_else(|e| panic!("shard {s}: {e:?}"));
        written.push(key);
    }

    // Back with its old data: its stale replicas are closed, then it gets replicas again.
    c.restart(victim).await;
    let v = eventually("the returned node to hold caught-up voters again", SETTLE, || async {
        settled(&c).filter(|v| v.values().any(|s| s.voters.contains(&victim)))
    })
    .await;
    let held = v.values().filter(|s| s.voters.contains(&victim)).count();
    eprintln!("node {victim} holds {held} replicas again");
    assert_eq!(marked_down(&c, victim_id).await, Some(false), "node {victim_id} is no longer marked down");
    for key in &written {
        assert_eq!(get_routed(&endpoints, key).await.map(|kv| kv.value), Some("v".into()), "{key}");
    }
    c.shutdown().await;
}

/// Starts a sixth node that waits to be added (its static peers name a lower id, so it never
/// initializes anything itself) under a DNS name.
async fn start_sixth(c: &TestCluster) -> (Node, hypercache_server::config::Config) {
    let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = g.local_addr().unwrap().port();
    let endpoint = format!("localhost:{port}");
    let mut config = c.configs[0].clone();
    config.node_id = 6;
    config.name = "node-6".into();
    config.data_dir = c.root.path().join("node-6");
    config.listen_addr = g.local_addr().unwrap();
    config.admin_addr = a.local_addr().unwrap();
    config.advertise_addr = endpoint.clone();
    config.peers = vec![format!("1={}", c.endpoint(0)), format!("6={endpoint}")];
    config.validate().expect("valid");
    let node = Node::start_on(config.clone(), g, a).await.expect("sixth node starts");
    (node, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixth_node_receives_replicas_and_fewer_than_half_move() {
    let mut c = start(5).await;
    let before = eventually("settled", SETTLE, || async { settled(&c) }).await;
    let mut meta = meta_client(&c).await;
    let (node, config) = start_sixth(&c).await;
    let endpoint = config.advertise_addr.clone();
    c.nodes.push(Some(node));
    c.configs.push(config);
    let added = meta.add_node(pb::AddNodeRequest { endpoint }).await.expect("add node").into_inner();
    assert_eq!((added.node_id, added.name.as_str()), (6, "node-6"));

    let after = eventually("settled with node 6 holding replicas", SETTLE, || async {
        settled(&c).filter(|v| v.values().any(|s| s.voters.contains(&5)))
    })
    .await;
    let moved: usize = (0..SHARDS).map(|s| after[&s].voters.difference(&before[&s].voters).count()).sum();
    let on_new = after.values().filter(|s| s.voters.contains(&5)).count();
    eprintln!("{moved} of 24 replicas moved; node 6 holds {on_new}");
    assert!(moved < 12, "{moved} of 24 replicas moved");
    assert_eq!(moved, on_new, "replicas moved only to the new node");
    c.shutdown().await;
}

/// Writes to every shard until `stop`; returns the acknowledged keys and the errors (writes cut
/// by a crash end with an unknown outcome).
fn spawn_writer(endpoints: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(Vec<String>, Vec<String>)> {
    tokio::spawn(async move {
        let (mut acked, mut failed) = (Vec::new(), Vec::new());
        let mut i = 0u32;
        while !stop.load(Ordering::Acquire) {
            let key = format!("w-{i}");
            match put_in(&endpoints, shard_of(&key), &key, "v").await {
                Ok(_) => acked.push(key),
                Err(e) => failed.push(format!("{key}: {e:?}")),
            }
            i += 1;
        }
        (acked, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_moves_replicas_away_first_and_loses_no_write() {
    let c = Arc::new(start(5).await);
    eventually("settled", SETTLE, || async { settled(&c) }).await;
    let endpoints = c.endpoints();

    // Writes to every shard run throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(endpoints.clone(), stop.clone());

    let leaving = 4usize; // node-5
    let started = meta_client(&c)
        .await
        .decommission(pb::DecommissionRequest { name: "node-5".into() })
        .await
        .expect("decommission starts")
        .into_inner();
    assert_eq!(started.node_id, 5);
    assert!(!started.removed);
    // While it is a member its replicas move; it leaves only once it hosts none.
    let deadline = Instant::now() + SETTLE;
    loop {
        let meta = c.node(0).shards().meta().unwrap();
        let member = meta.metrics().membership_config.membership().get_node(&5).is_some();
        let hosted = c.node(leaving).shards().data().len();
        if !member {
            assert_eq!(hosted, 0, "node-5 left while it still hosted {hosted} replicas");
            break;
        }
        assert!(Instant::now() < deadline, "node-5 still a member after {SETTLE:?}; hosts {hosted}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    let (acked, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "writes failed during the decommission: {failed:?}");
    assert!(acked.len() > 10, "writes kept flowing: {}", acked.len());
    let others: Vec<String> = (0..4).map(|i| c.endpoint(i)).collect();
    for key in &acked {
        assert!(get_routed(&others, key).await.is_some(), "acknowledged {key} was lost");
    }
    eprintln!("{} acknowledged writes during the decommission, all readable", acked.len());
    let c = Arc::try_unwrap(c).ok().expect("writer done");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_watches_reads_and_fencing_hold_on_a_non_zero_shard() {
    let c = start(5).await;
    let v = eventually("settled", SETTLE, || async { settled(&c) }).await;
    let s = 5u32;
    let leader = c.endpoint(v[&s].leader.unwrap());
    let channel = tonic::transport::Channel::from_shared(format!("http://{leader}")).unwrap().connect().await.unwrap();
    let mut kv = KvClient::new(channel.clone());
    let mut leases = LeaseClient::new(channel);

    let key = key_in(s, "session");
    let mut watch = kv
        .watch(pb::WatchRequest { shard_id: s, key: key.clone().into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let lease =
        leases.grant(pb::LeaseGrantRequest { shard_id: s, ttl_ms: 60_000, write: None }).await.unwrap().into_inner();
    assert_eq!(lease.id >> 48, u64::from(s), "lease ids carry their shard");
    let put = pb::PutRequest {
        shard_id: s,
        key: key.clone().into(),
        value: "on".into(),
        lease: lease.id,
        ..Default::default()
    };
    kv.put(put).await.unwrap();
    // Linearizable: a read through any node after the ack sees the write.
    assert_eq!(get_routed(&c.endpoints(), &key).await.map(|kv| kv.lease), Some(lease.id));
    leases.revoke(pb::LeaseRevokeRequest { shard_id: s, id: lease.id, write: None }).await.unwrap();
    assert_eq!(get_routed(&c.endpoints(), &key).await, None, "revoking the lease deleted its key");

    let mut types = Vec::new();
    while types.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("event").unwrap().unwrap();
        types.extend(msg.events.iter().map(|e| e.r#type));
        assert_eq!(msg.header.unwrap().shard_id, s);
    }
    assert_eq!(types, vec![pb::event::Type::Put as i32, pb::event::Type::Delete as i32]);

    // A lease of one shard cannot carry a key of another.
    let other = key_in((s + 1) % SHARDS, "x");
    let lease =
        leases.grant(pb::LeaseGrantRequest { shard_id: s, ttl_ms: 60_000, write: None }).await.unwrap().into_inner();
    let put =
        pb::PutRequest { shard_id: s, key: other.into(), value: "v".into(), lease: lease.id, ..Default::default() };
    let st = kv.put(put).await.unwrap_err();
    assert_eq!(info_of(&st).unwrap().reason, "WRONG_SHARD");

    // Board fencing on this shard: a sync at a superseded epoch is refused with the owner.
    let ch = tonic::transport::Channel::from_shared(format!("http://{leader}")).unwrap().connect().await.unwrap();
    let mut registry = RegistryClient::new(ch.clone());
    let mut boards = BoardsClient::new(ch);
    for server in ["srv-a", "srv-b"] {
        let req = pb::RegisterRequest {
            shard_id: s,
            server_id: server.into(),
            address: format!("{server}:9000"),
            capacity: 4,
            ttl_ms: 60_000,
            ..Default::default()
        };
        registry.register(req).await.expect("register");
    }
    let create = pb::CreateBoardRequest {
        shard_id: s,
        board_id: "arena-1".into(),
        checkpoint: "init".into(),
        ..Default::default()
    };
    boards.create(create).await.expect("create");
    let assign = |server: &str, expected: u64, id: &str| pb::AssignBoardRequest {
        shard_id: s,
        board_id: "arena-1".into(),
        server_id: server.into(),
        expected_epoch: expected,
        request_id: id.into(),
        ..Default::default()
    };
    boards.assign(assign("srv-a", 0, "r1")).await.expect("assign to a");
    boards.assign(assign("srv-b", 1, "r2")).await.expect("move to b");
    let sync = |epoch: u64| pb::SyncBoardRequest {
        shard_id: s,
        board_id: "arena-1".into(),
        epoch,
        seq: 1,
        checkpoint: "state".into(),
        write: None,
    };
    let st = boards.sync(sync(1)).await.unwrap_err();
    let info = info_of(&st).unwrap();
    assert_eq!((info.reason.as_str(), info.owner.as_str(), info.epoch), ("STALE_EPOCH", "srv-b", 2), "{st:?}");
    boards.sync(sync(2)).await.expect("the owner's sync is written");
    c.shutdown().await;
}

/// Every running voter of a shard whose leader has committed its membership hosts a replica:
/// no replica of a voter was closed.
fn voters_host_their_replicas(c: &TestCluster) -> Result<(), String> {
    for node in c.nodes.iter().flatten() {
        for shard in node.shards().data() {
            let m = shard.metrics();
            let applied = m.last_applied.map(|l| l.index);
            let pending = m.membership_config.log_id().is_some_and(|l| applied < Some(l.index));
            if m.state != ServerState::Leader || pending {
                continue;
            }
            for v in m.membership_config.membership().voter_ids() {
                let Some(Some(n)) = c.nodes.get(v as usize - 1) else { continue };
                if n.shards().get(shard.id).is_none() {
                    return Err(format!("shard {}: voter {v} hosts no replica (leader {})", shard.id, shard.node_id));
                }
            }
        }
    }
    Ok(())
}

/// The placement driver's meta group loses its leader while replicas move (a decommission):
/// the next driver carries on from committed state, no voter's replica is closed, the move
/// finishes and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_leader_change_in_the_middle_of_a_replica_move() {
    let mut c = start(5).await;
    let before = eventually("settled", SETTLE, || async { settled(&c) }).await;
    let driver = c.wait_meta_leader(SETTLE).await;
    let leaving = (0..5).find(|i| *i != driver && before.values().any(|s| s.voters.contains(i))).expect("a node");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(c.endpoints(), stop.clone());
    let name = format!("node-{}", leaving + 1);
    meta_client(&c).await.decommission(pb::DecommissionRequest { name: name.clone() }).await.expect("decommission");
    eventually("a move in progress", SETTLE, || async {
        view(&c).values().any(|s| !s.learners.is_empty() || s.voters.len() > 3).then_some(())
    })
    .await;
    // The driver's node goes away mid-move; another meta voter takes over.
    c.crash(driver).await;
    let next = c.wait_meta_leader(SETTLE).await;
    eprintln!("meta leader {driver} crashed mid-move; {next} drives now");
    voters_host_their_replicas(&c).expect("after the meta leader change");
    c.restart(driver).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        voters_host_their_replicas(&c).expect("while the move goes on");
        let meta = c.node(next).shards().meta().expect("meta replica");
        let member = meta.metrics().membership_config.membership().get_node(&(leaving as u64 + 1)).is_some();
        if !member && settled(&c).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "{name} still a member or shards unsettled after {SETTLE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    let (acked, failed) = writer.await.unwrap();
    eprintln!("{} writes cut by the crash (outcome unknown): {failed:?}", failed.len());
    let endpoints = c.endpoints();
    for key in &acked {
        assert!(get_routed(&endpoints, key).await.is_some(), "acknowledged {key} was lost");
    }
    eprintln!("{} acknowledged writes across the meta leader change, all readable", acked.len());
    c.shutdown().await;
}
