//! Group commit: one `fsync` for many writers.
//!
//! An fsync here costs ~0.2-3 ms, which would cap a shard at a few hundred appends per second if
//! every append synced on its own. Writers instead write their records (to the page cache or
//! sled's memory, cheap) and hand a completion to a [`Flusher`]: a task that takes every
//! completion waiting, runs ONE sync on a blocking thread, and then completes them all. Any sync
//! that *starts* after a record was written makes that record durable, so a completion is only
//! ever signalled by a sync that began after it was queued.
//!
//! A node runs two, each serving every shard (batching across shards): the Raft log's (an
//! `fdatasync` of the node's log, [`super::wal::Wal::sync`]) and the state machines' (the log's
//! sync, then sled's [`super::DurableFlush`]: a state machine is never durable ahead of the
//! entries it applied).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::durable::FlushError;
use crate::raft_types::TypeConfig;

/// The sync a flusher runs: blocking, everything written before it starts is durable when it
/// returns `Ok`.
pub type SyncFn = Arc<dyn Fn() -> Result<(), FlushError> + Send + Sync>;

/// Something waiting for durability.
enum Waiter {
    /// openraft's append callback: entries are persisted when it fires.
    Log(IOFlushed<TypeConfig>),
    /// A caller awaiting the flush (vote, purge, snapshot install).
    Notify(oneshot::Sender<Result<(), FlushError>>),
}

/// Handle to the node's flusher task. Cloning shares the task.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::UnboundedSender<Waiter>,
}

/// Observes each flush's duration (seconds), e.g. into a histogram.
pub type FlushObserver = Box<dyn Fn(f64) + Send + Sync>;

impl Flusher {
    /// Spawns a flusher running `sync` on the current Tokio runtime. The task flushes one last time
    /// and ends when every handle is dropped, answering whether that flush succeeded; awaiting
    /// the returned `JoinHandle` therefore tells
    /// the node that no storage component (they all hold a handle) is alive any more, and the
    /// `Db` can be reopened.
    pub fn spawn(sync: SyncFn, observe: Option<FlushObserver>) -> (Flusher, JoinHandle<bool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(sync, rx, observe));
        (Flusher { tx }, task)
    }

    /// Completes `callback` once everything inserted before this call is on disk.
    pub fn after_flush(&self, callback: IOFlushed<TypeConfig>) {
        if let Err(mpsc::error::SendError(Waiter::Log(cb))) = self.tx.send(Waiter::Log(callback)) {
            cb.io_completed(Err(io::Error::other("flusher stopped: node is shutting down")));
        }
    }

    /// Waits until everything inserted before this call is on disk.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Waiter::Notify(tx)).map_err(|_| FlushError::Stopped)?;
        rx.await.map_err(|_| FlushError::Abandoned)?
    }
}

async fn run(sync: SyncFn, mut rx: mpsc::UnboundedReceiver<Waiter>, observe: Option<FlushObserver>) -> bool {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Let the tasks that are ready right now run first: when a batch of appends for several
        // shards arrives, their shards' Raft cores are woken together and each queues its append
        // here a moment apart; one yield lets them join this flush instead of waiting for the next.
        tokio::task::yield_now().await;
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let started = Instant::now();
        let sync2 = sync.clone();
        let result = match tokio::task::spawn_blocking(move || sync2()).await {
            Ok(result) => result,
            Err(e) => Err(FlushError::Task(e.to_string())),
        };
        if let Some(observe) = &observe {
            observe(started.elapsed().as_secs_f64());
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, waiters = batch.len(), "flush failed");
        }
        for waiter in batch.drain(..) {
            match waiter {
                Waiter::Log(cb) => cb.io_completed(result.clone().map_err(io::Error::other)),
                Waiter::Notify(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
    match tokio::task::spawn_blocking(move || sync()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "final flush failed");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "final flush task failed");
            false
        }
    }
}
