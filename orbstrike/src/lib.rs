//! Orbstrike: a multiplayer arena game backend built on HyperCache.
//!
//! - [`rules`]: the server-authoritative game rules, pure and deterministic given a seed.
//! - [`gameserver`]: hosts boards in memory, ticks them, checkpoints them with fenced syncs.
//! - [`orchestrator`]: the stateless public API; placement, tokens, proxying, failover.
//! - [`bot`]: scripted players for demos, load tests and the chaos suite.
//! - [`net`], [`process`]: what the binaries share (accepting connections, logging, signals).

pub mod bot;
pub mod demo;
pub mod gameserver;
pub mod net;
pub mod orchestrator;
pub mod process;
pub mod rules;
