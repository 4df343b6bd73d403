//! postcard encoding of what the peer services carry inside protobuf `bytes` (openraft messages,
//! placement steps, lease-home questions).

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("peer payload codec: {0}")]
pub struct CodecError(#[from] postcard::Error);

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(bytes)?)
}
