//! HyperCache node: sled storage, openraft replication, gRPC services, admin HTTP.
//!
//! Module map (one concept each):
//! - [`config`]: the strict node configuration.
//! - [`storage`]: sled-backed Raft log, state machine, snapshots (the four Raft seams' storage half).
//! - [`network`]: Raft transport over tonic (outbound client, inbound service, peer pool).
//! - [`proposer`]: batching of concurrent writes into one Raft entry.
//! - [`read_index`]: coalesced read-index barriers for linearizable reads.
//! - [`shard`]: one Raft group's replica and its read/write paths; [`shard::Shards`] routes by id.
//! - [`service`]: the client-facing `hypercache.v1` gRPC services.
//! - [`node`]: wiring: storage + Raft + servers + bootstrap + graceful shutdown.
//! - [`admin`]: the admin HTTP port (`/metrics`, `/livez`, `/readyz`).
//! - [`dev`]: `hypercache dev`, a local multi-process cluster.

pub mod admin;
pub mod bootstrap;
pub mod config;
pub mod dev;
pub mod error;
pub mod metrics;
pub mod network;
pub mod node;
pub mod proposer;
pub mod read_index;
pub mod service;
pub mod shard;
pub mod storage;
pub mod types;
