//! What the players measure: per-route figures of one window, and re-route events.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::join::Route;
use crate::orbstrike::common::{Errors, Micros};

/// A snapshot a player received after its first one: its stream was re-routed to a new owner,
/// reopened, or resynced.
#[derive(Debug, Clone)]
pub struct Reroute {
    pub game_id: String,
    pub player_id: u32,
    pub route: Route,
    pub at: Instant,
    pub wall: SystemTime,
    /// The snapshot's tick and ack.
    pub tick: u64,
    pub ack: u64,
    /// The last update before it: tick, ack, when.
    pub prev_tick: u64,
    pub prev_ack: u64,
    pub prev_at: Option<Instant>,
    /// False when the snapshot opened a stream the player had to reopen.
    pub mid_stream: bool,
}

/// What one route's players saw in one window.
#[derive(Clone, Default)]
pub struct RouteStats {
    pub latency: Micros,
    pub gaps: Micros,
    pub updates: u64,
    pub inputs: u64,
    /// Inputs not sent because the stream's send buffer was full.
    pub inputs_dropped: u64,
    /// Ticks missing between two consecutive deltas of one stream.
    pub missed_ticks: u64,
    pub snapshots_after_first: u64,
    pub game_overs: u64,
    pub rejoins: u64,
    pub reopened: u64,
    pub errors: Errors,
}

impl RouteStats {
    pub fn merge(&mut self, o: &RouteStats) {
        self.latency.merge(&o.latency);
        self.gaps.merge(&o.gaps);
        self.updates += o.updates;
        self.inputs += o.inputs;
        self.inputs_dropped += o.inputs_dropped;
        self.missed_ticks += o.missed_ticks;
        self.snapshots_after_first += o.snapshots_after_first;
        self.game_overs += o.game_overs;
        self.rejoins += o.rejoins;
        self.reopened += o.reopened;
        self.errors.merge(&o.errors);
    }
}

/// Both routes' figures for one window.
#[derive(Clone, Default)]
pub struct WindowStats {
    pub direct: RouteStats,
    pub proxied: RouteStats,
    pub elapsed: Duration,
    /// Board tasks that handed in their figures, and tasks running.
    pub flushed: usize,
    pub tasks: usize,
}

impl WindowStats {
    pub fn route(&self, route: Route) -> &RouteStats {
        match route {
            Route::Direct => &self.direct,
            Route::Proxied => &self.proxied,
        }
    }

    pub(super) fn route_mut(&mut self, route: Route) -> &mut RouteStats {
        match route {
            Route::Direct => &mut self.direct,
            Route::Proxied => &mut self.proxied,
        }
    }

    /// Both routes together.
    pub fn all(&self) -> RouteStats {
        let mut all = self.direct.clone();
        all.merge(&self.proxied);
        all
    }
}
