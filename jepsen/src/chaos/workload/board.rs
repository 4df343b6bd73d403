//! The board workload: game-server-like owners fighting over a few boards. Every worker is an
//! owner (a registered game server `jepsen-owner-<w>`); taking a board deposes whoever held it,
//! and the deposed owner keeps checkpointing until the cluster tells it (`STALE_EPOCH`), exactly
//! the zombie the epoch fence exists for.
//!
//! - **Setup** ([`open_boards`], recorded as `open-boards` by its own process before the
//!   workers start): register every owner with a lease of [`OWNER_TTL`] (longer than any run,
//!   so `SERVER_NOT_LIVE` never refuses an assignment), then create every board. A board that
//!   already exists (`BOARD_EXISTS`, a repeat after an `info` attempt) counts as created, and a
//!   repeated registration only bumps the owner's incarnation, so the op is safe to repeat.
//! - **`assign`**: read the board's epoch, then assign it to this owner expecting that epoch
//!   (a compare-and-swap on the epoch; `STALE_EPOCH` when another owner got there first:
//!   `fail`). The `ok` completion records the new epoch.
//! - **`sync`**: checkpoint `seq` (data `owner/epoch/seq`) fenced by the epoch this owner
//!   holds; seqs increase by one per sync within the epoch. A refusal (`STALE_EPOCH`: deposed)
//!   is `fail`, and the owner then forgets the board.
//! - **`read-board`**: linearizable read of the owner record's epoch and the checkpoint's
//!   (epoch, seq). The final reads read every board once more.
//!
//! An owner that holds a board syncs it most of the time, so almost every reassignment is
//! followed by at least one sync from the deposed owner: the check of the fence the
//! `accept-stale-epoch` failpoint breaks.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hypercache_client::{AssignBoard, Client, CreateBoard, Epoch, Error, Reason, RegisterOptions, Seq};
use rand::rngs::StdRng;
use rand::Rng;

use crate::chaos::history::{BoardState, EventType, Op};

pub const BOARDS: usize = 2;
/// The owners' registration lease: longer than any run.
const OWNER_TTL: Duration = Duration::from_secs(24 * 3600);

pub fn board(i: usize) -> String {
    format!("jepsen-board-{i}")
}

pub fn owner(worker: u64) -> String {
    format!("jepsen-owner-{worker}")
}

/// The setup op (see the module essay).
pub fn open_boards(workers: u64) -> Op {
    Op::OpenBoards { boards: (0..BOARDS).map(board).collect(), owners: (0..workers).map(owner).collect() }
}

/// One read per board, after healing.
pub fn final_reads() -> Vec<Op> {
    (0..BOARDS).map(|b| Op::ReadBoard { board: board(b), state: None, final_read: true }).collect()
}

/// One worker's view: which boards it believes it owns, at which epoch, and its last seq there.
pub struct Generator {
    owner: String,
    held: BTreeMap<String, (u64, u64)>,
}

impl Generator {
    pub fn new(worker: u64) -> Generator {
        Generator { owner: owner(worker), held: BTreeMap::new() }
    }

    pub fn next(&mut self, rng: &mut StdRng) -> Op {
        let board = board(rng.gen_range(0..BOARDS));
        match self.held.get(&board) {
            // Holders mostly checkpoint: a deposed holder's next sync is the fence's test.
            Some(&(epoch, seq)) if rng.gen_bool(0.8) => {
                Op::Sync { board, owner: self.owner.clone(), epoch, seq: seq + 1 }
            }
            _ if rng.gen_bool(0.35) => Op::Assign { board, owner: self.owner.clone(), epoch: None },
            _ => Op::ReadBoard { board, state: None, final_read: false },
        }
    }

    pub fn observe(&mut self, op: &Op, kind: EventType) {
        match (op, kind) {
            (Op::Assign { board, epoch: Some(epoch), .. }, EventType::Ok) => {
                self.held.insert(board.clone(), (*epoch, 0));
            }
            // `info` too: that seq may have been written, so the next one is above it.
            (Op::Sync { board, epoch, seq, .. }, EventType::Ok | EventType::Info) => {
                self.held.insert(board.clone(), (*epoch, *seq));
            }
            (Op::Sync { board, .. }, EventType::Fail) => {
                self.held.remove(board);
            }
            _ => {}
        }
    }
}

/// Runs a board op: `Ok` with what was read or handed out. `unique` makes an assignment's
/// request id (the server's idempotency key) unique in the run.
pub async fn apply(client: &Client, op: &Op, unique: u64) -> Result<(EventType, Op), Error> {
    match op {
        Op::OpenBoards { boards, owners } => {
            for owner in owners {
                client.register(RegisterOptions::new(owner.clone(), format!("{owner}:0"), OWNER_TTL)).await?;
            }
            for board in boards {
                match client.create_board(CreateBoard::new(board.clone())).await {
                    Ok(_) => {}
                    Err(e) if e.is_reason(Reason::BoardExists) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((EventType::Ok, op.clone()))
        }
        Op::Assign { board, owner, .. } => {
            let Some(current) = client.get_board(board, false).await? else {
                return Err(Error::Config { message: format!("board {board} does not exist (setup not done?)") });
            };
            let assign = AssignBoard {
                board_id: board.clone(),
                server_id: owner.clone(),
                expected_epoch: current.board.epoch,
                request_id: format!("{owner}/{unique}"),
                election: None,
            };
            let assigned = client.assign_board(assign).await?;
            Ok((
                EventType::Ok,
                Op::Assign { board: board.clone(), owner: owner.clone(), epoch: Some(assigned.epoch.0) },
            ))
        }
        Op::Sync { board, owner, epoch, seq } => {
            let data = Bytes::from(format!("{owner}/{epoch}/{seq}"));
            client.sync_board(board, Epoch(*epoch), Seq(*seq), data).await?;
            Ok((EventType::Ok, op.clone()))
        }
        Op::ReadBoard { board, final_read, .. } => {
            let record = client.get_board(board, false).await?;
            let state = record.map(|r| {
                let (checkpoint_epoch, seq) = r.checkpoint.map_or((0, 0), |c| (c.epoch.0, c.seq.0));
                BoardState { epoch: r.board.epoch.0, checkpoint_epoch, seq }
            });
            // A missing board reads as no state: the checker reports a read without one.
            Ok((EventType::Ok, Op::ReadBoard { board: board.clone(), state, final_read: *final_read }))
        }
        other => Err(super::wrong_workload("board", other)),
    }
}
