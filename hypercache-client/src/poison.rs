//! What a poisoned lock means in this crate: nothing; the guard is taken and used.
//!
//! A std lock is poisoned when a thread panicked while holding it. Every std `Mutex` and
//! `RwLock` in the client guards a cache or bookkeeping: the endpoint table and per-shard
//! leader cache (`client.rs`), the routing table (`routing.rs`), the health strikes
//! (`health.rs`), the revisions seen per shard (`freshness.rs`) and the write seqs in flight
//! (`writes.rs`). Each critical section is a single lookup, insert, remove or assignment, with
//! no `.await` and no invariant spanning two steps, so a panic cannot leave the data half
//! updated; at worst an entry is stale, which costs a redirect, a retry or a refresh that the
//! retry loop already handles. Propagating the poison instead would turn one panicked task
//! into a failure of every later operation on every clone of the client, so the helpers here
//! recover the guard ([`PoisonError::into_inner`]) and carry on.
//!
//! State whose update takes several steps that must all happen (where a half-done update would
//! break an invariant) must not use these helpers; the client has none today. The tokio mutex
//! around a routing fetch does not poison and is not covered here.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering the guard if a panicking thread poisoned it (see the module docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `l`, recovering the guard if it is poisoned (see the module docs).
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, recovering the guard if it is poisoned (see the module docs).
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let panicked = std::thread::spawn(move || {
            let _m = lock(&m2);
            let _l = write(&l2);
            panic!("poison both");
        })
        .join();
        assert!(panicked.is_err() && m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 2));
    }
}
