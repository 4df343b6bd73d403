//! Domain types shared by storage, replication and services.
//!
//! The replicated state machine speaks one command, [`Command::Batch`]: transactions, each a list
//! of guards ([`Compare`]) followed by the ops to run when they all hold (`success`) or when any
//! fails (`failure`). Put, Delete and CompareAndSwap are all expressed as transactions, so there is
//! one apply path to get right and later primitives (leases, fencing) extend it rather than fork it.
//! A log entry carries a batch because openraft's cost is per entry: the leader packs concurrent
//! proposals into one entry (see `proposer.rs`).
//!
//! Revisions are a per-shard counter kept by the state machine: every transaction that changes
//! something takes the next revision, in log order, so revisions strictly increase and are the
//! same on every replica. A transaction that changes nothing (a failed compare-and-swap, deleting a
//! missing key) takes none and reports the current one.

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Node id as openraft sees it. Openraft's storage test suite needs `NodeId: From<u64>`, so this
/// stays a plain `u64`; ids come from config (`--node-id`) and are never 0.
pub type NodeId = u64;

/// Identifies one Raft group (a shard). Today every cluster has exactly [`ShardId::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u32);

impl ShardId {
    pub const DEFAULT: ShardId = ShardId(0);
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What membership records about a node: names, never IPs. `addr` is `host:port` of the node's
/// gRPC endpoint (clients and peers share it) and is resolved each time a connection is made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// Openraft type configuration for HyperCache shards.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

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
}

/// A replicated command: the payload of a normal Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Independent transactions applied in order, each atomically.
    Batch(Vec<Txn>),
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
}

/// One operation inside a transaction. Later ops see the effects of earlier ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Get { key: Bytes },
    Put { key: Bytes, value: Bytes, prev_kv: bool },
    Delete { key: Bytes, prev_kv: bool },
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

/// One transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The revision the transaction wrote at, or the current revision if it changed nothing.
    pub revision: u64,
    pub result: TxnResult,
}

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries produce nothing.
    None,
    /// One result per transaction of a [`Command::Batch`], in order.
    Batch(Vec<Applied>),
}
