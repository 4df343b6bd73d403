//! Lease deadlines: the shard leader's clock over the leases its state machine holds.
//!
//! The state machine knows which leases exist and their TTLs; it never reads a clock. Every
//! replica mirrors that set here (updated inside `apply`), but deadlines only mean something on
//! the leader, and only for its current term:
//!
//! - When a node starts leading a term, every deadline is reset to `now + ttl` (a leader change
//!   may extend a lease, never shorten it).
//! - A keepalive is answered only after a read-index barrier (leadership confirmed by a quorum,
//!   everything committed before applied) and sets `deadline = max(deadline, now + ttl)`, `now`
//!   being later than the moment the holder sent it.
//! - When a deadline passes, the lease is marked `expiring` (no keepalive is accepted for it any
//!   more) and the leader proposes `LeaseOp::Expire`. A failed proposal does not clear the mark;
//!   only a new leadership term does, and a new term's barrier applies any expiry an earlier
//!   leader got committed.
//!
//! Leases of other shards that keys here hang on (follower records, see `machine/lease.rs`) have
//! no deadline here: the clock only lists them ([`LeaseClock::followed`]) for the leader's poll of
//! their home shards (`lease_home.rs`).
//!
//! The full argument that a lease never expires before `send time of the last successful
//! keepalive + ttl` is in docs/api.md ("Lease safety").

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::machine::overlay::LeaseChange;
use crate::types::LeaseId;

/// Leases expired per proposal at most (keeps one entry well under the message limits).
pub const EXPIRE_BATCH: usize = 1000;

#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    deadline: Instant,
    expiring: bool,
}

#[derive(Default)]
struct State {
    leases: HashMap<LeaseId, Timing>,
    /// (deadline, id) of every lease not yet expiring, for finding the next expiry fast.
    by_deadline: BTreeSet<(Instant, LeaseId)>,
    /// The leadership term the deadlines were last reset for.
    term: Option<u64>,
    /// Other shards' leases with keys here.
    followed: BTreeSet<LeaseId>,
}

impl State {
    fn set_deadline(&mut self, id: LeaseId, deadline: Instant) {
        if let Some(t) = self.leases.get_mut(&id) {
            self.by_deadline.remove(&(t.deadline, id));
            t.deadline = deadline;
            if !t.expiring {
                self.by_deadline.insert((deadline, id));
            }
        }
    }
}

/// What a keepalive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed {
        ttl: Duration,
    },
    /// Expired (or expiring) or revoked: the lease is gone.
    Gone,
}

#[derive(Default)]
pub struct LeaseClock {
    state: Mutex<State>,
    /// Woken when the earliest deadline may have moved.
    changed: Notify,
    /// Woken when a lease of another shard may have been added to `followed`; the leader's
    /// lease-home poll waits on it while it follows none (an idle shard polls nothing).
    followed_changed: Notify,
}

impl LeaseClock {
    pub fn new() -> Arc<Self> {
        Arc::new(LeaseClock::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is a few map operations that cannot leave the maps disagreeing midway
        // through a panic-free section, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the set of leases (startup, snapshot install): this shard's own as (id, ttl_ms),
    /// and the other shards' leases it holds follower records for.
    pub fn reset(&self, leases: impl IntoIterator<Item = (LeaseId, u64)>, followed: impl IntoIterator<Item = LeaseId>) {
        let now = Instant::now();
        let mut s = self.lock();
        s.leases.clear();
        s.by_deadline.clear();
        s.followed = followed.into_iter().collect();
        for (id, ttl_ms) in leases {
            let ttl = Duration::from_millis(ttl_ms);
            s.leases.insert(id, Timing { ttl, deadline: now + ttl, expiring: false });
            s.by_deadline.insert((now + ttl, id));
        }
        s.term = None;
        drop(s);
        self.changed.notify_one();
        self.followed_changed.notify_one();
    }

    /// Mirrors the state machine's lease changes (called inside apply).
    pub fn apply(&self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        let mut followed = false;
        for change in changes {
            match *change {
                LeaseChange::Granted { id, ttl_ms } => {
                    let ttl = Duration::from_millis(ttl_ms);
                    s.leases.insert(id, Timing { ttl, deadline: now + ttl, expiring: false });
                    s.by_deadline.insert((now + ttl, id));
                }
                LeaseChange::Followed { id } => {
                    s.followed.insert(id);
                    followed = true;
                }
                LeaseChange::Ended { id } => {
                    if let Some(t) = s.leases.remove(&id) {
                        s.by_deadline.remove(&(t.deadline, id));
                    }
                    s.followed.remove(&id);
                }
            }
        }
        drop(s);
        self.changed.notify_one();
        if followed {
            self.followed_changed.notify_one();
        }
    }

    /// Starts (or confirms) leadership of `term`: a new term resets every deadline to now + ttl.
    fn lead(s: &mut State, term: u64, now: Instant) {
        if s.term == Some(term) {
            return;
        }
        s.term = Some(term);
        s.by_deadline.clear();
        let ids: Vec<LeaseId> = s.leases.keys().copied().collect();
        for id in ids {
            if let Some(t) = s.leases.get_mut(&id) {
                t.deadline = now + t.ttl;
                t.expiring = false;
                let d = t.deadline;
                s.by_deadline.insert((d, id));
            }
        }
    }

    /// This node stopped leading: the next leadership must reset the deadlines.
    pub fn step_down(&self) {
        self.lock().term = None;
    }

    /// A keepalive on the leader of `term`, after its read barrier.
    pub fn keep_alive(&self, id: LeaseId, term: u64) -> Renewal {
        let now = Instant::now();
        let mut s = self.lock();
        Self::lead(&mut s, term, now);
        let Some(t) = s.leases.get(&id).copied() else { return Renewal::Gone };
        if t.expiring {
            return Renewal::Gone;
        }
        s.set_deadline(id, t.deadline.max(now + t.ttl));
        Renewal::Renewed { ttl: t.ttl }
    }

    /// (granted ttl, time left) as the leader of `term` sees it; None if the lease is gone.
    pub fn time_to_live(&self, id: LeaseId, term: u64) -> Option<(Duration, Duration)> {
        let now = Instant::now();
        let mut s = self.lock();
        Self::lead(&mut s, term, now);
        let t = s.leases.get(&id)?;
        if t.expiring {
            return Some((t.ttl, Duration::ZERO));
        }
        Some((t.ttl, t.deadline.saturating_duration_since(now)))
    }

    /// On the leader of `term`: marks every lease whose deadline passed as expiring and returns
    /// them, plus the next deadline to wake up for.
    pub fn take_expired(&self, term: u64) -> (Vec<LeaseId>, Option<Instant>) {
        let now = Instant::now();
        let mut s = self.lock();
        Self::lead(&mut s, term, now);
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = s.by_deadline.first() {
            if deadline > now {
                break;
            }
            s.by_deadline.pop_first();
            if let Some(t) = s.leases.get_mut(&id) {
                t.expiring = true;
            }
            expired.push(id);
        }
        let next = s.by_deadline.first().map(|(d, _)| *d);
        (expired, next)
    }

    /// The other shards' leases that keys of this shard hang on.
    pub fn followed(&self) -> Vec<LeaseId> {
        self.lock().followed.iter().copied().collect()
    }

    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Returns once a followed lease may have been added since the last call returned.
    pub async fn followed_changed(&self) {
        self.followed_changed.notified().await
    }

    pub fn len(&self) -> usize {
        self.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_expire_and_keepalives_extend() {
        let clock = LeaseClock::new();
        clock.apply(&[
            LeaseChange::Granted { id: LeaseId(1), ttl_ms: 100 },
            LeaseChange::Granted { id: LeaseId(2), ttl_ms: 300 },
        ]);
        let (expired, next) = clock.take_expired(5);
        assert!(expired.is_empty());
        assert!(next.is_some());
        tokio::time::advance(Duration::from_millis(80)).await;
        assert_eq!(clock.keep_alive(LeaseId(1), 5), Renewal::Renewed { ttl: Duration::from_millis(100) });
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(clock.take_expired(5).0.is_empty(), "renewed at 80 ms: lives until 180 ms");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(clock.take_expired(5).0, vec![LeaseId(1)]);
        assert_eq!(clock.keep_alive(LeaseId(1), 5), Renewal::Gone, "no keepalive once expiring");
    }

    #[tokio::test(start_paused = true)]
    async fn followed_leases_are_listed_never_expired() {
        let clock = LeaseClock::new();
        clock.reset([(LeaseId(1), 100)], [LeaseId((3 << 48) | 1)]);
        clock.apply(&[LeaseChange::Followed { id: LeaseId((4 << 48) | 2) }]);
        assert_eq!(clock.followed(), vec![LeaseId((3 << 48) | 1), LeaseId((4 << 48) | 2)]);
        assert!(clock.take_expired(1).0.is_empty(), "term 1 starts: deadlines from now");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(clock.take_expired(1).0, vec![LeaseId(1)], "only this shard's own lease has a deadline");
        assert_eq!(clock.keep_alive(LeaseId((3 << 48) | 1), 1), Renewal::Gone, "kept alive at home, not here");
        clock.apply(&[LeaseChange::Ended { id: LeaseId((3 << 48) | 1) }]);
        assert_eq!(clock.followed(), vec![LeaseId((4 << 48) | 2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_term_extends_never_shortens() {
        let clock = LeaseClock::new();
        clock.apply(&[LeaseChange::Granted { id: LeaseId(1), ttl_ms: 100 }]);
        clock.take_expired(1);
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(clock.take_expired(1).0, vec![LeaseId(1)]);
        // Leadership moved away and came back: the lease gets a full TTL again (its expiry
        // proposal may not have committed; if it did, the barrier will have removed it).
        clock.step_down();
        let (expired, _) = clock.take_expired(2);
        assert!(expired.is_empty());
        assert_eq!(clock.time_to_live(LeaseId(1), 2), Some((Duration::from_millis(100), Duration::from_millis(100))));
        clock.apply(&[LeaseChange::Ended { id: LeaseId(1) }]);
        assert_eq!(clock.keep_alive(LeaseId(1), 2), Renewal::Gone);
    }
}
