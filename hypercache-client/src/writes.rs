//! Write ids: what makes a [`Client`](crate::Client)'s writes exactly-once.
//!
//! Each client instance picks a random 16-byte id and numbers its writes 1, 2, 3, ... Every
//! attempt of one write carries the same (client id, seq), so the shard's state machine applies it
//! at most once and answers a repeat with the first outcome (server side: `machine/session.rs`;
//! the guarantee: docs/api.md, "Exactly-once writes"). That is what lets the retry loop repeat a
//! write whose outcome it does not know ([`crate::retry::OpKind::Tracked`]).
//!
//! `first_incomplete` tells the shard the lowest seq this client still waits for, so it can
//! forget the replies below it and refuse late copies of them. The client's in-flight seqs are a
//! set (not a counter) because one client runs many writes at once that finish in any order; a
//! seq leaves the set when its [`PendingWrite`] is dropped, i.e. when the operation returned or
//! its future was dropped, after which no attempt of it is sent again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hypercache_proto::poison::lock;
use hypercache_proto::v1 as pb;
use rand::RngCore;

/// The write-id source of one client instance (shared by its clones).
#[derive(Debug)]
pub(crate) struct WriteIds {
    client_id: Bytes,
    next: AtomicU64,
    in_flight: Arc<Mutex<BTreeSet<u64>>>,
}

impl Default for WriteIds {
    fn default() -> Self {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        WriteIds { client_id: Bytes::copy_from_slice(&id), next: AtomicU64::new(1), in_flight: Arc::default() }
    }
}

impl WriteIds {
    /// Starts a write: its id, held in flight until the returned guard is dropped.
    pub(crate) fn begin(&self) -> PendingWrite {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let first_incomplete = {
            let mut in_flight = lock(&self.in_flight);
            in_flight.insert(seq);
            in_flight.first().copied().unwrap_or(seq)
        };
        PendingWrite {
            id: pb::WriteId { client_id: self.client_id.clone(), seq, first_incomplete },
            in_flight: self.in_flight.clone(),
        }
    }
}

/// One write in flight; dropping it tells later writes that this seq is done.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    id: pb::WriteId,
    in_flight: Arc<Mutex<BTreeSet<u64>>>,
}

impl PendingWrite {
    /// The id every attempt of this write carries.
    pub(crate) fn id(&self) -> Option<pb::WriteId> {
        Some(self.id.clone())
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.id.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_grow_and_first_incomplete_is_the_oldest_write_in_flight() {
        let ids = WriteIds::default();
        let a = ids.begin();
        let b = ids.begin();
        assert_eq!((a.id.seq, a.id.first_incomplete), (1, 1));
        assert_eq!((b.id.seq, b.id.first_incomplete), (2, 1));
        drop(a);
        let c = ids.begin();
        assert_eq!((c.id.seq, c.id.first_incomplete), (3, 2), "1 finished, 2 still in flight");
        drop(b);
        drop(c);
        let d = ids.begin();
        assert_eq!((d.id.seq, d.id.first_incomplete), (4, 4));
        assert_eq!(d.id.client_id.len(), 16);
        assert_ne!(d.id.client_id, WriteIds::default().client_id, "a client id per instance");
    }
}
