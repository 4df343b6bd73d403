//! Leases in the state machine: which leases exist, their TTLs and the keys attached to them.
//!
//! Time is not here. The shard leader decides when a lease has run out (`lease_clock.rs`) and
//! proposes [`LeaseOp::Expire`]; applying it deletes the lease and its keys at one revision on
//! every replica. An id that no longer exists (revoked meanwhile, or expired by an earlier
//! leader's proposal) is skipped, so expiry is idempotent.
//!
//! A lease lives in its *home* shard, the one in its id ([`home_of`]). Keys of other shards may
//! hang on it too: the first such key in shard S creates a *follower record* for the lease in
//! S (TTL 0, no deadline, never granted or kept alive here) that lists S's keys on it. Only the
//! home shard decides that a lease ended; S deletes its keys when its leader has learned that
//! from the home shard's leader ([`LeaseOp::HomeEnded`], see `lease_home.rs`), and a follower
//! record goes when its last key does. Revoke and expiry never end a lease outside its home, and
//! `HomeEnded` never ends one inside it, so no replica can delete a key before the home shard has
//! committed the end. The state machine cannot check another shard: the service checks the home
//! shard before it proposes an attachment, and a key attached after the end all the same (the
//! check raced with the end) is deleted by the next poll, which finds the lease gone.
//!
//! Granting a lease and keeping its key list in step with the rows (attach, detach, follower
//! records) is done where rows are written, in `rows.rs`; this module decides which leases end.

use super::command::{LeaseOp, Rejection, Reply};
use super::overlay::{Base, Fail, Overlay};
use super::rows::{delete_row, grant, is_foreign};
use crate::types::LeaseId;

/// True if lease `id` is one of this shard's own and exists (a follower record does not count:
/// game operations check leases that must live where they run).
pub fn exists_here<B: Base>(ov: &Overlay<B>, id: LeaseId) -> Result<bool, Fail> {
    Ok(!is_foreign(ov, id) && ov.lease(id)?.is_some())
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
        // Only the home shard ends a lease by revoke or expiry: a follower record here is not
        // the lease (the client routes a revoke to the home shard by the id).
        LeaseOp::Revoke { id } if is_foreign(ov, *id) => Err(Rejection::LeaseNotFound { id: *id }.into()),
        LeaseOp::Revoke { id } => {
            let deleted_keys = end(ov, revision, *id)?.ok_or(Rejection::LeaseNotFound { id: *id })?;
            Ok(Reply::LeasesEnded { deleted_keys })
        }
        LeaseOp::Expire { ids } => end_all(ov, revision, ids, false),
        LeaseOp::HomeEnded { ids } => end_all(ov, revision, ids, true),
    }
}

/// Ends the leases of `ids` that are other shards' (`foreign`) or this shard's own (not).
fn end_all<B: Base>(ov: &mut Overlay<B>, revision: u64, ids: &[LeaseId], foreign: bool) -> Result<Reply, Fail> {
    let mut deleted_keys = 0;
    for &id in ids {
        if is_foreign(ov, id) == foreign {
            deleted_keys += end(ov, revision, id)?.unwrap_or(0);
        }
    }
    Ok(Reply::LeasesEnded { deleted_keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{Attach, MAX_TTL_MS};
    use crate::machine::overlay::{EventKind, LeaseChange};
    use crate::machine::rows::write_row;
    use crate::types::{home_of, ShardId};
    use bytes::Bytes;
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
        assert_eq!(a, LeaseId((2 << 48) | 1));
        assert_eq!(b, LeaseId((2 << 48) | 2));
        end(&mut ov, 1, a).unwrap();
        assert_eq!(grant(&mut ov, 1000, false).unwrap(), LeaseId((2 << 48) | 3));
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
    fn keys_follow_another_shards_lease_and_go_only_when_its_home_ended_it() {
        let mut ov = ov();
        let foreign: LeaseId = LeaseId((5 << 48) | 9);
        assert_eq!(home_of(foreign), ShardId(5));
        write_row(&mut ov, 1, &b("a"), b("1"), Attach::Lease(foreign)).unwrap();
        write_row(&mut ov, 2, &b("b"), b("2"), Attach::Lease(foreign)).unwrap();
        assert!(ov.lease_changes.contains(&LeaseChange::Followed { id: foreign }));
        assert_eq!(ov.lease(foreign).unwrap().unwrap().keys.len(), 2, "one follower record lists both keys");
        assert!(!exists_here(&ov, foreign).unwrap(), "a follower record is not a lease of this shard");

        // Only the home shard ends a lease: revoke and expiry here leave the keys alone.
        let err = apply(&mut ov, 3, &LeaseOp::Revoke { id: foreign }).unwrap_err();
        assert_eq!(err, Fail::Reject(Rejection::LeaseNotFound { id: foreign }));
        assert_eq!(
            apply(&mut ov, 3, &LeaseOp::Expire { ids: vec![foreign] }).unwrap(),
            Reply::LeasesEnded { deleted_keys: 0 }
        );
        assert!(ov.row(b"a").unwrap().is_some());

        // And HomeEnded never ends one of this shard's own leases.
        let own = grant(&mut ov, 1000, false).unwrap();
        write_row(&mut ov, 4, &b("c"), b("3"), Attach::Lease(own)).unwrap();
        let reply = apply(&mut ov, 5, &LeaseOp::HomeEnded { ids: vec![own, foreign] }).unwrap();
        assert_eq!(reply, Reply::LeasesEnded { deleted_keys: 2 });
        assert!(ov.row(b"a").unwrap().is_none() && ov.row(b"b").unwrap().is_none());
        assert!(ov.row(b"c").unwrap().is_some() && ov.lease(own).unwrap().is_some());
        let deletes: Vec<_> = ov.events.iter().filter(|e| e.kind == EventKind::Delete).collect();
        assert!(deletes.len() == 2 && deletes.iter().all(|e| e.revision == 5), "one revision: {deletes:?}");
        assert!(ov.lease(foreign).unwrap().is_none());
        // Replayed (a second poll before the first commit was seen): nothing more happens.
        assert_eq!(
            apply(&mut ov, 6, &LeaseOp::HomeEnded { ids: vec![foreign] }).unwrap(),
            Reply::LeasesEnded { deleted_keys: 0 }
        );
    }

    #[test]
    fn a_follower_record_goes_with_its_last_key() {
        let mut ov = ov();
        let foreign: LeaseId = LeaseId((7 << 48) | 1);
        write_row(&mut ov, 1, &b("a"), b("1"), Attach::Lease(foreign)).unwrap();
        write_row(&mut ov, 2, &b("b"), b("1"), Attach::Lease(foreign)).unwrap();
        delete_row(&mut ov, 3, &b("a")).unwrap();
        assert!(ov.lease(foreign).unwrap().is_some());
        write_row(&mut ov, 4, &b("b"), b("2"), Attach::None).unwrap();
        assert!(ov.lease(foreign).unwrap().is_none(), "no key left: nothing to follow");
        assert!(ov.lease_changes.contains(&LeaseChange::Ended { id: foreign }));
    }

    #[test]
    fn bad_ttls_and_unknown_leases_are_rejected() {
        let mut ov = ov();
        assert!(matches!(grant(&mut ov, 0, false), Err(Fail::Reject(Rejection::InvalidTtl { .. }))));
        assert!(matches!(grant(&mut ov, MAX_TTL_MS + 1, false), Err(Fail::Reject(Rejection::InvalidTtl { .. }))));
        let unknown = LeaseId((2 << 48) | 99);
        let err = write_row(&mut ov, 1, &b("k"), b("v"), Attach::Lease(unknown)).unwrap_err();
        assert_eq!(err, Fail::Reject(Rejection::LeaseNotFound { id: unknown }));
    }
}
