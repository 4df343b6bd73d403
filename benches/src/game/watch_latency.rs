//! `hcbench watch-latency`: how long a put takes to reach the watchers of its prefix.
//!
//! `--watchers` streams (`KV.Watch`, one prefix, `start_revision` 0, each on its own HTTP/2
//! connection, like separate game servers) are spread over the replicas of the prefix's shard
//! (`--watch-on`). The prefix ends in the run tag as a hash tag (`hcbench-watch/{hcb-...}/`), so
//! on a sharded cluster every key of the run lives in one shard and one stream per watcher sees
//! them all; each put is still routed by its own key (`Shards::shard_of`) to that shard's leader. One writer
//! puts keys under the prefix at a fixed rate (open loop: each put is its own task, so a slow
//! put does not delay the schedule). Every value starts with the nanoseconds since a start
//! instant shared by writer and watchers (one process, one monotonic clock), taken just before
//! the put is sent. A watcher records `receive time - stamp` when it decodes the event.
//!
//! What that measures: the whole path from a client sending a write to a watcher holding the
//! event: the put RPC to the leader, proposal batching, Raft replication to a quorum (with
//! fsync), apply on the node serving the watch (for a follower: after it learns the commit
//! index), fan-out by the watch hub, the stream back to the watcher, and scheduling on this
//! process's runtime, which shares the machine's cores with the nodes. It is therefore an upper
//! bound on commit-to-delivery. The put's own ack latency (send to response) is reported next
//! to it.
//!
//! A lower bound is reported too: `receive time - ack time` of the same put (its key carries the
//! sequence number). The ack leaves the leader after the entry is committed and applied there,
//! so the commit happened before it; events that beat the ack count as negative lag (shown, and
//! clamped to zero in the quantiles). The true commit-to-delivery time lies between the two.
//!
//! After `--duration` the writer stops; each watcher then reads until it has seen the revision
//! of the last acknowledged put (progress notifications come every 250 ms) or a 10 s grace
//! period ends. Deliveries missing at that point are reported, not hidden.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::{event, PutRequest, WatchRequest};
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::common::{
    channel, describe, kind, leader_channels, run_tag, tagged_prefix, wait_for, CommonArgs, Leader, Shards,
};
use crate::report::{op_table, Lag, LagSummary, OpStats, OpSummary};

const GRACE: Duration = Duration::from_secs(10);
const PROGRESS_MS: u32 = 250;
const STAMP_BYTES: usize = 8;

/// Which nodes serve the watch streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchOn {
    /// Round-robin over the replicas of the prefix's shard (every seed on a legacy cluster).
    All,
    Leader,
}

/// Put-to-watcher delivery latency on one prefix.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchLatencyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Watch streams on the prefix (1..=10000).
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Puts per second by the writer (1..=100000).
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Value size in bytes (8..=65536; the first 8 are the timestamp).
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Nodes serving the watches.
    #[arg(long, value_enum, default_value_t = WatchOn::All)]
    pub watch_on: WatchOn,
    /// Prefix of the written keys (a per-run tag is appended).
    #[arg(long, default_value = "hcbench-watch/")]
    pub key_prefix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchLatencyReport {
    /// The shard the run's keys live in, and its leader.
    pub shard: u32,
    pub leader: String,
    pub watchers: usize,
    pub watchers_on_leader: usize,
    pub watch_on: WatchOn,
    pub rate_per_sec: u32,
    pub value_bytes: usize,
    pub elapsed_secs: f64,
    pub put: OpSummary,
    /// Delivery latency over every watcher, then split by the role of the serving node.
    pub delivery: OpSummary,
    pub delivery_from_leader: OpSummary,
    pub delivery_from_followers: OpSummary,
    /// Receive time minus the put's ack time (a lower bound on commit-to-delivery).
    pub delivery_after_ack: LagSummary,
    /// Acknowledged puts times watchers.
    pub expected_deliveries: u64,
    pub missing_deliveries: u64,
}

impl WatchLatencyReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "watch-latency: {} watchers ({} on the leader {} of shard {}), {} puts/s of {} bytes, {:.2}s\n",
            self.watchers,
            self.watchers_on_leader,
            self.leader,
            self.shard,
            self.rate_per_sec,
            self.value_bytes,
            self.elapsed_secs
        );
        s.push_str(&format!(
            "deliveries: expected {} (acknowledged puts x watchers), missing {}\n",
            self.expected_deliveries, self.missing_deliveries
        ));
        s.push_str(&op_table(&[
            ("put", &self.put),
            ("delivery(all)", &self.delivery),
            ("delivery(leader)", &self.delivery_from_leader),
            ("delivery(followers)", &self.delivery_from_followers),
        ]));
        let l = &self.delivery_after_ack;
        s.push_str(&format!(
            "delivery after the put's ack (lower bound): {} samples, {} before the ack (min {} us), p50 {} us, p99 {} us, p999 {} us, max {} us\n",
            l.samples, l.below_zero, l.min_us, l.p50_us, l.p99_us, l.p999_us, l.max_us
        ));
        s
    }
}

impl WatchLatencyArgs {
    fn check(&self) -> anyhow::Result<()> {
        if !(1..=10_000).contains(&self.watchers) {
            bail!("--watchers must be in 1..=10000, got {}", self.watchers);
        }
        if !(1..=100_000).contains(&self.rate) {
            bail!("--rate must be in 1..=100000 puts/s, got {}", self.rate);
        }
        if !(STAMP_BYTES..=65_536).contains(&self.value_size) {
            bail!("--value-size must be in {STAMP_BYTES}..=65536 bytes, got {}", self.value_size);
        }
        if self.key_prefix.is_empty() || self.key_prefix.as_bytes()[0] == 0xff {
            bail!("--key-prefix must be non-empty and must not begin with byte 0xff");
        }
        Ok(())
    }
}

/// What the watchers are told while they read.
struct Shared {
    base: Instant,
    /// Ack time of put `seq` (index seq - 1) in nanoseconds since `base`; 0 until acknowledged.
    acks: Vec<AtomicU64>,
    /// Revision of the last acknowledged put once the writer is done; 0 before.
    target: AtomicU64,
    give_up: AtomicBool,
}

pub async fn run(args: WatchLatencyArgs) -> anyhow::Result<WatchLatencyReport> {
    args.check()?;
    let common = args.common.validate()?;
    let wait = Duration::from_secs(10);
    let shards = Shards::discover(&common.endpoints, wait).await?;
    let prefix = Bytes::from(tagged_prefix(&args.key_prefix, &run_tag()));
    let shard = shards.shard_of(&prefix);
    let leaders = leader_channels(&shards, common.timeout, wait).await?;
    let leader = leaders.get(shard as usize).map(|(l, _)| l.clone()).context("no leader for the prefix's shard")?;
    let replicas = shards.replica_endpoints(shard);
    // One slot per scheduled put, plus slack for the burst after a stalled tick.
    let slots = (u64::from(args.rate) * (common.duration.as_secs() + 2)) as usize + 1024;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        acks: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        target: AtomicU64::new(0),
        give_up: AtomicBool::new(false),
    });

    let mut watchers = JoinSet::new();
    let mut on_leader = 0;
    for w in 0..args.watchers {
        let endpoint = match args.watch_on {
            WatchOn::Leader => leader.endpoint.clone(),
            WatchOn::All => replicas[w % replicas.len()].clone(),
        };
        let is_leader = endpoint == leader.endpoint;
        on_leader += usize::from(is_leader);
        let mut client = KvClient::new(channel(&endpoint, None)?);
        let request = WatchRequest {
            shard_id: shard,
            prefix: prefix.clone(),
            progress_interval_ms: PROGRESS_MS,
            ..Default::default()
        };
        // The server registers the watch before it answers, so once every call has returned,
        // no put of the measured phase can be missed.
        let stream = tokio::time::timeout(common.timeout, client.watch(request))
            .await
            .with_context(|| format!("KV.Watch on {endpoint}: no response within {:?}", common.timeout))?
            .map_err(|s| anyhow::anyhow!("KV.Watch on {endpoint}: {}", describe(&s)))?
            .into_inner();
        watchers.spawn(watch(stream, shared.clone(), is_leader));
    }

    let writer = Writer { shards, leaders };
    let started = Instant::now();
    let (put, last_revision) = write(writer, &prefix, &args, common.duration, &shared).await?;
    let elapsed = started.elapsed();
    shared.target.store(last_revision.max(1), Ordering::Relaxed);
    let give_up = {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            shared.give_up.store(true, Ordering::Relaxed);
        })
    };

    let (mut all, mut from_leader, mut from_followers) = (OpStats::new(), OpStats::new(), OpStats::new());
    let mut after_ack = Lag::new();
    while let Some(joined) = watchers.join_next().await {
        let (stats, received, is_leader) = joined.context("a watcher panicked")?;
        for (seq, at) in received {
            let ack =
                seq.checked_sub(1).and_then(|i| shared.acks.get(i as usize)).map_or(0, |a| a.load(Ordering::Relaxed));
            if ack != 0 {
                after_ack.record(shared.base + Duration::from_nanos(at), shared.base + Duration::from_nanos(ack));
            }
        }
        all.merge(&stats);
        if is_leader { &mut from_leader } else { &mut from_followers }.merge(&stats);
    }
    give_up.abort();
    let put = put.summary(elapsed);
    let delivery = all.summary(elapsed);
    let expected = put.ops * args.watchers as u64;
    Ok(WatchLatencyReport {
        shard,
        leader: leader.endpoint,
        watchers: args.watchers,
        watchers_on_leader: on_leader,
        watch_on: args.watch_on,
        rate_per_sec: args.rate,
        value_bytes: args.value_size,
        elapsed_secs: elapsed.as_secs_f64(),
        expected_deliveries: expected,
        missing_deliveries: expected.saturating_sub(delivery.ops),
        put,
        delivery,
        delivery_from_leader: from_leader.summary(elapsed),
        delivery_from_followers: from_followers.summary(elapsed),
        delivery_after_ack: after_ack.summary(),
    })
}

/// Where the writer's puts go: each key to the leader of its own shard.
struct Writer {
    shards: Shards,
    leaders: Vec<(Leader, Channel)>,
}

impl Writer {
    fn client_for(&self, key: &[u8]) -> anyhow::Result<(u32, KvClient<Channel>)> {
        let shard = self.shards.shard_of(key);
        let (_, ch) = self.leaders.get(shard as usize).with_context(|| format!("no leader known for shard {shard}"))?;
        Ok((shard, KvClient::new(ch.clone())))
    }
}

/// Puts `rate` keys per second for `duration`; returns the ack latencies and the highest
/// revision any put was applied at.
async fn write(
    writer: Writer,
    prefix: &Bytes,
    args: &WatchLatencyArgs,
    duration: Duration,
    shared: &Arc<Shared>,
) -> anyhow::Result<(OpStats, u64)> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate);
    // Burst: a stalled tick is made up for, so the offered rate stays what was asked.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut puts = JoinSet::new();
    let mut seq = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        seq += 1;
        let key = [prefix.as_ref(), format!("{seq:010}").as_bytes()].concat();
        let (shard, mut client) = writer.client_for(&key)?;
        let (shared, size) = (shared.clone(), args.value_size);
        puts.spawn(async move {
            let sent = Instant::now();
            let mut value = vec![0u8; size];
            value[..STAMP_BYTES].copy_from_slice(&nanos_since(shared.base, sent).to_be_bytes());
            let request = PutRequest { shard_id: shard, key: key.into(), value: value.into(), ..Default::default() };
            let result = client.put(request).await;
            if result.is_ok() {
                if let Some(slot) = usize::try_from(seq - 1).ok().and_then(|i| shared.acks.get(i)) {
                    slot.store(nanos_since(shared.base, Instant::now()), Ordering::Relaxed);
                }
            }
            (sent.elapsed(), result.map(|r| r.into_inner().header.map_or(0, |h| h.revision)))
        });
    }
    let (mut stats, mut last) = (OpStats::new(), 0);
    while let Some(joined) = puts.join_next().await {
        match joined.context("a put task panicked")? {
            (took, Ok(revision)) => {
                stats.record_ok(took);
                last = last.max(revision);
            }
            (_, Err(s)) => stats.record_error(kind(&s), || describe(&s)),
        }
    }
    Ok((stats, last))
}

/// Reads one stream until it has seen the target revision or is told to give up. Returns the
/// send-to-receive latencies and (put seq, receive time in ns since `base`) per event.
async fn watch(
    mut stream: tonic::Streaming<hypercache_proto::v1::WatchResponse>,
    shared: Arc<Shared>,
    is_leader: bool,
) -> (OpStats, Vec<(u64, u64)>, bool) {
    let mut stats = OpStats::new();
    let mut received = Vec::new();
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = wait_for(&shared.give_up) => break,
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => {
                stats.record_error("stream_ended", || "the server ended the watch stream".into());
                break;
            }
            Err(s) => {
                stats.record_error(kind(&s), || describe(&s));
                break;
            }
        };
        let now = nanos_since(shared.base, Instant::now());
        for e in &response.events {
            if e.r#type != event::Type::Put as i32 {
                continue;
            }
            if let Some(seq) = e.kv.as_ref().and_then(|kv| seq_of(&kv.key)) {
                received.push((seq, now));
            }
            match e.kv.as_ref().and_then(|kv| stamp_of(&kv.value)) {
                Some(stamp) => stats.record_ok(Duration::from_nanos(now.saturating_sub(stamp))),
                None => stats.record_error("bad_value", || "an event without a timestamp".into()),
            }
        }
        let target = shared.target.load(Ordering::Relaxed);
        let seen = response.header.map_or(0, |h| h.revision);
        if target != 0 && seen >= target {
            break;
        }
    }
    (stats, received, is_leader)
}

/// The put's sequence number: the last ten bytes of its key are the zero-padded seq.
fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(10)?..)?;
    std::str::from_utf8(tail).ok()?.parse().ok()
}

fn nanos_since(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

fn stamp_of(value: &[u8]) -> Option<u64> {
    let head: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_short_values_have_none() {
        let base = Instant::now();
        let at = base + Duration::from_millis(1500);
        let mut value = nanos_since(base, at).to_be_bytes().to_vec();
        value.extend_from_slice(b"padding");
        assert_eq!(stamp_of(&value), Some(1_500_000_000));
        assert_eq!(stamp_of(b"short"), None);
    }

    #[test]
    fn the_put_seq_is_read_back_from_the_key() {
        assert_eq!(seq_of(b"hcbench-watch/run/0000000042"), Some(42));
        assert_eq!(seq_of(b"short"), None);
        assert_eq!(seq_of(b"p/abcdefghij"), None);
    }
}
