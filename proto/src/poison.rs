//! The workspace's one policy for poisoned std locks: nothing; the guard is taken and used.
//!
//! It lives in this crate because every member of the workspace depends on it; nothing here is
//! wire protocol.
//!
//! A std lock is poisoned when a thread panicked while holding it. The std locks of the node and
//! the client guard small bookkeeping: in the node the shard map, retired replicas, the cluster
//! id, the placement driver's view of its peers, the snapshot in hand, the durable-index
//! watermark, a replica's closed flag and the test-only link cuts; in the client the endpoint
//! table and leader cache, the routing table, health strikes, the revisions seen per shard and
//! the write seqs in flight; in Orbstrike and the benchmarks, channel pools, the board table,
//! placement views and result collectors. Every critical section is one lookup, insert, remove or assignment
//! with no `.await` and no invariant spanning two statements, so a panic cannot leave the data
//! half updated; at worst an entry is stale, which the code around it already tolerates (a
//! redirect, a retry, a refresh). Propagating the poison would turn one panicked task into the
//! failure of every later request on the node, or of every clone of the client, so these helpers
//! recover the guard ([`PoisonError::into_inner`]) and carry on.
//!
//! State whose update takes several steps that must all happen must not use these helpers: in
//! the node it belongs in the state machine (replicated, applied whole) or behind a tokio lock.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering the guard if a panicking thread poisoned it (see the module docs).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `l`, recovering the guard if it is poisoned (see the module docs).
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, recovering the guard if it is poisoned (see the module docs).
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
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
