//! The placement driver: on the meta group's leader, makes the data shards' replicas match the
//! placement (`crate::placement`), and on every node, carries out the steps it asks for.
//!
//! - [`ops`]: the steps a node carries out for the driver (open/close a replica, initialize a
//!   shard, add a learner, change voters, start an election).
//! - [`decide`]: the pure part of the driver: from the placement and the nodes' reports, the
//!   steps of a round, the down nodes, and whether a draining node may leave.
//! - [`driver`]: the reconcile loop on the meta leader: polls, writes the placement, sends steps.

pub mod decide;
pub mod driver;
pub mod ops;
