//! Leases in the state machine: which leases exist, their TTLs and the keys attached to them.
//!
//! Time is not here. The shard leader decides when a lease has run out (`lease_clock.rs`) and
//! proposes [`LeaseOp::Expire`]; applying it deletes the lease and its keys at one revision on
//! every replica. An id that no longer exists (revoked meanwhile, or expired by an earlier
//! leader's proposal) is skipped, so expiry is idempotent.

use bytes::Bytes;

use super::kv::delete_row;
use super::overlay::{Base, LeaseRecord, Overlay};
use super::{Fail, Rejection};
use crate::types::{LeaseId, LeaseOp, Reply};

/// TTL bounds, in milliseconds. Below 10 ms a lease cannot survive one keepalive round trip;
/// above 30 days it is a configuration mistake (a lease is not storage).
pub const MIN_TTL_MS: u64 = 10;
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

const NEXT_LEASE: &str = "next_lease";

pub fn check_ttl(ttl_ms: u64) -> Result<(), Rejection> {
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(Rejection::InvalidTtl { ttl_ms: ttl_ms as i64 })
    }
}

/// Creates a lease and returns its id: `shard << 48 | n`, n counting from 1, never reused.
pub fn grant<B: Base>(ov: &mut Overlay<B>, ttl_ms: u64, auto: bool) -> Result<LeaseId, Fail> {
    check_ttl(ttl_ms)?;
    let n = ov.counter(NEXT_LEASE)? + 1;
    ov.set_counter(NEXT_LEASE, n)?;
    let id = (u64::from(ov.shard.0) << 48) | n;
    ov.set_lease(id, &LeaseRecord { ttl_ms, keys: Default::default(), auto }, true)?;
    Ok(id)
}

pub fn attach<B: Base>(ov: &mut Overlay<B>, id: LeaseId, key: &Bytes) -> Result<(), Fail> {
    let mut lease = ov.lease(id)?.ok_or(Rejection::LeaseNotFound { id })?;
    if lease.keys.insert(key.clone()) {
        ov.set_lease(id, &lease, false)?;
    }
    Ok(())
}

/// Removes `key` from lease `id`'s keys; a per-key TTL lease ends with its last key.
pub fn detach<B: Base>(ov: &mut Overlay<B>, id: LeaseId, key: &Bytes) -> Result<(), Fail> {
    let Some(mut lease) = ov.lease(id)? else { return Ok(()) };
    if !lease.keys.remove(key) {
        return Ok(());
    }
    if lease.auto && lease.keys.is_empty() {
        ov.remove_lease(id)?;
    } else {
        ov.set_lease(id, &lease, false)?;
    }
    Ok(())
}

/// Ends lease `id` (revoke or expiry): deletes it and every key attached to it at `revision`.
/// Returns the number of keys deleted, or None if the lease did not exist.
pub fn end<B: Base>(ov: &mut Overlay<B>, revision: u64, id: LeaseId) -> Result<Option<u64>, Fail> {
    let Some(lease) = ov.lease(id)? else { return Ok(None) };
    // Remove the lease first, so deleting its keys does not rewrite it key by key.
    ov.remove_lease(id)?;
    let mut deleted = 0;
    for key in &lease.keys {
        if delete_row(ov, revision, key)?.is_some() {
            deleted += 1;
        }
    }
    Ok(Some(deleted))
}

pub fn apply<B: Base>(ov: &mut Overlay<B>, revision: u64, op: &LeaseOp) -> Result<Reply, Fail> {
    match op {
        LeaseOp::Grant { ttl_ms } => {
            let id = grant(ov, *ttl_ms, false)?;
            Ok(Reply::LeaseGranted { id, ttl_ms: *ttl_ms })
        }
        LeaseOp::Revoke { id } => {
            let deleted_keys = end(ov, revision, *id)?.ok_or(Rejection::LeaseNotFound { id: *id })?;
            Ok(Reply::LeasesEnded { deleted_keys })
        }
        LeaseOp::Expire { ids } => {
            let mut deleted_keys = 0;
            for id in ids {
                deleted_keys += end(ov, revision, *id)?.unwrap_or(0);
            }
            Ok(Reply::LeasesEnded { deleted_keys })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::kv::{delete_row, write_row};
    use crate::machine::overlay::{EventKind, LeaseChange};
    use crate::types::{Attach, ShardId};
    use std::collections::BTreeMap;

    fn ov() -> Overlay<BTreeMap<Vec<u8>, Vec<u8>>> {
        Overlay::new(ShardId(2), BTreeMap::new())
    }

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn ids_carry_the_shard_and_are_never_reused() {
        let mut ov = ov();
        let a = grant(&mut ov, 1000, false).unwrap();
        let b = grant(&mut ov, 1000, false).unwrap();
        assert_eq!(a, (2 << 48) | 1);
        assert_eq!(b, (2 << 48) | 2);
        end(&mut ov, 1, a).unwrap();
        assert_eq!(grant(&mut ov, 1000, false).unwrap(), (2 << 48) | 3);
    }

    #[test]
    fn ending_a_lease_deletes_its_keys_at_one_revision() {
        let mut ov = ov();
        let id = grant(&mut ov, 1000, false).unwrap();
        write_row(&mut ov, 1, &b("a"), b("1"), Attach::Lease(id)).unwrap();
        write_row(&mut ov, 2, &b("b"), b("2"), Attach::Lease(id)).unwrap();
        write_row(&mut ov, 3, &b("c"), b("3"), Attach::None).unwrap();
        let reply = apply(&mut ov, 4, &LeaseOp::Revoke { id }).unwrap();
        assert_eq!(reply, Reply::LeasesEnded { deleted_keys: 2 });
        assert!(ov.row(b"a").unwrap().is_none() && ov.row(b"b").unwrap().is_none());
        assert!(ov.row(b"c").unwrap().is_some());
        let deletes: Vec<_> = ov.events.iter().filter(|e| e.kind == EventKind::Delete).collect();
        assert_eq!(deletes.len(), 2);
        assert!(deletes.iter().all(|e| e.revision == 4));
        assert!(ov.lease_changes.contains(&LeaseChange::Ended { id }));
        assert_eq!(
            apply(&mut ov, 5, &LeaseOp::Revoke { id }).unwrap_err(),
            Fail::Reject(Rejection::LeaseNotFound { id })
        );
        // Expiring an id that is gone is a no-op, not an error.
        assert_eq!(
            apply(&mut ov, 5, &LeaseOp::Expire { ids: vec![id] }).unwrap(),
            Reply::LeasesEnded { deleted_keys: 0 }
        );
    }

    #[test]
    fn overwriting_moves_the_key_between_leases_and_key_ttl_leases_end_with_their_key() {
        let mut ov = ov();
        let id = grant(&mut ov, 1000, false).unwrap();
        write_row(&mut ov, 1, &b("k"), b("1"), Attach::Ttl(500)).unwrap();
        let auto = ov.row(b"k").unwrap().unwrap().lease;
        assert!(ov.lease(auto).unwrap().unwrap().auto);
        write_row(&mut ov, 2, &b("k"), b("2"), Attach::Lease(id)).unwrap();
        assert!(ov.lease(auto).unwrap().is_none(), "the per-key lease ends when its key leaves it");
        assert!(ov.lease(id).unwrap().unwrap().keys.contains(&b("k")));
        delete_row(&mut ov, 3, &b("k")).unwrap();
        assert!(ov.lease(id).unwrap().unwrap().keys.is_empty(), "a granted lease outlives its keys");
    }

    #[test]
    fn bad_ttls_and_unknown_leases_are_rejected() {
        let mut ov = ov();
        assert!(matches!(grant(&mut ov, 0, false), Err(Fail::Reject(Rejection::InvalidTtl { .. }))));
        assert!(matches!(grant(&mut ov, MAX_TTL_MS + 1, false), Err(Fail::Reject(Rejection::InvalidTtl { .. }))));
        let err = write_row(&mut ov, 1, &b("k"), b("v"), Attach::Lease(99)).unwrap_err();
        assert_eq!(err, Fail::Reject(Rejection::LeaseNotFound { id: 99 }));
    }
}
