//! Key-space arithmetic both sides of the wire must agree on: a prefix range is the half-open
//! range `[prefix, prefix_end(prefix))`, and the server and the client compute that end the same
//! way; a lease id carries the shard that granted it in its top bits, which the server writes and
//! the client routes by.

/// Bits of a lease id below its shard: an id is `shard << LEASE_SHARD_SHIFT | counter`.
pub const LEASE_SHARD_SHIFT: u32 = 48;

/// The id of the `counter`-th lease granted by `shard`.
pub fn lease_id(shard: u32, counter: u64) -> u64 {
    u64::from(shard) << LEASE_SHARD_SHIFT | counter
}

/// The shard that granted lease `id` (it keeps the lease alive and decides its end).
pub fn lease_shard(id: u64) -> u32 {
    // A u64 shifted right by 48 has at most 16 bits: the cast cannot truncate.
    (id >> LEASE_SHARD_SHIFT) as u32
}

/// The smallest key greater than every key with `prefix`, or `None` if there is none (the prefix
/// is empty or all 0xff bytes: the range runs to the end of the key space).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_is_its_last_byte_below_0xff_plus_one() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn a_lease_id_carries_its_shard_in_the_top_bits() {
        assert_eq!(lease_id(3, 5), (3 << 48) | 5);
        assert_eq!(lease_shard(lease_id(3, 5)), 3);
        assert_eq!(lease_shard(lease_id(u32::from(u16::MAX), u64::from(u32::MAX))), u32::from(u16::MAX));
        assert_eq!(lease_shard(7), 0);
    }
}
