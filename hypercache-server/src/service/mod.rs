//! The gRPC services a node serves. The client-facing ones (`hypercache.v1`) validate input, turn
//! each request into a replicated transaction or a local read, and convert between protobuf and
//! domain types; all state changes happen in the state machine, never as read-modify-write here.
//! [`RaftService`] (`peer.rs`) is the peer service (`hypercache.raft.v1`) other nodes call.

mod boards;
pub mod cluster;
mod ctx;
mod election;
mod game_common;
mod kv;
mod lease;
mod peer;
mod registry;
mod stream;
mod validate;
mod wire;

pub use boards::BoardsService;
pub use cluster::ClusterService;
pub use ctx::Ctx;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use peer::RaftService;
pub use registry::RegistryService;
pub use validate::Validator;
