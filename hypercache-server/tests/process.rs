//! Real OS processes: three `hypercache serve` nodes on loopback. The leader is killed with
//! SIGKILL under writes; writes must resume, every acknowledged write must stay readable, the
//! killed node restarted with its original command line must catch up, and SIGTERM must stop
//! every node cleanly (exit 0).
//!
//! Snapshots (issue 16, defect 4): a follower is frozen with SIGSTOP under writes until the
//! leader purged its log past it, then resumed, so it catches up by installing a snapshot while
//! new entries make it build its own; repeated, then every node is killed and restarted and must
//! open its stored snapshot and catch up.
//!
//! State machines after a SIGKILL (issue 19, ADR 44): a follower killed under many concurrent
//! writes must come back with exactly its peers' rows.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, get_in, put_via};
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::{GetRequest, LocalShardsRequest};

const T: Duration = Duration::from_secs(30);

struct Proc {
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    endpoint: String,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hypercache"))
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn hypercache");
        self.child = Some(child);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `n` distinct free ports: every listener is held until all are bound, so the kernel cannot
/// hand one port out twice (the chaos harness saw a node get equal gRPC and admin ports that
/// way, and refuse to start).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Starts three nodes with one data shard (tests talk the raw protocol to shard 0); returns
/// them, their endpoints and the index of shard 0's leader.
async fn start_three(dir: &std::path::Path) -> (Vec<Proc>, Vec<String>, usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut procs = three_nodes(dir, &[]);
    for p in &mut procs {
        p.start();
    }
    let endpoints: Vec<String> = procs.iter().map(|p| p.endpoint.clone()).collect();
    let leader = leader_of(&procs).await;
    (procs, endpoints, leader)
}

/// Three nodes with one data shard and extra environment `env`, not started.
fn three_nodes(dir: &std::path::Path, env: &[(&str, &str)]) -> Vec<Proc> {
    let ports: Vec<(u16, u16)> = free_ports(6).chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, (g, _))| format!("{}=127.0.0.1:{g}", i + 1)).collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, (g, a))| Proc {
            args: vec![
                "serve".into(),
                "--node-id".into(),
                (i + 1).to_string(),
                "--data-dir".into(),
                dir.join(format!("node-{}", i + 1)).display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{g}"),
                "--admin".into(),
                format!("127.0.0.1:{a}"),
                "--peers".into(),
                peers.join(","),
                "--shards".into(),
                "1".into(),
            ],
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            endpoint: format!("127.0.0.1:{g}"),
            log: dir.join(format!("node-{}.log", i + 1)),
        })
        .collect()
}

/// This node's replica of data shard 0, if it hosts one.
async fn shard0(endpoint: &str) -> Option<hypercache_proto::v1::ReplicaStatus> {
    let mut c = ClusterClient::connect(format!("http://{endpoint}")).await.ok()?;
    let r = c.local_shards(LocalShardsRequest { with_size: false }).await.ok()?.into_inner();
    r.replicas.into_iter().find(|r| r.shard_id == 0)
}

async fn leader_of(procs: &[Proc]) -> usize {
    eventually("a ready leader", T, || async {
        for (i, p) in procs.iter().enumerate() {
            if p.child.is_none() {
                continue;
            }
            let Some(s) = shard0(&p.endpoint).await else { continue };
            if s.role == "leader" && s.ready {
                return Some(i);
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leader_then_restart_with_original_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, endpoints, leader) = start_three(dir.path()).await;

    let mut acked = Vec::new();
    for i in 0..100 {
        let key = format!("before/{i:03}");
        put_via(&endpoints, &key, "v").await.expect("put before the kill");
        acked.push(key);
    }

    // SIGKILL: no shutdown path runs at all.
    procs[leader].child.as_mut().unwrap().kill().unwrap();
    procs[leader].child.take().unwrap().wait().unwrap();
    let killed_at = Instant::now();
    put_via(&endpoints, "after-kill", "v").await.expect("writes resume");
    let resumed = killed_at.elapsed();
    eprintln!("writes resumed {} ms after SIGKILL of the leader", resumed.as_millis());
    acked.push("after-kill".into());
    for i in 0..50 {
        let key = format!("after/{i:03}");
        put_via(&endpoints, &key, "v").await.expect("put after the kill");
        acked.push(key);
    }

    let new_leader = leader_of(&procs).await;
    assert_ne!(new_leader, leader);
    // Linearizable reads through whichever node leads: the placement driver may still move the
    // leader (an election, so NO_LEADER for a moment), which the reads retry.
    for key in &acked {
        assert!(get_in(&endpoints, 0, key).await.is_some(), "acknowledged write {key} lost");
    }

    // The killed node, restarted with its original command line, catches up.
    procs[leader].start();
    let endpoint = procs[leader].endpoint.clone();
    eventually("the restarted node catches up", T, || async {
        let mut c = KvClient::connect(format!("http://{endpoint}")).await.ok()?;
        let req = GetRequest { key: "after/049".into(), serializable: true, ..Default::default() };
        c.get(req).await.ok()?.into_inner().kv.map(|_| ())
    })
    .await;

    // Graceful shutdown on SIGTERM: every node exits 0.
    for p in &procs {
        signal(p, nix::sys::signal::Signal::SIGTERM);
    }
    for p in &mut procs {
        let mut child = p.child.take().unwrap();
        let deadline = Instant::now() + T;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM; log: {}", p.log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "node exited with {status}; log: {}", p.log.display());
    }
}

fn signal(p: &Proc, sig: nix::sys::signal::Signal) {
    let pid = p.child.as_ref().expect("the node runs").id();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// A Close the node acknowledged survives a SIGKILL right after the acknowledgement: the
/// replica's log and tree are gone from the data dir, so it is never reopened at the next start. (The
/// other two nodes are stopped meanwhile, so nothing re-creates the replica: no placement
/// driver round, no append from the shard's leader.) The log's Drop record reaches the page cache
/// at once, so this passes without the sync too; the sync covers power loss, which a process
/// test cannot cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_acknowledged_then_sigkill_leaves_no_replica() {
    use hypercache_server::placement_driver::ops::{self, ShardOp};
    use hypercache_server::types::ShardId;
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, endpoints, leader) = start_three(dir.path()).await;
    for i in 0..10 {
        put_via(&endpoints, &format!("k/{i:03}"), "v").await.expect("put");
    }
    let closing = (leader + 1) % 3;
    let node_dir = dir.path().join(format!("node-{}", closing + 1));

    for (i, p) in procs.iter().enumerate() {
        if i != closing {
            signal(p, nix::sys::signal::Signal::SIGSTOP);
        }
    }
    let pool = hypercache_server::network::PeerPool::new(Duration::from_secs(2), 4 << 20);
    ops::send(&pool, &procs[closing].endpoint, ShardId(0), &ShardOp::Close).await.expect("close acknowledged");
    procs[closing].child.as_mut().unwrap().kill().unwrap();
    procs[closing].child.take().unwrap().wait().unwrap();

    {
        let limits = hypercache_server::storage::StoreLimits { cache_capacity_bytes: 16 << 20, segment_bytes: 1 << 20 };
        let (store, tasks) = hypercache_server::storage::NodeStore::open(&node_dir, limits, None)
            .expect("open the killed node's data dir");
        let trees: Vec<String> = store
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with("shard-0/"))
            .collect();
        assert!(trees.is_empty(), "the closed replica's tree came back after SIGKILL: {trees:?}");
        assert!(store.stored_data_shards().is_empty(), "the closed replica's log came back after SIGKILL");
        drop(store);
        assert!(tasks.closed(Duration::from_secs(5)).await);
    }
    for (i, p) in procs.iter().enumerate() {
        if i != closing {
            signal(p, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// Kills node `i` with SIGKILL, deletes its data dir (a lost volume) and starts it again with
/// its original command line: same node id, empty storage.
fn wipe_and_restart(procs: &mut [Proc], i: usize) {
    procs[i].child.as_mut().unwrap().kill().unwrap();
    procs[i].child.take().unwrap().wait().unwrap();
    let at = procs[i].args.iter().position(|a| a == "--data-dir").expect("--data-dir");
    std::fs::remove_dir_all(&procs[i].args[at + 1]).unwrap();
    procs[i].start();
}

/// Issue 16, defect 1: shard 0 led by `l`, follower `f` paused, follower `w` restarted on a
/// wiped volume. Kills the leader and resumes `f`: only the leader held the committed tail, so
/// `f` and `w` must not elect a leader (W refuses every message meant for its old incarnation:
/// `network/admit.rs`), and the term must not climb into the hundreds. Once the leader is back
/// every acknowledged write is readable, and W, re-added under its new incarnation, holds a full
/// copy again.
async fn lose_the_leader_then_check(
    procs: &mut [Proc],
    endpoints: &[String],
    (l, f, w): (usize, usize, usize),
    acked: &[String],
) {
    procs[l].child.as_mut().unwrap().kill().unwrap();
    procs[l].child.take().unwrap().wait().unwrap();
    signal(&procs[f], nix::sys::signal::Signal::SIGCONT);
    // Ten seconds (several election timeouts): neither F nor W may lead shard 0.
    let until = Instant::now() + Duration::from_secs(10);
    let mut max_term = 0;
    while Instant::now() < until {
        for i in [f, w] {
            if let Some(s) = shard0(&procs[i].endpoint).await {
                assert_ne!(s.role, "leader", "node {} leads shard 0 without the committed tail", i + 1);
                max_term = max_term.max(s.term);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("shard 0 term after 10 s without the leader: {max_term}");
    assert!(max_term < 100, "the term climbed to {max_term}");
    procs[l].start();
    leader_of(procs).await;
    for key in acked {
        assert!(get_in(endpoints, 0, key).await.is_some(), "acknowledged write {key} lost");
    }
    let last = acked.last().expect("writes").clone();
    let endpoint = procs[w].endpoint.clone();
    eventually("the wiped node holds every key again", Duration::from_secs(60), || async {
        let mut c = KvClient::connect(format!("http://{endpoint}")).await.ok()?;
        let req = GetRequest { key: last.clone().into(), serializable: true, ..Default::default() };
        c.get(req).await.ok()?.into_inner().kv.map(|_| ())
    })
    .await;
}

/// Three nodes; follower F paused, then `n` values of `size` bytes written through the leader
/// L and the other follower W. Returns the nodes, endpoints, (L, F, W) and the written keys.
///
/// With `meta_led_by_l`, clusters are started (in fresh subdirectories) until L also leads the
/// meta group: were W the meta leader, its wipe would leave the meta group (and so the placement
/// driver that opens W's new replica) without a leader until F resumes, correctly so: only L
/// and F would hold the meta group's committed tail, and F is paused.
async fn pause_f_and_write(
    dir: &std::path::Path,
    n: usize,
    size: usize,
    meta_led_by_l: bool,
) -> (Vec<Proc>, Vec<String>, (usize, usize, usize), Vec<String>) {
    let mut attempt = 0;
    let (procs, endpoints, l) = loop {
        attempt += 1;
        let (procs, endpoints, l) = start_three(&dir.join(format!("try-{attempt}"))).await;
        let meta_role = async {
            let mut c = ClusterClient::connect(format!("http://{}", endpoints[l])).await.ok()?;
            Some(c.status(hypercache_proto::v1::StatusRequest {}).await.ok()?.into_inner().role)
        }
        .await;
        if !meta_led_by_l || meta_role.as_deref() == Some("leader") || attempt == 8 {
            break (procs, endpoints, l);
        }
    };
    let (f, w) = ((l + 1) % 3, (l + 2) % 3);
    signal(&procs[f], nix::sys::signal::Signal::SIGSTOP);
    let live = [endpoints[l].clone(), endpoints[w].clone()];
    let value = "v".repeat(size);
    let mut acked = Vec::new();
    for i in 0..n {
        let key = format!("tail/{i:05}");
        put_via(&live, &key, &value).await.expect("put while F is paused");
        acked.push(key);
    }
    (procs, endpoints, (l, f, w), acked)
}

/// Sequence (a): the leader is killed and F resumed right after W came back wiped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_does_not_elect_a_follower_that_misses_the_committed_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, endpoints, (l, f, w), acked) = pause_f_and_write(dir.path(), 50, 10, false).await;
    wipe_and_restart(&mut procs, w);
    eventually("the wiped node answers", T, || async {
        ClusterClient::connect(format!("http://{}", endpoints[w])).await.ok().map(|_| ())
    })
    .await;
    lose_the_leader_then_check(&mut procs, &endpoints, (l, f, w), &acked).await;
}

/// Sequence (b): the leader is killed while W would be catching up (a few thousand 6 KiB
/// values), and F resumed. Before incarnations W caught up from L as its old voter self and
/// could then elect F's shorter log; now it refuses L's messages until the cluster re-adds it,
/// which needs F, so it holds nothing when L dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_caught_up_halfway_does_not_elect_a_stale_follower() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, endpoints, (l, f, w), acked) = pause_f_and_write(dir.path(), 2000, 6 << 10, true).await;
    let last = shard0(&endpoints[l]).await.expect("the leader answers").last_log_index;
    wipe_and_restart(&mut procs, w);
    // Up to 5 s for W to take in part of the log (polled every 50 ms).
    let until = Instant::now() + Duration::from_secs(5);
    let mut held = 0;
    while Instant::now() < until {
        held = shard0(&endpoints[w]).await.map_or(0, |s| s.last_log_index);
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the wiped node holds {held} of {last} entries when the leader is killed");
    lose_the_leader_then_check(&mut procs, &endpoints, (l, f, w), &acked).await;
}

/// Issue 16, defect 1, sequence (c): only W's volume is lost. W holds a full copy again, by
/// itself, within a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_restarted_on_a_wiped_volume_holds_a_full_copy_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, endpoints, l) = start_three(dir.path()).await;
    for i in 0..50 {
        put_via(&endpoints, &format!("k/{i:03}"), "v").await.expect("put");
    }
    let w = (l + 1) % 3;
    wipe_and_restart(&mut procs, w);
    let started = Instant::now();
    let endpoint = procs[w].endpoint.clone();
    eventually("the wiped node holds every key again", Duration::from_secs(60), || async {
        let mut c = KvClient::connect(format!("http://{endpoint}")).await.ok()?;
        let req = GetRequest { key: "k/049".into(), serializable: true, ..Default::default() };
        c.get(req).await.ok()?.into_inner().kv.map(|_| ())
    })
    .await;
    eprintln!("the wiped node held a full copy {} ms after its restart", started.elapsed().as_millis());
}

/// How often `needle` occurs in a node's log so far.
fn log_count(p: &Proc, needle: &str) -> usize {
    std::fs::read_to_string(&p.log).map_or(0, |s| s.matches(needle).count())
}

async fn applied(endpoint: &str) -> Option<u64> {
    shard0(endpoint).await.map(|s| s.applied_index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_paused_past_the_purge_point_catch_up_and_every_node_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // A snapshot every 20 entries, 5 kept after it: a follower 200 entries behind is past the
    // leader's purge point and can only catch up by installing a snapshot.
    let env = [("HYPERCACHE_RAFT__SNAPSHOT_AFTER_ENTRIES", "20"), ("HYPERCACHE_RAFT__LOGS_KEPT_AFTER_SNAPSHOT", "5")];
    let mut procs = three_nodes(dir.path(), &env);
    for p in &mut procs {
        p.start();
    }
    let all: Vec<String> = procs.iter().map(|p| p.endpoint.clone()).collect();
    leader_of(&procs).await;

    // Writers keep going through every round, through the nodes that are not frozen (a frozen
    // node accepts connections and never answers).
    let targets = Arc::new(Mutex::new(all.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (targets, stop) = (targets.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}/{i:06}");
                    let endpoints = targets.lock().unwrap().clone();
                    if put_via(&endpoints, &key, "v").await.is_ok() {
                        acked.push(key);
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();

    for round in 0..3 {
        let leader = leader_of(&procs).await;
        let f = (leader + 1) % 3;
        let installs = log_count(&procs[f], "installing snapshot");
        *targets.lock().unwrap() = all.iter().filter(|e| **e != procs[f].endpoint).cloned().collect();
        signal(&procs[f], nix::sys::signal::Signal::SIGSTOP);
        let from = applied(&procs[leader].endpoint).await.unwrap_or(0);
        let leader_endpoint = procs[leader].endpoint.clone();
        eventually("the leader applies 200 entries while the follower is frozen", T, || async {
            (applied(&leader_endpoint).await? >= from + 200).then_some(())
        })
        .await;
        signal(&procs[f], nix::sys::signal::Signal::SIGCONT);
        *targets.lock().unwrap() = all.clone();
        eventually("the resumed follower installs a snapshot", T, || async {
            (log_count(&procs[f], "installing snapshot") > installs).then_some(())
        })
        .await;
        let target = applied(&leader_endpoint).await.unwrap_or(0);
        let f_endpoint = procs[f].endpoint.clone();
        eventually("the resumed follower catches up", T, || async {
            (applied(&f_endpoint).await? >= target).then_some(())
        })
        .await;
        eprintln!("round {round}: node {} frozen past the purge point, installed a snapshot, caught up", f + 1);
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 600, "writes went on during the rounds ({} acknowledged)", acked.len());

    // Every node is killed and restarted: each opens its stored snapshot (a torn or older file
    // is a startup error or a log gap) and catches up.
    for p in &mut procs {
        let mut child = p.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
    for p in &mut procs {
        p.start();
    }
    leader_of(&procs).await;
    let last = acked.iter().max().cloned().unwrap();
    for p in &procs {
        let endpoint = p.endpoint.clone();
        let key = last.clone();
        eventually(&format!("{} serves {key} after the restart", p.endpoint), T, || async {
            let mut c = KvClient::connect(format!("http://{endpoint}")).await.ok()?;
            let req = GetRequest { key: key.clone().into(), serializable: true, ..Default::default() };
            c.get(req).await.ok()?.into_inner().kv.map(|_| ())
        })
        .await;
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        assert!(!log.contains("panicked"), "{} panicked; log: {}", p.endpoint, p.log.display());
    }
    for key in acked.iter().step_by(25) {
        assert!(get_in(&all, 0, key).await.is_some(), "acknowledged write {key} lost");
    }
}

/// Every node's own copy of `keys` (serializable reads): (key, version, mod revision, value length).
async fn local_rows(endpoint: &str, keys: &[String]) -> Vec<(String, u64, u64, usize)> {
    let mut kv = KvClient::connect(format!("http://{endpoint}")).await.unwrap();
    let mut rows = Vec::new();
    for key in keys {
        let req = GetRequest { shard_id: 0, key: key.clone().into(), serializable: true };
        let r = kv.get(req).await.unwrap().into_inner();
        rows.push(r.kv.map_or((key.clone(), 0, 0, 0), |kv| (key.clone(), kv.version, kv.mod_revision, kv.value.len())));
    }
    rows
}

/// State machines are written without atomic batches and never synced (ADR 44), so a node
/// SIGKILLed under writes comes back with whatever sled's own recovery kept: often a write
/// buffer cut in the middle of one apply. Re-applying the log on top of that would apply half
/// of an entry twice (a key's version bumped twice) and the replica would differ from its peers
/// for ever. The restarted node must rebuild from its snapshot file and end up identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_under_writes_restarts_with_exactly_its_peers_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, endpoints, leader) = start_three(dir.path()).await;
    let keys: Vec<String> = (0..40).map(|i| format!("k/{i:02}")).collect();
    // Many concurrent puts of 2 KiB values on a few keys: each entry carries dozens of puts
    // (dozens of inserts per apply) and sled's write buffers fill many times a second.
    let stop = Arc::new(AtomicBool::new(false));
    let leader_endpoint = endpoints[leader].clone();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let (stop, endpoint, keys) = (stop.clone(), leader_endpoint.clone(), keys.clone());
            tokio::spawn(async move {
                let mut kv = KvClient::connect(format!("http://{endpoint}")).await.unwrap();
                let value = vec![b'x'; 2048];
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let req = hypercache_proto::v1::PutRequest {
                        shard_id: 0,
                        key: keys[i % keys.len()].clone().into(),
                        value: value.clone().into(),
                        ..Default::default()
                    };
                    let _ = kv.put(req).await;
                    i += 7;
                }
            })
        })
        .collect();
    for f in [(leader + 1) % 3, (leader + 2) % 3] {
        tokio::time::sleep(Duration::from_secs(3)).await;
        signal(&procs[f], nix::sys::signal::Signal::SIGKILL);
        procs[f].child.take().unwrap().wait().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        procs[f].start();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let target = applied(&leader_endpoint).await.unwrap();
    for p in &procs {
        let endpoint = p.endpoint.clone();
        eventually("every node applies everything", T, || async {
            (applied(&endpoint).await? >= target).then_some(())
        })
        .await;
    }
    let expected = local_rows(&leader_endpoint, &keys).await;
    assert!(expected.iter().all(|r| r.1 > 10), "the writers wrote too little: {expected:?}");
    for p in &procs {
        let got = local_rows(&p.endpoint, &keys).await;
        let differ: Vec<_> = got.iter().zip(&expected).filter(|(a, b)| a != b).collect();
        assert!(differ.is_empty(), "{} differs from the leader (got, leader's): {differ:?}", p.endpoint);
    }
}
