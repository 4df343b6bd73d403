//! Openraft's type configuration for HyperCache shards: what a log entry carries (a
//! [`Command`]), what applying it answers (a [`CommandResponse`]), and how a member is named
//! ([`NodeInfo`]). Every Raft seam (log store, state machine, network, node wiring) is generic
//! over it, so it is a leaf of its own rather than part of the domain types or the command
//! language it names. The aliases below spell openraft's generic types for this one
//! configuration, so the rest of the node never repeats the type parameters.

use crate::machine::command::{Command, CommandResponse};
use crate::types::{NodeId, NodeInfo};

openraft::declare_raft_types!(
    /// Openraft type configuration for HyperCache shards. Term, leader id (term + node, the
    /// "advanced" mode that allows several candidates per term) and vote keep openraft's
    /// defaults, which store the same fields as openraft 0.9 did.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = NodeInfo,
);

/// A log position: the leader that wrote it and its index.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// The leader id stored in a [`LogId`] (term and node).
pub type CommittedLeaderId = openraft::alias::CommittedLeaderIdOf<TypeConfig>;
/// A vote (for a term and candidate, committed once a quorum granted it).
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// One Raft log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// What a [`Entry`] carries: nothing (a leader's blank), a command, or a membership.
pub type EntryPayload = openraft::alias::EntryPayloadOf<TypeConfig>;
/// A shard's members: voters and learners with their addresses.
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
/// A membership with the log position that set it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
