//! The server's side of routing: checks that a request's keys live in the shard it names. The
//! key -> shard map itself is [`hypercache_proto::routing::Router`], shared with clients.

use hypercache_proto::routing::Router;
use hypercache_proto::Reason;

use crate::error::ServiceError;

/// Checks that every key lives in `shard` (the shard the request was sent to): keys spread over
/// several shards are CROSS_SHARD, keys that all live elsewhere are WRONG_SHARD.
pub fn check_single_shard<'a>(
    router: &Router,
    shard: u32,
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), ServiceError> {
    let mut first: Option<(&[u8], u32)> = None;
    for key in keys {
        let s = router.shard_of(key);
        match first {
            None => first = Some((key, s)),
            Some((k0, s0)) if s0 != s => {
                return Err(ServiceError::invalid(
                    Reason::CrossShard,
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
        Some((k, s)) if s != shard => {
            Err(ServiceError::WrongShard { key: String::from_utf8_lossy(k).into_owned(), named: shard, actual: s })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_keys_share_a_shard_and_spread_keys_are_refused() {
        let r = Router::new(8);
        let owner: &[u8] = b"board:{b7}:owner";
        let ckpt: &[u8] = b"board:{b7}:ckpt";
        assert_eq!(r.shard_of(owner), r.shard_of(ckpt));
        let home = r.shard_of(owner);
        check_single_shard(&r, home, [owner, ckpt]).unwrap();
        // Find a key in another shard.
        let other = (0..100u32).map(|i| format!("k{i}")).find(|k| r.shard_of(k.as_bytes()) != home).unwrap();
        let err = check_single_shard(&r, home, [owner, other.as_bytes()]).unwrap_err();
        assert_eq!(err.reason(), Reason::CrossShard);
        assert!(err.to_string().contains("hash tag"), "{err}");
        assert_eq!(check_single_shard(&r, home, [other.as_bytes()]).unwrap_err().reason(), Reason::WrongShard);
        check_single_shard(&Router::new(1), 0, [owner, other.as_bytes()]).unwrap();
    }
}
