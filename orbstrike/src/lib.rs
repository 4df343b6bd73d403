//! Orbstrike: a multiplayer arena game backend built on HyperCache.
//!
//! - [`rules`]: the server-authoritative game rules, pure and deterministic given a seed.
//! - [`gameserver`]: hosts boards in memory, ticks them, checkpoints them with fenced syncs.
//! - [`orchestrator`]: the stateless public API; placement, tokens, proxying, failover.
//! - [`bot`]: scripted players for demos, load tests and the chaos suite.
//! - [`net`], [`process`]: what the binaries share (accepting connections, logging, signals).
//! - [`proto`]: the generated Orbstrike wire protocol (`orbstrike.v1`).

pub mod bot;
pub mod demo;
pub mod gameserver;
pub mod net;
pub mod orchestrator;
pub mod process;
pub mod rules;

/// The generated Orbstrike wire protocol, from `proto/proto/orbstrike/v1/orbstrike.proto` at the
/// top of the workspace: the public `Orchestrator` API and the internal `GameServer` API.
/// Protobuf stays at the edge: services and clients convert these messages to the domain types
/// of [`rules`], [`gameserver`] and [`orchestrator`].
pub mod proto {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("orbstrike.v1");
    }
}
