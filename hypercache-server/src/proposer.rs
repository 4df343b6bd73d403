//! Batching of concurrent write proposals into one Raft entry.
//!
//! openraft's cost is per log entry: on the leader every entry is one trip through the Raft core,
//! one append, one replication wake-up and one apply. Measured here, that caps a shard at about
//! 4,200 single-transaction entries per second on two cores, whatever the disk does. So the
//! [`Proposer`] packs the requests waiting at a given moment into one
//! [`Command::Batch`] entry.
//!
//! Up to [`MAX_IN_FLIGHT`] batches are in flight at once. A lone write is proposed immediately (no
//! added latency when idle); under load, writes queue while the in-flight batches replicate and
//! leave together in the next one, so batch size adapts to load. A batch is also cut at
//! [`MAX_BATCH_BYTES`] of payload (see there why) and never outgrows the peer message limit.
//!
//! Each transaction still gets its own revision and result, applied in batch order, atomically on
//! its own; a failed compare in one does not affect another. Every waiter of a batch sees the same
//! error if the entry fails (e.g. NOT_LEADER: none of them had any effect).

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::machine::game::GameOp;
use crate::types::{Applied, Command, CommandResponse, LeaseOp, NodeId, NodeInfo, Request, Txn, TypeConfig};

/// Batches allowed in flight at once.
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
    Raft(RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>),
    /// The entry applied but its response did not match the batch (a bug).
    Mismatch(String),
    /// The proposer task is gone: the node is shutting down.
    Stopped,
}

type Reply = oneshot::Sender<Result<Applied, ProposeError>>;

struct Proposal {
    request: Request,
    bytes: usize,
    reply: Reply,
}

/// Handle to a shard's proposer task; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    pub fn spawn(raft: Raft<TypeConfig>, max_entry_bytes: usize) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx, max_entry_bytes.min(MAX_BATCH_BYTES)));
        Proposer { tx }
    }

    /// Replicates `request` (in some batch) and returns its result once applied on this node.
    pub async fn propose(&self, request: Request) -> Result<Applied, ProposeError> {
        let (reply, rx) = oneshot::channel();
        let bytes = request_bytes(&request);
        self.tx.send(Proposal { request, bytes, reply }).map_err(|_| ProposeError::Stopped)?;
        rx.await.unwrap_or(Err(ProposeError::Stopped))
    }
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
    use crate::types::{CompareTarget, Op};
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

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::UnboundedReceiver<Proposal>, max_batch_bytes: usize) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Proposal> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Wait for a slot first: writes that arrive meanwhile join this batch.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_TXNS {
            match rx.try_recv() {
                Ok(p) if bytes + p.bytes > max_batch_bytes => {
                    carry = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Request>, Vec<Reply>) =
                batch.into_iter().map(|p| (p.request, p.reply)).unzip();
            let n = requests.len();
            let outcome = raft.client_write(Command::Batch(requests)).await;
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
