//! Issue #5 scenarios on a private Docker network, one node per container, every node told only
//! `--discovery dns://hypercache:7000 --bootstrap-expect 3`:
//!
//! (a) 3 nodes bootstrap with no IP configured anywhere;
//! (b) a node's container is removed and recreated with the same hostname and data volume but a
//!     new IP: it serves again and the cluster keeps serving;
//! (b2) a node's pod is recreated with an empty volume (a lost PVC): same name and id, no data,
//!     a new data-dir incarnation; the cluster replaces its old membership entries (it refuses
//!     every Raft message meant for its old self meanwhile), it refills by itself and serves
//!     again as a voter under the new incarnation, and no acknowledged write is lost;
//! (c) every node stopped, then all started together with new IPs: the cluster recovers with no
//!     manual step and no acknowledged write is lost;
//! (d) scale 3 -> 5 (the new nodes join as learners, then voters) -> decommission one -> 4,
//!     writes flowing throughout;
//! (e) one client configured with only the service name writes through all of it, and at the end
//!     reads back every write the cluster acknowledged.
//!
//! Timings are printed (the targets are measured by `benches/scripts/discovery-suite.sh`); the
//! assertions here are about behaviour, with generous deadlines.
//!
//! Needs a Docker engine and the debug binaries (`cargo test --workspace` builds them). Every
//! container, network and volume is removed at the end, also when the test fails.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hypercache_jepsen::cluster::{hostname, Cluster, ClusterError};
use hypercache_jepsen::docker::Scope;
use hypercache_jepsen::workload::{final_report, last_progress, Progress};

const IMAGE: &str = "hypercache-jepsen:test";
const WAIT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Builds the test image from the binaries next to this test's own `hc-workload`.
fn build_image() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_hc-workload")).parent().expect("binary dir").to_path_buf();
    let out = Command::new("bash")
        .arg(repo_root().join("k8s/images/build.sh"))
        .args(["--only", "jepsen", "--tag", "test", "--bin-dir"])
        .arg(&bin_dir)
        .output()
        .expect("run k8s/images/build.sh");
    assert!(
        out.status.success(),
        "building the image failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

fn progress(scope: &Scope, client: &str) -> Progress {
    last_progress(&scope.logs(client, 20)).unwrap_or_default()
}

/// Waits until the workload has `more` acknowledged writes beyond `from`.
fn writes_flow(cluster: &Cluster, scope: &Scope, client: &str, what: &str, more: u64) -> Result<u64, ClusterError> {
    let from = progress(scope, client).acked;
    cluster.eventually(&format!("writes flow {what}"), WAIT, || Ok(progress(scope, client).acked >= from + more))?;
    Ok(progress(scope, client).acked)
}

fn voters(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let mut names: Vec<String> = cluster.members()?.into_iter().filter(|m| m.voter).map(|m| m.name).collect();
    names.sort();
    Ok(names)
}

fn names(ordinals: &[usize]) -> Vec<String> {
    ordinals.iter().map(|o| hostname(*o)).collect()
}

#[test]
fn nodes_find_each_other_by_name_through_new_ips_full_restarts_and_scaling() {
    build_image();
    let scope = Scope::new("disc").expect("a Docker engine (the container tests need one)");
    let mut cluster = Cluster::new(&scope, IMAGE, 3).expect("network");

    // (a) bootstrap: three nodes, no IPs anywhere.
    for n in 0..3 {
        cluster.start(n).unwrap();
    }
    for n in 0..3 {
        cluster.wait_ready(n, WAIT).unwrap();
    }
    let members = cluster.members().unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    for m in &members {
        assert!(m.voter, "{m:?}");
        assert_eq!(m.endpoint, format!("{}:7000", m.name), "membership stores names: {m:?}");
        assert_eq!(m.node_id, m.name.trim_start_matches("hypercache-").parse::<u64>().unwrap() + 1);
    }

    // (e) the client knows only the service name.
    let client = cluster.start_client("client", "/hc-workload", &["--endpoints", "hypercache:7000"]).unwrap();
    writes_flow(&cluster, &scope, &client, "after bootstrap", 20).unwrap();

    // (b) node 1 comes back under its name with its data but a new IP.
    let old_ip = cluster.ip(1).unwrap();
    cluster.remove(1).unwrap();
    writes_flow(&cluster, &scope, &client, "with node 1 gone", 20).unwrap();
    let started = Instant::now();
    let new_ip = cluster.start(1).unwrap();
    assert_ne!(old_ip, new_ip);
    let ready = cluster.wait_ready(1, WAIT).unwrap();
    eprintln!("(b) recreated node with a new IP ready {:?} after its container started", ready - started);
    writes_flow(&cluster, &scope, &client, "after node 1 returned", 20).unwrap();
    assert_eq!(voters(&cluster).unwrap(), names(&[0, 1, 2]));

    // (b2) node 2's pod is recreated with an empty volume.
    let incarnation_of_2 = |c: &Cluster| -> String {
        c.members().unwrap().into_iter().find(|m| m.name == hostname(2)).map(|m| m.incarnation).unwrap_or_default()
    };
    let before = incarnation_of_2(&cluster);
    cluster.destroy(2).unwrap();
    writes_flow(&cluster, &scope, &client, "with node 2 and its volume gone", 20).unwrap();
    let started = Instant::now();
    cluster.start(2).unwrap();
    let ready = cluster
        .wait_ready(2, WAIT)
        .map_err(|e| {
            format!(
                "{e}
node 2:
{}",
                cluster.logs(2, 60)
            )
        })
        .unwrap();
    eprintln!("(b2) node recreated on an empty volume ready {:?} after its container started", ready - started);
    writes_flow(&cluster, &scope, &client, "after node 2 returned with an empty volume", 20).unwrap();
    assert_eq!(voters(&cluster).unwrap(), names(&[0, 1, 2]));
    let after = incarnation_of_2(&cluster);
    assert!(!before.is_empty() && before != after, "node 2 is a voter under a new incarnation: {before} -> {after}");

    // (c) full restart: all stopped, then all started together, each with a new IP.
    for n in 0..3 {
        cluster.stop(n).unwrap();
    }
    for n in 0..3 {
        cluster.remove(n).unwrap();
    }
    for n in 0..3 {
        cluster.start(n).unwrap();
    }
    let last_started = Instant::now();
    for n in 0..3 {
        cluster.wait_ready(n, WAIT).unwrap();
    }
    cluster
        .eventually("writable after the full restart", WAIT, || Ok(cluster.hcctl(&["put", "probe/c", "1"]).is_ok()))
        .unwrap();
    eprintln!(
        "(c) full restart with new IPs: writable {:?} after the last node started (upper bound: includes starting the hcctl container)",
        last_started.elapsed()
    );
    writes_flow(&cluster, &scope, &client, "after the full restart", 20).unwrap();

    // (d) scale 3 -> 5: the new nodes join as learners and are promoted.
    cluster.start(3).unwrap();
    cluster.start(4).unwrap();
    cluster
        .eventually("5 voters", WAIT, || Ok(voters(&cluster)? == names(&[0, 1, 2, 3, 4])))
        .map_err(|e| format!("{e}\nnode 3:\n{}\nnode 4:\n{}", cluster.logs(3, 30), cluster.logs(4, 30)))
        .unwrap();
    cluster.wait_ready(3, WAIT).unwrap();
    cluster.wait_ready(4, WAIT).unwrap();
    writes_flow(&cluster, &scope, &client, "at 5 nodes", 20).unwrap();
    // ... and decommission one -> 4: its shard replicas move to the others first (hcctl waits
    // until it has left). The removed node's data is wiped with it.
    let out = cluster.hcctl(&["node", "decommission", "hypercache-4"]).unwrap();
    assert!(out.contains("hypercache-4 has left the cluster"), "{out}");
    // Every node learns the new membership once it is replicated to it.
    cluster.eventually("4 voters", WAIT, || Ok(voters(&cluster)? == names(&[0, 1, 2, 3]))).unwrap();
    cluster.destroy(4).unwrap();
    writes_flow(&cluster, &scope, &client, "at 4 nodes after the decommission", 20).unwrap();
    // An unknown name is refused, by name.
    let refused = cluster.hcctl(&["node", "decommission", "hypercache-9"]).unwrap_err().to_string();
    assert!(refused.contains("no member is named"), "{refused}");

    // (e) stop the client: it reads back every write the cluster acknowledged.
    scope.stop(&client, Duration::from_secs(60)).unwrap();
    let logs = scope.logs(&client, 5);
    let report = final_report(&logs).unwrap_or_else(|| panic!("no final report from the client:\n{logs}"));
    eprintln!("(e) client: {report:?}");
    assert!(report.acked >= 100, "{report:?}");
    assert!(report.lost.is_empty(), "acknowledged writes lost: {:?}", report.lost);
    assert_eq!(report.read_errors, 0, "{report:?}");
    assert_eq!(report.verified, report.acked);
}
