//! The orchestrator: Orbstrike's stateless public API, run as several replicas.
//!
//! # Model
//!
//! Players talk only to orchestrators (`orbstrike.v1.Orchestrator`); game servers own boards in
//! memory and are reached only through orchestrators. An orchestrator keeps no state of its own
//! that another replica would need: games live in HyperCache as boards (owner record + fenced
//! checkpoint), game servers in the HyperCache registry, and a player's identity travels in an
//! HMAC-signed token every replica can check. Any replica can therefore serve any call, and a
//! player may join through one and play through another.
//!
//! Each replica keeps a *local view* (see [`placement`]), fed by the registry
//! watch and a periodic scan of all boards, so that placing a game or routing a player costs no
//! store scan per request (the original scanned every server on every create and connect).
//!
//! | Call        | What happens                                                               |
//! |-------------|----------------------------------------------------------------------------|
//! | CreateGame  | validate params, rate limit, `Boards.Create` + `Assign(epoch 0)` to the least-loaded live server with room |
//! | JoinGame    | `Boards.Get` -> owner -> `GameServer.AddPlayer` -> signed token            |
//! | ExitGame    | token -> owner -> `GameServer.RemovePlayer`                                |
//! | Play        | token -> owner -> `GameServer.Play`, re-routed when the board moves        |
//! | ListGames   | `Boards.List`, params decoded from the board                               |
//! | WatchStats  | one poller per orchestrator, pushed to every subscriber                    |
//!
//! One replica is the **failover master** (HyperCache election with a fencing term): it moves
//! boards off servers whose registration is gone (after the lease TTL, plus a margin) and places
//! boards that a draining server released.
//!
//! # Invariants
//!
//! - Ownership is decided by the store, never by an orchestrator's view: every assignment is a
//!   compare-and-swap on the board's epoch (`expected_epoch`), and the master's assignments also
//!   carry its election term, so a stale view or a deposed master can only cause a refused write.
//! - A player stream is forwarded to at most one game server at a time, and only to the owner
//!   the store names (at the epoch it names, or a newer one after a `MOVED`).
//! - Nothing blocks on a lock across an `.await`; every wait on the store or a game server is
//!   bounded by a deadline.
//!
//! # Not done (deliberately)
//!
//! - The per-client create limit is per replica (R replicas allow R x rate); a global limit
//!   would cost a store write per create.
//! - Tokens are not revocable and are checked only at hello; a stream outlives its token.
//! - No TLS yet between orchestrators and game servers (the channel pool is the place for it).

mod admin;
mod config;
mod error;
mod failover;
mod game;
mod metrics;
mod node;
mod orphans;
pub mod placement;
mod pool;
mod proxy;
pub mod ratelimit;
mod route;
mod service;
mod shared;
mod stats;
pub mod token;
mod view_feeds;

pub use config::{Config, ConfigError, OrchestratorArgs, DEFAULT_ELECTION, DEFAULT_LISTEN, DEFAULT_TICK_HZ};
pub use error::Error;
pub use node::{run, Orchestrator, SHUTDOWN_GRACE};
pub use service::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
