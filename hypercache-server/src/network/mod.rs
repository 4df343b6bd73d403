//! Raft peer transport over tonic.
//!
//! - [`PeerPool`]: one lazily connected gRPC channel per peer address, shared by every shard, so a
//!   node pair keeps one HTTP/2 connection however many Raft groups they share.
//! - [`NetworkFactory`] / [`PeerClient`]: openraft's outbound side for one shard. Each message is
//!   the openraft request encoded with postcard inside a `RaftMessage` tagged with the shard id.
//! - [`batch::AppendBatcher`]: one per peer; every shard's AppendEntries to that peer leave
//!   through it, several shards' messages in one `AppendBatch` call under load.
//! - [`Links`]: test control over which Raft messages this node sends to which peer.
//! - [`RaftService`]: the inbound side: routes a message to its shard's `Raft` by shard id,
//!   after [`admit::Admission`] checked it is meant for this node's incarnation and cluster.
//!
//! Peers are addressed by `host:port` names. A channel resolves its name every time it
//! (re)connects, so a peer whose IP changed behind a stable DNS name is reached at its new address
//! after the first failed attempt; nothing resolves a name once and keeps the IP.

mod admit;
mod batch;
mod client;
pub(crate) mod codec;
mod links;
mod pool;
mod service;

pub use client::{NetworkFactory, PeerClient};
pub use links::{Links, RaftRpc};
pub use pool::{BadPeerAddr, PeerPool};
pub use service::RaftService;
