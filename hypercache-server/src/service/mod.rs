//! Client-facing gRPC services (`hypercache.v1`). They validate input, turn each request into a
//! replicated transaction or a local read, and convert between protobuf and domain types; all
//! state changes happen in the state machine, never as read-modify-write here.

mod cluster;
mod convert;
mod kv;
mod validate;

pub use cluster::ClusterService;
pub use kv::KvService;
pub use validate::Validator;
