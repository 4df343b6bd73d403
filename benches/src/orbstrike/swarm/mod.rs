//! The player load generator: many players per task, many tasks per connection.
//!
//! One task plays every player of one board. Its players' update streams are polled together
//! (a `StreamMap`), one timer per board sends every player's next input (`input_hz` on average,
//! randomly spaced so that inputs land at every phase of the server's ticks), and one view of the board
//! (the first update of each tick from any of its players) feeds the players' steering. Boards
//! share a few HTTP/2 connections, round-robin. So 2,000 players cost 200 tasks and 2,000
//! timers' worth of work per second, not 2,000 tasks each with its own timer and view.
//!
//! A player plays one of two [`Route`]s: **direct**, a `GameServer.Play` stream to the game
//! server itself (`hello{game_id, player_id}`, joined with `GameServer.AddPlayer`), which is what
//! an orchestrator does on a player's behalf; or **proxied**, an `Orchestrator.Play` stream
//! (`hello{token}`, joined with `JoinGame`), which is what a real player does. Comparing the two
//! on the same boards at the same time isolates the orchestrator's cost.
//!
//! What is measured (only inside a window, see [`Swarm::begin_window`]):
//! - input-to-update latency: sending input `seq` to the first update whose `ack_seq >= seq`
//!   (so it includes the wait for the next tick: about half a tick on average);
//! - the gap between consecutive updates of one player (30 Hz means 33.3 ms; a late or skipped
//!   tick shows as a longer gap);
//! - updates, inputs, ticks missing between two deltas of one stream, snapshots after the first
//!   (re-routes or resyncs), game overs, errors.
//!
//! Every snapshot but a player's very first is also kept as a [`Reroute`] event with what the
//! player saw just before it: the failover and drain benchmarks read when each board came back
//! and from which tick.
//!
//! A player killed in the game joins again (a new player id); a stream that fails is reopened
//! (after a short backoff), joining again if the board no longer knows the player. That happens
//! off the board's task, so one slow join never delays the other players' updates.

mod board;
mod join;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use join::{join, join_all, BoardPlan, Joined, Links, Route};
pub use stats::{Reroute, RouteStats, WindowStats};

use board::BoardTask;
use hypercache_proto::poison::lock;
use join::open;

/// How long [`Swarm::end_window`] waits for every board task to hand in its figures.
const FLUSH_WAIT: Duration = Duration::from_secs(3);

/// Which window the board tasks record into; the swarm publishes it, every task follows it and
/// hands in its figures for a window when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Phase {
    window: u64,
    recording: bool,
}

/// The figures handed in, by window.
#[derive(Default)]
struct Collector {
    windows: HashMap<u64, WindowStats>,
}

/// What the board tasks share with the [`Swarm`].
struct Shared {
    links: Links,
    input_interval: Duration,
    collector: Mutex<Collector>,
    reroutes: Mutex<Vec<Reroute>>,
    alive: AtomicUsize,
}

/// The running players; see the module documentation.
pub struct Swarm {
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    window_started: Option<Instant>,
    boards: usize,
}

impl Swarm {
    /// `input_hz` inputs per second per player.
    pub fn new(links: Links, input_hz: u32) -> Swarm {
        let shared = Arc::new(Shared {
            links,
            input_interval: Duration::from_secs_f64(1.0 / f64::from(input_hz.max(1))),
            collector: Mutex::new(Collector::default()),
            reroutes: Mutex::new(Vec::new()),
            alive: AtomicUsize::new(0),
        });
        Swarm {
            shared,
            phase: watch::channel(Phase { window: 0, recording: false }).0,
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            window_started: None,
            boards: 0,
        }
    }

    /// Starts playing `boards`: opens every player's stream (the call returns once all are
    /// open), then plays until [`stop`](Self::stop).
    pub async fn add(&mut self, boards: Vec<BoardPlan>) -> anyhow::Result<()> {
        let mut opening = JoinSet::new();
        for plan in boards {
            let n = self.boards;
            self.boards += 1;
            let shared = self.shared.clone();
            opening.spawn(async move {
                let mut streams = Vec::with_capacity(plan.players.len());
                for (i, joined) in plan.players.iter().enumerate() {
                    let opened = open(&shared.links, joined, n + i).await.map_err(|s| {
                        anyhow::anyhow!(
                            "opening Play for {} on {}: {:?} {}",
                            joined.name,
                            plan.game_id,
                            s.code(),
                            s.message()
                        )
                    })?;
                    streams.push(opened);
                }
                Ok::<_, anyhow::Error>((n, plan, streams))
            });
        }
        while let Some(opened) = opening.join_next().await {
            let (n, plan, streams) = opened.map_err(|e| anyhow::anyhow!("opening streams failed: {e}"))??;
            let task =
                BoardTask::new(self.shared.clone(), n, plan, streams, self.phase.subscribe(), self.stop.subscribe());
            self.shared.alive.fetch_add(1, Ordering::Relaxed);
            self.tasks.spawn(task.run());
        }
        Ok(())
    }

    pub fn boards(&self) -> usize {
        self.boards
    }

    /// Starts recording a new window.
    pub fn begin_window(&mut self) {
        let window = self.phase.borrow().window + 1;
        self.window_started = Some(Instant::now());
        self.phase.send_replace(Phase { window, recording: true });
    }

    /// Ends the current window and collects every board task's figures for it.
    pub async fn end_window(&mut self) -> WindowStats {
        let Phase { window, .. } = *self.phase.borrow();
        let elapsed = self.window_started.take().map(|s| s.elapsed()).unwrap_or_default();
        self.phase.send_replace(Phase { window, recording: false });
        let tasks = self.shared.alive.load(Ordering::Relaxed);
        let deadline = Instant::now() + FLUSH_WAIT;
        loop {
            let flushed = self.with_window(window, |w| w.flushed);
            if flushed >= tasks || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut stats = {
            let mut c = lock(&self.shared.collector);
            c.windows.remove(&window).unwrap_or_default()
        };
        stats.elapsed = elapsed;
        stats.tasks = tasks;
        stats
    }

    fn with_window<T>(&self, window: u64, f: impl FnOnce(&mut WindowStats) -> T) -> T {
        let mut c = lock(&self.shared.collector);
        f(c.windows.entry(window).or_default())
    }

    /// Every re-route event so far.
    pub fn reroutes(&self) -> Vec<Reroute> {
        lock(&self.shared.reroutes).clone()
    }

    /// Stops every player (streams are dropped, not exited: the benchmarks delete their games).
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
