//! Live global statistics for WatchStats.
//!
//! One task per orchestrator polls `ServerStats` of every live game server each
//! `stats_interval` (concurrently, each call bounded by the interval) and publishes one
//! [`pb::Stats`] on a `watch` channel; every WatchStats subscriber reads that channel, so a
//! thousand subscribers cost no more polling than one.
//!
//! - `games`: boards in the last scan (all games, also those between servers);
//! - `players`, `kills`: sums over the servers that answered (kills are totals since each
//!   server started, so they drop when a server goes away);
//! - `moves_per_second`: the growth of each server's input counter since its previous sample,
//!   divided by that server's own sampling interval, summed. A restarted server (new
//!   incarnation, or a counter that went down) contributes its new count from zero.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use hypercache_client::Incarnation;
use tokio::sync::watch;
use tokio::time::{timeout, Instant, MissedTickBehavior};

use super::game::now_ms;
use super::placement::LiveServer;
use super::shared::Shared;
use crate::proto::v1 as pb;

/// Baselines of servers not heard from for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30);

/// One server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub server_id: String,
    pub incarnation: Incarnation,
    pub players: u64,
    pub kills: u64,
    pub inputs: u64,
}

/// Sums of one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub players: u64,
    pub kills: u64,
    pub moves_per_second: f64,
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    incarnation: Incarnation,
    inputs: u64,
    at: Instant,
}

/// Turns rounds of samples into totals and rates (pure; time is an argument).
#[derive(Debug, Default)]
pub struct Aggregator {
    last: HashMap<String, Baseline>,
}

impl Aggregator {
    pub fn update(&mut self, samples: &[Sample], now: Instant) -> Totals {
        let mut totals = Totals { players: 0, kills: 0, moves_per_second: 0.0 };
        for s in samples {
            totals.players += s.players;
            totals.kills += s.kills;
            let fresh = Baseline { incarnation: s.incarnation, inputs: s.inputs, at: now };
            if let Some(prev) = self.last.insert(s.server_id.clone(), fresh) {
                let elapsed = now.saturating_duration_since(prev.at).as_secs_f64();
                if elapsed > 0.0 {
                    let restarted = prev.incarnation != s.incarnation || s.inputs < prev.inputs;
                    let delta = if restarted { s.inputs } else { s.inputs - prev.inputs };
                    totals.moves_per_second += delta as f64 / elapsed;
                }
            }
        }
        self.last.retain(|_, b| now.saturating_duration_since(b.at) < FORGET_AFTER);
        totals
    }
}

/// Polls and publishes until shutdown.
pub async fn run(shared: Arc<Shared>, publish: watch::Sender<Option<pb::Stats>>) {
    let interval = shared.config.stats_interval;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut aggregator = Aggregator::default();
    loop {
        tokio::select! {
            _ = shared.shutdown_started() => return,
            _ = ticks.tick() => {}
        }
        let servers: Vec<LiveServer> = shared.placement().live_servers().cloned().collect();
        let polls = servers.iter().map(|s| poll(&shared, s, interval));
        let samples: Vec<Sample> = join_all(polls).await.into_iter().flatten().collect();
        let totals = aggregator.update(&samples, Instant::now());
        let games = shared.scans.borrow().as_ref().map_or(0, |scan| scan.boards.len() as u64);
        publish.send_replace(Some(pb::Stats {
            games,
            players: totals.players,
            kills: totals.kills,
            moves_per_second: totals.moves_per_second,
            servers: servers.len() as u64,
            orchestrator: shared.config.id.clone(),
            at_ms: now_ms(),
        }));
    }
}

async fn poll(shared: &Shared, server: &LiveServer, limit: Duration) -> Option<Sample> {
    let mut client = shared.pool.client(&server.address).ok()?;
    match timeout(limit, client.server_stats(pb::ServerStatsRequest {})).await {
        Ok(Ok(response)) => {
            let r = response.into_inner();
            Some(Sample {
                server_id: server.server_id.clone(),
                incarnation: server.incarnation,
                players: r.players,
                kills: r.kills,
                inputs: r.inputs,
            })
        }
        Ok(Err(status)) => {
            tracing::debug!(server = %server.server_id, %status, "ServerStats failed");
            None
        }
        Err(_) => {
            tracing::debug!(server = %server.server_id, "ServerStats timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, incarnation: u64, inputs: u64) -> Sample {
        Sample { server_id: id.into(), incarnation: Incarnation(incarnation), players: 2, kills: 1, inputs }
    }

    #[test]
    fn rates_are_per_server_deltas() {
        let t0 = Instant::now();
        let mut a = Aggregator::default();
        let first = a.update(&[sample("a", 1, 100), sample("b", 1, 50)], t0);
        assert_eq!(first, Totals { players: 4, kills: 2, moves_per_second: 0.0 }, "no baseline yet");
        let t1 = t0 + Duration::from_secs(2);
        let second = a.update(&[sample("a", 1, 300), sample("b", 1, 70)], t1);
        assert_eq!(second.moves_per_second, 110.0);
        // b missed a round: its delta is spread over its own 2 s.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(a.update(&[sample("a", 1, 310)], t2).moves_per_second, 10.0);
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(a.update(&[sample("a", 1, 310), sample("b", 1, 90)], t3).moves_per_second, 10.0);
    }

    #[test]
    fn a_restart_counts_from_zero() {
        let t0 = Instant::now();
        let mut a = Aggregator::default();
        a.update(&[sample("a", 1, 1000)], t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(a.update(&[sample("a", 2, 30)], t1).moves_per_second, 30.0, "new incarnation");
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(a.update(&[sample("a", 2, 5)], t2).moves_per_second, 5.0, "counter went down");
    }
}
