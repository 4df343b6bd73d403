//! Key -> shard routing and the hash-tag rule.
//!
//! Hash tags (the Redis convention): if a key contains `{...}` with at least one byte inside,
//! only the bytes inside the first such braces are hashed, so `board:{b7}:owner` and
//! `board:{b7}:ckpt` always share a shard and can be changed in one transaction.
//!
//! Key -> shard is consistent hashing with `hashring`: every shard owns [`VNODES_PER_SHARD`]
//! points on the ring, and a key (its hash tag) belongs to the shard of the first point at or
//! after its hash. Keys are hashed as their raw bytes (`RawKey`): a `&[u8]` or `String` would
//! mix its length into the hash and send equal bytes to different shards. The mapping is the same
//! in every process, on every platform and in every version: hashring's default hasher is
//! SipHash-2-4 with fixed keys, and tests pin known key -> shard results, so a dependency upgrade
//! that moved keys would fail them instead of silently moving data.
//!
//! This lives in the wire crate because it is part of the protocol: a client computes the shard
//! id every keyed request carries, and the server checks it with the same code.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashring::HashRing;

/// Points each shard owns on the ring: enough that shards get near-equal key ranges.
pub const VNODES_PER_SHARD: u32 = 64;

/// Shard `shard`'s `point`-th place on the ring, hashed as fixed big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VNode {
    shard: u32,
    point: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.shard.to_be_bytes());
        state.write(&self.point.to_be_bytes());
    }
}

/// A key hashed as exactly its bytes (no length prefix, unlike `Hash for [u8]`).
struct RawKey<'a>(&'a [u8]);

impl Hash for RawKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

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

#[derive(Clone)]
pub struct Router {
    shard_count: u32,
    /// None for a single shard (nothing to choose).
    ring: Option<Arc<HashRing<VNode>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("shard_count", &self.shard_count).finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(shard_count: u32) -> Self {
        let shard_count = shard_count.max(1);
        let ring = (shard_count > 1).then(|| {
            let mut ring = HashRing::new();
            ring.batch_add(
                (0..shard_count)
                    .flat_map(|shard| (0..VNODES_PER_SHARD).map(move |point| VNode { shard, point }))
                    .collect(),
            );
            Arc::new(ring)
        });
        Router { shard_count, ring }
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The shard (0..shard_count) `key` lives in.
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        match self.ring.as_ref().and_then(|ring| ring.get(&RawKey(hash_tag(key)))) {
            Some(vnode) => vnode.shard,
            None => 0,
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

    /// Known key -> shard results. If one of these changes, every existing cluster's keys would
    /// move: do not update the table, find out what changed the hash.
    #[test]
    fn the_mapping_is_pinned() {
        let r8 = Router::new(8);
        let r16 = Router::new(16);
        let pinned: Vec<(&str, u32, u32)> =
            ["", "a", "hello", "board:{b7}:owner", "player/1", "session/p1", "k0", "\u{e9}t\u{e9}"]
                .iter()
                .map(|k| (*k, r8.shard_of(k.as_bytes()), r16.shard_of(k.as_bytes())))
                .collect();
        assert_eq!(pinned, PINNED.to_vec());
    }

    /// (key, shard of 8, shard of 16), computed once by this implementation (hashring 0.3.6,
    /// siphasher 0.3) on 2026-11-22.
    const PINNED: [(&str, u32, u32); 8] = [
        ("", 5, 5),
        ("a", 7, 7),
        ("hello", 5, 5),
        ("board:{b7}:owner", 3, 3),
        ("player/1", 1, 1),
        ("session/p1", 6, 6),
        ("k0", 3, 14),
        ("\u{e9}t\u{e9}", 7, 7),
    ];

    #[test]
    fn keys_spread_evenly_and_tags_and_single_shards_behave() {
        let r = Router::new(16);
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[r.shard_of(format!("key-{i}").as_bytes()) as usize] += 1;
        }
        // 1,000 per shard on average; virtual nodes keep every shard within +-40 %.
        assert!(counts.iter().all(|c| (600..=1400).contains(c)), "{counts:?}");
        assert_eq!(r.shard_of(b"x{tag}y"), r.shard_of(b"tag"));
        assert_eq!(Router::new(1).shard_of(b"anything"), 0);
        assert_eq!(Router::new(0).shard_count(), 1);
    }

    #[test]
    fn adding_a_shard_moves_few_keys() {
        let (before, after) = (Router::new(8), Router::new(9));
        let moved = (0..9_000).filter(|i| {
            let k = format!("key-{i}");
            before.shard_of(k.as_bytes()) != after.shard_of(k.as_bytes())
        });
        // Ideal: 1/9 of the keys (1,000), all to the new shard.
        let moved: Vec<_> = moved.collect();
        assert!(moved.len() < 1_600, "{} keys moved", moved.len());
        assert!(moved.iter().all(|i| after.shard_of(format!("key-{i}").as_bytes()) == 8));
    }
}
