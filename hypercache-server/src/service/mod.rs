//! Client-facing gRPC services (`hypercache.v1`). They validate input, turn each request into a
//! replicated transaction or a local read, and convert between protobuf and domain types; all
//! state changes happen in the state machine, never as read-modify-write here.

mod boards;
pub mod cluster;
mod convert;
mod ctx;
mod election;
mod game_common;
mod kv;
mod lease;
mod registry;
mod stream;
mod validate;

pub use boards::BoardsService;
pub use cluster::ClusterService;
pub use ctx::Ctx;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use registry::RegistryService;
pub use validate::Validator;
