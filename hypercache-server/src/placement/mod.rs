//! Placement: which nodes hold each data shard's replicas, decided by the placement driver (the
//! meta group's leader) and recorded in the meta group.
//!
//! - [`plan`]: the pure part: the placement document and the target replica sets, computed by
//!   consistent hashing over node names so that adding or removing a node moves few replicas.
//! - [`store`]: reading and writing the document in the meta group (compare-and-swap on its
//!   revision, so two drivers never overwrite each other).
//! - [`ops`]: the steps a node carries out for the driver (open/close a replica, initialize a
//!   shard, add a learner, change voters, start an election).
//! - [`decide`]: the pure part of the driver: from the placement and the nodes' reports, the
//!   steps of a round, the down nodes, and whether a draining node may leave.
//! - [`driver`]: the reconcile loop on the meta leader: polls, writes the placement, sends steps.

pub mod decide;
pub mod driver;
pub mod ops;
pub mod plan;
pub mod store;

pub use plan::{Placement, ShardPlan};
