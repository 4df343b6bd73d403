//! The chaos suite end to end through its command line: short `register` runs under kill and
//! pause faults, under partitions, and under wiped disks against real `hypercache` processes
//! must be linearizable, a short `bank` run under kill and pause must keep its total, a short
//! `election` run under kill and pause must never hand one term to two candidates, a `board`
//! run under kill and pause must never accept a deposed owner's checkpoint, a `watch` run under
//! kill and pause must deliver every change to each watcher once and in order, a `lease` run
//! under kill and pause must never lose a leased key before its holder's vouched deadline, a
//! `set` run must keep every acknowledged add across power cuts of the whole cluster, a write
//! acknowledged just before such a cut must be read after it, a `register` run under
//! membership churn and kills must stay linearizable, and
//! `hcjepsen check`
//! must say `valid: false` for stored histories with planted anomalies (so the verdict the
//! first test relies on can fail).
//!
//! `hcjepsen` starts the `hypercache` binary next to its own (cargo builds it there for the
//! server crate's process tests; alone: `cargo build -p hypercache-server --bin hypercache`) or
//! the one named by `HYPERCACHE_BIN`.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use hypercache_proto::poison::lock;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use hypercache_jepsen::chaos::nemesis::partition::Shape;
use hypercache_jepsen::chaos::nemesis::schedule::{plan, Step};
use hypercache_jepsen::chaos::nemesis::NemesisKind;

const HCJEPSEN: &str = env!("CARGO_BIN_EXE_hcjepsen");

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string()
}

fn describe(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// One live cluster at a time: the machine has two cores.
static LIVE: Mutex<()> = Mutex::new(());

/// A live run's store, deleted after a test that passed and KEPT after one that failed (any
/// assertion, including those on the nemesis log after the verdict), with its path on stderr:
/// the node logs, the history and the nodes' disk images are what a post-mortem needs, and a
/// rare failure seen once in CI cannot be understood after its evidence was deleted (issue 19:
/// an acknowledged add missing after a whole-cluster power cut, seen once, never reproduced).
struct Store(Option<tempfile::TempDir>);

impl Store {
    fn new() -> Store {
        Store(Some(tempfile::Builder::new().prefix("hcjepsen-store-").tempdir().unwrap()))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("the failed run is kept for a post-mortem: {}", dir.keep().display());
            }
        }
    }
}

/// Runs `hcjepsen test --workload register` with `nemeses` for `secs` (2 s heal, 4 s faults),
/// with the first seed whose plan has every one of `nemeses` and `wanted` holds; returns the
/// run directory and the nemesis log.
fn live_register_run(nemeses: &[NemesisKind], secs: u64, wanted: impl Fn(&[Step]) -> bool) -> (Store, PathBuf) {
    live_run("register", nemeses, secs, wanted)
}

/// A plan with a fault on one node: the cluster keeps serving through it, so a workload whose
/// test counts operations gets enough of them (with only majority faults, 8 of 15 s are dead).
fn one_node_fault(steps: &[Step]) -> bool {
    steps.iter().any(|s| s.nodes.len() == 1)
}

/// [`live_register_run`] for any workload.
fn live_run(workload: &str, nemeses: &[NemesisKind], secs: u64, wanted: impl Fn(&[Step]) -> bool) -> (Store, PathBuf) {
    live_run_on("local", workload, nemeses, secs, wanted)
}

/// [`live_run`] on `target` (`local` or `docker`).
fn live_run_on(
    target: &str,
    workload: &str,
    nemeses: &[NemesisKind],
    secs: u64,
    wanted: impl Fn(&[Step]) -> bool,
) -> (Store, PathBuf) {
    let _one = lock(&LIVE);
    let hypercache = Path::new(HCJEPSEN).with_file_name("hypercache");
    if std::env::var_os("HYPERCACHE_BIN").is_none() {
        assert!(
            hypercache.is_file(),
            "no {}: build it with `cargo build -p hypercache-server --bin hypercache` or set HYPERCACHE_BIN",
            hypercache.display()
        );
    }
    let s = Duration::from_secs(1);
    let seed = (0u64..)
        .find(|&seed| {
            let steps = plan(seed, nemeses, 3, Duration::from_secs(secs), 2 * s, 4 * s);
            // Churn with other faults rides on their steps (`schedule::plan`).
            let planned = |k: &NemesisKind| {
                steps.iter().any(|st| st.kind == *k || (*k == NemesisKind::Churn && st.churn.is_some()))
            };
            nemeses.iter().all(planned) && wanted(&steps)
        })
        .unwrap();
    let names: Vec<String> =
        nemeses.iter().map(|k| serde_json::to_value(k).unwrap().as_str().unwrap().to_string()).collect();
    let store = Store::new();
    let out = Command::new(HCJEPSEN)
        .args(["test", "--workload", workload, "--nemesis", &names.join(","), "--time-limit", &secs.to_string()])
        .args(["--heal-secs", "2", "--fault-secs", "4", "--seed", &seed.to_string(), "--target", target])
        .arg("--store")
        .arg(store.path())
        .output()
        .unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(0));
    let run = std::fs::read_dir(store.path()).unwrap().next().unwrap().unwrap().path();
    (store, run)
}

#[test]
fn register_under_kill_and_pause_is_linearizable() {
    let (_store, run) = live_register_run(&[NemesisKind::Kill, NemesisKind::Pause], 20, |_| true);
    assert!(run.file_name().unwrap().to_string_lossy().starts_with("register-"));
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    for action in ["kill", "restart", "pause", "resume"] {
        assert!(nemesis.contains(&format!("\"action\":\"{action}\"")), "no {action} in {nemesis}");
    }
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    assert!(history.lines().filter(|l| l.contains("\"type\":\"ok\"")).count() > 100, "too few ops");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], "true");
    // The report: plots and the page linking them and the node logs.
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    for link in ["src=\"latency.png\"", "src=\"rate.png\"", "href=\"cluster/n1.log\"", "href=\"history.jsonl\""] {
        assert!(page.contains(link), "no {link} in index.html");
    }
    assert!(run.join("latency.png").exists() && run.join("rate.png").exists());

    // The stored run re-checks to the same verdict.
    let again = Command::new(HCJEPSEN).arg("check").arg(&run).output().unwrap();
    assert_eq!(last_line(&again), "valid: true", "{}", describe(&again));
}

#[test]
fn register_under_partitions_is_linearizable() {
    // Two shapes: a ring, and the busiest leader cut off one way or both.
    let (_store, run) = live_register_run(&[NemesisKind::Partition], 12, |steps| {
        steps.iter().any(|s| s.leader) && steps.iter().any(|s| s.shape == Some(Shape::Ring))
    });
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert_eq!(nemesis.matches("\"action\":\"partition\"").count(), 2, "{nemesis}");
    assert!(nemesis.contains("\"shape\":\"ring\"") && nemesis.contains("\"cut\":[["), "{nemesis}");
    assert!(!nemesis.contains("error"), "{nemesis}");
}

/// The `docker` target: one container per node, found by DNS name; a killed node comes back in
/// a new container with a new IP, and its peers and the clients find it by name again.
#[test]
fn register_in_containers_under_kill_pause_and_partition_is_linearizable() {
    let nemeses = [NemesisKind::Kill, NemesisKind::Pause, NemesisKind::Partition];
    let (_store, run) = live_run_on("docker", "register", &nemeses, 20, |_| true);
    let info = std::fs::read_to_string(run.join("test.json")).unwrap();
    assert!(info.contains("\"target\": \"docker\""), "{info}");
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    for action in ["kill", "restart", "pause", "resume", "partition", "heal"] {
        assert!(nemesis.contains(&format!("\"action\":\"{action}\"")), "no {action} in {nemesis}");
    }
    assert!(!nemesis.contains("error"), "{nemesis}");
    // The killed node started twice (two containers), advertising its name both times.
    let killed = nemesis
        .lines()
        .find(|l| l.contains("\"action\":\"kill\""))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|e| e["nodes"][0].as_u64())
        .unwrap();
    let log = std::fs::read_to_string(run.join(format!("cluster/n{killed}.log"))).unwrap();
    let advertised = format!("advertise=hypercache-{}:7000", killed - 1);
    assert_eq!(log.lines().filter(|l| l.contains("node started") && l.contains(&advertised)).count(), 2, "{log}");
}

/// Power cuts in containers: each node's disk must be mounted where the Docker engine sees it,
/// or the containers write to the directory under the mount point and a cut cuts nothing (a
/// false pass seen once). After the run the disks are unmounted: nothing may be left under them.
#[test]
fn set_in_containers_keeps_its_data_on_the_disks_power_cuts_hit() {
    let (_store, run) = live_run_on("docker", "set", &[NemesisKind::Power], 12, |_| true);
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert!(nemesis.contains("\"action\":\"power-cut\"") && !nemesis.contains("error"), "{nemesis}");
    for n in 1..=3 {
        let under = run.join(format!("cluster/n{n}.fs"));
        let left: Vec<_> = std::fs::read_dir(&under).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "node {n} wrote beside its disk, not on it: {left:?}");
    }
}

/// Wiped disks (issue 16, defect 1, as a fault): nodes come back with their old id and no
/// data, one at a time, a leader among them; no acknowledged write may be lost or read stale,
/// and each wiped node catches up before the next wipe.
#[test]
fn register_under_wiped_disks_is_linearizable() {
    let (_store, run) = live_register_run(&[NemesisKind::Wipe], 20, |steps| steps.iter().any(|s| s.leader));
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert!(!nemesis.contains("error"), "{nemesis}");
    let events: Vec<serde_json::Value> = nemesis.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // A wipe is skipped (`skip`) only if the node wiped before is slow to catch up; two of
    // the three planned ones at least must happen on this machine.
    assert!(events.iter().filter(|e| e["action"] == "wipe").count() >= 2, "{nemesis}");
    // The one-wipe-at-a-time rule: every wiped node is seen caught up (`caught-up`, by the
    // end at the latest) before another node is wiped.
    let mut catching_up = None;
    for e in &events {
        match e["action"].as_str().unwrap() {
            "wipe" => assert!(catching_up.replace(&e["nodes"]).is_none(), "a second wipe too early: {nemesis}"),
            "caught-up" => assert_eq!(catching_up.take(), Some(&e["nodes"]), "{nemesis}"),
            _ => {}
        }
    }
    assert_eq!(catching_up, None, "the last wiped node never caught up: {nemesis}");
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    assert!(history.lines().filter(|l| l.contains("\"type\":\"ok\"")).count() > 100, "too few ops");
}

/// The same faults against durability: every acknowledged add survives the wipes.
#[test]
fn set_under_wiped_disks_keeps_every_acknowledged_add() {
    let (_store, run) = live_run("set", &[NemesisKind::Wipe], 12, |_| true);
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert!(nemesis.contains("\"action\":\"wipe\"") && !nemesis.contains("error"), "{nemesis}");
}

/// Power cuts of the whole cluster (each node's filesystem shut down at one instant, then the
/// nodes killed and the filesystems remounted): what was not fsynced is lost, and every
/// acknowledged add must survive. Before ADR 39 (sled's flush did not fsync) about nine in ten
/// were lost. Needs root (loop mounts), as the CI machine has.
#[test]
fn set_survives_whole_cluster_power_cuts() {
    let whole = |steps: &[Step]| steps.iter().any(|s| s.kind == NemesisKind::Power && s.nodes.len() == 3);
    let (_store, run) = live_run("set", &[NemesisKind::Power], 12, whole);
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert!(nemesis.contains("\"action\":\"power-cut\",\"nodes\":[1,2,3]"), "{nemesis}");
    assert!(!nemesis.contains("error"), "{nemesis}");
}

/// Linearizable reads across a power cut of the whole cluster. openraft 0.9 restarts a node
/// whose stored vote is its own committed one as the leader of that term at once, with the
/// commit index it last stored. On a fresh cluster, one write is acknowledged, then at once
/// every node's power is cut (nothing else writes in between, so the write's log entry is on
/// disk but its commit and apply are not), every node restarted, and the key read
/// linearizably from each node in turn every 2 ms, the old leader first, until one answers: it
/// must answer the acknowledged value. Before ADR 41 the old leader came back leading the same term and, in
/// some of such rounds, answered that the key did not exist. Twelve fresh clusters.
#[test]
fn a_write_acknowledged_just_before_a_whole_cluster_power_cut_is_read_after_the_restart() {
    use hypercache_jepsen::chaos::target::{cluster::Cluster, cluster::ClusterSpec, locate_hypercache};
    let _one = lock(&LIVE);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let exe = locate_hypercache().unwrap();
    let mut stale = Vec::new();
    for round in 1..=12 {
        runtime.block_on(async {
            let spec = ClusterSpec { nodes: 3, shards: 1, disks: true, ..ClusterSpec::default() };
            let mut cluster = Cluster::start(&exe, &dir.path().join(format!("round-{round}")), spec).await.unwrap();
            cluster.wait_ready(Duration::from_secs(30)).await.unwrap();
            let client = cluster.client().unwrap();
            let endpoints = cluster.endpoints();
            let leader = cluster.busiest_leader().await.unwrap_or(0);
            let order = [leader, (leader + 1) % 3, (leader + 2) % 3];
            client.put("k", "v").await.unwrap();
            cluster.power_cut(&[0, 1, 2]).await.unwrap();
            for i in order {
                cluster.restart(i).await.unwrap();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let got = 'read: loop {
                for i in order {
                    if let Ok(kv) = client.get_from(&endpoints[i], "k", false).await {
                        break 'read kv.map(|kv| kv.value);
                    }
                }
                assert!(std::time::Instant::now() < deadline, "round {round}: no read answered in 30 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            if got.as_deref() != Some(b"v".as_slice()) {
                stale.push(format!("round {round}: read {got:?}"));
            }
            cluster.stop().await;
        });
    }
    assert!(stale.is_empty(), "a write acknowledged before the power cut was not read after it: {stale:?}");
}

/// Membership churn under kills: the spare joins and is promoted, a member is decommissioned
/// and its replicas move while nodes are killed, it leaves and is retired; the registers stay
/// linearizable throughout.
#[test]
fn register_under_churn_and_kills_is_linearizable() {
    let (_store, run) = live_register_run(&[NemesisKind::Churn, NemesisKind::Kill], 20, |steps| {
        steps.iter().filter(|s| s.churn.is_some()).count() >= 2
    });
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    for action in ["join", "promoted", "decommission", "left", "kill"] {
        assert!(nemesis.contains(&format!("\"action\":\"{action}\"")), "no {action}: {nemesis}");
    }
    assert!(!nemesis.contains("error"), "{nemesis}");
}

fn stored_run(workload: &str, history: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let test = format!(
        r#"{{"workload":"{workload}","nemeses":[],"target":"local","nodes":3,"shards":1,"seed":0,"time_limit_secs":1,"workers":2,"keys":1}}"#
    );
    std::fs::write(dir.path().join("test.json"), test).unwrap();
    std::fs::write(dir.path().join("history.jsonl"), history).unwrap();
    dir
}

#[test]
fn check_finds_planted_anomalies() {
    // A stale read: write 2 completed before the read of 1 began. An uncertain write around it.
    let stale = stored_run(
        "register",
        r#"{"process":0,"type":"invoke","f":"write","key":"reg/0","value":1,"time":10}
{"process":0,"type":"ok","f":"write","key":"reg/0","value":1,"time":20}
{"process":0,"type":"invoke","f":"write","key":"reg/0","value":2,"time":30}
{"process":0,"type":"ok","f":"write","key":"reg/0","value":2,"time":40}
{"process":1,"type":"invoke","f":"write","key":"reg/0","value":3,"time":41}
{"process":1,"type":"info","f":"write","key":"reg/0","value":3,"time":45,"error":"outcome unknown"}
{"process":2,"type":"invoke","f":"read","key":"reg/0","value":null,"time":50}
{"process":2,"type":"ok","f":"read","key":"reg/0","value":1,"time":60}
"#,
    );
    let out = Command::new(HCJEPSEN).arg("check").arg(stale.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("smallest failing sub-history"), "{}", describe(&out));
    // `check` redraws the report, with the failing key's timeline on the page.
    for file in ["index.html", "latency.png", "rate.png", "timeline-reg-0.png"] {
        assert!(stale.path().join(file).exists(), "no {file}: {}", describe(&out));
    }
    let page = std::fs::read_to_string(stale.path().join("index.html")).unwrap();
    assert!(page.contains("src=\"timeline-reg-0.png\"") && page.contains("<td>read 1</td>"), "{page}");

    // The same history with the read seeing the uncertain write is fine.
    let fine = stored_run(
        "register",
        &std::fs::read_to_string(stale.path().join("history.jsonl"))
            .unwrap()
            .replace(r#""ok","f":"read","key":"reg/0","value":1"#, r#""ok","f":"read","key":"reg/0","value":3"#),
    );
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(0));

    // A lost add.
    let lost = stored_run(
        "set",
        r#"{"process":0,"type":"invoke","f":"add","element":1,"time":1}
{"process":0,"type":"ok","f":"add","element":1,"time":2}
{"process":1,"type":"invoke","f":"read-set","elements":null,"time":3}
{"process":1,"type":"ok","f":"read-set","elements":[],"time":4}
"#,
    );
    let out = Command::new(HCJEPSEN).arg("check").arg(lost.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));

    // Not a run directory at all: unknown, exit 2.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(HCJEPSEN).arg("check").arg(empty.path()).output().unwrap();
    assert_eq!((last_line(&out).as_str(), out.status.code()), ("valid: unknown", Some(2)));
}

/// The bank (issue 17): transfers between accounts of one shard, each one transaction, and
/// reads of every balance in one range page; under kills and pauses every read, the final one
/// included, shows the 8 accounts and the total of 800.
#[test]
fn bank_under_kill_and_pause_keeps_the_total() {
    let (_store, run) = live_run("bank", &[NemesisKind::Kill, NemesisKind::Pause], 15, |_| true);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let bank = &results["bank"];
    assert_eq!((bank["accounts"].as_u64(), bank["total"].as_i64()), (Some(8), Some(800)), "{results}");
    assert!(bank["transfers_ok"].as_u64().unwrap() > 50, "too few transfers: {results}");
    assert!(bank["reads"].as_u64().unwrap() > 50, "too few reads: {results}");
    assert!(bank["final_reads"].as_u64().unwrap() >= 1, "{results}");
}

#[test]
fn check_finds_a_planted_bank_read_skew() {
    let accounts: Vec<String> = (0..8).map(|i| format!("\"{{bank}}acct/{i:02}\"")).collect();
    let balances = |first: i64| {
        let mut b: Vec<String> = accounts.iter().map(|a| format!("{a}:100")).collect();
        b[0] = format!("{}:{first}", accounts[0]);
        format!("{{{}}}", b.join(","))
    };
    let history = |first: i64| {
        format!(
            r#"{{"process":9,"type":"invoke","f":"open-accounts","accounts":[{}],"balance":100,"time":1}}
{{"process":9,"type":"ok","f":"open-accounts","accounts":[{}],"balance":100,"time":2}}
{{"process":0,"type":"invoke","f":"read-all","balances":null,"final_read":true,"time":3}}
{{"process":0,"type":"ok","f":"read-all","balances":{},"final_read":true,"time":4}}
"#,
            accounts.join(","),
            accounts.join(","),
            balances(first)
        )
    };
    // Account 0 debited by a transfer whose credit the read does not show: 790.
    let skew = stored_run("bank", &history(90));
    let out = Command::new(HCJEPSEN).arg("check").arg(skew.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("actual: 790"), "{}", describe(&out));
    let fine = stored_run("bank", &history(100));
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
}

/// Clock faults (libfaketime, both clocks): one node's clocks jump forward or strobe while the
/// others keep real time. Reads and writes are quorum-confirmed, so the history must stay
/// linearizable; and since the nemesis never moves a monotonic clock back (which openraft
/// asserts against, `nemesis/clock.rs`), no node may panic.
#[test]
fn register_under_clock_faults_is_linearizable() {
    use hypercache_jepsen::chaos::nemesis::clock::ClockFault;
    use hypercache_jepsen::chaos::target::cluster::Faketime;

    // CI installs it (`.ci/run`); a machine without it fails here, never skips.
    if let Err(e) = Faketime::locate() {
        panic!("{e}");
    }
    let (_store, run) = live_register_run(&[NemesisKind::Clock], 20, |steps| {
        steps.iter().any(|s| matches!(s.clock, Some(ClockFault::Jump { .. })))
            && steps.iter().any(|s| matches!(s.clock, Some(ClockFault::Strobe { .. })))
    });
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert!(!nemesis.contains("error"), "{nemesis}");
    let events: Vec<serde_json::Value> = nemesis.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let faults = events.iter().filter(|e| e["action"] == "clock-jump" || e["action"] == "clock-strobe").count();
    assert!(faults >= 1, "no clock action in {nemesis}");
    // Forward only: each node's offset never decreases, and every fault moved it.
    let mut offsets = std::collections::HashMap::new();
    for e in events.iter().filter(|e| e["action"].as_str().unwrap().starts_with("clock-")) {
        let offset = e["offset_ms"].as_i64().unwrap();
        let before = offsets.insert(e["nodes"].to_string(), offset).unwrap_or(0);
        assert!(offset >= before, "an offset went back: {nemesis}");
        if e["action"] != "clock-reset" {
            assert!(offset > before, "a fault that moved nothing: {nemesis}");
        }
    }
    for n in 1..=3 {
        let log = std::fs::read_to_string(run.join(format!("cluster/n{n}.log"))).unwrap();
        // The run directory goes with the test's temporary store: quote the panic here.
        let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked") || l.contains("expect now")).collect();
        assert!(panics.is_empty(), "node {n} panicked under clock faults:\n{}", panics.join("\n"));
    }
}

/// Elections (issue 17): workers campaign for two elections with short leases, hold, read the
/// leader, resign or walk away; under kills and pauses no two campaigns win one term, terms
/// never go back, and leader reads name the campaign that won their term.
#[test]
fn election_under_kill_and_pause_never_splits_a_term() {
    let (_store, run) = live_run("election", &[NemesisKind::Kill, NemesisKind::Pause], 15, |_| true);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let election = &results["election"];
    assert_eq!(election["anomaly_count"].as_u64(), Some(0), "{results}");
    assert!(election["campaigns_ok"].as_u64().unwrap() > 10, "too few elections won: {results}");
    assert!(election["reads"].as_u64().unwrap() > 10, "too few leader reads: {results}");
    assert_eq!(election["final_reads"].as_u64(), Some(2), "{results}");
}

#[test]
fn check_finds_a_planted_split_term() {
    // c2's campaign overlaps c1's and got the same term 1: two leaders at once.
    let history = |second_term: u64| {
        format!(
            r#"{{"process":0,"type":"invoke","f":"campaign","name":"e-0","candidate":"c1","term":null,"time":1}}
{{"process":1,"type":"invoke","f":"campaign","name":"e-0","candidate":"c2","term":null,"time":2}}
{{"process":0,"type":"ok","f":"campaign","name":"e-0","candidate":"c1","term":1,"time":3}}
{{"process":1,"type":"ok","f":"campaign","name":"e-0","candidate":"c2","term":{second_term},"time":4}}
{{"process":2,"type":"invoke","f":"leader","name":"e-0","holder":null,"term":null,"last_term":null,"final_read":true,"time":5}}
{{"process":2,"type":"ok","f":"leader","name":"e-0","holder":"c2","term":{second_term},"last_term":{second_term},"final_read":true,"time":6}}
"#
        )
    };
    let split = stored_run("election", &history(1));
    let out = Command::new(HCJEPSEN).arg("check").arg(split.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SplitTerm") && stdout.contains("\"c1\"") && stdout.contains("\"c2\""),
        "{}",
        describe(&out)
    );
    let fine = stored_run("election", &history(2));
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
}

/// Boards (issue 17): game-server-like owners take boards from each other and checkpoint them;
/// under kills and pauses no deposed owner's checkpoint is accepted, seqs increase within an
/// epoch, and no read shows a checkpoint older than one already acknowledged. Deposed owners
/// must actually have tried (refused syncs), or the run proved nothing about the fence.
#[test]
fn board_under_kill_and_pause_never_accepts_a_stale_owner() {
    let (_store, run) = live_run("board", &[NemesisKind::Kill, NemesisKind::Pause], 15, |_| true);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let board = &results["board"];
    assert_eq!(board["boards"].as_u64(), Some(2), "{results}");
    assert!(board["assigns_ok"].as_u64().unwrap() > 20, "too few assignments: {results}");
    assert!(board["syncs_ok"].as_u64().unwrap() > 20, "too few syncs: {results}");
    assert!(board["syncs_fail"].as_u64().unwrap() > 10, "too few deposed owners' syncs: {results}");
    assert_eq!(board["final_reads"].as_u64(), Some(2), "{results}");
}

#[test]
fn check_finds_a_planted_stale_checkpoint() {
    let history = |zombie: &str| {
        format!(
            r#"{{"process":9,"type":"invoke","f":"open-boards","boards":["b0"],"owners":["o0","o1"],"time":1}}
{{"process":9,"type":"ok","f":"open-boards","boards":["b0"],"owners":["o0","o1"],"time":2}}
{{"process":0,"type":"invoke","f":"assign","board":"b0","owner":"o0","epoch":null,"time":3}}
{{"process":0,"type":"ok","f":"assign","board":"b0","owner":"o0","epoch":1,"time":4}}
{{"process":0,"type":"invoke","f":"sync","board":"b0","owner":"o0","epoch":1,"seq":1,"time":5}}
{{"process":0,"type":"ok","f":"sync","board":"b0","owner":"o0","epoch":1,"seq":1,"time":6}}
{{"process":1,"type":"invoke","f":"assign","board":"b0","owner":"o1","epoch":null,"time":7}}
{{"process":1,"type":"ok","f":"assign","board":"b0","owner":"o1","epoch":2,"time":8}}
{{"process":0,"type":"invoke","f":"sync","board":"b0","owner":"o0","epoch":1,"seq":2,"time":9}}
{{"process":0,"type":"{zombie}","f":"sync","board":"b0","owner":"o0","epoch":1,"seq":2,"time":10}}
{{"process":2,"type":"invoke","f":"read-board","board":"b0","state":null,"final_read":true,"time":11}}
{{"process":2,"type":"ok","f":"read-board","board":"b0","state":{{"epoch":2,"checkpoint_epoch":1,"seq":1}},"final_read":true,"time":12}}
"#
        )
    };
    // The deposed o0's sync, invoked after o1's assignment was acknowledged, accepted.
    let planted = stored_run("board", &history("ok"));
    let out = Command::new(HCJEPSEN).arg("check").arg(planted.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stale epoch 1 accepted"), "{}", describe(&out));
    let fine = stored_run("board", &history("fail"));
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
}

/// Watches (issue 17): writers put and delete keys under a prefix spanning both shards while
/// two watchers watch it from revision 1, resuming after every error (and every 1-3 s on their
/// own, half the time on a new client); under kills and pauses every acknowledged change is
/// delivered to each watcher once, in revision order per shard, and each watcher catches up to
/// the final read and agrees with it.
#[test]
fn watch_under_kill_and_pause_delivers_every_change_once() {
    let (_store, run) = live_run("watch", &[NemesisKind::Kill, NemesisKind::Pause], 15, |_| true);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let watch = &results["watch"];
    assert!(watch["puts_ok"].as_u64().unwrap() > 50, "too few puts: {results}");
    assert_eq!(watch["final_revisions"].as_object().map(|r| r.len()), Some(2), "{results}");
    let watchers = watch["watchers"].as_array().unwrap();
    assert!(watchers.len() >= 2, "{results}");
    for w in watchers {
        assert_eq!(w["caught_up"], true, "{results}");
        assert!(w["events"].as_u64().unwrap() > 50, "too few events delivered: {results}");
        assert!(w["resumes"].as_u64().unwrap() >= 2, "a watcher that never resumed proved nothing: {results}");
    }
}

#[test]
fn check_finds_a_planted_watch_gap() {
    let history = |second: &str| {
        format!(
            r#"{{"process":110,"type":"invoke","f":"watch-open","watcher":0,"start":null,"resume":false,"reconnect":false,"time":1}}
{{"process":110,"type":"ok","f":"watch-open","watcher":0,"start":{{"0":1}},"resume":false,"reconnect":false,"time":2}}
{{"process":0,"type":"invoke","f":"watch-put","key":"watch/0","value":1,"shard":null,"revision":null,"time":3}}
{{"process":0,"type":"ok","f":"watch-put","key":"watch/0","value":1,"shard":0,"revision":1,"time":4}}
{{"process":0,"type":"invoke","f":"watch-put","key":"watch/0","value":2,"shard":null,"revision":null,"time":5}}
{{"process":0,"type":"ok","f":"watch-put","key":"watch/0","value":2,"shard":0,"revision":2,"time":6}}
{{"process":110,"type":"invoke","f":"watch-events","watcher":0,"shard":0,"events":[{{"revision":1,"key":"watch/0","value":1}}{second}],"time":7}}
{{"process":110,"type":"ok","f":"watch-events","watcher":0,"shard":0,"events":[{{"revision":1,"key":"watch/0","value":1}}{second}],"time":8}}
{{"process":99,"type":"invoke","f":"watch-final-read","kvs":null,"revisions":null,"time":9}}
{{"process":99,"type":"ok","f":"watch-final-read","kvs":[{{"key":"watch/0","shard":0,"value":2,"revision":2}}],"revisions":{{"0":2}},"time":10}}
{{"process":110,"type":"invoke","f":"watch-end","watcher":0,"last":{{"0":2}},"end":"caught-up","time":11}}
{{"process":110,"type":"ok","f":"watch-end","watcher":0,"last":{{"0":2}},"end":"caught-up","time":12}}
"#
        )
    };
    // The watcher vouched for revision 2 of shard 0 but was never delivered the put there.
    let gap = stored_run("watch", &history(""));
    let out = Command::new(HCJEPSEN).arg("check").arg(gap.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("missed") && stdout.contains("final read"), "{}", describe(&out));
    let fine = stored_run("watch", &history(r#",{"revision":2,"key":"watch/0","value":2}"#));
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
}

#[test]
fn list_append_under_kill_and_pause_has_no_cycle() {
    let (_store, run) = live_run("list-append", &[NemesisKind::Kill, NemesisKind::Pause], 15, one_node_fault);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let report = &results["list_append"];
    assert!(report["txns"]["ok"].as_u64().unwrap() > 200, "too few transactions: {results}");
    // Enough dependencies for the cycle search to mean something.
    for edge in ["ww", "wr", "rw", "rt"] {
        assert!(report["txns"]["edges"][edge].as_u64().unwrap() > 50, "too few {edge} edges: {results}");
    }
    assert!(report["final_reads"].as_u64().unwrap() >= 2, "{results}");
}

#[test]
fn check_finds_a_planted_list_append_anomaly() {
    let txn = |process: u32, kind: &str, mops: &str, time: u32| {
        format!(r#"{{"process":{process},"type":"{kind}","f":"txn","mops":[{mops}],"time":{time}}}"#)
    };
    let history = |read_y: &str| {
        [
            txn(0, "invoke", r#"{"f":"append","key":"x","value":1},{"f":"append","key":"y","value":2}"#, 1),
            txn(1, "invoke", r#"{"f":"r","key":"x","value":null},{"f":"r","key":"y","value":null}"#, 2),
            txn(0, "ok", r#"{"f":"append","key":"x","value":1},{"f":"append","key":"y","value":2}"#, 3),
            txn(1, "ok", &format!(r#"{{"f":"r","key":"x","value":[1]}},{{"f":"r","key":"y","value":{read_y}}}"#), 4),
            r#"{"process":9,"type":"invoke","f":"txn","mops":[{"f":"r","key":"x","value":null},{"f":"r","key":"y","value":null}],"final_read":true,"time":5}"#.to_string(),
            r#"{"process":9,"type":"ok","f":"txn","mops":[{"f":"r","key":"x","value":[1]},{"f":"r","key":"y","value":[2]}],"final_read":true,"time":6}"#.to_string(),
        ]
        .join("\n")
    };
    // Read skew: process 1 saw the transaction's append to x but not its append to y.
    let skew = stored_run("list-append", &history("[]"));
    let out = Command::new(HCJEPSEN).arg("check").arg(skew.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("G-single"), "{}", describe(&out));
    let fine = stored_run("list-append", &history("[2]"));
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
}

/// Leases (issue 17): every worker holds short leases, attaches keys of both shards to them,
/// keeps them alive, revokes or abandons them, and reads keys; under kills and pauses no key
/// goes before the deadline its holder can vouch for, and none survives its lease's revoke.
#[test]
fn lease_under_kill_and_pause_never_expires_a_key_early() {
    let (_store, run) = live_run("lease", &[NemesisKind::Kill, NemesisKind::Pause], 15, one_node_fault);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let lease = &results["lease"];
    assert_eq!(lease["anomaly_count"].as_u64(), Some(0), "{results}");
    assert!(lease["checkable_reads"].as_u64().unwrap() > 50, "too few checkable reads: {results}");
    assert!(lease["checkable_cross_shard_reads"].as_u64().unwrap() > 10, "too few cross-shard reads: {results}");
    assert!(lease["keepalives_renewed"].as_u64().unwrap() > 10, "too few keepalives: {results}");
    assert!(lease["revokes"]["ok"].as_u64().unwrap() > 5, "too few revokes: {results}");
}

#[test]
fn check_finds_a_planted_early_lease_expiry() {
    // A 2 s lease granted at 0, kept alive at 1 s (vouched until 3 s), its key put at 10 ms;
    // a read at 2.5 s finds the key gone, or present.
    let history = |read: &str| {
        format!(
            r#"{{"process":0,"type":"invoke","f":"lease-grant","ttl_ms":2000,"for_key":null,"lease":null,"granted_ttl_ms":null,"time":0}}
{{"process":0,"type":"ok","f":"lease-grant","ttl_ms":2000,"for_key":null,"lease":7,"granted_ttl_ms":2000,"time":5000000}}
{{"process":0,"type":"invoke","f":"lease-put","key":"lease/0.0/0","value":1,"lease":7,"shard":null,"time":10000000}}
{{"process":0,"type":"ok","f":"lease-put","key":"lease/0.0/0","value":1,"lease":7,"shard":1,"time":15000000}}
{{"process":0,"type":"invoke","f":"lease-keep-alive","lease":7,"ttl_ms":null,"time":1000000000}}
{{"process":0,"type":"ok","f":"lease-keep-alive","lease":7,"ttl_ms":2000,"time":1005000000}}
{{"process":1,"type":"invoke","f":"lease-read","key":"lease/0.0/0","value":null,"lease":null,"time":2500000000}}
{{"process":1,"type":"ok","f":"lease-read","key":"lease/0.0/0",{read},"time":2505000000}}
"#
        )
    };
    let early = stored_run("lease", &history(r#""value":null,"lease":null"#));
    let out = Command::new(HCJEPSEN).arg("check").arg(early.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: false", "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("expired early: lease/0.0/0 on lease 7"),
        "{}",
        describe(&out)
    );
    let fine = stored_run("lease", &history(r#""value":1,"lease":7"#));
    let out = Command::new(HCJEPSEN).arg("check").arg(fine.path()).output().unwrap();
    assert_eq!(last_line(&out), "valid: true", "{}", describe(&out));
}
