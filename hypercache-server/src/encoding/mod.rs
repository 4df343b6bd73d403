//! The server's two byte encodings, both postcard, in one leaf that names nothing else of the
//! crate:
//! - [`record`]: checksummed records, what is stored in sled (log entries, the vote,
//!   state-machine rows): `crc32 ++ postcard`, verified on every read.
//! - [`codec`]: bare postcard, what travels inside the peer services' protobuf `bytes` (openraft
//!   messages, placement steps, lease-home questions); gRPC already checks the transport.

pub mod codec;
pub mod record;
