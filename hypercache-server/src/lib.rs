//! HyperCache node: sled storage, openraft replication, gRPC services, admin HTTP.
//!
//! Module map (one concept each):
//! - [`config`]: the strict node configuration.
//! - [`identity`]: node id from the data dir, config or StatefulSet ordinal.
//! - [`discovery`]: finding peers (DNS A/SRV, static) and forming or joining a cluster.
//! - [`membership`]: leader-driven joins (learner -> voter) and decommission.
//! - [`storage`]: sled-backed Raft log, state machine, snapshots (the four Raft seams' storage half).
//! - [`network`]: the Raft transport over tonic (outbound client, batching, admission, peer pool).
//! - [`machine`]: the state machine's request logic (KV transactions, leases, registry, boards,
//!   elections), pure over an overlay of rows.
//! - [`watch_hub`]: watch fan-out and the bounded event history.
//! - [`lease_clock`]: lease deadlines on the shard leader, and the expiry driver.
//! - [`proposer`]: batching of concurrent writes into one Raft entry.
//! - [`raft_config`]: the openraft configuration every shard runs with.
//! - [`raft_types`]: openraft's type configuration (what an entry carries and answers).
//! - [`read_index`]: coalesced read-index barriers for linearizable reads.
//! - [`encoding`]: the two byte encodings: checksummed records for everything stored (log
//!   entries, vote, rows) and bare postcard for the peer services' payloads.
//! - [`routing`]: key -> shard routing and hash tags.
//! - [`placement`]: where data shards' replicas live (the document in the meta group).
//! - [`placement_driver`]: the placement driver that moves them, and the steps nodes carry out.
//! - [`replica`]: opening and closing shard replicas on a running node.
//! - [`replica_status`]: what a replica reports about itself (role, term, membership, progress).
//! - [`shard`]: one Raft group's replica and its read/write paths; [`shard::Shards`] routes by id.
//! - [`service`]: the client-facing `hypercache.v1` gRPC services, and the peer services.
//! - [`node`]: wiring: storage + Raft + servers + bootstrap + graceful shutdown.
//! - [`admin`]: the admin HTTP port (`/metrics`, `/livez`, `/readyz`).
//! - [`dev`]: `hypercache dev`, a local multi-process cluster.
//! - [`local_cluster`]: nodes of one cluster in one process on loopback (the tests' clusters).
//! - [`failpoints`]: bugs on purpose for the chaos suite (cargo feature `failpoints`, off by default).

pub mod admin;
pub mod batching;
pub mod bootstrap;
pub mod config;
pub mod contact;
pub mod dev;
pub mod discovery;
pub mod encoding;
pub mod error;
pub mod failpoints;
pub mod handover;
pub mod identity;
pub mod inspect;
pub mod lease_clock;
pub mod lease_home;
pub mod lease_renewal;
pub mod local_cluster;
pub mod machine;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod placement;
pub mod placement_driver;
pub mod proposer;
pub mod quiet;
pub mod raft_config;
pub mod raft_handle;
pub mod raft_types;
pub mod read_index;
pub mod replica;
pub mod replica_status;
pub mod routing;
pub mod service;
pub mod shard;
pub mod storage;
pub mod types;
pub mod watch_hub;
