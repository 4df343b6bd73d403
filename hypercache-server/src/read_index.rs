//! Coalesced read-index barriers.
//!
//! openraft 0.9's `ensure_linearizable` confirms leadership by sending a heartbeat to every voter,
//! per call. Under a read-heavy load that is two RPCs per read. The [`ReadIndex`] task instead runs
//! one barrier at a time and answers, with it, every read that was queued *before* it started.
//!
//! Why that is still linearizable: a read must observe every write that completed before the read
//! began. A barrier that starts after the read was queued reads the commit index after the read
//! began, confirms leadership after that, and waits until that index is applied, exactly as if the
//! read had run its own barrier. Reads that arrive while a barrier is in flight are NOT answered by
//! it (its read index may predate them); they wait for the next one. So a read waits for at most
//! two barriers, and the number of barriers per second is bounded by the barrier latency, not by
//! the number of reads.
//!
//! A *paced* instance ([`ReadIndex::spawn_paced`]) also leaves at least `min_gap` between the
//! starts of two barriers. Lease keepalives use one: a thousand game servers heartbeating every
//! second would otherwise keep barriers running back to back (two heartbeat RPCs each), while a
//! keepalive can well wait a few milliseconds more to share a barrier with its neighbours. The
//! gap only delays the answer; the barrier still starts after every request it answers, so the
//! argument above is unchanged. Client reads use an unpaced instance.

use std::time::Duration;

use openraft::error::{LinearizableReadError, RaftError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;

pub type BarrierResult = Result<(), RaftError<TypeConfig, LinearizableReadError<TypeConfig>>>;

/// Handle to a shard's barrier task; the task ends when the handle is dropped.
pub struct ReadIndex {
    tx: mpsc::UnboundedSender<oneshot::Sender<BarrierResult>>,
}

impl ReadIndex {
    pub fn spawn(raft: ShardRaft) -> ReadIndex {
        Self::spawn_paced(raft, Duration::ZERO)
    }

    /// Like [`ReadIndex::spawn`], with at least `min_gap` between the starts of two barriers.
    pub fn spawn_paced(raft: ShardRaft, min_gap: Duration) -> ReadIndex {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx, min_gap));
        ReadIndex { tx }
    }

    /// Resolves once a barrier that started after this call has completed.
    pub async fn barrier(&self) -> BarrierResult {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).is_err() {
            return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(openraft::error::Fatal::Stopped)))
    }
}

async fn run(raft: ShardRaft, mut rx: mpsc::UnboundedReceiver<oneshot::Sender<BarrierResult>>, min_gap: Duration) {
    let mut waiting = Vec::new();
    let mut next_start = Instant::now();
    while let Some(first) = rx.recv().await {
        waiting.push(first);
        if !min_gap.is_zero() {
            // Requests arriving during the pause join this barrier: it has not started yet.
            tokio::time::sleep_until(next_start).await;
            next_start = Instant::now() + min_gap;
        }
        // Everything queued so far arrived before the barrier below starts.
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let result = raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await.map(|_| ());
        for w in waiting.drain(..) {
            let _ = w.send(result.clone());
        }
    }
}
