//! Domain types shared by storage, replication and services: the ids of nodes, shards, leases,
//! clients and data-dir lives, what membership records about a node, and a key as clients see
//! it. A leaf: it names nothing of the modules that use it. The replicated command language is
//! `machine/command.rs`; openraft's type configuration is `raft_types.rs`.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Node id as openraft sees it. Openraft's storage test suite needs `NodeId: From<u64>`, so this
/// stays a plain `u64`; ids come from config (`--node-id`) and are never 0.
pub type NodeId = u64;

/// Identifies one Raft group (a shard). Today every cluster has exactly [`ShardId::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The first data shard (the only one of a single-shard cluster).
    pub const DEFAULT: ShardId = ShardId(0);
    /// The meta group: cluster membership and the placement. Every node is a member; it takes no
    /// client requests. Data shards are `0..shard_count`.
    pub const META: ShardId = ShardId(u32::MAX);

    pub fn is_meta(self) -> bool {
        self == ShardId::META
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_meta() {
            f.write_str("meta")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// One life of a node's data dir: chosen at random when the dir is created, never 0. A node that
/// restarts on the same data keeps it; a node restarted on an empty volume gets a new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What membership records about a node: names, never IPs. `addr` is `host:port` of the node's
/// gRPC endpoint (clients and peers share it) and is resolved each time a connection is made.
/// `incarnation` is the node's data dir as membership knows it (`identity.rs`): every Raft message
/// to the node names it, and the node refuses messages for another one.
///
/// Changing this struct changes the storage format (postcard, in log entries and snapshots):
/// data dirs from before `incarnation` existed are refused at start (`IdentityError::OldFormat`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub addr: String,
    pub incarnation: Incarnation,
}

impl NodeInfo {
    /// The same node name and endpoint, whatever the incarnation.
    pub fn same_endpoint(&self, other: &NodeInfo) -> bool {
        self.name == other.name && self.addr == other.addr
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// A key with its metadata, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: u64,
    /// Revision of the last write to the key.
    pub mod_revision: u64,
    /// Writes since creation: 1 after the first put.
    pub version: u64,
    /// The lease the key is attached to; [`LeaseId::NONE`] for none.
    pub lease: LeaseId,
}

/// Lease ids are allocated by the shard's state machine: `shard << 48 | counter`, never reused,
/// never 0, so the id alone tells a lease's home shard (the one that keeps it alive and ends it;
/// keys of other shards may hang on it, see `lease_home.rs`). Encoded as the bare number
/// (`serde(transparent)`): the log, snapshots and peer messages hold the same bytes as when this
/// was a `u64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

impl LeaseId {
    /// What a key attached to no lease records.
    pub const NONE: LeaseId = LeaseId(0);

    /// The `counter`-th lease granted by `shard`.
    pub fn new(shard: ShardId, counter: u64) -> LeaseId {
        LeaseId(hypercache_proto::keys::lease_id(shard.0, counter))
    }

    pub fn is_none(self) -> bool {
        self == LeaseId::NONE
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The shard that granted lease `id` and alone decides when it ends.
pub fn home_of(id: LeaseId) -> ShardId {
    ShardId(hypercache_proto::keys::lease_shard(id.0))
}

/// A client instance's random identity (16 bytes), chosen by the client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub [u8; 16]);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lease ids sit in log entries, snapshots, rows and peer messages as bare numbers; the
    /// newtype must not change a byte of them.
    #[test]
    fn a_lease_id_encodes_as_the_number_it_wraps() {
        for n in [0, 7, 200, (3 << 48) | 5, u64::MAX] {
            assert_eq!(postcard::to_stdvec(&LeaseId(n)).unwrap(), postcard::to_stdvec(&n).unwrap());
        }
        assert_eq!(LeaseId::new(ShardId(3), 5), LeaseId((3 << 48) | 5));
        assert_eq!(home_of(LeaseId::new(ShardId(3), 5)), ShardId(3));
        assert!(LeaseId::NONE.is_none() && !LeaseId(1).is_none());
    }
}
