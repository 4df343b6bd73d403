//! KV watches across shards: every event exactly once, in revision order per shard, across
//! reconnects.
//!
//! # Shards
//!
//! Revisions are per shard: each shard numbers its own writes. A watch of one key covers that
//! key's shard; so does a prefix that holds a complete hash tag (`board:{b7}:`). Any other prefix
//! or range covers every shard: the [`Watcher`] opens one stream per shard and merges them into
//! one sequence of [`WatchUpdate`]s. Every update and every [`Event`] names its shard and carries
//! that shard's revision. Updates of one shard arrive in that shard's revision order; updates of
//! different shards interleave in arrival order (there is no global order to restore).
//!
//! # Guarantees (per shard)
//!
//! The server streams put/delete events in revision order and never splits the events of one
//! revision across messages. Each shard's stream remembers the last revision it has *fully*
//! delivered (the revision of the last event handed out, or the revision a progress
//! notification vouched for). When the stream breaks (connection loss, the node shutting down,
//! `NOT_LEADER`, `WATCHER_TOO_SLOW`, the replica moving away), it reopens on another replica of
//! the shard (the leader is preferred because it is the most up to date) from `last + 1`, and
//! drops, defensively, any event whose revision is not above `last`. So nothing is skipped and
//! nothing is delivered twice, whichever node serves the next stream, and each shard resumes from
//! its own position whatever the others do.
//!
//! # Where a watch starts
//!
//! - [`WatchOptions::start_revision`]: the first revision to deliver, for a watch that covers one
//!   shard (a key, a tagged prefix, or any watch in a one-shard cluster).
//! - [`WatchOptions::start_revisions`]: per-shard first revisions for a watch that covers several
//!   shards (shards not listed start from now). To resume a watcher that was dropped, pass
//!   [`WatchOptions::resume_after`] its [`Watcher::last_revisions`].
//! - Neither (the default, 0): "changes from now on". Before a shard's first stream the watcher
//!   reads that shard's current revision `R` through its leader and starts at `R + 1`, so that
//!   even a break before the first event resumes without a gap.
//!
//! A non-zero `start_revision` on a watch that covers several shards is a configuration error
//! (one number cannot name a position in several independent histories).
//!
//! # Errors
//!
//! `COMPACTED` (a node no longer holds the history needed to resume; the error carries the
//! oldest revision available, see [`Error::compacted`]) cannot be resumed: it is returned, and
//! the watcher is finished (every later call returns it again). Failing to reconnect within the
//! client's request deadline is returned as a retryable error; the shard keeps its position and
//! keeps trying, so calling [`Watcher::next`] again continues exactly where it stopped.
//!
//! Each shard's stream runs in a task (so a shard that is reconnecting never delays the others);
//! the tasks start at the first [`Watcher::next`] and end when the watcher is dropped.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::Error;
use crate::ids::ShardId;
use crate::watch_shard::ShardWatch;
pub use crate::watch_types::{Event, EventKind, WatchOptions, WatchTarget, WatchUpdate};

/// A resuming, shard-merging watch; see the module documentation. Created by
/// [`Client::watch`].
pub struct Watcher {
    client: Client,
    options: WatchOptions,
    state: State,
}

enum State {
    /// Nothing sent yet.
    Idle,
    Running(Running),
    /// A shard failed in a way that cannot be resumed; returned again on every call.
    Failed(Error),
}

/// The per-shard tasks and what the caller has received from them.
struct Running {
    updates: mpsc::Receiver<Result<WatchUpdate, Error>>,
    tasks: Vec<JoinHandle<()>>,
    /// Per shard: the last revision fully delivered to the caller (0 before anything is known).
    last: BTreeMap<ShardId, u64>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("options", &self.options)
            .field("last", &self.last_revisions())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A watcher for `options`; nothing is sent until the first [`Watcher::next`].
    pub fn watch(&self, options: WatchOptions) -> Watcher {
        Watcher { client: self.clone(), options, state: State::Idle }
    }
}

impl Watcher {
    /// For a watch of one shard: the last revision fully delivered (before the first call, the
    /// start revision - 1; 0 when nothing is known). For a multi-shard watch use
    /// [`last_revisions`](Self::last_revisions); this returns 0.
    pub fn last_revision(&self) -> u64 {
        match &self.state {
            State::Running(running) if running.last.len() == 1 => running.last.values().copied().sum(),
            State::Running(_) => 0,
            State::Idle | State::Failed(_) => self.options.start_revision.saturating_sub(1),
        }
    }

    /// Per shard covered: the last revision fully delivered (0 before anything is known for
    /// it). Empty before the first [`next`](Self::next). Pass it to
    /// [`WatchOptions::resume_after`] to continue in a new watcher.
    pub fn last_revisions(&self) -> BTreeMap<ShardId, u64> {
        match &self.state {
            State::Running(running) => running.last.clone(),
            State::Idle | State::Failed(_) => BTreeMap::new(),
        }
    }

    /// The next batch of events or progress notification of some shard. See the module
    /// documentation for which errors can be followed by another call.
    pub async fn next(&mut self) -> Result<WatchUpdate, Error> {
        loop {
            match &mut self.state {
                State::Failed(err) => return Err(err.clone()),
                State::Idle => self.state = State::Running(self.start().await?),
                State::Running(running) => {
                    let err = match running.updates.recv().await {
                        Some(Ok(update)) => {
                            let last = running.last.entry(update.shard()).or_insert(0);
                            *last = (*last).max(update.revision());
                            return Ok(update);
                        }
                        Some(Err(err)) if err.is_retryable() => return Err(err),
                        Some(Err(err)) => err,
                        None => Error::Internal { message: "watch: every shard's stream task ended".into() },
                    };
                    self.state = State::Failed(err.clone());
                    return Err(err);
                }
            }
        }
    }

    /// The watcher as a `Stream`, ending after the first error that [`Error::is_retryable`]
    /// does not cover.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<WatchUpdate, Error>> + Send {
        futures::stream::unfold(Some(self), |watcher| async move {
            let mut watcher = watcher?;
            let item = watcher.next().await;
            let keep = item.as_ref().map_or_else(Error::is_retryable, |_| true);
            Some((item, keep.then_some(watcher)))
        })
    }

    /// Resolves the shards the watch covers and starts one stream task per shard.
    async fn start(&self) -> Result<Running, Error> {
        let table = self.client.routing().await?;
        let shards = match &self.options.target {
            WatchTarget::Key(key) => vec![table.shard_of(key)],
            WatchTarget::Prefix(prefix) => table.shards_for_prefix(prefix),
            WatchTarget::Range { .. } => table.shard_ids().collect(),
        };
        let plan = self.options.plan(table.shard_count, shards)?;
        // One message in flight per shard: a slow caller slows the streams down (the server
        // sheds a watcher that falls too far behind, and the shard resumes).
        let (tx, updates) = mpsc::channel(plan.len());
        let mut last = BTreeMap::new();
        let mut tasks = Vec::with_capacity(plan.len());
        for (shard, start) in plan {
            last.insert(shard, start.saturating_sub(1));
            let watch = ShardWatch::new(self.client.clone(), self.options.clone(), shard, start);
            tasks.push(tokio::spawn(watch.run(tx.clone())));
        }
        Ok(Running { updates, tasks, last })
    }
}
