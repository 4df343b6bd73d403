//! Domain types shared by storage, replication and services.
//!
//! The replicated state machine speaks one command, [`Command::Tracked`] (logs written before
//! exactly-once writes hold [`Command::Batch`]): a list of [`Request`]s applied in order, each
//! atomically on its own, each with the [`WriteId`] that makes a client's write exactly-once
//! (`machine/session.rs`). A request is a KV transaction (guards, then the ops of one branch), a
//! lease operation, or a game-state operation (registry, boards, elections; see `machine/`). Put,
//! Delete and CompareAndSwap are transactions, so the KV apply path is one. A log entry carries a
//! batch because openraft's cost is per entry: the leader packs concurrent proposals into one
//! entry (see `proposer.rs`).
//!
//! Revisions are a per-shard counter kept by the state machine: every request that changes the
//! key space takes the next revision, in log order, so revisions strictly increase and are the
//! same on every replica. A request that changes no key (a failed compare-and-swap, deleting a
//! missing key, granting a lease) takes none and reports the current one.

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
    /// The lease the key is attached to; 0 for none.
    pub lease: LeaseId,
}

/// Lease ids are allocated by the shard's state machine: `shard << 48 | counter`, never reused,
/// never 0, so the id alone tells a lease's home shard (the one that keeps it alive and ends it;
/// keys of other shards may hang on it, see `lease_home.rs`).
pub type LeaseId = u64;

/// A replicated command: the payload of a normal Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Independent requests applied in order, each atomically. Written by nodes before
    /// exactly-once writes; still applied (as untracked requests that do not move the log clock).
    Batch(Vec<Request>),
    /// Independent requests applied in order, each atomically, each deduplicated by its
    /// [`WriteId`] when it has one (see `machine/session.rs`). `time_ms` is the proposing
    /// leader's wall clock (ms since the Unix epoch); the state machine's log clock is the
    /// largest such time applied so far, which is what idle client sessions expire by.
    Tracked { time_ms: u64, requests: Vec<Tracked> },
}

/// A request and the identity that makes it exactly-once (None: internal requests such as lease
/// expiry, and clients that send no write id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    pub write: Option<WriteId>,
    pub request: Request,
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

/// One write of one client: every attempt of the write carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteId {
    pub client: ClientId,
    /// 1, 2, 3, ... per client (across all shards; a shard sees a subsequence, in any order).
    pub seq: u64,
    /// The lowest seq the client still waits for (<= `seq`): replies below it may be forgotten.
    pub first_incomplete: u64,
}

/// One atomic state-machine operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Txn(Txn),
    Lease(LeaseOp),
    Game(crate::machine::game::GameOp),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOp {
    Grant {
        ttl_ms: u64,
    },
    /// Deletes the lease and everything attached to it.
    Revoke {
        id: LeaseId,
    },
    /// Proposed by the shard leader when the leases' deadlines passed (see `lease_clock.rs`).
    /// Ids that no longer exist are skipped.
    Expire {
        ids: Vec<LeaseId>,
    },
    /// Proposed by this shard's leader once the home shards of these leases (other shards) have
    /// committed their end (see `lease_home.rs`): deletes the follower records and their keys.
    /// Ids of this shard's own leases, and ids no longer followed here, are skipped.
    HomeEnded {
        ids: Vec<LeaseId>,
    },
}

/// Guards, then ops; applied atomically at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// An equality guard on one key's current state. A missing key has value "absent" and
/// `mod_revision`, `create_revision` and `version` 0, so `ModRevision(0)` means "must not exist".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Bytes,
    pub target: CompareTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Exists(bool),
    /// The key exists and holds exactly this value.
    Value(Bytes),
    ModRevision(u64),
    CreateRevision(u64),
    Version(u64),
    /// The key's lease (0: none or missing key).
    Lease(LeaseId),
}

/// One operation inside a transaction. Later ops see the effects of earlier ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Get { key: Bytes },
    Put { key: Bytes, value: Bytes, prev_kv: bool, attach: Attach },
    Delete { key: Bytes, prev_kv: bool },
}

/// What a put does with the key's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Attach {
    /// No lease (any previous attachment ends).
    #[default]
    None,
    /// Attach to an existing lease; the put fails with LEASE_NOT_FOUND if it does not exist.
    Lease(LeaseId),
    /// A per-key TTL: a lease of the key's own, removed with the key or when it is overwritten.
    Ttl(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Get {
        kv: Option<KeyValue>,
    },
    /// `prev` is filled only when the op asked for it.
    Put {
        prev: Option<KeyValue>,
        kv: KeyValue,
    },
    Delete {
        deleted: bool,
        prev: Option<KeyValue>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    pub succeeded: bool,
    /// One result per op of the branch that ran.
    pub results: Vec<OpResult>,
}

/// What a successful request produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Txn(TxnResult),
    LeaseGranted {
        id: LeaseId,
        ttl_ms: u64,
    },
    /// Revoke, expire or home-ended: how many keys of this shard went with the lease(s).
    LeasesEnded {
        deleted_keys: u64,
    },
    Game(crate::machine::game::GameReply),
}

/// One request's outcome: a reply, or a rejection that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The revision the request wrote at, or the current revision if it changed nothing.
    pub revision: u64,
    pub outcome: Result<Reply, crate::machine::Rejection>,
}

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries produce nothing.
    None,
    /// One result per request of a [`Command::Batch`] or [`Command::Tracked`], in order.
    Batch(Vec<Applied>),
}
