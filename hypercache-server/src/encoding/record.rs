//! Checksummed records: every value HyperCache stores in sled (log entries, vote, state-machine
//! rows) is `crc32(payload) as big-endian u32 ++ payload`, where the payload is postcard.
//!
//! The checksum is verified on every read, so a flipped bit on disk surfaces as a
//! [`RecordError::Checksum`] naming what was read instead of a silently wrong value or a decode
//! panic deep inside openraft.

use serde::de::DeserializeOwned;
use serde::Serialize;

const CRC_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, shorter than its 4-byte checksum")]
    TooShort(usize),
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("checksum ok but the payload does not decode: {0}")]
    Decode(postcard::Error),
    #[error("encoding: {0}")]
    Encode(postcard::Error),
}

/// Encodes `value` as a checksummed record.
pub fn seal<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    let mut out = postcard::to_extend(value, vec![0u8; CRC_LEN]).map_err(RecordError::Encode)?;
    let crc = crc32fast::hash(&out[CRC_LEN..]);
    out[..CRC_LEN].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Verifies and decodes a record written by [`seal`].
pub fn unseal<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    let payload = verify(bytes)?;
    postcard::from_bytes(payload).map_err(RecordError::Decode)
}

/// Verifies the checksum and returns the payload.
pub fn verify(bytes: &[u8]) -> Result<&[u8], RecordError> {
    if bytes.len() < CRC_LEN {
        return Err(RecordError::TooShort(bytes.len()));
    }
    let (crc, payload) = bytes.split_at(CRC_LEN);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_single_bit_flip_is_detected() {
        let rec = seal(&("key", 42u64, vec![1u8, 2, 3])).unwrap();
        let back: (String, u64, Vec<u8>) = unseal(&rec).unwrap();
        assert_eq!(back, ("key".to_string(), 42, vec![1, 2, 3]));
        for byte in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                assert!(unseal::<(String, u64, Vec<u8>)>(&bad).is_err(), "flip {byte}:{bit} undetected");
            }
        }
        assert!(matches!(unseal::<u8>(&[1, 2]), Err(RecordError::TooShort(2))));
    }
}
