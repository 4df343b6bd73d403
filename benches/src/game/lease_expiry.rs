//! `hcbench lease-expiry`: how late an abandoned lease's keys disappear.
//!
//! A watcher on a per-run prefix starts first (`--watch-endpoint`, default the leader of the
//! prefix's shard). Then `--concurrency` workers grant `--leases` leases of `--ttl-ms` each and
//! attach one key to each (`KV.Put` with `lease`); nobody keeps them alive. Each lease is granted
//! in its key's shard (`Shards::shard_of`), on that shard's leader, so the key goes in the
//! lease's own expiry command (keys of other shards follow a poll later, see `lease_home.rs`). The prefix ends in the run tag as a hash tag (`hcbench-lease/{hcb-...}/`), so
//! on a sharded cluster every key of the run lives in one shard and one watch stream sees them all. For every DELETE event the watcher notes
//! the receive time. Lag is `receive time - (start of the lease's TTL + TTL)`.
//!
//! The start of the TTL is the moment the leader applied the grant (its lease clock sets the
//! deadline then). We cannot see that moment, only bracket it: the grant was applied after we
//! sent it and before we got its answer. So we report the lag two ways:
//! - **from the ack** (`receive - (grant ack + TTL)`): the ack is *later* than the true start,
//!   so this *under*-states the lag by up to one grant round trip; it can even be negative;
//! - **from the send** (`receive - (grant send + TTL)`): the send is *earlier*, so this
//!   *over*-states the lag by up to one grant round trip; it is never negative unless a lease
//!   expired before its TTL (which would be a safety bug; the report counts such samples).
//!
//! The true lag lies between the two. Either includes the expiry's Raft commit, apply on the
//! watch's node, and delivery to the watcher. The run is bounded: after the last grant, the
//! watcher waits at most TTL + `--duration` seconds; leases whose delete never arrived are
//! reported as missing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::lease_client::LeaseClient;
use hypercache_proto::v1::{event, LeaseGrantRequest, PutRequest, WatchRequest};
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::common::{
    channel, describe, kind, leader_channels, run_tag, tagged_prefix, wait_for, CommonArgs, Leader, Shards,
};
use crate::report::{op_table, Lag, LagSummary, OpStats, OpSummary};

/// Lag between a lease's TTL running out and its key's delete event reaching a watcher.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseExpiryArgs {
    /// --duration here bounds the wait for deletes after the last grant's TTL has run out.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Leases to grant, each with one key (1..=1000000).
    #[arg(long, default_value_t = 10_000)]
    pub leases: u32,
    /// TTL of every lease, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub ttl_ms: u64,
    /// Grant-and-attach workers (1..=10000).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Node serving the watch (default: the leader).
    #[arg(long)]
    pub watch_endpoint: Option<String>,
    /// Prefix of the attached keys (a per-run tag is appended).
    #[arg(long, default_value = "hcbench-lease/")]
    pub key_prefix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseExpiryReport {
    /// The shard the run's keys and leases live in, and its leader.
    pub shard: u32,
    pub leader: String,
    pub watch_endpoint: String,
    pub leases: u32,
    pub ttl_ms: u64,
    pub concurrency: usize,
    pub grant_phase_secs: f64,
    pub grant: OpSummary,
    pub attach: OpSummary,
    /// Leases whose key was attached (the ones whose expiry is awaited).
    pub attached: u64,
    pub deletes_seen: u64,
    pub missing: u64,
    pub lag_from_ack: LagSummary,
    pub lag_from_send: LagSummary,
    pub watch: OpSummary,
}

impl LeaseExpiryReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "lease-expiry: {} leases of {} ms, one key each, {} workers, granted in {:.2}s; leader {} of shard {}, watch on {}\n",
            self.leases,
            self.ttl_ms,
            self.concurrency,
            self.grant_phase_secs,
            self.leader,
            self.shard,
            self.watch_endpoint
        );
        s.push_str(&op_table(&[("grant", &self.grant), ("attach", &self.attach)]));
        s.push_str(&format!(
            "expiries: {} keys attached, {} deletes seen, {} missing\n",
            self.attached, self.deletes_seen, self.missing
        ));
        s.push_str(&format!(
            "{:<22} {:>8} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
            "lag", "samples", "<0", "min(us)", "p50(us)", "p99(us)", "p999(us)", "max(us)"
        ));
        for (name, l) in
            [("from ack (lower bound)", &self.lag_from_ack), ("from send (upper bnd)", &self.lag_from_send)]
        {
            s.push_str(&format!(
                "{:<22} {:>8} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
                name, l.samples, l.below_zero, l.min_us, l.p50_us, l.p99_us, l.p999_us, l.max_us
            ));
        }
        if self.watch.errors > 0 {
            s.push_str(&op_table(&[("watch", &self.watch)]));
        }
        s
    }
}

impl LeaseExpiryArgs {
    fn check(&self) -> anyhow::Result<()> {
        if !(1..=1_000_000).contains(&self.leases) {
            bail!("--leases must be in 1..=1000000, got {}", self.leases);
        }
        if !(10..=3_600_000).contains(&self.ttl_ms) {
            bail!("--ttl-ms must be in 10..=3600000, got {}", self.ttl_ms);
        }
        if !(1..=10_000).contains(&self.concurrency) {
            bail!("--concurrency must be in 1..=10000, got {}", self.concurrency);
        }
        if self.key_prefix.is_empty() || self.key_prefix.as_bytes()[0] == 0xff {
            bail!("--key-prefix must be non-empty and must not begin with byte 0xff");
        }
        Ok(())
    }
}

/// A lease whose grant and key attachment both succeeded, with the times that bracket its
/// TTL's start.
#[derive(Debug, Clone, Copy)]
struct Granted {
    index: u32,
    sent: Instant,
    acked: Instant,
}

/// Set by the main task once granting is done; the watcher stops at `expected` deletes.
struct Shared {
    expected: AtomicU64,
    give_up: AtomicBool,
}

pub async fn run(args: LeaseExpiryArgs) -> anyhow::Result<LeaseExpiryReport> {
    args.check()?;
    let common = args.common.validate()?;
    let wait = Duration::from_secs(10);
    let shards = Arc::new(Shards::discover(&common.endpoints, wait).await?);
    let prefix = tagged_prefix(&args.key_prefix, &run_tag());
    let shard = shards.shard_of(prefix.as_bytes());
    let leaders = Arc::new(leader_channels(&shards, common.timeout, wait).await?);
    let leader = leaders.get(shard as usize).map(|(l, _)| l.clone()).context("no leader for the prefix's shard")?;
    let watch_endpoint = args.watch_endpoint.clone().unwrap_or_else(|| leader.endpoint.clone());
    let shared = Arc::new(Shared { expected: AtomicU64::new(u64::MAX), give_up: AtomicBool::new(false) });

    let request = WatchRequest {
        shard_id: shard,
        prefix: Bytes::from(prefix.clone()),
        progress_interval_ms: 250,
        ..Default::default()
    };
    let stream = tokio::time::timeout(common.timeout, KvClient::new(channel(&watch_endpoint, None)?).watch(request))
        .await
        .with_context(|| format!("KV.Watch on {watch_endpoint}: no response within {:?}", common.timeout))?
        .map_err(|s| anyhow::anyhow!("KV.Watch on {watch_endpoint}: {}", describe(&s)))?
        .into_inner();
    let watcher = tokio::spawn(watch(stream, prefix.clone(), args.leases, shared.clone()));

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency {
        let route = Route { shards: shards.clone(), leaders: leaders.clone() };
        let (next, prefix) = (next.clone(), prefix.clone());
        workers.spawn(grant_worker(route, next, prefix, args.leases, args.ttl_ms));
    }
    let (mut grant, mut attach, mut granted) = (OpStats::new(), OpStats::new(), Vec::new());
    while let Some(joined) = workers.join_next().await {
        let (g, a, mine) = joined.context("a grant worker panicked")?;
        grant.merge(&g);
        attach.merge(&a);
        granted.extend(mine);
    }
    let grant_phase = started.elapsed();
    shared.expected.store(granted.len() as u64, Ordering::Relaxed);
    let last_ack = granted.iter().map(|g| g.acked).max().unwrap_or_else(Instant::now);
    let deadline = last_ack + Duration::from_millis(args.ttl_ms) + common.duration;
    let give_up = {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            shared.give_up.store(true, Ordering::Relaxed);
        })
    };
    let (received, watch_stats) = watcher.await.context("the watcher panicked")?;
    give_up.abort();

    let ttl = Duration::from_millis(args.ttl_ms);
    let (mut from_ack, mut from_send) = (Lag::new(), Lag::new());
    let mut seen = 0u64;
    for g in &granted {
        if let Some(at) = received[g.index as usize] {
            seen += 1;
            from_ack.record(at, g.acked + ttl);
            from_send.record(at, g.sent + ttl);
        }
    }
    let attached = granted.len() as u64;
    Ok(LeaseExpiryReport {
        shard,
        leader: leader.endpoint,
        watch_endpoint,
        leases: args.leases,
        ttl_ms: args.ttl_ms,
        concurrency: args.concurrency,
        grant_phase_secs: grant_phase.as_secs_f64(),
        grant: grant.summary(grant_phase),
        attach: attach.summary(grant_phase),
        attached,
        deletes_seen: seen,
        missing: attached - seen,
        lag_from_ack: from_ack.summary(),
        lag_from_send: from_send.summary(),
        watch: watch_stats.summary(grant_phase),
    })
}

fn key(prefix: &str, index: u32) -> Bytes {
    Bytes::from(format!("{prefix}{index:07}"))
}

/// Where a key's grant and put go: the leader of the key's shard.
struct Route {
    shards: Arc<Shards>,
    leaders: Arc<Vec<(Leader, Channel)>>,
}

/// Grants leases and attaches a key to each until the shared budget is spent.
async fn grant_worker(
    route: Route,
    next: Arc<AtomicU64>,
    prefix: String,
    leases: u32,
    ttl_ms: u64,
) -> (OpStats, OpStats, Vec<Granted>) {
    let (mut grants, mut attaches, mut granted) = (OpStats::new(), OpStats::new(), Vec::new());
    let ttl = i64::try_from(ttl_ms).expect("--ttl-ms is checked to be at most 3600000");
    while let Ok(index) = u32::try_from(next.fetch_add(1, Ordering::Relaxed)) {
        if index >= leases {
            break;
        }
        let key = key(&prefix, index);
        let shard = route.shards.shard_of(&key);
        let Some((_, unary)) = route.leaders.get(shard as usize) else {
            grants.record_error("unknown_shard", || format!("no leader known for shard {shard}"));
            continue;
        };
        let (mut lease_client, mut kv) = (LeaseClient::new(unary.clone()), KvClient::new(unary.clone()));
        let sent = Instant::now();
        let id = match lease_client.grant(LeaseGrantRequest { shard_id: shard, ttl_ms: ttl, write: None }).await {
            Ok(r) => r.into_inner().id,
            Err(s) => {
                grants.record_error(kind(&s), || describe(&s));
                continue;
            }
        };
        let acked = Instant::now();
        grants.record_ok(acked - sent);
        let put = PutRequest { shard_id: shard, key, lease: id, ..Default::default() };
        match kv.put(put).await {
            Ok(_) => {
                attaches.record_ok(acked.elapsed());
                granted.push(Granted { index, sent, acked });
            }
            Err(s) => attaches.record_error(kind(&s), || describe(&s)),
        }
    }
    (grants, attaches, granted)
}

/// Collects the receive time of the first DELETE of every key, indexed by lease number.
async fn watch(
    mut stream: tonic::Streaming<hypercache_proto::v1::WatchResponse>,
    prefix: String,
    leases: u32,
    shared: Arc<Shared>,
) -> (Vec<Option<Instant>>, OpStats) {
    let mut received = vec![None; leases as usize];
    let mut stats = OpStats::new();
    let mut deletes = 0u64;
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = wait_for(&shared.give_up) => break,
        };
        let now = Instant::now();
        match message {
            Ok(Some(response)) => {
                for e in response.events.iter().filter(|e| e.r#type == event::Type::Delete as i32) {
                    let index = e.kv.as_ref().and_then(|kv| kv.key.strip_prefix(prefix.as_bytes()));
                    let index = index.and_then(|i| std::str::from_utf8(i).ok()).and_then(|i| i.parse::<usize>().ok());
                    match index.and_then(|i| received.get_mut(i)) {
                        Some(slot @ None) => {
                            *slot = Some(now);
                            deletes += 1;
                        }
                        Some(Some(_)) => {}
                        None => stats.record_error("unexpected_key", || format!("a delete of {:?}", e.kv)),
                    }
                }
            }
            Ok(None) => {
                stats.record_error("stream_ended", || "the server ended the watch stream".into());
                break;
            }
            Err(s) => {
                stats.record_error(kind(&s), || describe(&s));
                break;
            }
        }
        if deletes >= shared.expected.load(Ordering::Relaxed) {
            break;
        }
    }
    (received, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_lease_number() {
        assert_eq!(key("p/", 42), Bytes::from_static(b"p/0000042"));
    }
}
