//! `hypercache dev`: a local cluster of N separate `hypercache serve` processes.
//!
//! Each node gets `127.0.0.1:<base_port + i - 1>` for gRPC, `127.0.0.1:<admin_base_port + i - 1>`
//! for admin HTTP and `<dir>/node-<i>` for data; its output goes to `<dir>/node-<i>.log`. The
//! supervisor prints every node's command line so that a node killed by hand (chaos drills) can be
//! restarted exactly as it was started. It does not restart nodes itself: a dead node is reported,
//! and the rest keep serving. On Ctrl-C or SIGTERM every node gets SIGTERM (graceful shutdown),
//! then SIGKILL if it has not exited within the grace period.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::{LocalShardsRequest, RoutingRequest};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::replica_status::Role;

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Number of nodes (separate processes), 1..=9.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub nodes: u16,
    /// Directory for the nodes' data and logs.
    #[arg(long, default_value = "./data/dev")]
    pub dir: PathBuf,
    /// gRPC port of node 1; node i uses base_port + i - 1.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Admin HTTP port of node 1; node i uses admin_base_port + i - 1.
    #[arg(long, default_value_t = 7101)]
    pub admin_base_port: u16,
    /// Data shards of the new cluster.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Replicas per data shard (at most the node count is used).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=7))]
    pub replication: u32,
    /// How long each node may take to shut down gracefully before it is killed.
    #[arg(long, default_value_t = 15)]
    pub grace_secs: u64,
}

struct DevNode {
    name: String,
    endpoint: String,
    child: Child,
    command_line: String,
    exited: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("--base-port/--admin-base-port: the port ranges overlap or exceed 65535")]
    Ports,
    #[error("{0}")]
    Io(String),
}

pub async fn run(args: DevArgs) -> Result<(), DevError> {
    let n = args.nodes;
    let grpc_end = u32::from(args.base_port) + u32::from(n);
    let admin_end = u32::from(args.admin_base_port) + u32::from(n);
    let overlap = u32::from(args.base_port) < admin_end && u32::from(args.admin_base_port) < grpc_end;
    if overlap || grpc_end > 65_536 || admin_end > 65_536 || args.base_port == 0 || args.admin_base_port == 0 {
        return Err(DevError::Ports);
    }
    let exe = std::env::current_exe().map_err(|e| DevError::Io(format!("locating the hypercache binary: {e}")))?;
    std::fs::create_dir_all(&args.dir).map_err(|e| DevError::Io(format!("creating {}: {e}", args.dir.display())))?;
    let endpoints: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", args.base_port + i)).collect();
    let peers: Vec<String> = endpoints.iter().enumerate().map(|(i, e)| format!("{}={e}", i + 1)).collect();

    let mut nodes = Vec::new();
    for i in 1..=n {
        let endpoint = endpoints[usize::from(i - 1)].clone();
        let admin = format!("127.0.0.1:{}", args.admin_base_port + i - 1);
        let data = args.dir.join(format!("node-{i}"));
        let argv: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            i.to_string(),
            "--name".into(),
            format!("node-{i}"),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            endpoint.clone(),
            "--admin".into(),
            admin.clone(),
            "--peers".into(),
            peers.join(","),
            "--shards".into(),
            args.shards.to_string(),
            "--replication".into(),
            args.replication.to_string(),
        ];
        let log_path = args.dir.join(format!("node-{i}.log"));
        let child = spawn(&exe, &argv, &log_path)?;
        let pid = child.id().unwrap_or(0);
        let command_line = format!("{} {} >>{} 2>&1", exe.display(), argv.join(" "), log_path.display());
        println!("node-{i}  id={i}  client={endpoint}  admin=http://{admin}  pid={pid}  log={}", log_path.display());
        nodes.push(DevNode { name: format!("node-{i}"), endpoint, child, command_line, exited: false });
    }
    println!("\nrestart a node by hand with its original command line:");
    for node in &nodes {
        println!("  {}: {}", node.name, node.command_line);
    }

    match wait_for_shards(&nodes, Duration::from_secs(60)).await {
        Some(summary) => println!("\ncluster ready: {summary}"),
        None => println!("\nnot every shard has a leader after 60 s; check the node logs in {}", args.dir.display()),
    }
    println!("try:  hcctl --endpoints {} put hello world", endpoints.join(","));
    println!("serving until Ctrl-C or SIGTERM");

    supervise(&mut nodes).await;
    println!("stopping {} nodes", nodes.len());
    stop_all(&mut nodes, Duration::from_secs(args.grace_secs)).await;
    println!("stopped");
    Ok(())
}

fn spawn(exe: &Path, argv: &[String], log_path: &Path) -> Result<Child, DevError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| DevError::Io(format!("opening {}: {e}", log_path.display())))?;
    let log2 = log.try_clone().map_err(|e| DevError::Io(e.to_string()))?;
    Command::new(exe)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // A node of our own group would also get the terminal's Ctrl-C; the supervisor sends
        // SIGTERM itself, in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DevError::Io(format!("starting {}: {e}", exe.display())))
}

/// Waits until the placement exists and every data shard reports a leader; returns a summary
/// (shards and how many each node leads).
async fn wait_for_shards(nodes: &[DevNode], timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(summary) = shard_summary(nodes).await {
            return Some(summary);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

async fn shard_summary(nodes: &[DevNode]) -> Option<String> {
    let mut shard_count = None;
    let mut leaders: BTreeMap<u32, String> = BTreeMap::new();
    for node in nodes {
        let Ok(mut client) = ClusterClient::connect(format!("http://{}", node.endpoint)).await else { continue };
        if shard_count.is_none() {
            if let Ok(r) = client.routing(RoutingRequest {}).await {
                let r = r.into_inner();
                shard_count = (r.version > 0).then_some(r.shard_count);
            }
        }
        if let Ok(r) = client.local_shards(LocalShardsRequest { with_size: false }).await {
            for replica in r.into_inner().replicas.iter().filter(|r| Role::is_leader(&r.role) && r.ready) {
                leaders.insert(replica.shard_id, node.name.clone());
            }
        }
    }
    let shard_count = shard_count?;
    if leaders.len() < shard_count as usize {
        return None;
    }
    let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
    for name in leaders.values() {
        *per_node.entry(name).or_default() += 1;
    }
    let spread: Vec<String> = per_node.iter().map(|(n, c)| format!("{n}={c}")).collect();
    Some(format!("{shard_count} shards, each with a leader (leaders per node: {})", spread.join(" ")))
}

async fn supervise(nodes: &mut [DevNode]) {
    // The workspace's one stop signal (SIGTERM or Ctrl-C), listened for once across the loop.
    let stop = hypercache_proto::stop_signal::wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                for node in nodes.iter_mut().filter(|n| !n.exited) {
                    if let Ok(Some(status)) = node.child.try_wait() {
                        node.exited = true;
                        println!("{} exited ({status}); restart it with:\n  {}", node.name, node.command_line);
                    }
                }
            }
        }
    }
}

async fn stop_all(nodes: &mut [DevNode], grace: Duration) {
    for node in nodes.iter().filter(|n| !n.exited) {
        if let Some(pid) = node.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for node in nodes.iter_mut().filter(|n| !n.exited) {
        match tokio::time::timeout(grace, node.child.wait()).await {
            Ok(Ok(status)) => println!("{} stopped ({status})", node.name),
            _ => {
                println!("{} did not stop within {} s; killing it", node.name, grace.as_secs());
                let _ = node.child.kill().await;
            }
        }
    }
}
