//! The bytes of the node's Raft log: segment headers, record batches and records.
//!
//! A segment file is a 16-byte header (`SEGMENT_MAGIC`, then its sequence number as little-endian
//! u64) followed by batches. A batch is what one write put down at once:
//!
//! ```text
//! BATCH_MAGIC u32 | payload length u32 | crc32(payload) u32 | payload
//! ```
//!
//! and its payload is a run of records, `kind u8 | shard u32 | body length u32 | body` (all
//! little-endian). Bodies that carry openraft values (entries, votes, log ids) are checksummed
//! records of their own ([`crate::encoding::record`]), so an entry read back later by its position
//! is verified again, independently of the batch it came in.

use crate::types::ShardId;

pub const SEGMENT_MAGIC: &[u8; 8] = b"HCWAL\0v1";
pub const SEGMENT_HEADER_LEN: u64 = 16;
const BATCH_MAGIC: u32 = 0x3142_4348; // "HCB1"
pub const BATCH_HEADER_LEN: usize = 12;
const RECORD_HEADER_LEN: usize = 9;

/// What a record says about one shard's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The shard has a replica here (written when it first opens and in every checkpoint).
    Open = 1,
    /// One log entry; the body is the sealed `Entry`.
    Entry = 2,
    /// The sealed `Vote`.
    Vote = 3,
    /// The sealed `Option<LogId>` last known committed.
    Committed = 4,
    /// Entries from this index on are gone; the body is the index, u64 little-endian.
    Truncate = 5,
    /// Entries up to and including this sealed `LogId` are gone (snapshotted).
    Purge = 6,
    /// The replica was closed: everything about the shard is gone.
    Drop = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Open,
            2 => Kind::Entry,
            3 => Kind::Vote,
            4 => Kind::Committed,
            5 => Kind::Truncate,
            6 => Kind::Purge,
            7 => Kind::Drop,
            _ => return None,
        })
    }
}

pub fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// The sequence number in a segment header, or None if the header is not one.
pub fn parse_segment_header(h: &[u8]) -> Option<u64> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[..8] != SEGMENT_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(h[8..16].try_into().ok()?))
}

/// Builds one batch. Records are appended with [`BatchBuilder::record`]; `finish` frames them.
pub struct BatchBuilder {
    buf: Vec<u8>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder { buf: vec![0u8; BATCH_HEADER_LEN] }
    }

    /// Appends a record; returns the offset of its body from the start of the batch.
    pub fn record(&mut self, kind: Kind, shard: ShardId, body: &[u8]) -> usize {
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&shard.0.to_le_bytes());
        self.buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(body);
        at
    }

    /// The framed batch, ready to write.
    pub fn finish(mut self) -> Vec<u8> {
        let payload_len = (self.buf.len() - BATCH_HEADER_LEN) as u32;
        let crc = crc32fast::hash(&self.buf[BATCH_HEADER_LEN..]);
        self.buf[..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Why the bytes at some position are not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0} bytes left, shorter than a batch header")]
    ShortHeader(usize),
    #[error("no batch marker ({0:#010x})")]
    Magic(u32),
    #[error("batch of {len} bytes runs past the end ({left} bytes left)")]
    ShortPayload { len: usize, left: usize },
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record {at} of the batch is malformed: {what}")]
    Record { at: usize, what: &'static str },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Verifies the batch at the start of `bytes`; returns its payload and its whole length.
pub fn read_batch(bytes: &[u8]) -> Result<(&[u8], usize), BatchError> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(BatchError::ShortHeader(bytes.len()));
    }
    let magic = u32_at(bytes, 0);
    if magic != BATCH_MAGIC {
        return Err(BatchError::Magic(magic));
    }
    let len = u32_at(bytes, 4) as usize;
    let left = bytes.len() - BATCH_HEADER_LEN;
    if len > left {
        return Err(BatchError::ShortPayload { len, left });
    }
    let payload = &bytes[BATCH_HEADER_LEN..BATCH_HEADER_LEN + len];
    let stored = u32_at(bytes, 8);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(BatchError::Checksum { stored, computed });
    }
    Ok((payload, BATCH_HEADER_LEN + len))
}

/// One record of a verified batch; `body_at` is the body's offset within the payload.
#[derive(Debug)]
pub struct RawRecord<'a> {
    pub kind: Kind,
    pub shard: ShardId,
    pub body: &'a [u8],
    pub body_at: usize,
}

/// The records of a verified batch payload, in order.
pub fn records(payload: &[u8]) -> Result<Vec<RawRecord<'_>>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let n = out.len();
        if payload.len() - at < RECORD_HEADER_LEN {
            return Err(BatchError::Record { at: n, what: "truncated record header" });
        }
        let kind = Kind::from_u8(payload[at]).ok_or(BatchError::Record { at: n, what: "unknown record kind" })?;
        let shard = ShardId(u32_at(payload, at + 1));
        let len = u32_at(payload, at + 5) as usize;
        let body_at = at + RECORD_HEADER_LEN;
        if payload.len() - body_at < len {
            return Err(BatchError::Record { at: n, what: "record body runs past the batch" });
        }
        out.push(RawRecord { kind, shard, body: &payload[body_at..body_at + len], body_at });
        at = body_at + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_batch_round_trips_and_every_bit_flip_is_caught() {
        let mut b = BatchBuilder::new();
        let at = b.record(Kind::Entry, ShardId(7), b"entry-bytes");
        b.record(Kind::Truncate, ShardId(2), &9u64.to_le_bytes());
        let bytes = b.finish();
        let (payload, len) = read_batch(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        let recs = records(payload).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].kind, recs[0].shard, recs[0].body), (Kind::Entry, ShardId(7), &b"entry-bytes"[..]));
        assert_eq!(&payload[at - BATCH_HEADER_LEN..][..11], b"entry-bytes");
        assert_eq!(recs[0].body_at, at - BATCH_HEADER_LEN);
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(read_batch(&bad).is_err(), "bit {i} flipped went unnoticed");
        }
        assert!(matches!(read_batch(&bytes[..bytes.len() - 1]), Err(BatchError::ShortPayload { .. })));
    }

    #[test]
    fn segment_headers_round_trip() {
        assert_eq!(parse_segment_header(&segment_header(42)), Some(42));
        assert_eq!(parse_segment_header(&[0u8; 16]), None);
    }
}
