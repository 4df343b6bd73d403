//! Client-facing gRPC services (`hypercache.v1`). They validate input, turn each request into a
//! replicated transaction or a local read, and convert between protobuf and domain types; all
//! state changes happen in the state machine, never as read-modify-write here.

mod cluster;
mod convert;
mod ctx;
mod kv;
mod stream;
mod validate;

pub use cluster::ClusterService;
pub use ctx::Ctx;
pub use kv::KvService;
pub use validate::Validator;
