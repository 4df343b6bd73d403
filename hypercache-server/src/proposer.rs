//! Batching of concurrent write proposals into one Raft entry.
//!
//! openraft's cost is per log entry: on the leader every entry is one trip through the Raft core,
//! one append, one replication wake-up and one apply. Measured here, that caps a shard at about
//! 4,200 single-transaction entries per second on two cores, whatever the disk does. So the
//! [`Proposer`] packs the requests waiting at a given moment into one
//! [`Command::Tracked`] entry, stamped with this leader's wall clock (the state machine's log
//! clock, by which idle client sessions expire: `machine/session.rs`).
//!
//! One batch is in flight at a time. A lone write is proposed immediately (no added latency when
//! idle); under load, writes queue while the batch in flight replicates and leave together in the
//! next one, so batch size adapts to load. A batch is also cut at [`MAX_BATCH_BYTES`] of payload
//! (see there why) or [`MAX_BATCH_TXNS`] and never outgrows the peer message limit; only when a
//! batch was cut that way, so more writes wait than one batch can take, may a second one start
//! before the first has applied (up to [`MAX_IN_FLIGHT`]): large checkpoints keep their pipeline.
//!
//! Why not always two: openraft handles a shard's entries one after another anyway, and each
//! entry has a fixed cost (a Raft core turn, an append and a flush on every replica, AppendEntries
//! to each follower, an apply). Two small batches cost nearly twice one large one. With writes
//! spread over 16 shards, each shard sees a sixteenth of the load, and splitting that in two
//! halved the batches again: one in flight gave 1.1-1.25x the puts per CPU-second with 16 shards
//! and 1.1x with one, at lower p50 and p99 (docs/benchmarks.md).
//!
//! Each transaction still gets its own revision and result, applied in batch order, atomically on
//! its own; a failed compare in one does not affect another. Every waiter of a batch sees the same
//! error if the entry fails. A NOT_LEADER here does not prove "no effect" (the entry may have
//! been truncated on this node only; see `shard.rs`), which is why requests carry write ids.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::batching::BatchQueue;
use crate::lease_renewal;
use crate::machine::command::{Applied, Command, CommandResponse, GameOp, LeaseOp, Request, Tracked, Txn};
use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;

/// Batches allowed in flight at once, the second only after a batch was cut at a size limit.
pub const MAX_IN_FLIGHT: usize = 2;
/// Transactions in one batch at most.
pub const MAX_BATCH_TXNS: usize = 1024;
/// A batch stops growing past this many payload bytes (a single larger request still goes, alone).
///
/// Why: openraft 0.9 gives every AppendEntries the heartbeat interval (100 ms) as its deadline,
/// whatever it carries, and a lagging follower is sent up to `raft.max_entries_per_append`
/// entries at once. With 2 MiB batches of 64 KiB board checkpoints, catch-up messages could not
/// finish in 100 ms, timed out, backed off and never caught up (the cluster lost its quorum under
/// load; see docs/benchmarks.md). Small batches keep catch-up messages small; batching gains
/// nothing measurable beyond a few hundred KiB anyway.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub enum ProposeError {
    Raft(RaftError<TypeConfig, ClientWriteError<TypeConfig>>),
    /// The entry applied but its response did not match the batch (a bug).
    Mismatch(String),
    /// The proposer task is gone: the node is shutting down.
    Stopped,
}

type Reply = oneshot::Sender<Result<Applied, ProposeError>>;

struct Proposal {
    request: Tracked,
    bytes: usize,
    reply: Reply,
}

/// Handle to a shard's proposer task; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
    raft: ShardRaft,
}

impl Proposer {
    pub fn spawn(raft: ShardRaft, max_entry_bytes: usize) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft.clone(), rx, max_entry_bytes.min(MAX_BATCH_BYTES)));
        Proposer { tx, raft }
    }

    /// Replicates `request` (in some batch) and returns its result once applied on this node.
    /// A quiet leader whose lease ran out renews it and proposes again, once
    /// (`lease_renewal.rs`): every proposer needs this, not only client writes.
    pub async fn propose(&self, request: Tracked) -> Result<Applied, ProposeError> {
        match self.propose_once(request.clone()).await {
            Err(ProposeError::Raft(e)) if lease_renewal::lease_expired(&e) => {
                lease_renewal::renew(&self.raft).await;
                self.propose_once(request).await
            }
            other => other,
        }
    }

    async fn propose_once(&self, request: Tracked) -> Result<Applied, ProposeError> {
        let (reply, rx) = oneshot::channel();
        // A write id is 40 bytes on the wire.
        let bytes = request_bytes(&request.request) + request.write.map_or(0, |_| 40);
        self.tx.send(Proposal { request, bytes, reply }).map_err(|_| ProposeError::Stopped)?;
        rx.await.unwrap_or(Err(ProposeError::Stopped))
    }
}

/// This node's wall clock in ms since the Unix epoch (0 if the clock is before 1970).
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Approximate encoded size of a request (keys, values and checkpoints dominate).
pub fn request_bytes(request: &Request) -> usize {
    match request {
        Request::Txn(txn) => txn_bytes(txn),
        Request::Lease(LeaseOp::Expire { ids }) => ids.len() * 10 + 16,
        Request::Lease(_) => 32,
        Request::Game(op) => {
            let payload = match op {
                GameOp::Register { server_id, address, labels, .. } => {
                    server_id.len() + address.len() + labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>()
                }
                GameOp::CreateBoard { board_id, params, checkpoint, .. } => {
                    board_id.len() + params.len() + checkpoint.len()
                }
                GameOp::SyncBoard { board_id, checkpoint, .. } => board_id.len() + checkpoint.len(),
                GameOp::AssignBoard(a) => {
                    a.board_id.len()
                        + a.server_id.len()
                        + a.request_id.len()
                        + a.fence.as_ref().map_or(0, |f| f.0.len())
                }
                GameOp::Deregister { server_id, .. } => server_id.len(),
                GameOp::ReleaseBoard { board_id, server_id, .. } => board_id.len() + server_id.len(),
                GameOp::DeleteBoard { board_id, .. } => board_id.len(),
                GameOp::Campaign { name, candidate, .. } => name.len() + candidate.len(),
                GameOp::Resign { name, .. } => name.len(),
            };
            payload + 48
        }
    }
}

/// Approximate encoded size of a transaction (keys and values dominate).
fn txn_bytes(txn: &Txn) -> usize {
    use crate::machine::command::{CompareTarget, Op};
    let compares: usize = txn
        .compares
        .iter()
        .map(|c| c.key.len() + 16 + if let CompareTarget::Value(v) = &c.target { v.len() } else { 0 })
        .sum();
    let ops: usize = txn
        .success
        .iter()
        .chain(&txn.failure)
        .map(|op| match op {
            Op::Get { key } | Op::Delete { key, .. } => key.len() + 8,
            Op::Put { key, value, .. } => key.len() + value.len() + 8,
        })
        .sum();
    compares + ops + 16
}

async fn run(raft: ShardRaft, rx: mpsc::UnboundedReceiver<Proposal>, max_batch_bytes: usize) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut queue = BatchQueue::new(rx);
    // The last batch was cut at a size limit: more writes were waiting than it could take.
    let mut last_was_full = false;
    while let Some(first) = queue.first().await {
        // Wait for a slot first: writes that arrive meanwhile join this batch. Unless the last
        // batch was full, that means waiting until nothing is in flight. This loop is the only
        // one taking permits, so none can be taken between the two acquires.
        if !last_was_full {
            let Ok(idle) = slots.acquire_many(MAX_IN_FLIGHT as u32).await else { return };
            drop(idle);
        }
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let cut = queue.fill(first, MAX_BATCH_TXNS, max_batch_bytes, |p| p.bytes);
        last_was_full = cut.full;
        let batch = cut.items;
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Tracked>, Vec<Reply>) =
                batch.into_iter().map(|p| (p.request, p.reply)).unzip();
            let n = requests.len();
            let outcome = raft.client_write(Command::Tracked { time_ms: wall_clock_ms(), requests }).await;
            drop(permit);
            match outcome {
                Ok(resp) => match resp.data {
                    CommandResponse::Batch(results) if results.len() == n => {
                        for (reply, applied) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(applied));
                        }
                    }
                    other => {
                        let e = ProposeError::Mismatch(format!(
                            "entry {} answered {other:?} for a batch of {n}",
                            resp.log_id.index
                        ));
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                },
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(ProposeError::Raft(e.clone())));
                    }
                }
            }
        });
    }
}
