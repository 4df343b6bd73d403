//! Real OS processes: three `hypercache serve` nodes on loopback. The leader is killed with
//! SIGKILL under writes; writes must resume, every acknowledged write must stay readable, the
//! killed node restarted with its original command line must catch up, and SIGTERM must stop
//! every node cleanly (exit 0).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, get_in, put_via};
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::{GetRequest, LocalShardsRequest};

const T: Duration = Duration::from_secs(30);

struct Proc {
    args: Vec<String>,
    child: Option<Child>,
    endpoint: String,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hypercache"))
            .args(&self.args)
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, (g, _))| format!("{}=127.0.0.1:{g}", i + 1)).collect();
    let mut procs: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, (g, a))| Proc {
            args: vec![
                "serve".into(),
                "--node-id".into(),
                (i + 1).to_string(),
                "--data-dir".into(),
                dir.path().join(format!("node-{}", i + 1)).display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{g}"),
                "--admin".into(),
                format!("127.0.0.1:{a}"),
                "--peers".into(),
                peers.join(","),
                // One data shard: this test talks the raw protocol to shard 0.
                "--shards".into(),
                "1".into(),
            ],
            child: None,
            endpoint: format!("127.0.0.1:{g}"),
            log: dir.path().join(format!("node-{}.log", i + 1)),
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    let endpoints: Vec<String> = procs.iter().map(|p| p.endpoint.clone()).collect();
    let leader = leader_of(&procs).await;

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
    for p in &mut procs {
        let pid = p.child.as_ref().unwrap().id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
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
