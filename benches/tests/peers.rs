//! The peer backends of `hcbench` against real etcd and Redis processes: every put the generator
//! counts as done is in the store (on the replica too, for `--redis-wait`), and a write the
//! replicas did not acknowledge is counted as a failure, not as a put.
//! Needs `etcd` (Debian `etcd-server`) and `redis-server` (Debian `redis-server`); `.ci/run`
//! installs both.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use hypercache_benches::load::{run, Args};
use hypercache_benches::peers::etcd::pb;

/// A server process, killed when the test ends (passed or not).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn spawn(program: &str, args: &[String], log: &Path) -> Server {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(program)
        .args(args)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {program}: {e} (install Debian's etcd-server and redis-server; .ci/run does)")
        });
    Server(child)
}

fn redis(dir: &Path, name: &str, port: u16, replica_of: Option<u16>) -> Server {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("dir");
    let mut args: Vec<String> =
        ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(["--appendfsync".into(), "always".into(), "--dir".into(), data.display().to_string()]);
    if let Some(primary) = replica_of {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), primary.to_string()]);
    }
    spawn("redis-server", &args, &dir.join(format!("{name}.log")))
}

async fn redis_conn(port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("Redis on {port} never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn redis_keys(port: u16, pattern: &str) -> usize {
    let mut conn = redis_conn(port).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS");
    keys.len()
}

/// One `hcbench` run in this process; `flags` are whitespace-separated.
async fn bench(flags: &str) -> hypercache_benches::report::Report {
    let args = Args::try_parse_from(std::iter::once("hcbench").chain(flags.split_whitespace())).expect("flags");
    run(args.plan().expect("plan")).await.expect("run")
}

#[tokio::test]
async fn redis_puts_wait_for_a_replica_and_land_on_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, r) = (free_port(), free_port());
    let _primary = redis(dir.path(), "primary", p, None);
    let _replica = redis(dir.path(), "replica", r, Some(p));
    // The replica has synced once it reports the link up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = redis_conn(r).await;
        let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn).await.expect("INFO");
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never synced:\n{info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoints = format!("127.0.0.1:{p},127.0.0.1:{r}");
    let report = bench(&format!(
        "--system redis --endpoints {endpoints} --redis-wait 1 --keys 50 --prefill --count 200 \
         --concurrency 8 --key-prefix t/"
    ))
    .await;
    assert_eq!((report.total_ops, report.total_errors), (200, 0), "{}", report.to_text());
    // Every put waited for the replica: the prefilled key space is there before any check.
    assert_eq!(redis_keys(r, "t/*").await, 50, "keys on the replica");

    let report = bench(&format!(
        "--system redis --endpoints {endpoints} --get-ratio 1 --serializable --keys 50 --count 100 \
         --concurrency 4 --key-prefix t/"
    ))
    .await;
    assert_eq!((report.get.ops, report.total_errors), (100, 0), "{}", report.to_text());
}

#[tokio::test]
async fn redis_puts_no_replica_acknowledged_are_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = free_port();
    let _primary = redis(dir.path(), "primary", p, None);
    redis_conn(p).await;
    // The second endpoint is never started: WAIT 1 times out with 0 acknowledgements. WAIT gives
    // up at half the deadline; 1 s of margin, because with 200 ms a loaded CI machine once let the
    // deadline pass first (`timeout` instead of `not_replicated`).
    let endpoints = format!("127.0.0.1:{p},127.0.0.1:{}", free_port());
    let report = bench(&format!(
        "--system redis --endpoints {endpoints} --redis-wait 1 --count 3 --concurrency 1 --timeout-ms 2000"
    ))
    .await;
    assert_eq!(report.put.ops, 0, "{}", report.to_text());
    assert_eq!(report.put.errors_by_kind.get("not_replicated"), Some(&3), "{}", report.to_text());
}

#[tokio::test]
async fn etcd_puts_land_and_both_reads_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let args: Vec<String> = [
        "--name",
        "m1",
        "--data-dir",
        &dir.path().join("etcd").display().to_string(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("m1={peer_url}"),
        "--initial-cluster-state",
        "new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _etcd = spawn("etcd", &args, &dir.path().join("etcd.log"));
    let endpoint = format!("127.0.0.1:{client}");
    let mut kv = pb::kv_client::KvClient::connect(client_url.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while kv.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        kv = pb::kv_client::KvClient::connect(client_url.clone()).await;
    }
    let mut kv = kv.expect("etcd never answered");

    let report = bench(&format!(
        "--system etcd --endpoints {endpoint} --keys 40 --prefill --count 100 --concurrency 4 --key-prefix t/"
    ))
    .await;
    assert_eq!((report.total_ops, report.total_errors), (100, 0), "{}", report.to_text());
    let range = pb::RangeRequest { key: "t/".into(), range_end: "t0".into(), ..Default::default() };
    let stored = kv.range(range).await.expect("range").into_inner();
    assert_eq!(stored.count, 40, "every prefilled key is in etcd");

    for read in ["", "--serializable"] {
        let report = bench(&format!("--system etcd --endpoints {endpoint} --get-ratio 1 --count 50 {read}")).await;
        assert_eq!((report.get.ops, report.total_errors), (50, 0), "{read:?}: {}", report.to_text());
    }
}

#[tokio::test]
async fn an_etcd_that_is_down_is_counted_not_hidden() {
    let endpoint = format!("127.0.0.1:{}", free_port());
    let report =
        bench(&format!("--system etcd --endpoints {endpoint} --count 2 --concurrency 1 --timeout-ms 300")).await;
    assert_eq!(report.put.ops, 0);
    assert_eq!(report.total_errors, 2, "{}", report.to_text());
}
