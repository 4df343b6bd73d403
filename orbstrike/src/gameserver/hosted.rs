//! The table of boards this server hosts, shared by the session (the only writer) and the gRPC
//! service (readers).
//!
//! The lock is a std `RwLock`: it is held only to look up, insert or remove an entry (never
//! across an `.await`), and a lookup hands out a clone of the board's command sender.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hypercache_client::Epoch;
use hypercache_proto::poison::{lock, read, write};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::board_task::{Command, Control};
use super::error::GameError;
use super::metrics::Metrics;

/// How the session reaches a running board task.
pub(crate) struct BoardHandle {
    pub(crate) epoch: Epoch,
    pub(crate) generation: u64,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) control: watch::Sender<Control>,
    pub(crate) players: Arc<AtomicUsize>,
}

/// A board this server owns, in each stage of its life here.
pub(crate) enum Hosted {
    /// Its checkpoint is being read.
    Loading {
        epoch: Epoch,
        abort: AbortHandle,
    },
    Running(BoardHandle),
    /// Owned but unservable (e.g. a corrupt checkpoint); kept so callers get a clear error.
    Broken {
        epoch: Epoch,
        why: String,
    },
}

impl Hosted {
    pub(crate) fn epoch(&self) -> Epoch {
        match self {
            Hosted::Loading { epoch, .. } | Hosted::Broken { epoch, .. } => *epoch,
            Hosted::Running(handle) => handle.epoch,
        }
    }
}

/// How long a board that left is remembered (for "MOVED" answers and for never resuming it at
/// the epoch it stopped at), and how many such boards at most.
const DEPARTED_TTL: Duration = Duration::from_secs(600);
const DEPARTED_MAX: usize = 10_000;

pub(crate) struct Shared {
    pub(crate) server_id: String,
    pub(crate) metrics: Arc<Metrics>,
    /// Set once a drain begins: no new players, no new streams.
    draining: AtomicBool,
    /// True while registered with a lease that is safe to act on (readiness).
    serving: AtomicBool,
    boards: RwLock<HashMap<String, Hosted>>,
    /// Boards that stopped here, with the epoch they stopped at.
    departed: Mutex<HashMap<String, (Epoch, Instant)>>,
}

impl Shared {
    pub(crate) fn new(server_id: String, metrics: Arc<Metrics>) -> Shared {
        Shared {
            server_id,
            metrics,
            draining: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            boards: RwLock::new(HashMap::new()),
            departed: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers that `board` stopped here at `epoch`.
    pub(crate) fn depart(&self, board: &str, epoch: Epoch) {
        let mut departed = lock(&self.departed);
        if departed.len() >= DEPARTED_MAX {
            departed.retain(|_, (_, at)| at.elapsed() < DEPARTED_TTL);
        }
        if departed.len() >= DEPARTED_MAX {
            // Still full of recent departures: forgetting some only costs a plain NOT_FOUND
            // instead of "MOVED" for them, or a reload at an epoch they stopped at.
            departed.clear();
        }
        let entry = departed.entry(board.to_string()).or_insert((epoch, Instant::now()));
        *entry = (entry.0.max(epoch), Instant::now());
    }

    /// The epoch `board` last stopped at here, if remembered.
    pub(crate) fn departed_at(&self, board: &str) -> Option<Epoch> {
        let departed = lock(&self.departed);
        departed.get(board).filter(|(_, at)| at.elapsed() < DEPARTED_TTL).map(|(epoch, _)| *epoch)
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    pub(crate) fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Runs `f` on the table (the session's writes).
    pub(crate) fn with_boards<T>(&self, f: impl FnOnce(&mut HashMap<String, Hosted>) -> T) -> T {
        f(&mut write(&self.boards))
    }

    /// The command queue of a running board, or why there is none.
    pub(crate) fn lookup(&self, board: &str) -> Result<mpsc::Sender<Command>, GameError> {
        let server = || self.server_id.clone();
        if self.is_draining() {
            return Err(GameError::Draining { board: board.to_string(), server: server() });
        }
        let found = {
            let boards = read(&self.boards);
            match boards.get(board) {
                Some(Hosted::Running(handle)) => Some(Ok(handle.commands.clone())),
                Some(Hosted::Loading { .. }) => {
                    Some(Err(GameError::Loading { board: board.to_string(), server: server() }))
                }
                Some(Hosted::Broken { why, .. }) => {
                    Some(Err(GameError::Broken { board: board.to_string(), server: server(), why: why.clone() }))
                }
                None => None,
            }
        };
        match found {
            Some(result) => result,
            None if self.departed_at(board).is_some() => {
                Err(GameError::NotHere { board: board.to_string(), server: server() })
            }
            None => Err(GameError::NotServed { board: board.to_string(), server: server() }),
        }
    }

    /// (running boards, players on them), also published as gauges.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let boards = read(&self.boards);
        let mut running = 0u64;
        let mut players = 0u64;
        for hosted in boards.values() {
            if let Hosted::Running(handle) = hosted {
                running += 1;
                players += handle.players.load(Ordering::Relaxed) as u64;
            }
        }
        drop(boards);
        self.metrics.boards.set(i64::try_from(running).unwrap_or(i64::MAX));
        self.metrics.players.set(i64::try_from(players).unwrap_or(i64::MAX));
        (running, players)
    }
}
