//! The handle of one shard replica's Raft group. openraft 0.10 types a `Raft` by its state
//! machine too (for snapshot data and state-machine requests); this alias names that pairing
//! once, apart from [`crate::raft_types`], which the state machine itself depends on.

use crate::raft_types::TypeConfig;
use crate::storage::StateMachine;

/// A shard replica's Raft group: cheap to clone, every clone drives the same group.
pub type ShardRaft = openraft::Raft<TypeConfig, StateMachine>;
