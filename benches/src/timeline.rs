//! When operations completed, per millisecond of a run: the longest stretch with no completion
//! is how long the system stopped answering (a leader stopping or dying, a pause). Throughput
//! and latency quantiles hide such a stretch; this names its length and where it began.

use std::time::Instant;

use serde::Serialize;

/// Which milliseconds since a shared origin saw a completion (one origin per run, so workers'
/// timelines combine), one bit per millisecond: 1.2 KiB per worker for a 10 s run.
#[derive(Debug, Clone)]
pub struct Timeline {
    origin: Instant,
    busy: Vec<u64>,
}

/// The longest stretch without a completion, between the first completion and the last.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Gap {
    /// Milliseconds from the origin to the last completion before the gap.
    pub after_ms: u64,
    /// Milliseconds from that completion to the next one.
    pub len_ms: u64,
}

impl Timeline {
    pub fn new(origin: Instant) -> Self {
        Timeline { origin, busy: Vec::new() }
    }

    /// Marks the millisecond of `at` busy (instants before the origin count at the origin).
    pub fn record(&mut self, at: Instant) {
        // Capped at 2^32 ms (about 50 days), far beyond any run.
        let ms = u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX).min(1 << 32);
        let word = (ms / 64) as usize;
        if word >= self.busy.len() {
            self.busy.resize(word + 1, 0);
        }
        self.busy[word] |= 1 << (ms % 64);
    }

    /// Adds `other`'s completions (same origin expected; both come from one run).
    pub fn merge(&mut self, other: &Timeline) {
        if other.busy.len() > self.busy.len() {
            self.busy.resize(other.busy.len(), 0);
        }
        for (mine, theirs) in self.busy.iter_mut().zip(&other.busy) {
            *mine |= theirs;
        }
    }

    /// The longest stretch between two consecutive completions (millisecond resolution); None
    /// with fewer than two milliseconds that saw one.
    pub fn longest_gap(&self) -> Option<Gap> {
        let mut busy = self
            .busy
            .iter()
            .enumerate()
            .flat_map(|(w, bits)| (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| w as u64 * 64 + b));
        let mut prev = busy.next()?;
        let mut best: Option<Gap> = None;
        for ms in busy {
            let len = ms - prev;
            if best.is_none_or(|b| len > b.len_ms) {
                best = Some(Gap { after_ms: prev, len_ms: len });
            }
            prev = ms;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_longest_gap_is_between_consecutive_completions_across_merged_timelines() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let (mut a, mut b) = (Timeline::new(origin), Timeline::new(origin));
        for ms in [0, 1, 2, 3, 250, 251] {
            a.record(at(ms));
        }
        for ms in [100, 101, 420] {
            b.record(at(ms));
        }
        assert_eq!(a.longest_gap(), Some(Gap { after_ms: 3, len_ms: 247 }));
        a.merge(&b);
        assert_eq!(a.longest_gap(), Some(Gap { after_ms: 251, len_ms: 169 }));
    }

    #[test]
    fn fewer_than_two_busy_milliseconds_have_no_gap() {
        let origin = Instant::now();
        let mut t = Timeline::new(origin);
        assert_eq!(t.longest_gap(), None);
        t.record(origin);
        t.record(origin);
        assert_eq!(t.longest_gap(), None);
    }
}
