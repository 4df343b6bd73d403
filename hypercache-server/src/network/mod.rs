//! Raft peer transport over tonic.
//!
//! - [`PeerPool`]: one lazily connected gRPC channel per peer address, shared by every shard, so a
//!   node pair keeps one HTTP/2 connection however many Raft groups they share.
//! - [`NetworkFactory`] / [`PeerClient`]: openraft's outbound side for one shard. Each message is
//!   the openraft request encoded with postcard inside a `RaftMessage` tagged with the shard id.
//! - [`batch::AppendBatcher`]: one per peer; every shard's AppendEntries to that peer leave
//!   through it, several shards' messages in one `AppendBatch` call under load.
//! - [`Links`]: test control over which Raft messages this node sends to which peer.
//! - [`admit::Admission`]: the inbound check that a message is meant for this node's incarnation
//!   and cluster; the inbound services themselves are in `service/` (`peer.rs` for Raft,
//!   `placement.rs` and `lease_home.rs` for the other peer calls, which use the same
//!   connections).
//!
//! Peers are addressed by `host:port` names. A channel resolves its name every time it
//! (re)connects, so a peer whose IP changed behind a stable DNS name is reached at its new address
//! after the first failed attempt; nothing resolves a name once and keeps the IP.

pub(crate) mod admit;
pub(crate) mod batch;
mod client;
mod links;
#[cfg(test)]
pub(crate) mod old_peer;
pub mod peer_call;
mod pool;

pub use client::{NetworkFactory, PeerClient, SnapshotHeader, SNAPSHOT_PIECE_BYTES};
pub use links::{Links, RaftRpc};
pub use pool::{BadPeerAddr, PeerPool};
