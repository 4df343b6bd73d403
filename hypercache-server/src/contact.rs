//! When a replica last heard from its shard's leader.
//!
//! openraft's metrics name a follower's leader for as long as its vote stands. With Pre-Vote a
//! follower whose leader died, but which cannot win an election itself (too few live peers),
//! keeps that vote, and so keeps naming the dead leader. Readiness must not take that name as
//! "a leader is serving": a replica counts as led only while it has heard from the leader within
//! the leader lease (`election_timeout_max`), through an accepted append or snapshot, or, for a
//! quiet shard, a beat from the leader's node naming the shard (`quiet/`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the first call in this process, plus one (0 means "never").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
}

/// The last time a replica heard from its leader. Shared by the peer services that record it and
/// the readiness check that reads it.
#[derive(Debug, Default)]
pub struct LeaderContact {
    at_ms: AtomicU64,
}

impl LeaderContact {
    /// Records that the leader was heard from now.
    pub fn heard(&self) {
        self.at_ms.store(now_ms(), Ordering::Release);
    }

    /// Whether the leader was heard from within `window`.
    pub fn within(&self, window: Duration) -> bool {
        let at = self.at_ms.load(Ordering::Acquire);
        at != 0 && now_ms().saturating_sub(at) <= u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_heard_is_not_within_any_window() {
        let c = LeaderContact::default();
        assert!(!c.within(Duration::from_secs(3600)));
        c.heard();
        assert!(c.within(Duration::from_secs(3600)));
    }

    #[test]
    fn contact_ages_out_of_a_short_window() {
        let c = LeaderContact::default();
        c.heard();
        std::thread::sleep(Duration::from_millis(30));
        assert!(!c.within(Duration::from_millis(5)));
    }
}
