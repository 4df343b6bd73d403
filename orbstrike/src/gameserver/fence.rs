//! [`Fence`]: whether this server may still act as the owner of its boards.
//!
//! Ownership rests on the registration lease. The [`LeaseKeeper`](hypercache_client::LeaseKeeper)
//! publishes the deadline it can vouch for (measured from the keepalive's send); the server stops
//! serving at `deadline - margin`, before the cluster can expire the lease and an orchestrator can
//! hand the boards to someone else. The margin absorbs clock-rate differences and the time
//! between a check and the act it guards.

use std::time::Duration;

use hypercache_client::LeaseState;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

#[derive(Debug, Clone)]
pub(crate) struct Fence {
    state: watch::Receiver<LeaseState>,
    margin: Duration,
}

impl Fence {
    pub(crate) fn new(state: watch::Receiver<LeaseState>, margin: Duration) -> Fence {
        Fence { state, margin }
    }

    /// True while the lease is alive and `margin` before its deadline.
    pub(crate) fn is_safe(&self) -> bool {
        self.state.borrow().is_safe_at(Instant::now(), self.margin)
    }

    /// Resolves once acting on the lease is no longer safe (or the keeper is gone).
    pub(crate) async fn unsafe_now(&mut self) {
        loop {
            let current = self.state.borrow_and_update().clone();
            if current.is_lost() {
                return;
            }
            let fence_at = current.deadline().checked_sub(self.margin).unwrap_or_else(Instant::now);
            if Instant::now() >= fence_at {
                return;
            }
            tokio::select! {
                _ = sleep_until(fence_at) => return,
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// After the fence fired: waits until a renewal makes the lease safe again (true), or the
    /// keeper reports it lost (false, final).
    pub(crate) async fn recovered(&mut self) -> bool {
        loop {
            let current = self.state.borrow_and_update().clone();
            if current.is_lost() {
                return false;
            }
            if current.is_safe_at(Instant::now(), self.margin) {
                return true;
            }
            if self.state.changed().await.is_err() {
                return false;
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn test_fence(deadline_in: Duration) -> (watch::Sender<LeaseState>, Fence) {
    let (tx, rx) = watch::channel(LeaseState::Alive { deadline: Instant::now() + deadline_in });
    (tx, Fence::new(rx, Duration::from_millis(100)))
}

#[cfg(test)]
mod tests {
    use hypercache_client::LostReason;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_fence_fires_margin_before_the_deadline_and_follows_renewals() {
        let start = Instant::now();
        let (tx, mut fence) = test_fence(Duration::from_secs(1));
        assert!(fence.is_safe());
        let waiter = tokio::spawn({
            let mut fence = fence.clone();
            async move {
                fence.unsafe_now().await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send_replace(LeaseState::Alive { deadline: start + Duration::from_secs(2) });
        let fired = waiter.await.expect("waiter");
        assert_eq!(fired, start + Duration::from_millis(1900));
        assert!(!fence.is_safe());
        // A late renewal makes it safe again; a loss is final.
        tx.send_replace(LeaseState::Alive { deadline: Instant::now() + Duration::from_secs(3) });
        assert!(fence.recovered().await);
        tx.send_replace(LeaseState::Lost { reason: LostReason::Gone, last_deadline: Instant::now() });
        assert!(!fence.recovered().await);
        assert!(!fence.is_safe());
    }
}
