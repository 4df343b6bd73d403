//! The `hcctl` binary against fake servers: output, exit codes, and a closed stdout.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

// The client's fake servers, shared rather than copied: one definition of each fake.
#[path = "../../hypercache-client/tests/common/mod.rs"]
mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::{closed_port, serve, Behaviour, Fake};
use tokio::process::Command;

async fn hcctl(endpoints: &[String], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hcctl"));
    cmd.arg("--endpoints").arg(endpoints.join(",")).arg("--timeout-ms").arg("2000").args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hcctl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        tokio::io::AsyncWriteExt::write_all(&mut input, data).await.expect("write stdin");
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.expect("hcctl hung").expect("run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_put_and_their_exit_codes() {
    let ep = vec![serve(Fake::new(Behaviour::Serve)).await];

    let out = hcctl(&ep, &["get", "present"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"value", "raw value, no newline");

    let out = hcctl(&ep, &["get", "absent"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "not found");

    let out = hcctl(&ep, &["--json", "get", "absent"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("\"found\":false"), "{}", text(&out.stdout));

    let out = hcctl(&ep, &["put", "k", "-"], Some(b"\x00\xffbinary")).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK revision=5\n");

    let out = hcctl(&ep, &["put", "", "v"], None).await;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stderr), "error: key is empty; keys must be 1..=4096 bytes\n");

    let out = hcctl(&ep, &["cas", "k", "v"], None).await;
    assert_eq!(out.status.code(), Some(64), "usage error without an expectation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_unknown_and_unreachable_clusters() {
    let ep = vec![serve(Fake::new(Behaviour::OutcomeUnknown)).await];
    let out = hcctl(&ep, &["put", "k", "v"], None).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("error: outcome unknown"), "{}", text(&out.stderr));

    let down = vec![closed_port(), closed_port()];
    let out = hcctl(&down, &["status"], None).await;
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(text(&out.stdout).matches("unreachable").count(), 2, "{}", text(&out.stdout));

    let out = hcctl(&down, &["get", "k"], None).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_not_a_crash() {
    let ep = serve(Fake::new(Behaviour::Serve)).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hcctl"))
        .args(["--endpoints", &ep, "get", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader goes away before the 1 MiB value is written
    let out =
        tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.expect("hung").expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_epoch_exits_2_with_the_current_owner_on_stderr() {
    use common::scripted::{BoardsFake, Script, SyncAnswer};
    use hypercache_proto::v1::boards_server::BoardsServer;

    let script = Script::new([], SyncAnswer::StaleEpoch { owner: "srv-b", epoch: 4, incarnation: 2 });
    let fake = BoardsFake { script: script.clone() };
    let ep = vec![common::serve_routes(tonic::service::Routes::new(BoardsServer::new(fake))).await];

    let out = hcctl(&ep, &["boards", "sync", "b1", "--epoch", "3", "--seq", "2", "data"], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: epoch 3 of board b1 is stale (current owner: srv-b, incarnation 2, epoch 4)\n"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(common::scripted::lock(&script).received.len(), 1, "not retried");

    // A missing board has its own "not found" code, not the missing key's 1.
    let out = hcctl(&ep, &["boards", "get", "b1"], None).await;
    assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
    let out = hcctl(&ep, &["--json", "boards", "get", "b1"], None).await;
    assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
    let e = json_error(&out);
    assert_eq!((e["code"].as_str(), e["reason"].as_str()), (Some("NOT_FOUND"), Some("BOARD_NOT_FOUND")));

    let out = hcctl(&ep, &["--json", "boards", "sync", "b1", "--epoch", "3", "--seq", "2", "data"], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let e = json_error(&out);
    assert_eq!(e["reason"], "STALE_EPOCH");
    assert_eq!(
        (e["owner"].as_str(), e["epoch"].as_u64(), e["not_applied"].as_bool()),
        (Some("srv-b"), Some(4), Some(true))
    );
}

/// The `error` object of a `--json` failure: the only line on stdout, nothing on stderr.
fn json_error(out: &Output) -> serde_json::Value {
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON object on stdout");
    let e = v["error"].clone();
    assert!(e.is_object(), "{v}");
    for field in ["code", "reason", "message"] {
        assert!(e[field].as_str().is_some_and(|s| !s.is_empty()), "{field} missing: {v}");
    }
    assert_eq!(e["exit_code"].as_i64(), out.status.code().map(i64::from), "{v}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_separate_definite_failures_from_unknown_outcomes() {
    let ep = vec![serve(Fake::new(Behaviour::OutcomeUnknown)).await];
    let out = hcctl(&ep, &["--json", "put", "k", "v"], None).await;
    assert_eq!(out.status.code(), Some(3));
    let e = json_error(&out);
    assert_eq!((e["code"].as_str(), e["reason"].as_str()), (Some("UNKNOWN"), Some("OUTCOME_UNKNOWN")));
    assert_eq!(e["not_applied"], false, "the only maybe-applied exit");

    let ep = vec![serve(Fake::new(Behaviour::Serve)).await];
    let out = hcctl(&ep, &["--json", "put", "", "v"], None).await;
    assert_eq!(out.status.code(), Some(4));
    let e = json_error(&out);
    assert_eq!((e["code"].as_str(), e["reason"].as_str()), (Some("INVALID_ARGUMENT"), Some("EMPTY_KEY")));
    assert_eq!(e["message"], "key is empty; keys must be 1..=4096 bytes");
    assert_eq!(e["not_applied"], true);

    let down = vec![closed_port(), closed_port()];
    let out = hcctl(&down, &["--json", "put", "k", "v"], None).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stdout));
    let e = json_error(&out);
    assert_eq!(e["not_applied"], true, "never connected: a definite failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_exit_codes_name_the_kind_of_thing() {
    use common::scripted::{KeepAliveAnswer, LeaseFake, Script};
    use hypercache_proto::v1::lease_server::LeaseServer;

    let script = Script::new([], KeepAliveAnswer::Hang);
    let routes = tonic::service::Routes::new(LeaseServer::new(LeaseFake::new(script)))
        .add_service(hypercache_proto::v1::kv_server::KvServer::new(Fake::new(Behaviour::Serve)));
    let ep = vec![common::serve_routes(routes).await];

    let out = hcctl(&ep, &["get", "absent"], None).await;
    assert_eq!(out.status.code(), Some(1), "a missing key: {}", text(&out.stderr));
    let out = hcctl(&ep, &["lease", "revoke", "99"], None).await;
    assert_eq!(out.status.code(), Some(7), "a missing lease: {}", text(&out.stderr));
    let out = hcctl(&ep, &["--json", "lease", "revoke", "99"], None).await;
    assert_eq!(out.status.code(), Some(7));
    let e = json_error(&out);
    assert_eq!((e["code"].as_str(), e["reason"].as_str()), (Some("NOT_FOUND"), Some("LEASE_NOT_FOUND")));
    assert_eq!(e["not_applied"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_json_names_the_keys_shard() {
    use common::scripted::lock;
    let (state, ep) = common::sharded::cluster(&["A", "B"], 2).await;
    {
        let mut s = lock(&state);
        s.hosts = [("A".to_string(), vec![0, 1]), ("B".to_string(), vec![0, 1])].into();
        s.leaders = [(0, "A".to_string()), (1, "B".to_string())].into();
        let table = s.table(1);
        s.tables = [Some(table)].into();
    }
    let router = hypercache_proto::routing::Router::new(2);
    for shard in [0, 1] {
        let key = (0..).map(|i| format!("k{i}")).find(|k| router.shard_of(k.as_bytes()) == shard).expect("a key");
        let out = hcctl(&ep, &["--json", "get", &key], None).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!((v["found"].as_bool(), v["shard"].as_u64()), (Some(false), Some(u64::from(shard))), "{v}");
        let out = hcctl(&ep, &["put", &key, "v"], None).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = hcctl(&ep, &["--json", "get", &key], None).await;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!((v["found"].as_bool(), v["shard"].as_u64()), (Some(true), Some(u64::from(shard))), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_exit_codes_follow_the_branch_that_ran() {
    let ep = vec![serve(Fake::new(Behaviour::Serve)).await];
    // The fake fails every transaction that has a compare.
    let out = hcctl(&ep, &["txn", "--if", "exists(k)", "--then", "put k v", "--else", "get present"], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "FAILED (--else ran) revision=5\nget present: \"value\"\n");

    let out = hcctl(&ep, &["--json", "txn", "--then", "put k v", "--then", "get absent"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["succeeded"], true);
    assert_eq!(v["responses"][1]["found"], false);

    let out = hcctl(&ep, &["txn", "--if", "value(k) v"], None).await;
    assert_eq!(out.status.code(), Some(64), "a malformed condition is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_every_event_once_across_breaks_and_stops_on_ctrl_c() {
    use common::scripted::{history, watch_script, StreamEnd, StreamPlan, WatchFake};
    use hypercache_proto::v1::kv_server::KvServer;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let plan = |rewind, messages, end| StreamPlan { rewind, messages, end };
    let plans = vec![plan(0, 3, StreamEnd::Reset), plan(2, 3, StreamEnd::TooSlow)];
    let script = watch_script(history(6), 1, plans, plan(0, 100, StreamEnd::Idle));
    let mut endpoints = Vec::new();
    for name in ["A", "B"] {
        let fake = WatchFake { name, script: script.clone() };
        endpoints.push(common::serve_routes(tonic::service::Routes::new(KvServer::new(fake))).await);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_hcctl"))
        .args(["--endpoints", &endpoints.join(","), "watch", "k", "--rev", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    while !printed.last().is_some_and(|l: &String| l.ends_with("(rev 6)")) {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("watch stalled");
        printed.push(line.expect("read").expect("hcctl ended early"));
    }
    let expected: Vec<String> = (1..=6)
        .flat_map(|r| {
            let mut v = vec![format!("PUT k v{r} (rev {r})")];
            if r == 4 {
                v.push("PUT k2 v4 (rev 4)".to_string());
            }
            v
        })
        .collect();
    assert_eq!(printed, expected);

    // Ctrl-C ends the watch with exit 0.
    let pid = child.id().expect("pid").to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().await.expect("kill");
    assert!(status.success());
    let out =
        tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.expect("hung").expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
