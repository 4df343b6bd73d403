//! Group commit: one `fsync` for many writers.
//!
//! sled only makes writes durable on a flush ([`DurableFlush`]: sled's `flush` and an `fdatasync`,
//! as sled's alone does not survive a power cut), and an fsync here costs ~0.2-3 ms, which would cap a
//! shard at a few hundred appends per second if every append flushed on its own. Writers instead
//! insert their records (in memory, cheap) and hand a completion to the [`Flusher`]: a task that
//! takes every completion waiting, runs ONE flush on a blocking thread, and then completes
//! them all. Any flush that *starts* after a record was inserted makes that record durable, so a
//! completion is only ever signalled by a flush that began after it was queued.
//!
//! One flusher serves a whole `Db`, i.e. every shard of the node (batching across shards).

use std::io;
use std::time::Instant;

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::durable::FlushError;
use super::DurableFlush;
use crate::raft_types::TypeConfig;

/// Something waiting for durability.
enum Waiter {
    /// openraft's append callback: entries are persisted when it fires.
    Log(LogFlushed<TypeConfig>),
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
    /// Spawns the flusher for `db` on the current Tokio runtime. The task flushes one last time
    /// and ends when every handle is dropped; awaiting the returned `JoinHandle` therefore tells
    /// the node that no storage component (they all hold a handle) is alive any more, and the
    /// `Db` can be reopened.
    pub fn spawn(db: DurableFlush, observe: Option<FlushObserver>) -> (Flusher, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(db, rx, observe));
        (Flusher { tx }, task)
    }

    /// Completes `callback` once everything inserted before this call is on disk.
    pub fn after_flush(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::error::SendError(Waiter::Log(cb))) = self.tx.send(Waiter::Log(callback)) {
            cb.log_io_completed(Err(io::Error::other("flusher stopped: node is shutting down")));
        }
    }

    /// Waits until everything inserted before this call is on disk.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Waiter::Notify(tx)).map_err(|_| FlushError::Stopped)?;
        rx.await.map_err(|_| FlushError::Abandoned)?
    }
}

async fn run(db: DurableFlush, mut rx: mpsc::UnboundedReceiver<Waiter>, observe: Option<FlushObserver>) {
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
        let db2 = db.clone();
        let result = match tokio::task::spawn_blocking(move || db2.flush()).await {
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
                Waiter::Log(cb) => cb.log_io_completed(result.clone().map_err(io::Error::other)),
                Waiter::Notify(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || db.flush()).await {
        tracing::error!(error = %e, "final flush failed");
    }
}
