//! What every game-state benchmark shares: the common flags, raw tonic channels to the nodes,
//! finding a shard's Raft leader, and naming gRPC failures for the error tables.
//!
//! These benchmarks talk to the generated `hypercache-proto` clients directly rather than through
//! `hypercache-client`, so they measure the server's services and not a client library's retry
//! and routing policy. The price is that we route requests ourselves, once, at the start of a run
//! ([`Shards`]):
//!
//! - The routing table is fetched once, by `hypercache-client` (the one fetch the workspace has).
//!   A server that answers `UNIMPLEMENTED` predates sharding: one shard, id 0, on every node. A
//!   cluster that has placed no shards within the wait is an error.
//! - The game services (registry, boards, elections, and the leases they hang on) live in the
//!   *home shard*, the shard of the client library's default namespace
//!   ([`hypercache_client::DEFAULT_NAMESPACE`]), exactly where `hypercache-client` sends them, so
//!   a benchmark and a real game server see the same boards.
//! - KV keys go to their own shard ([`Shards::shard_of`]).
//! - A shard's leader is the replica whose `Cluster.LocalShards` says `leader` (or the node it
//!   names as leader); every request for that shard goes there.
//!
//! A leader change during a run shows up as NOT_LEADER errors in the report; nothing is retried,
//! because a retried write would be timed twice or hide an outage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hypercache_client::{Client, ClientConfig, RoutingTable};
use hypercache_proto::error_info::info_of;
use hypercache_proto::routing::Router;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::{LocalShardsRequest, StatusRequest};
use hypercache_proto::Role;
use tonic::transport::{Channel, Endpoint};

const MAX_DURATION_SECS: u64 = 24 * 3600;

/// Flags shared by the game-state subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Seed endpoints (host:port, comma-separated); writes go to whichever is the Raft leader.
    #[arg(long, env = "HYPERCACHE_ENDPOINTS", default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")]
    pub endpoints: String,
    /// Length of the measured phase, in seconds (1..=86400).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Deadline of every unary request, in milliseconds (streams have none).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Validated [`CommonArgs`].
#[derive(Debug, Clone)]
pub struct Common {
    pub endpoints: Vec<String>,
    pub duration: Duration,
    pub timeout: Duration,
}

impl CommonArgs {
    pub fn validate(&self) -> anyhow::Result<Common> {
        let endpoints = parse_endpoints(&self.endpoints).context("--endpoints")?;
        if !(1..=MAX_DURATION_SECS).contains(&self.duration) {
            bail!("--duration must be in 1..={MAX_DURATION_SECS} seconds, got {}", self.duration);
        }
        if self.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        Ok(Common {
            endpoints,
            duration: Duration::from_secs(self.duration),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// Splits `a:1,b:2` into endpoints, rejecting entries without a numeric port.
pub fn parse_endpoints(list: &str) -> anyhow::Result<Vec<String>> {
    let endpoints: Vec<String> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect();
    if endpoints.is_empty() {
        bail!("no endpoint given");
    }
    for e in &endpoints {
        match e.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => bail!("endpoint {e:?} is not host:port"),
        }
    }
    Ok(endpoints)
}

/// A lazily connected channel (one HTTP/2 connection) to `endpoint`. With `timeout`, every call
/// on it must get its response headers in time; streaming channels pass `None`, since a watch
/// legitimately lasts the whole run.
pub fn channel(endpoint: &str, timeout: Option<Duration>) -> anyhow::Result<Channel> {
    let mut e = Endpoint::from_shared(format!("http://{endpoint}"))
        .with_context(|| format!("endpoint {endpoint:?} is not a valid URI authority"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if let Some(t) = timeout {
        e = e.timeout(t);
    }
    Ok(e.connect_lazy())
}

/// The node that leads a shard when asked.
#[derive(Debug, Clone)]
pub struct Leader {
    pub node_id: u64,
    pub endpoint: String,
}

/// The cluster's shards as a benchmark sees them: the routing table fetched once at the start.
#[derive(Debug, Clone)]
pub struct Shards {
    router: Router,
    /// gRPC endpoint by node id (empty for a one-shard legacy cluster).
    nodes: BTreeMap<u64, String>,
    /// Replica node ids, indexed by shard id (empty lists for a legacy cluster).
    replicas: Vec<Vec<u64>>,
    seeds: Vec<String>,
}

impl Shards {
    /// Fetches the routing table the way the client library does (`Cluster.Routing` from the
    /// seeds in turn, backing off while the cluster has no placement yet), for at most `wait`. A
    /// server that answers `UNIMPLEMENTED` predates sharding: one shard, id 0, on every node.
    pub async fn discover(seeds: &[String], wait: Duration) -> anyhow::Result<Shards> {
        let config = ClientConfig::new(seeds.to_vec()).request_timeout(wait);
        let client = Client::new(config).context("creating a client to fetch the routing table")?;
        let table = client.routing().await.with_context(|| format!("no routing table within {wait:?}"))?;
        Ok(Shards::from_table(&table, seeds))
    }

    /// The shards `table` places (a legacy table: [`Shards::single`]).
    fn from_table(table: &RoutingTable, seeds: &[String]) -> Shards {
        if table.is_legacy() {
            return Shards::single(seeds);
        }
        let nodes = table.nodes.iter().map(|(id, node)| (*id, node.endpoint.clone())).collect();
        let mut replicas = vec![Vec::new(); table.shard_count as usize];
        for shard in &table.shards {
            if let Some(slot) = replicas.get_mut(shard.shard_id.0 as usize) {
                slot.clone_from(&shard.replicas);
            }
        }
        Shards { router: Router::new(table.shard_count), nodes, replicas, seeds: seeds.to_vec() }
    }

    /// A cluster of one shard, id 0, served by every seed.
    pub fn single(seeds: &[String]) -> Shards {
        Shards { router: Router::new(1), nodes: BTreeMap::new(), replicas: vec![Vec::new()], seeds: seeds.to_vec() }
    }

    pub fn count(&self) -> u32 {
        self.router.shard_count()
    }

    /// The shard `key` lives in.
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        self.router.shard_of(key)
    }

    /// Where the game services live: the shard of the client library's default namespace.
    pub fn home(&self) -> u32 {
        self.shard_of(hypercache_client::DEFAULT_NAMESPACE.as_bytes())
    }

    /// The endpoints of `shard`'s replicas, in placement order; the seeds when the table names
    /// none (a legacy cluster).
    pub fn replica_endpoints(&self, shard: u32) -> Vec<String> {
        let ids = self.replicas.get(shard as usize).map(Vec::as_slice).unwrap_or_default();
        let endpoints: Vec<String> = ids.iter().filter_map(|id| self.nodes.get(id)).cloned().collect();
        if endpoints.is_empty() {
            self.seeds.clone()
        } else {
            endpoints
        }
    }

    /// Asks `shard`'s replicas for its leader until one is known, for at most `wait`. A fresh
    /// cluster may still be electing; a replica that knows the leader names it.
    pub async fn find_leader(&self, shard: u32, wait: Duration) -> anyhow::Result<Leader> {
        let deadline = Instant::now() + wait;
        let mut last_problem = String::from("no replica answered");
        let candidates = self.replica_endpoints(shard);
        loop {
            for endpoint in &candidates {
                let mut client = ClusterClient::new(channel(endpoint, Some(Duration::from_secs(2)))?);
                match client.local_shards(LocalShardsRequest { with_size: false }).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        match r.replicas.iter().find(|s| s.shard_id == shard) {
                            Some(s) if Role::is_leader(&s.role) => {
                                return Ok(Leader { node_id: r.node_id, endpoint: endpoint.clone() })
                            }
                            Some(s) if s.leader_id != 0 => {
                                if let Some(leader) = self.nodes.get(&s.leader_id) {
                                    return Ok(Leader { node_id: s.leader_id, endpoint: leader.clone() });
                                }
                                last_problem =
                                    format!("{endpoint} names node {} as leader, not in the table", s.leader_id);
                            }
                            Some(s) => {
                                last_problem = format!("{endpoint} knows no leader of shard {shard} (role {})", s.role)
                            }
                            None => last_problem = format!("{endpoint} hosts no replica of shard {shard}"),
                        }
                    }
                    // A server that predates sharding: its one group is shard 0.
                    Err(status) if status.code() == tonic::Code::Unimplemented => {
                        return status_leader(&candidates, deadline.saturating_duration_since(Instant::now())).await;
                    }
                    Err(status) => last_problem = format!("{endpoint}: {}", describe(&status)),
                }
            }
            if Instant::now() >= deadline {
                bail!("no leader of shard {shard} found within {wait:?}: {last_problem}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The leader of every shard, indexed by shard id.
    pub async fn find_leaders(&self, wait: Duration) -> anyhow::Result<Vec<Leader>> {
        let mut leaders = Vec::with_capacity(self.count() as usize);
        for shard in 0..self.count() {
            leaders.push(self.find_leader(shard, wait).await?);
        }
        Ok(leaders)
    }
}

/// The leader as `Cluster.Status` names it: on a server that predates sharding, the leader of
/// its one group.
async fn status_leader(endpoints: &[String], wait: Duration) -> anyhow::Result<Leader> {
    let deadline = Instant::now() + wait;
    let mut last_problem = String::from("no node answered");
    loop {
        for endpoint in endpoints {
            let mut client = ClusterClient::new(channel(endpoint, Some(Duration::from_secs(2)))?);
            match client.status(StatusRequest {}).await {
                Ok(r) => {
                    let s = r.into_inner();
                    if Role::is_leader(&s.role) {
                        return Ok(Leader { node_id: s.node_id, endpoint: s.endpoint });
                    }
                    if s.leader_id != 0 && !s.leader_endpoint.is_empty() {
                        return Ok(Leader { node_id: s.leader_id, endpoint: s.leader_endpoint });
                    }
                    last_problem = format!("{endpoint} knows no leader (role {})", s.role);
                }
                Err(status) => last_problem = format!("{endpoint}: {}", describe(&status)),
            }
        }
        if Instant::now() >= deadline {
            bail!("no leader found within {wait:?}: {last_problem}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One unary channel per shard leader, indexed by shard id; shards led by the same node share
/// its channel (one HTTP/2 connection per node, as in the client library).
pub async fn leader_channels(
    shards: &Shards,
    timeout: Duration,
    wait: Duration,
) -> anyhow::Result<Vec<(Leader, Channel)>> {
    let mut by_endpoint: BTreeMap<String, Channel> = BTreeMap::new();
    let mut out = Vec::with_capacity(shards.count() as usize);
    for leader in shards.find_leaders(wait).await? {
        let ch = match by_endpoint.get(&leader.endpoint) {
            Some(ch) => ch.clone(),
            None => {
                let ch = channel(&leader.endpoint, Some(timeout))?;
                by_endpoint.insert(leader.endpoint.clone(), ch.clone());
                ch
            }
        };
        out.push((leader, ch));
    }
    Ok(out)
}

/// `prefix` followed by the run tag as a hash tag (`p/{hcb-...}/`): every key under it lives in
/// the tag's shard, so one watch stream per watcher sees all of a run's keys, as a game server
/// watching `board:{id}:` does.
pub fn tagged_prefix(prefix: &str, tag: &str) -> String {
    format!("{prefix}{{{tag}}}/")
}

/// The home shard and its leader: where a game benchmark sends everything.
pub async fn home_leader(endpoints: &[String], wait: Duration) -> anyhow::Result<(Shards, u32, Leader)> {
    let shards = Shards::discover(endpoints, wait).await?;
    let home = shards.home();
    let leader = shards.find_leader(home, wait).await?;
    Ok((shards, home, leader))
}

/// A short, static name for a failed call: its ErrorInfo reason when this build knows it
/// ([`hypercache_proto::Reason`]), `client_timeout` when our own deadline (`--timeout-ms`) ended it (tonic reports
/// that as CANCELLED "Timeout expired"), else its gRPC code.
pub fn kind(status: &tonic::Status) -> &'static str {
    if let Some(known) = info_of(status).and_then(|info| info.known_reason()) {
        return known.as_str();
    }
    if status.code() == tonic::Code::Cancelled && status.message().contains("Timeout expired") {
        return "client_timeout";
    }
    code_name(status.code())
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// The code, the ErrorInfo reason (if any) and the message, for error samples and bail!s.
pub fn describe(status: &tonic::Status) -> String {
    let reason = info_of(status).map(|i| i.reason).unwrap_or_default();
    format!("{:?} {reason}: {}", status.code(), status.message())
}

/// A prefix unique to this run (milliseconds since the Unix epoch, in hex), so that repeated
/// runs against one cluster never collide on board, server or key names.
pub fn run_tag() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("hcb-{ms:x}")
}

/// Resolves once `flag` is set (polled every 50 ms; good enough to end a multi-second run).
pub async fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events per second, guarded against an empty interval.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_host_and_port() {
        assert_eq!(parse_endpoints("a:1, b:2,").expect("valid"), vec!["a:1", "b:2"]);
        assert!(parse_endpoints(" , ").is_err());
        assert!(parse_endpoints("a:1,b").is_err());
        assert!(parse_endpoints(":1").is_err());
        assert!(parse_endpoints("a:99999").is_err());
    }

    #[test]
    fn a_legacy_cluster_is_one_shard_on_every_seed() {
        let seeds = vec!["a:1".to_string(), "b:2".to_string()];
        let shards = Shards::single(&seeds);
        assert_eq!((shards.count(), shards.home(), shards.shard_of(b"any key")), (1, 0, 0));
        assert_eq!(shards.replica_endpoints(0), seeds);
    }

    #[test]
    fn a_tagged_prefix_keeps_a_run_in_one_shard() {
        let r = Router::new(16);
        let prefix = tagged_prefix("w/", "hcb-1");
        assert_eq!(prefix, "w/{hcb-1}/");
        let shard = r.shard_of(prefix.as_bytes());
        assert!((0..100).all(|i| r.shard_of(format!("{prefix}{i:010}").as_bytes()) == shard));
    }

    #[test]
    fn the_home_shard_is_the_client_librarys() {
        let shards = Shards {
            router: Router::new(16),
            nodes: BTreeMap::from([(1, "n1:1".to_string()), (2, "n2:1".to_string())]),
            replicas: (0..16).map(|s| if s % 2 == 0 { vec![2, 1] } else { vec![1] }).collect(),
            seeds: vec!["seed:1".into()],
        };
        assert_eq!(shards.home(), Router::new(16).shard_of(b"hypercache"));
        assert_eq!(shards.replica_endpoints(0), vec!["n2:1", "n1:1"], "placement order");
        assert_eq!(shards.replica_endpoints(99), vec!["seed:1"], "no such shard: the seeds");
    }

    #[test]
    fn known_reasons_name_the_error_and_others_fall_back_to_the_code() {
        let info = hypercache_proto::v1::ErrorInfo { reason: "STALE_EPOCH".into(), ..Default::default() };
        let s = hypercache_proto::error_info::status_with_info(tonic::Code::FailedPrecondition, "stale", &info);
        assert_eq!(kind(&s), "STALE_EPOCH");
        let info = hypercache_proto::v1::ErrorInfo { reason: "SOMETHING_NEW".into(), ..Default::default() };
        let s = hypercache_proto::error_info::status_with_info(tonic::Code::Aborted, "x", &info);
        assert_eq!(kind(&s), "aborted");
        assert_eq!(kind(&tonic::Status::unavailable("down")), "unavailable");
        assert_eq!(kind(&tonic::Status::cancelled("Timeout expired")), "client_timeout");
        assert_eq!(kind(&tonic::Status::cancelled("the caller went away")), "cancelled");
        assert!(describe(&s).contains("SOMETHING_NEW"));
    }
}
