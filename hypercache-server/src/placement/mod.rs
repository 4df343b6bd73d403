//! Placement: which nodes hold each data shard's replicas, as recorded in the meta group. The
//! document and its home only; the placement driver, which decides and carries out changes, is
//! `placement_driver/`, above the replicas it opens and closes. Kept apart so that what only
//! reads the placement (lease homes, the Cluster service, request contexts) sits below them.
//!
//! - [`plan`]: the pure part: the placement document and the target replica sets, computed by
//!   consistent hashing over node names so that adding or removing a node moves few replicas.
//! - [`store`]: reading and writing the document in the meta group (compare-and-swap on its
//!   revision, so two drivers never overwrite each other).

pub mod plan;
pub mod store;

pub use plan::{Placement, ShardPlan};
