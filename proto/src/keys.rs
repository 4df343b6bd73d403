//! Key-space arithmetic both sides of the wire must agree on: a prefix range is the half-open
//! range `[prefix, prefix_end(prefix))`, and the server and the client compute that end the same
//! way.

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
}
