//! Prometheus metrics of one node, in a registry of its own (in-process test clusters run several
//! nodes in one process). Names follow `hypercache_<subsystem>_<name>_<unit>`; labels are bounded
//! (method, code, shard), never per key.
//!
//! Raft gauges are refreshed from openraft's metrics at scrape time, so they are never stale.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::shard::Shards;
use openraft::async_runtime::WatchReceiver;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub flush_seconds: Histogram,
    /// AppendEntries messages received per peer call: 1 for a plain AppendEntries, n for an
    /// AppendBatch. Its sum over its count is how well appends are batched across shards.
    pub append_messages: Histogram,
    /// Discovery rounds run while this node was not yet a cluster member.
    pub discovery_rounds: IntCounter,
    /// Set by the placement driver on the meta leader: shards not yet at their target replicas.
    pub placement_pending: IntGauge,
    /// Replicas not ticking (`quiet/`): quiet leaders and held followers.
    pub quiet_replicas: IntGauge,
    shards_hosted: IntGauge,
    leaders_held: IntGauge,
    raft_term: IntGaugeVec,
    raft_commit: IntGaugeVec,
    raft_applied: IntGaugeVec,
    raft_last_log: IntGaugeVec,
    raft_leader: IntGaugeVec,
    leases: IntGaugeVec,
    watchers: IntGaugeVec,
    watch_oldest: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("hypercache_grpc_requests_total", "Client API requests by method and status code"),
            &["method", "code"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("hypercache_grpc_request_duration_seconds", "Client API request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hypercache_storage_flush_duration_seconds",
                "sled flush (fsync) latency, one per group commit",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let append_messages = Histogram::with_opts(
            HistogramOpts::new(
                "hypercache_raft_append_messages_per_call",
                "AppendEntries messages (heartbeats included) received per peer call; > 1 when several shards' appends came batched",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )?;
        let discovery_rounds = IntCounter::new(
            "hypercache_discovery_rounds_total",
            "Discovery rounds (resolve, ask every node who it is, decide) run while not a cluster member",
        )?;
        let placement_pending = IntGauge::new(
            "hypercache_placement_pending_changes",
            "On the meta leader: data shards whose replicas or leader are not yet where the placement wants them",
        )?;
        let quiet_replicas = IntGauge::new(
            "hypercache_quiet_replicas",
            "Shard replicas on this node that stopped ticking because their shard is idle: quiet leaders and the followers they hold",
        )?;
        let shards_hosted = IntGauge::new("hypercache_shards_hosted", "Data-shard replicas this node hosts")?;
        let leaders_held = IntGauge::new("hypercache_shard_leaders_held", "Data shards this node leads")?;
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["shard"]);
        let raft_term = gauge("hypercache_raft_term", "Current Raft term")?;
        let raft_commit = gauge("hypercache_raft_commit_index", "Highest log index known committed")?;
        let raft_applied = gauge("hypercache_raft_applied_index", "Highest log index applied to the state machine")?;
        let raft_last_log = gauge("hypercache_raft_last_log_index", "Highest log index in the local log")?;
        let raft_leader = gauge("hypercache_raft_is_leader", "1 if this node leads the shard")?;
        let leases = gauge("hypercache_leases", "Leases that exist in the shard's state machine")?;
        let watchers = gauge("hypercache_watchers", "Watch streams registered on this node")?;
        let watch_oldest =
            gauge("hypercache_watch_oldest_revision", "Oldest revision a watch can resume from on this node")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(flush_seconds.clone()))?;
        registry.register(Box::new(append_messages.clone()))?;
        registry.register(Box::new(discovery_rounds.clone()))?;
        for g in [&placement_pending, &quiet_replicas, &shards_hosted, &leaders_held] {
            registry.register(Box::new(g.clone()))?;
        }
        for g in
            [&raft_term, &raft_commit, &raft_applied, &raft_last_log, &raft_leader, &leases, &watchers, &watch_oldest]
        {
            registry.register(Box::new(g.clone()))?;
        }
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            flush_seconds,
            append_messages,
            discovery_rounds,
            placement_pending,
            quiet_replicas,
            shards_hosted,
            leaders_held,
            raft_term,
            raft_commit,
            raft_applied,
            raft_last_log,
            raft_leader,
            leases,
            watchers,
            watch_oldest,
        })
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, code: tonic::Code, seconds: f64) {
        self.requests.with_label_values(&[method, code_name(code)]).inc();
        self.request_seconds.with_label_values(&[method]).observe(seconds);
    }

    /// Prometheus text exposition, with the Raft gauges refreshed first.
    pub fn render(&self, shards: &Shards) -> String {
        // Replicas come and go: drop the series of closed ones.
        for g in [
            &self.raft_term,
            &self.raft_commit,
            &self.raft_applied,
            &self.raft_last_log,
            &self.raft_leader,
            &self.leases,
            &self.watchers,
            &self.watch_oldest,
        ] {
            g.reset();
        }
        let data = shards.data();
        self.shards_hosted.set(data.len() as i64);
        self.leaders_held.set(
            data.iter().filter(|s| s.raft.metrics().borrow_watched().state == openraft::ServerState::Leader).count()
                as i64,
        );
        for shard in shards.iter() {
            let m = shard.metrics();
            let label = shard.id.to_string();
            let l = [label.as_str()];
            let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.raft_term.with_label_values(&l).set(clamp(m.current_term));
            self.raft_commit.with_label_values(&l).set(clamp(shard.committed_index()));
            self.raft_applied.with_label_values(&l).set(clamp(m.last_applied.map(|x| x.index).unwrap_or(0)));
            self.raft_last_log.with_label_values(&l).set(clamp(m.last_log_index.unwrap_or(0)));
            self.raft_leader.with_label_values(&l).set(i64::from(m.current_leader == Some(m.id)));
            self.leases.with_label_values(&l).set(clamp(shard.clock.len() as u64));
            self.watchers.with_label_values(&l).set(clamp(shard.hub.watcher_count() as u64));
            self.watch_oldest.with_label_values(&l).set(clamp(shard.hub.oldest()));
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
