//! What every game-state benchmark shares: the common flags, raw tonic channels to the nodes,
//! finding the Raft leader, and naming gRPC failures for the error tables.
//!
//! These benchmarks talk to the generated `hypercache-proto` clients directly rather than through
//! `hypercache-client`, so they measure the server's services and not a client library's retry
//! and routing policy. The price is that we route writes ourselves: every write goes to the node
//! that `Cluster.Status` names as leader when the run starts. A leader change during a run shows
//! up as NOT_LEADER errors in the report; nothing is retried, because a retried write would be
//! timed twice or hide an outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::StatusRequest;
use tonic::transport::{Channel, Endpoint};

/// Every request of these benchmarks addresses the single shard a cluster has today.
pub const SHARD: u32 = 0;

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

/// The node that leads shard 0 when asked.
#[derive(Debug, Clone)]
pub struct Leader {
    pub node_id: u64,
    pub endpoint: String,
}

/// Asks the seeds for the leader until one is known, for at most `wait`. A fresh cluster may
/// still be electing; a node that knows the leader answers with its endpoint.
pub async fn find_leader(endpoints: &[String], wait: Duration) -> anyhow::Result<Leader> {
    let deadline = Instant::now() + wait;
    let mut last_problem = String::from("no node answered");
    loop {
        for endpoint in endpoints {
            let mut client = ClusterClient::new(channel(endpoint, Some(Duration::from_secs(2)))?);
            match client.status(StatusRequest {}).await {
                Ok(r) => {
                    let s = r.into_inner();
                    if s.role == "leader" {
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
            bail!("no shard leader found within {wait:?}: {last_problem}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ErrorInfo reasons the reports count separately; anything else is counted by gRPC code.
const KNOWN_REASONS: &[&str] = &[
    "NOT_LEADER",
    "NO_LEADER",
    "STALE_EPOCH",
    "STALE_SEQ",
    "STALE_INCARNATION",
    "LEASE_NOT_FOUND",
    "WATCHER_TOO_SLOW",
    "WATCH_RESET",
    "SHUTTING_DOWN",
    "OUTCOME_UNKNOWN",
    "NOT_OWNER",
    "SERVER_NOT_LIVE",
    "BOARD_NOT_FOUND",
];

/// A short, static name for a failed call: its ErrorInfo reason when it is one of
/// [`KNOWN_REASONS`], `client_timeout` when our own deadline (`--timeout-ms`) ended it (tonic
/// reports that as CANCELLED "Timeout expired"), else its gRPC code.
pub fn kind(status: &tonic::Status) -> &'static str {
    if let Some(info) = info_of(status) {
        if let Some(known) = KNOWN_REASONS.iter().find(|r| **r == info.reason) {
            return known;
        }
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
