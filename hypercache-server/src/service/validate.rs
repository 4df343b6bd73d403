//! Input limits. Every violation is INVALID_ARGUMENT naming the limit, and is checked before
//! anything is proposed, so a rejected request writes nothing.

use hypercache_proto::keys::prefix_end;
use hypercache_proto::Reason;

use crate::config::MAX_KEY_BYTES;
use crate::error::ServiceError;
use crate::machine::command::{MAX_TTL_MS, MIN_TTL_MS};

/// Keys beginning with this byte hold the game services' records; clients read them but cannot
/// write them through the KV API.
pub const RESERVED_PREFIX: u8 = 0xff;
/// Identifiers (server, board, election names) are at most this long.
pub const MAX_ID_LEN: usize = 128;
/// Free-form strings (addresses, candidates, request ids, labels) are at most this long.
pub const MAX_TEXT_LEN: usize = 256;
/// Labels per registration at most.
pub const MAX_LABELS: usize = 64;
/// Board parameters at most.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// Ops per transaction branch at most.
pub const MAX_TXN_OPS: usize = 128;

/// Default and maximum keys per Range page.
pub const DEFAULT_RANGE_LIMIT: u32 = 1000;
pub const MAX_RANGE_LIMIT: u32 = 10_000;
/// A Range page stops once it holds about this many key and value bytes.
pub const RANGE_PAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Validator {
    pub max_value_bytes: usize,
}

/// A validated key range: [start, end), `end = None` meaning unbounded.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl Validator {
    pub fn key(&self, field: &str, key: &[u8]) -> Result<(), ServiceError> {
        if key.is_empty() {
            return Err(ServiceError::invalid(
                Reason::EmptyKey,
                format!("{field} is empty; keys must be 1..={MAX_KEY_BYTES} bytes"),
            ));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(ServiceError::invalid(
                Reason::KeyTooLong,
                format!("{field} is {} bytes; the limit is {MAX_KEY_BYTES} bytes", key.len()),
            ));
        }
        Ok(())
    }

    /// A key a client may write: valid, and outside the reserved 0xff prefix.
    pub fn writable_key(&self, field: &str, key: &[u8]) -> Result<(), ServiceError> {
        self.key(field, key)?;
        if key[0] == RESERVED_PREFIX {
            return Err(ServiceError::invalid(
                Reason::ReservedKey,
                format!("{field} begins with byte 0xff, which is reserved for the game services' records"),
            ));
        }
        Ok(())
    }

    /// A lease TTL in milliseconds, within the lease bounds.
    pub fn ttl(&self, field: &str, ttl_ms: i64) -> Result<u64, ServiceError> {
        match u64::try_from(ttl_ms) {
            Ok(t) if (MIN_TTL_MS..=MAX_TTL_MS).contains(&t) => Ok(t),
            _ => Err(ServiceError::invalid(
                Reason::InvalidTtl,
                format!("{field} is {ttl_ms} ms; it must be {MIN_TTL_MS}..={MAX_TTL_MS} ms"),
            )),
        }
    }

    /// A server id, board id or election name: 1..=128 of [A-Za-z0-9._:-].
    pub fn id(&self, field: &str, id: &str) -> Result<(), ServiceError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(ok_char) {
            return Err(ServiceError::invalid(
                Reason::InvalidId,
                format!("{field} {id:?} is invalid: use 1..={MAX_ID_LEN} characters from [A-Za-z0-9._:-]"),
            ));
        }
        Ok(())
    }

    /// A free-form string field: at most 256 bytes, and non-empty if `required`.
    pub fn text(&self, field: &str, text: &str, required: bool) -> Result<(), ServiceError> {
        if required && text.is_empty() {
            return Err(ServiceError::invalid(Reason::InvalidArgument, format!("{field} is required")));
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(ServiceError::invalid(
                Reason::InvalidArgument,
                format!("{field} is {} bytes; the limit is {MAX_TEXT_LEN}", text.len()),
            ));
        }
        Ok(())
    }

    /// A board checkpoint: a value, so bounded by `limits.max_value_bytes`.
    pub fn checkpoint(&self, field: &str, data: &[u8]) -> Result<(), ServiceError> {
        if data.len() > self.max_value_bytes {
            return Err(ServiceError::invalid(
                Reason::CheckpointTooLarge,
                format!(
                    "{field} is {} bytes; the limit is {} bytes (limits.max_value_bytes)",
                    data.len(),
                    self.max_value_bytes
                ),
            ));
        }
        Ok(())
    }

    pub fn params(&self, field: &str, data: &[u8]) -> Result<(), ServiceError> {
        if data.len() > MAX_PARAMS_BYTES {
            return Err(ServiceError::invalid(
                Reason::ParamsTooLarge,
                format!("{field} is {} bytes; the limit is {MAX_PARAMS_BYTES} bytes", data.len()),
            ));
        }
        Ok(())
    }

    pub fn value(&self, field: &str, value: &[u8]) -> Result<(), ServiceError> {
        if value.len() > self.max_value_bytes {
            return Err(ServiceError::invalid(
                Reason::ValueTooLarge,
                format!(
                    "{field} is {} bytes; the limit is {} bytes (limits.max_value_bytes)",
                    value.len(),
                    self.max_value_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Bounds of a Range request: a prefix, or [start, end), plus an optional continuation that
    /// must lie inside them.
    pub fn range(
        &self,
        prefix: &[u8],
        start: &[u8],
        end: &[u8],
        continuation: &[u8],
    ) -> Result<KeyRange, ServiceError> {
        let mut range = if !prefix.is_empty() {
            if !start.is_empty() || !end.is_empty() {
                return Err(ServiceError::invalid(Reason::InvalidRange, "give either prefix or start/end, not both"));
            }
            self.bounded("prefix", prefix)?;
            KeyRange { start: prefix.to_vec(), end: prefix_end(prefix) }
        } else {
            self.bounded("start", start)?;
            self.bounded("end", end)?;
            if !end.is_empty() && end <= start {
                return Err(ServiceError::invalid(
                    Reason::InvalidRange,
                    "end must be greater than start (or empty for no end)",
                ));
            }
            KeyRange { start: start.to_vec(), end: (!end.is_empty()).then(|| end.to_vec()) }
        };
        if !continuation.is_empty() {
            self.bounded("continuation", continuation)?;
            let inside =
                continuation >= range.start.as_slice() && range.end.as_deref().is_none_or(|e| continuation < e);
            if !inside {
                return Err(ServiceError::invalid(
                    Reason::InvalidRange,
                    "continuation lies outside the requested range; pass the one the previous page returned",
                ));
            }
            range.start = continuation.to_vec();
        }
        Ok(range)
    }

    pub fn limit(&self, limit: u32) -> Result<usize, ServiceError> {
        match limit {
            0 => Ok(DEFAULT_RANGE_LIMIT as usize),
            l if l > MAX_RANGE_LIMIT => Err(ServiceError::invalid(
                Reason::InvalidArgument,
                format!("limit {l} exceeds the maximum of {MAX_RANGE_LIMIT} keys per page"),
            )),
            l => Ok(l as usize),
        }
    }

    fn bounded(&self, field: &str, key: &[u8]) -> Result<(), ServiceError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(ServiceError::invalid(
                Reason::KeyTooLong,
                format!("{field} is {} bytes; the limit is {MAX_KEY_BYTES} bytes", key.len()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Validator = Validator { max_value_bytes: 10 };

    #[test]
    fn keys_and_values_are_bounded() {
        assert_eq!(V.key("key", b"").unwrap_err().reason(), Reason::EmptyKey);
        assert_eq!(V.key("key", &[b'a'; MAX_KEY_BYTES + 1]).unwrap_err().reason(), Reason::KeyTooLong);
        V.key("key", &[b'a'; MAX_KEY_BYTES]).unwrap();
        let err = V.value("value", &[0; 11]).unwrap_err();
        assert!(err.to_string().contains("limit is 10 bytes"), "{err}");
        V.value("value", &[0; 10]).unwrap();
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(
            V.range(b"ab", b"", b"", b"").unwrap(),
            KeyRange { start: b"ab".to_vec(), end: Some(b"ac".to_vec()) }
        );
        assert_eq!(V.range(&[b'a', 0xff], b"", b"", b"").unwrap().end, Some(b"b".to_vec()));
        assert_eq!(V.range(&[0xff, 0xff], b"", b"", b"").unwrap().end, None);
        assert!(V.range(b"a", b"b", b"", b"").is_err());
    }

    #[test]
    fn start_end_and_continuation() {
        assert!(V.range(b"", b"b", b"a", b"").is_err());
        assert!(V.range(b"", b"a", b"a", b"").is_err());
        assert_eq!(V.range(b"", b"a", b"", b"").unwrap().end, None);
        assert_eq!(V.range(b"", b"a", b"c", b"b").unwrap().start, b"b".to_vec());
        assert!(V.range(b"", b"a", b"c", b"c").is_err());
        assert!(V.range(b"p", b"", b"", b"q").is_err());
    }

    #[test]
    fn reserved_keys_ids_and_ttls() {
        assert_eq!(V.writable_key("key", &[0xff, b'a']).unwrap_err().reason(), Reason::ReservedKey);
        V.writable_key("key", b"a").unwrap();
        assert_eq!(V.ttl("ttl_ms", -1).unwrap_err().reason(), Reason::InvalidTtl);
        assert_eq!(V.ttl("ttl_ms", 0).unwrap_err().reason(), Reason::InvalidTtl);
        assert_eq!(V.ttl("ttl_ms", i64::MAX).unwrap_err().reason(), Reason::InvalidTtl);
        assert_eq!(V.ttl("ttl_ms", 1000).unwrap(), 1000);
        assert_eq!(V.id("board_id", "").unwrap_err().reason(), Reason::InvalidId);
        assert_eq!(V.id("board_id", "a/b").unwrap_err().reason(), Reason::InvalidId);
        V.id("board_id", "arena-1.eu:7").unwrap();
        assert_eq!(V.checkpoint("checkpoint", &[0; 11]).unwrap_err().reason(), Reason::CheckpointTooLarge);
    }

    #[test]
    fn limits() {
        assert_eq!(V.limit(0).unwrap(), 1000);
        assert!(V.limit(MAX_RANGE_LIMIT + 1).is_err());
    }
}
