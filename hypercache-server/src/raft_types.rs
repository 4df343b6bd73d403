//! Openraft's type configuration for HyperCache shards: what a log entry carries (a
//! [`Command`]), what applying it answers (a [`CommandResponse`]), and how a member is named
//! ([`NodeInfo`]). Every Raft seam (log store, state machine, network, node wiring) is generic
//! over it, so it is a leaf of its own rather than part of the domain types or the command
//! language it names.

use std::io::Cursor;

use crate::machine::command::{Command, CommandResponse};
use crate::types::{NodeId, NodeInfo};

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
