//! The Orbstrike game server: hosts many boards in memory, ticks them, streams state to the
//! players (through the orchestrators), and checkpoints every board into HyperCache with fenced
//! syncs.
//!
//! # Model
//!
//! - **Ownership** of a board is an assignment in HyperCache's Boards service: `{server,
//!   incarnation, epoch}`. The server learns it from `WatchAssignments`, loads the board's
//!   checkpoint, and serves it at that epoch until the watch says otherwise, a sync is refused
//!   (`STALE_EPOCH`), or its registration lease is about to lapse. See [`session`] for the
//!   lifecycle and [`board_task`] for one board.
//! - **Liveness** is the registration lease, renewed by a `LeaseKeeper`. The server self-fences
//!   at `deadline - margin` (stops every board at once) and re-registers with a new incarnation if
//!   the lease is lost. Orchestrators reassign a dead server's boards only after the lease TTL
//!   plus a margin, so a fenced server has stopped before anyone else starts.
//! - **Rules** are [`crate::rules`], pure; the server only drives them.
//! - **Durability**: a checkpoint (prost `BoardCheckpoint`, sync seq = tick) every
//!   `checkpoint-interval-ms`, and before answering a join or an exit. A failover loses at most
//!   the ticks since the last checkpoint; players resume with a fresh snapshot.
//!
//! # Invariants
//!
//! - At most one server accepts inputs for a board at any time, given the orchestrators' rule
//!   above: inputs are applied only by a board task whose lease fence is safe and which has not
//!   been told (by the watch or a refused sync) that the board moved. The accept log
//!   (`--accept-log`) records every tick that applied inputs so tests can check this.
//! - No tick ever waits: not for the store, not for a slow player, not for the disk.
//!
//! # Not done (deliberately)
//!
//! - No TLS or authentication on the GameServer API: it is internal, reached only by
//!   orchestrators (which check player tokens); put it on a private network.
//! - A board whose checkpoint cannot be decoded is reported (FAILED_PRECONDITION) but neither
//!   repaired nor released: another server would fail the same way.
//! - A board deleted while owned ends its players' streams with "MOVED" when the watch reports
//!   the loss first, and with `GameOver { GAME_ENDED }` when a sync finds it gone first.

mod accept_log;
mod admin;
mod board_task;
mod checkpointer;
mod config;
mod error;
mod fence;
mod hosted;
mod loader;
mod metrics;
mod server;
mod service;
mod session;
mod subscribers;

pub use config::{Config, ConfigError, Settings};
pub use error::{GameError, MOVED_PREFIX};
pub use server::{run, GameServer, GameServerError};
pub use session::DrainReport;
