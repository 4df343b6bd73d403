//! Watch fan-out and the bounded event history of one shard replica.
//!
//! The state machine publishes every apply batch's events here *while holding the hub lock
//! across its sled commit*, so under the lock the rows in sled and `revision` always agree. That
//! is what lets a typed stream (registry watch, assignment watch) read a consistent snapshot and
//! register for the changes after it with no gap and no duplicate.
//!
//! History: the events this node applied since it started, bounded by `history_events` and
//! `history_bytes`; the oldest are evicted first, a whole revision at a time as far as resuming
//! goes (evicting any event of revision R makes R unavailable). A watch may start at any revision
//! from `oldest` on; older is COMPACTED.
//!
//! Slow watchers: each watcher has a bounded queue. Publishing never waits: if a watcher's queue
//! is full, the watcher is cut off (removed, marked too slow) and its stream ends with
//! WATCHER_TOO_SLOW, so writes and other watchers never stall. The client resumes from the last
//! revision it received + 1.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use hypercache_proto::keys::prefix_end;
use tokio::sync::mpsc;

use crate::machine::overlay::Event;

/// Per-watcher queue length, in batches (one batch is one apply's matching events).
pub const WATCHER_QUEUE: usize = 256;

/// Which keys a watcher wants: `[start, end)`, `end = None` meaning unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter {
    pub start: Bytes,
    pub end: Option<Bytes>,
}

impl KeyFilter {
    pub fn key(key: Bytes) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        KeyFilter { start: key, end: Some(Bytes::from(end)) }
    }

    pub fn prefix(prefix: &[u8]) -> Self {
        KeyFilter { start: Bytes::copy_from_slice(prefix), end: prefix_end(prefix).map(Bytes::from) }
    }

    pub fn matches(&self, key: &[u8]) -> bool {
        key >= self.start.as_ref() && self.end.as_ref().is_none_or(|e| key < e.as_ref())
    }
}

/// Why a watcher's queue was closed by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOff {
    /// Still registered (or the hub went away: the node is stopping).
    None = 0,
    TooSlow = 1,
    /// A snapshot replaced this replica's state: the history no longer connects.
    Reset = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("revision {requested} is no longer in this node's watch history; the oldest available is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
}

#[derive(Debug, Clone)]
pub struct HistoryLimits {
    pub events: usize,
    pub bytes: usize,
}

struct Slot {
    id: u64,
    filter: KeyFilter,
    /// First revision wanted: a lagging replica may still publish older ones.
    start: u64,
    tx: mpsc::Sender<Vec<Event>>,
    cut: Arc<AtomicU8>,
}

pub struct HubState {
    /// The revision of the last published apply (= the rows in sled while the lock is held).
    pub revision: u64,
    /// The oldest revision a watch can start at.
    oldest: u64,
    history: VecDeque<Event>,
    history_bytes: usize,
    watchers: Vec<Slot>,
    next_id: u64,
    /// Shutting down: no new watchers.
    closed: bool,
}

pub struct WatchHub {
    state: Mutex<HubState>,
    limits: HistoryLimits,
}

/// A registered watcher's receiving end.
#[derive(Debug)]
pub struct Subscription {
    pub id: u64,
    /// Events of revisions `start..` that were already in the history, in order.
    pub catch_up: Vec<Event>,
    pub rx: mpsc::Receiver<Vec<Event>>,
    cut: Arc<AtomicU8>,
}

impl Subscription {
    pub fn cut_off(&self) -> CutOff {
        match self.cut.load(Ordering::Acquire) {
            1 => CutOff::TooSlow,
            2 => CutOff::Reset,
            _ => CutOff::None,
        }
    }
}

impl WatchHub {
    pub fn new(revision: u64, limits: HistoryLimits) -> Self {
        WatchHub {
            state: Mutex::new(HubState {
                revision,
                oldest: revision + 1,
                history: VecDeque::new(),
                history_bytes: 0,
                watchers: Vec::new(),
                next_id: 1,
                closed: false,
            }),
            limits,
        }
    }

    /// Locks the hub. The state machine holds this across its commit; readers hold it to read
    /// rows that agree with `revision`.
    pub fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves the state consistent (every update is a few
        // field writes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// The oldest revision a new watch can start at.
    pub fn oldest(&self) -> u64 {
        self.lock().oldest
    }

    pub fn remove(&self, id: u64) {
        self.lock().watchers.retain(|w| w.id != id);
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }
}

impl HubState {
    /// Publishes one apply batch's events, now at `revision`. Never blocks.
    pub fn publish(&mut self, limits: &HistoryLimits, revision: u64, events: Vec<Event>) {
        self.revision = revision;
        // Watchers whose receiver was dropped without `remove` (an abandoned campaign wait, a
        // failed call) go here rather than at their next matching event.
        self.watchers.retain(|w| !w.tx.is_closed());
        if events.is_empty() {
            return;
        }
        self.watchers.retain(|w| {
            let mine: Vec<Event> =
                events.iter().filter(|e| e.revision >= w.start && w.filter.matches(&e.kv.key)).cloned().collect();
            if mine.is_empty() {
                return true;
            }
            match w.tx.try_send(mine) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.cut.store(CutOff::TooSlow as u8, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        for e in events {
            self.history_bytes += e.bytes();
            self.history.push_back(e);
        }
        while self.history.len() > limits.events || self.history_bytes > limits.bytes {
            let Some(e) = self.history.pop_front() else { break };
            self.history_bytes -= e.bytes();
            self.oldest = self.oldest.max(e.revision + 1);
        }
    }

    /// A snapshot replaced the rows: the history no longer connects to them.
    pub fn reset(&mut self, revision: u64) {
        for w in self.watchers.drain(..) {
            w.cut.store(CutOff::Reset as u8, Ordering::Release);
        }
        self.history.clear();
        self.history_bytes = 0;
        self.revision = revision;
        self.oldest = revision + 1;
    }

    /// Ends every watcher (their streams end with SHUTTING_DOWN) and refuses new ones: a graceful
    /// shutdown must not wait for streams that never end on their own.
    pub fn close(&mut self) {
        self.closed = true;
        self.watchers.clear();
    }

    /// Registers a watcher for revisions `start..` (`start = 0`: from the next revision).
    pub fn subscribe(&mut self, filter: KeyFilter, start: u64) -> Result<Subscription, SubscribeError> {
        if self.closed {
            return Err(SubscribeError::Closed);
        }
        let start = if start == 0 { self.revision + 1 } else { start };
        if start < self.oldest {
            return Err(SubscribeError::Compacted { requested: start, oldest: self.oldest });
        }
        let catch_up =
            self.history.iter().filter(|e| e.revision >= start && filter.matches(&e.kv.key)).cloned().collect();
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        let cut = Arc::new(AtomicU8::new(CutOff::None as u8));
        let id = self.next_id;
        self.next_id += 1;
        self.watchers.push(Slot { id, filter, start, tx, cut: cut.clone() });
        Ok(Subscription { id, catch_up, rx, cut })
    }
}

impl WatchHub {
    pub fn limits(&self) -> &HistoryLimits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::overlay::EventKind;
    use crate::types::KeyValue;

    fn ev(rev: u64, key: &str) -> Event {
        let kv = KeyValue {
            key: Bytes::from(key.to_string()),
            value: Bytes::from_static(b"v"),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: crate::types::LeaseId::NONE,
        };
        Event { revision: rev, kind: EventKind::Put, kv, prev: None }
    }

    fn limits(events: usize) -> HistoryLimits {
        HistoryLimits { events, bytes: usize::MAX }
    }

    #[test]
    fn resume_from_history_then_live_without_gaps() {
        let hub = WatchHub::new(0, limits(100));
        let l = limits(100);
        {
            let mut s = hub.lock();
            s.publish(&l, 1, vec![ev(1, "a/1")]);
            s.publish(&l, 2, vec![ev(2, "b/1")]);
            s.publish(&l, 3, vec![ev(3, "a/2"), ev(3, "a/3")]);
        }
        let mut sub = hub.lock().subscribe(KeyFilter::prefix(b"a/"), 2).unwrap();
        let revs: Vec<u64> = sub.catch_up.iter().map(|e| e.revision).collect();
        assert_eq!(revs, vec![3, 3]);
        hub.lock().publish(&l, 4, vec![ev(4, "a/4"), ev(4, "z")]);
        let live = sub.rx.try_recv().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].kv.key, "a/4");
    }

    #[test]
    fn a_lagging_replica_does_not_deliver_revisions_before_the_start() {
        let hub = WatchHub::new(5, limits(100));
        let l = limits(100);
        // Resuming at 8 on a replica that has only applied up to 5.
        let mut sub = hub.lock().subscribe(KeyFilter::prefix(b""), 8).unwrap();
        for r in 6..=9 {
            hub.lock().publish(&l, r, vec![ev(r, "k")]);
        }
        let got: Vec<u64> = std::iter::from_fn(|| sub.rx.try_recv().ok()).flatten().map(|e| e.revision).collect();
        assert_eq!(got, vec![8, 9]);
    }

    #[test]
    fn evicted_revisions_are_compacted_with_the_oldest_named() {
        let hub = WatchHub::new(10, limits(2));
        let l = limits(2);
        assert_eq!(
            hub.lock().subscribe(KeyFilter::prefix(b""), 5).unwrap_err(),
            SubscribeError::Compacted { requested: 5, oldest: 11 }
        );
        {
            let mut s = hub.lock();
            for r in 11..=14 {
                s.publish(&l, r, vec![ev(r, "k")]);
            }
        }
        let err = hub.lock().subscribe(KeyFilter::prefix(b""), 12).unwrap_err();
        assert_eq!(err, SubscribeError::Compacted { requested: 12, oldest: 13 });
        assert!(err.to_string().contains("oldest available is 13"), "{err}");
        assert_eq!(hub.lock().subscribe(KeyFilter::prefix(b""), 13).unwrap().catch_up.len(), 2);
    }

    #[test]
    fn a_full_queue_cuts_the_watcher_off_without_blocking() {
        let hub = WatchHub::new(0, limits(10));
        let l = limits(10);
        let slow = hub.lock().subscribe(KeyFilter::prefix(b""), 0).unwrap();
        let mut fast = hub.lock().subscribe(KeyFilter::prefix(b""), 0).unwrap();
        for r in 1..=(WATCHER_QUEUE as u64 + 5) {
            hub.lock().publish(&l, r, vec![ev(r, "k")]);
            fast.rx.try_recv().unwrap();
        }
        assert_eq!(slow.cut_off(), CutOff::TooSlow);
        assert_eq!(fast.cut_off(), CutOff::None);
        assert_eq!(hub.watcher_count(), 1);
    }

    #[test]
    fn closing_ends_watchers_and_refuses_new_ones() {
        let hub = WatchHub::new(0, limits(10));
        let mut sub = hub.lock().subscribe(KeyFilter::prefix(b""), 0).unwrap();
        hub.lock().close();
        assert!(sub.rx.try_recv().is_err());
        assert_eq!(sub.cut_off(), CutOff::None);
        assert_eq!(hub.lock().subscribe(KeyFilter::prefix(b""), 0).unwrap_err(), SubscribeError::Closed);
    }

    #[test]
    fn dropped_subscriptions_are_forgotten_at_the_next_publish() {
        let hub = WatchHub::new(0, limits(10));
        let sub = hub.lock().subscribe(KeyFilter::prefix(b"a"), 0).unwrap();
        drop(sub);
        assert_eq!(hub.watcher_count(), 1);
        hub.lock().publish(&limits(10), 1, vec![ev(1, "zzz")]);
        assert_eq!(hub.watcher_count(), 0);
    }

    #[test]
    fn filters() {
        assert!(KeyFilter::key(Bytes::from_static(b"a")).matches(b"a"));
        assert!(!KeyFilter::key(Bytes::from_static(b"a")).matches(b"ab"));
        assert!(KeyFilter::prefix(b"a").matches(b"ab"));
        assert!(!KeyFilter::prefix(b"a").matches(b"b"));
        assert!(KeyFilter::prefix(&[0xff]).matches(&[0xff, 1]));
    }
}
