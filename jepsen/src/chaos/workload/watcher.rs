//! The watch workload's watchers: [`WATCHERS`] tasks, each watching the whole prefix
//! ([`watch::PREFIX`], every shard) for the run, recording every delivered update, and resuming
//! after every error, so the nemesis makes them resume across leader changes, restarts and
//! partitions.
//!
//! A watcher's history (its process is `workers * 1_000_000 + 10 + watcher`):
//!
//! - `watch-open`: the first one starts every shard at revision 1 (the cluster is fresh, so the
//!   watch covers every write of the run); each later one is a **resume** from the positions the
//!   watcher has reached (`resume_after`), half of them with a brand-new client (a reconnect).
//!   Besides resuming after every error, a watcher drops its `Watcher` and resumes every
//!   [`RESUME_EVERY_MS`] on its own, so resumes happen in quiet periods too.
//! - `watch-events`: one per delivered update (the events of one shard); a `fail` one per error.
//! - `watch-end`: when it stops, its positions per shard: how far it was told everything was
//!   delivered (events or progress notifications).
//!
//! The positions are the workload's own copy of [`Watcher::last_revisions`], taken after every
//! update: a watcher that failed for good returns no positions any more, yet its successor must
//! resume exactly after them. They include progress notifications (idle shards advance every
//! [`PROGRESS_MS`]), which is what lets a watcher reach the final read's revision of a shard whose
//! last revisions wrote nothing under the prefix.
//!
//! `COMPACTED` (the serving node no longer holds the history to resume from) cannot be resumed:
//! the watcher records `watch-end` with `compacted` (its coverage ends there; the checker says
//! `unknown` for it) and a new watcher takes its place, `WATCHERS` ids later, starting from the
//! shards' current revisions (one range read).
//!
//! After the final read, [`Watchers::finish`] gives every watcher its revisions; each keeps
//! reading until its positions reach them (`caught-up`) or [`CATCH_UP_WITHIN`] passes
//! (`not-caught-up`). Without a final read they stop at once (`no-final-read`).

use hypercache_proto::poison::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypercache_client::{Client, Error, RangeOptions, ShardId, WatchOptions, WatchUpdate, Watcher};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{watch, Context};
use crate::chaos::history::{client_revisions, EventType, Op, Process, WatchEndReason, WatchEvent};

/// Watcher tasks per run.
pub const WATCHERS: u64 = 2;
/// How often an idle shard's stream vouches for its revision.
const PROGRESS_MS: u64 = 200;
/// How long a watcher waits in one `next` before looking at its orders again.
const POLL: Duration = Duration::from_millis(200);
/// A watcher resumes on its own after 1-3 times this long.
const RESUME_EVERY_MS: u64 = 1_000;
/// After the final read: how long a watcher may take to reach its revisions.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(30);
/// Pause after an error before resuming (the client has its own backoff inside a watcher).
const AFTER_ERROR: Duration = Duration::from_millis(100);

/// What the watchers are told to do; they start [`Orders::Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Orders {
    Watch,
    /// Reach these revisions (the final read's), then stop.
    CatchUp(BTreeMap<u32, u64>),
    /// No final read: stop now.
    Stop,
}

/// The watcher tasks of a run and the channel that tells them when to stop.
pub struct Watchers {
    orders: signal::Sender<Orders>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers { orders: signal::channel(Orders::Watch).0, tasks: Mutex::new(Vec::new()) }
    }
}

impl Watchers {
    /// Starts the watcher tasks; `base` is the first watcher's process id.
    pub fn spawn(ctx: &Arc<Context>, base: Process, seed: u64) {
        let mut tasks = lock(&ctx.watchers.tasks);
        for first in 0..WATCHERS {
            let ctx = ctx.clone();
            let rng = StdRng::seed_from_u64(seed.wrapping_add(1_000 + first));
            tasks.push(tokio::spawn(async move { run(ctx, first, base, rng).await }));
        }
    }

    /// Tells every watcher to catch up to `revisions` (`None`: there was no final read, stop)
    /// and waits until all have stopped.
    pub async fn finish(&self, revisions: Option<BTreeMap<u32, u64>>) -> Result<(), Error> {
        self.orders.send_replace(revisions.map_or(Orders::Stop, Orders::CatchUp));
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            task.await.map_err(|e| Error::Internal { message: format!("watcher task: {e}") })?;
        }
        Ok(())
    }
}

/// One watcher slot: watchers `first`, `first + WATCHERS`, ... one after the other, a new one
/// only when the previous one's watch was compacted away.
async fn run(ctx: Arc<Context>, first: u64, base: Process, mut rng: StdRng) {
    let mut orders = ctx.watchers.orders.subscribe();
    let mut id = first;
    loop {
        let mut watcher = Lineage { ctx: &ctx, id, process: base + id, positions: BTreeMap::new(), deadline: None };
        match watcher.run(&mut rng, &mut orders, id == first).await {
            WatchEndReason::Compacted => id += WATCHERS,
            _ => return,
        }
    }
}

/// One watcher: its id, its history process, and how far it has been delivered.
struct Lineage<'a> {
    ctx: &'a Context,
    id: u64,
    process: Process,
    /// Per shard: the last revision fully delivered. Keyed by the shard's number as the history
    /// records it (`watch-end` carries these, the final read's revisions are compared with them).
    positions: BTreeMap<u32, u64>,
    /// Set when the catch-up orders arrive.
    deadline: Option<Instant>,
}

impl Lineage<'_> {
    /// Watches until told to stop or compacted; records `watch-end` and returns why it ended.
    async fn run(
        &mut self,
        rng: &mut StdRng,
        orders: &mut signal::Receiver<Orders>,
        from_the_beginning: bool,
    ) -> WatchEndReason {
        let end = self.watch(rng, orders, from_the_beginning).await;
        let op = Op::WatchEnd { watcher: self.id, last: self.positions.clone(), end };
        self.record(op, EventType::Ok, None);
        end
    }

    async fn watch(
        &mut self,
        rng: &mut StdRng,
        orders: &mut signal::Receiver<Orders>,
        from_the_beginning: bool,
    ) -> WatchEndReason {
        let mut client = loop {
            if let Some(end) = self.stop(orders) {
                return end;
            }
            match super::client(self.ctx) {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(AFTER_ERROR).await,
            }
        };
        let mut watcher = loop {
            if let Some(end) = self.stop(orders) {
                return end;
            }
            match self.open(&client, from_the_beginning).await {
                Some(watcher) => break watcher,
                None => tokio::time::sleep(AFTER_ERROR).await,
            }
        };
        let mut resume_at = Instant::now() + self.resume_interval(rng);
        loop {
            if let Some(end) = self.stop(orders) {
                return end;
            }
            let Ok(next) = tokio::time::timeout(POLL, watcher.next()).await else { continue };
            match next {
                Ok(update) => {
                    self.advance(&watcher.last_revisions());
                    if let WatchUpdate::Events { shard, events, .. } = update {
                        let events = events
                            .iter()
                            .map(|e| WatchEvent {
                                revision: e.revision(),
                                key: String::from_utf8_lossy(&e.kv.key).into_owned(),
                                value: (e.kind == hypercache_client::EventKind::Put).then(|| watch::parse(&e.kv.value)),
                            })
                            .collect();
                        let op = Op::WatchEvents { watcher: self.id, shard: Some(shard.0), events };
                        self.record(op, EventType::Ok, None);
                    }
                    if Instant::now() < resume_at {
                        continue;
                    }
                    resume_at = Instant::now() + self.resume_interval(rng);
                }
                Err(err) => {
                    let op = Op::WatchEvents { watcher: self.id, shard: None, events: Vec::new() };
                    self.record(op, EventType::Fail, Some(err.to_string()));
                    if err.compacted().is_some() {
                        return WatchEndReason::Compacted;
                    }
                    tokio::time::sleep(AFTER_ERROR).await;
                }
            }
            // Resume: a new watcher from the positions reached, half the time on a new client.
            let reconnect = rng.gen_bool(0.5);
            if reconnect {
                if let Ok(fresh) = super::client(self.ctx) {
                    client = fresh;
                }
            }
            watcher = self.resume(&client, reconnect);
        }
    }

    /// Why to stop now, if the orders say so.
    fn stop(&mut self, orders: &mut signal::Receiver<Orders>) -> Option<WatchEndReason> {
        match &*orders.borrow_and_update() {
            Orders::Watch => None,
            Orders::Stop => Some(WatchEndReason::NoFinalRead),
            Orders::CatchUp(revisions) => {
                if revisions.iter().all(|(shard, r)| self.positions.get(shard).is_some_and(|p| p >= r)) {
                    return Some(WatchEndReason::CaughtUp);
                }
                let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + CATCH_UP_WITHIN);
                (Instant::now() >= deadline).then_some(WatchEndReason::NotCaughtUp)
            }
        }
    }

    fn resume_interval(&self, rng: &mut StdRng) -> Duration {
        Duration::from_millis(rng.gen_range(RESUME_EVERY_MS..3 * RESUME_EVERY_MS))
    }

    fn options(&self) -> WatchOptions {
        WatchOptions::prefix(watch::PREFIX).progress_interval(Duration::from_millis(PROGRESS_MS))
    }

    /// The first `watch-open`: every shard from revision 1, or (after a compaction) from each
    /// shard's current revision. `None` if that could not be found out (recorded as `fail`).
    async fn open(&mut self, client: &Client, from_the_beginning: bool) -> Option<Watcher> {
        let invoked = Op::WatchOpen { watcher: self.id, start: None, resume: false, reconnect: false };
        self.ctx.recorder.push(self.process, EventType::Invoke, invoked.clone(), None);
        let start: Result<BTreeMap<u32, u64>, Error> = if from_the_beginning {
            client.routing().await.map(|table| (0..table.shard_count).map(|shard| (shard, 1)).collect())
        } else {
            // One key is enough: the page carries every shard's revision.
            let probe = RangeOptions { limit: 1, keys_only: true, ..RangeOptions::prefix(watch::PREFIX) };
            client.range(probe).await.map(|page| page.revisions.iter().map(|(s, r)| (s.0, r + 1)).collect())
        };
        match start {
            Ok(start) => {
                self.positions = start.iter().map(|(shard, first)| (*shard, first - 1)).collect();
                let op =
                    Op::WatchOpen { watcher: self.id, start: Some(start.clone()), resume: false, reconnect: false };
                self.ctx.recorder.push(self.process, EventType::Ok, op, None);
                Some(client.watch(self.options().start_revisions(client_revisions(&start))))
            }
            Err(err) => {
                self.ctx.recorder.push(self.process, EventType::Fail, invoked, Some(err.to_string()));
                None
            }
        }
    }

    /// A `watch-open` that continues right after the positions reached.
    fn resume(&mut self, client: &Client, reconnect: bool) -> Watcher {
        let start = self.positions.iter().map(|(shard, last)| (*shard, last + 1)).collect();
        let op = Op::WatchOpen { watcher: self.id, start: Some(start), resume: true, reconnect };
        self.record(op, EventType::Ok, None);
        client.watch(self.options().resume_after(&client_revisions(&self.positions)))
    }

    /// Takes in the watcher's positions (never moving one back).
    fn advance(&mut self, last: &BTreeMap<ShardId, u64>) {
        for (shard, revision) in last {
            let position = self.positions.entry(shard.0).or_insert(0);
            *position = (*position).max(*revision);
        }
    }

    /// Records a delivery, an error, a resume or an end: an invocation and its completion at
    /// once (nothing was asked of the cluster in between).
    fn record(&self, op: Op, kind: EventType, error: Option<String>) {
        self.ctx.recorder.push(self.process, EventType::Invoke, op.clone(), None);
        self.ctx.recorder.push(self.process, kind, op, error);
    }
}
