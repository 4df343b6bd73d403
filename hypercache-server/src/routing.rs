//! Key -> shard routing and the hash-tag rule.
//!
//! Hash tags (the Redis convention): if a key contains `{...}` with at least one byte inside,
//! only the bytes inside the first such braces are hashed, so `board:{b7}:owner` and
//! `board:{b7}:ckpt` always share a shard and can be changed in one transaction.
//!
//! Today a cluster has one shard and every key routes to it; the multi-shard mapping (consistent
//! hashing with virtual nodes) replaces [`Router::shard_of`]'s body when sharding lands. The
//! cross-shard check that transactions go through is already real.

use crate::error::ServiceError;
use crate::types::ShardId;

/// The part of `key` that selects its shard.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|b| *b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

#[derive(Debug, Clone, Copy)]
pub struct Router {
    shard_count: u32,
}

impl Router {
    pub fn new(shard_count: u32) -> Self {
        Router { shard_count: shard_count.max(1) }
    }

    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        if self.shard_count == 1 {
            return ShardId(0);
        }
        ShardId(crc32fast::hash(hash_tag(key)) % self.shard_count)
    }

    /// Checks that every key lives in `shard` (the shard the request was sent to): keys spread
    /// over several shards are CROSS_SHARD, keys that all live elsewhere are WRONG_SHARD.
    pub fn check_single_shard<'a>(
        &self,
        shard: u32,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), ServiceError> {
        let mut first: Option<(&[u8], ShardId)> = None;
        for key in keys {
            let s = self.shard_of(key);
            match first {
                None => first = Some((key, s)),
                Some((k0, s0)) if s0 != s => {
                    return Err(ServiceError::invalid(
                        "CROSS_SHARD",
                        format!(
                            "the transaction spans shards: {:?} is in shard {s0} but {:?} is in shard {s}; \
                             give related keys a common hash tag such as {{board-7}}",
                            String::from_utf8_lossy(k0),
                            String::from_utf8_lossy(key)
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        match first {
            Some((k, s)) if s.0 != shard => Err(ServiceError::invalid(
                "WRONG_SHARD",
                format!("{:?} lives in shard {s}, not in shard {shard}", String::from_utf8_lossy(k)),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags() {
        assert_eq!(hash_tag(b"board:{b7}:owner"), b"b7");
        assert_eq!(hash_tag(b"{b7}"), b"b7");
        assert_eq!(hash_tag(b"a{}b"), b"a{}b", "empty braces hash the whole key");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        assert_eq!(hash_tag(b"x{a}{b}"), b"a", "only the first braces count");
    }

    #[test]
    fn tagged_keys_share_a_shard_and_spread_keys_are_refused() {
        let r = Router::new(8);
        let owner: &[u8] = b"board:{b7}:owner";
        let ckpt: &[u8] = b"board:{b7}:ckpt";
        assert_eq!(r.shard_of(owner), r.shard_of(ckpt));
        let home = r.shard_of(owner).0;
        r.check_single_shard(home, [owner, ckpt]).unwrap();
        // Find a key in another shard.
        let other = (0..100u32).map(|i| format!("k{i}")).find(|k| r.shard_of(k.as_bytes()).0 != home).unwrap();
        let err = r.check_single_shard(home, [owner, other.as_bytes()]).unwrap_err();
        assert_eq!(err.reason(), "CROSS_SHARD");
        assert!(err.to_string().contains("hash tag"), "{err}");
        assert_eq!(r.check_single_shard(home, [other.as_bytes()]).unwrap_err().reason(), "WRONG_SHARD");
        Router::new(1).check_single_shard(0, [owner, other.as_bytes()]).unwrap();
    }
}
