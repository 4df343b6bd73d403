//! Prometheus metrics of one game server, in a registry of its own (tests run several servers in
//! one process). Names are `orbstrike_gameserver_<name>_<unit>`; labels are bounded (a result or
//! a stop reason), never a board or a player.
//!
//! The totals behind `ServerStats` (kills, inputs) are these counters, so the two never disagree.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) ticks: IntCounter,
    pub(crate) tick_seconds: Histogram,
    pub(crate) inputs: IntCounter,
    pub(crate) kills: IntCounter,
    pub(crate) syncs: IntCounterVec,
    pub(crate) sync_seconds: Histogram,
    pub(crate) boards_started: IntCounter,
    pub(crate) boards_stopped: IntCounterVec,
    pub(crate) resyncs: IntCounter,
    pub(crate) registrations: IntCounter,
    pub(crate) lease_fenced: IntCounter,
    pub(crate) accept_log_dropped: IntCounter,
    pub(crate) boards: IntGauge,
    pub(crate) players: IntGauge,
    pub(crate) play_streams: IntGauge,
}

const TICK_BUCKETS: &[f64] = &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025];
const SYNC_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let ticks = counter("orbstrike_gameserver_ticks_total", "Board ticks run")?;
        let inputs = counter("orbstrike_gameserver_inputs_total", "Player inputs applied")?;
        let kills = counter("orbstrike_gameserver_kills_total", "Players killed by a ring")?;
        let boards_started = counter("orbstrike_gameserver_boards_started_total", "Boards loaded and started")?;
        let resyncs = counter(
            "orbstrike_gameserver_subscriber_resyncs_total",
            "Updates dropped for a slow player stream (it gets a snapshot later)",
        )?;
        let registrations = counter("orbstrike_gameserver_registrations_total", "Successful registry registrations")?;
        let lease_fenced = counter(
            "orbstrike_gameserver_lease_fenced_total",
            "Times the server stopped all boards because its lease came within the margin of its deadline",
        )?;
        let accept_log_dropped = counter(
            "orbstrike_gameserver_accept_log_dropped_total",
            "Accept-log lines dropped because the writer fell behind",
        )?;
        let tick_seconds = Histogram::with_opts(
            HistogramOpts::new("orbstrike_gameserver_tick_duration_seconds", "Time to run one board tick")
                .buckets(TICK_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(tick_seconds.clone()))?;
        let sync_seconds = Histogram::with_opts(
            HistogramOpts::new("orbstrike_gameserver_checkpoint_sync_duration_seconds", "Latency of one Boards.Sync")
                .buckets(SYNC_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(sync_seconds.clone()))?;
        let syncs = IntCounterVec::new(
            Opts::new("orbstrike_gameserver_checkpoint_syncs_total", "Checkpoint syncs by result"),
            &["result"],
        )?;
        registry.register(Box::new(syncs.clone()))?;
        let boards_stopped = IntCounterVec::new(
            Opts::new("orbstrike_gameserver_boards_stopped_total", "Boards stopped, by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(boards_stopped.clone()))?;
        let boards = IntGauge::new("orbstrike_gameserver_boards", "Boards running on this server")?;
        registry.register(Box::new(boards.clone()))?;
        let players = IntGauge::new("orbstrike_gameserver_players", "Players on the boards of this server")?;
        registry.register(Box::new(players.clone()))?;
        let play_streams = IntGauge::new(
            "orbstrike_gameserver_play_streams",
            "Player update streams connected to this server's boards",
        )?;
        registry.register(Box::new(play_streams.clone()))?;
        Ok(Metrics {
            registry,
            ticks,
            tick_seconds,
            inputs,
            kills,
            syncs,
            sync_seconds,
            boards_started,
            boards_stopped,
            resyncs,
            registrations,
            lease_fenced,
            accept_log_dropped,
            boards,
            players,
            play_streams,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
