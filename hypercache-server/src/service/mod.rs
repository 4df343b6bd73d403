//! The gRPC services a node serves. The client-facing ones (`hypercache.v1`) validate input, turn
//! each request into a replicated transaction or a local read, and convert between protobuf and
//! domain types; all state changes happen in the state machine, never as read-modify-write here.
//! Other nodes call the peer services (`hypercache.raft.v1`): [`RaftService`] (`peer.rs`, Raft
//! RPCs), [`PlacementService`] (placement steps), [`LeaseHomeService`] (lease-home questions) and
//! [`QuietService`] (beats of quiet shards).

mod boards;
pub mod cluster;
mod ctx;
mod election;
mod game_common;
mod kv;
mod lease;
mod lease_home;
mod peer;
mod peer_msg;
mod placement;
mod quiet;
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
pub use lease_home::LeaseHomeService;
pub use peer::RaftService;
pub use placement::PlacementService;
pub use quiet::QuietService;
pub use registry::RegistryService;
pub use validate::Validator;
