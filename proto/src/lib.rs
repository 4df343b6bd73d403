//! HyperCache wire protocol.
//!
//! - [`v1`]: the client API (`hypercache.v1`): KV and Cluster services, and [`v1::ErrorInfo`],
//!   the error details every server-generated status carries, and [`Reason`], the stable codes
//!   in its `reason` field.
//! - [`raft::v1`]: peer traffic (`hypercache.raft.v1`): Raft RPCs tagged with a shard id.
//!
//! - [`Reason`] ([`reason`]): the stable error reasons, declared once for both sides; [`keys`]: key
//!   arithmetic both sides must agree on; [`poison`]: the workspace's one policy for poisoned std
//!   locks (here because every member depends on this crate); `stop_signal` (feature
//!   `stop-signal`): how every long-running binary of the workspace waits to be stopped.
//!
//! Generated types stay at the edge: server and client convert them to domain types.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("hypercache.v1");
}

pub mod raft {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("hypercache.raft.v1");
    }
}

pub mod error_info;
pub mod keys;
pub mod poison;
pub mod reason;
pub mod role;
pub mod routing;
#[cfg(feature = "stop-signal")]
pub mod stop_signal;

pub use reason::Reason;
pub use role::{Role, UnknownRole};
