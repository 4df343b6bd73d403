//! [`BoardSyncer`]: the checkpoint loop of a board owner, and the signal to stop serving.
//!
//! Every `interval` (250 ms by default), if the game state changed since the last successful
//! sync, the syncer writes it with the next seq under the owner's epoch. The rules that keep it
//! safe:
//!
//! - **A seq is never reused for different data.** A sync whose outcome is unclear (no leader,
//!   deadline, connection loss, outcome unknown) is retried on the next tick with the *same*
//!   (seq, data): the server treats an equal seq as an idempotent success, so at most one
//!   checkpoint per seq exists. Only after a success does the next tick take newer data with
//!   seq + 1.
//! - **Fencing stops it at once.** `STALE_EPOCH` means another owner holds the board (or it was
//!   released): the syncer stops with [`SyncStopped::Fenced`] carrying the current owner and
//!   epoch; `BOARD_NOT_FOUND` stops it with [`SyncStopped::BoardNotFound`]. The caller must stop
//!   serving the board the moment it sees either.
//! - **Optional lease fence.** With [`BoardSyncer::fence_with_lease`] the syncer also stops, with
//!   [`SyncStopped::LeaseLapsed`], as soon as `now >= deadline - margin` of the owner's lease (or
//!   the keeper reports it lost), even in the middle of a sync.
//! - `STALE_SEQ` (the store holds a newer seq, e.g. written by a previous process of the same
//!   owner) moves the seq past the stored one; the data is unchanged.
//!
//! Any other refusal (e.g. `CHECKPOINT_TOO_LARGE`) stops it with [`SyncStopped::Failed`].
//! A tick where nothing changed sends nothing, so fencing is learned on the next change (or
//! from the assignment watch).

use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::Reason;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};

use crate::client::Client;
use crate::error::{CurrentOwner, Error};
use crate::ids::{Epoch, Seq};
use crate::keeper::LeaseState;

/// Default time between checkpoint syncs.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// Why a [`BoardSyncer`] stopped. Every variant but `Stopped` means: stop serving the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStopped {
    /// Another epoch owns the board now.
    Fenced(CurrentOwner),
    /// The board no longer exists.
    BoardNotFound,
    /// The owner's lease reached `deadline - margin`; `deadline` is the last vouched one.
    LeaseLapsed { deadline: Instant },
    /// A refusal the syncer cannot work around.
    Failed(Error),
    /// [`SyncHandle::stop`] was called or the handle dropped.
    Stopped,
}

/// The syncer's progress, published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// `synced_seq`: the last seq the store confirmed, if any yet.
    Running {
        synced_seq: Option<Seq>,
    },
    Stopped(SyncStopped),
}

/// Configures and starts the checkpoint loop of one board.
#[derive(Debug)]
pub struct BoardSyncer {
    client: Client,
    board_id: String,
    epoch: Epoch,
    next_seq: Seq,
    source: watch::Receiver<Bytes>,
    interval: Duration,
    lease: Option<(watch::Receiver<LeaseState>, Duration)>,
}

/// Controls a running [`BoardSyncer`].
#[derive(Debug)]
pub struct SyncHandle {
    status: watch::Receiver<SyncStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<SyncStopped>,
}

impl BoardSyncer {
    /// `first_seq` is the seq of the first checkpoint this owner writes (the stored seq + 1);
    /// `source` holds the latest game state (its current value is synced first).
    pub fn new(
        client: Client,
        board_id: impl Into<String>,
        epoch: Epoch,
        first_seq: Seq,
        source: watch::Receiver<Bytes>,
    ) -> Self {
        BoardSyncer {
            client,
            board_id: board_id.into(),
            epoch,
            next_seq: first_seq,
            source,
            interval: DEFAULT_SYNC_INTERVAL,
            lease: None,
        }
    }

    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Also stop (with [`SyncStopped::LeaseLapsed`]) when the owner's lease, as reported by a
    /// [`LeaseKeeper`](crate::LeaseKeeper)'s `subscribe()`, comes within `margin` of its
    /// deadline or is lost.
    pub fn fence_with_lease(mut self, lease: watch::Receiver<LeaseState>, margin: Duration) -> Self {
        self.lease = Some((lease, margin));
        self
    }

    /// Starts the loop on the current Tokio runtime.
    pub fn spawn(self) -> Result<SyncHandle, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("BoardSyncer::spawn must be called inside a Tokio runtime"))?;
        let (status_tx, status) = watch::channel(SyncStatus::Running { synced_seq: None });
        let (stop, stop_rx) = oneshot::channel();
        let task = runtime.spawn(self.run(stop_rx, status_tx));
        Ok(SyncHandle { status, stop: Some(stop), task })
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>, status: watch::Sender<SyncStatus>) -> SyncStopped {
        let lease = self.lease.take();
        let stopped = tokio::select! {
            biased;
            _ = &mut stop => SyncStopped::Stopped,
            deadline = lease_fence(lease) => SyncStopped::LeaseLapsed { deadline },
            stopped = self.sync_loop(&status) => stopped,
        };
        tracing::debug!(board = %self.board_id, epoch = self.epoch.0, ?stopped, "board syncer stopped");
        status.send_replace(SyncStatus::Stopped(stopped.clone()));
        stopped
    }

    async fn sync_loop(&mut self, status: &watch::Sender<SyncStatus>) -> SyncStopped {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A sync not yet confirmed: retried with the same seq and data.
        let mut pending: Option<(Seq, Bytes)> = None;
        // The data of the last sync started; `None` before the first.
        let mut last_taken: Option<Bytes> = None;
        loop {
            ticker.tick().await;
            let (seq, data) = match pending.take() {
                Some(unconfirmed) => unconfirmed,
                None => {
                    // A closed source keeps its last value, which is synced if it is new.
                    let changed = match self.source.has_changed() {
                        Ok(changed) => changed,
                        Err(_closed) => last_taken.as_ref() != Some(&*self.source.borrow()),
                    };
                    if last_taken.is_some() && !changed {
                        continue;
                    }
                    let data = self.source.borrow_and_update().clone();
                    last_taken = Some(data.clone());
                    (self.next_seq, data)
                }
            };
            match self.client.sync_board(&self.board_id, self.epoch, seq, data.clone()).await {
                Ok(result) => {
                    self.next_seq = seq.max(result.seq).next();
                    status.send_replace(SyncStatus::Running { synced_seq: Some(result.seq) });
                }
                Err(err) => match judge(&err) {
                    Judgement::Stop(stopped) => return stopped,
                    Judgement::RetrySameSeq => {
                        tracing::debug!(board = %self.board_id, seq = seq.0, error = %err, "sync failed; retrying");
                        pending = Some((seq, data));
                    }
                    Judgement::SkipPast(stored) => {
                        tracing::debug!(board = %self.board_id, seq = seq.0, stored = stored.0, "stored seq is newer; moving past it");
                        self.next_seq = stored.next();
                        pending = Some((self.next_seq, data));
                    }
                },
            }
        }
    }
}

/// What a failed sync means for the loop.
#[derive(Debug, PartialEq, Eq)]
enum Judgement {
    Stop(SyncStopped),
    RetrySameSeq,
    SkipPast(Seq),
}

fn judge(err: &Error) -> Judgement {
    if let Some(owner) = err.stale_epoch() {
        return Judgement::Stop(SyncStopped::Fenced(owner));
    }
    if err.is_reason(Reason::BoardNotFound) {
        return Judgement::Stop(SyncStopped::BoardNotFound);
    }
    if let Some(stored) = err.stale_seq() {
        return Judgement::SkipPast(stored);
    }
    // Sync is idempotent per (epoch, seq), so "maybe applied" is as retryable as "not applied".
    if err.is_retryable() || matches!(err, Error::OutcomeUnknown { .. } | Error::Internal { .. }) {
        return Judgement::RetrySameSeq;
    }
    Judgement::Stop(SyncStopped::Failed(err.clone()))
}

/// Resolves, with the last vouched deadline, when the lease comes within the margin of its
/// deadline or is lost; never without a lease.
async fn lease_fence(lease: Option<(watch::Receiver<LeaseState>, Duration)>) -> Instant {
    let Some((mut state, margin)) = lease else {
        return std::future::pending().await;
    };
    loop {
        let current = state.borrow_and_update().clone();
        let deadline = current.deadline();
        if current.is_lost() {
            return deadline;
        }
        let fence_at = deadline.checked_sub(margin).unwrap_or(deadline);
        if Instant::now() >= fence_at {
            return deadline;
        }
        tokio::select! {
            _ = sleep_until(fence_at) => return deadline,
            changed = state.changed() => {
                if changed.is_err() {
                    // The keeper is gone: nothing vouches for the lease any more.
                    return deadline;
                }
            }
        }
    }
}

impl SyncHandle {
    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// A receiver of every status change.
    pub fn subscribe(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Waits until the loop stops by itself (fenced, lease lapsed, failed) or is stopped.
    pub async fn stopped(&self) -> SyncStopped {
        let mut status = self.status.clone();
        let result = status.wait_for(|s| matches!(s, SyncStatus::Stopped(_))).await;
        match result.as_deref() {
            Ok(SyncStatus::Stopped(stopped)) => stopped.clone(),
            _ => SyncStopped::Failed(Error::Internal { message: "board syncer task ended".into() }),
        }
    }

    /// Stops the loop (an in-flight sync is abandoned) and returns why it ended (`Stopped`, or
    /// the earlier reason if it had already stopped by itself).
    pub async fn stop(mut self) -> SyncStopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(stopped) => stopped,
            Err(e) => SyncStopped::Failed(Error::Internal { message: format!("board syncer task failed: {e}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Incarnation;
    use hypercache_proto::v1::ErrorInfo;

    fn rejected(code: tonic::Code, info: ErrorInfo) -> Error {
        let reason = info.known_reason().expect("a known reason");
        Error::Rejected { code, reason, message: "m".into(), info: Box::new(info) }
    }

    #[test]
    fn failures_are_judged_by_what_they_mean_for_the_owner() {
        let stale = rejected(
            tonic::Code::FailedPrecondition,
            ErrorInfo { reason: "STALE_EPOCH".into(), owner: "b".into(), epoch: 4, ..Default::default() },
        );
        assert_eq!(
            judge(&stale),
            Judgement::Stop(SyncStopped::Fenced(CurrentOwner {
                owner: Some("b".into()),
                incarnation: Incarnation(0),
                epoch: Epoch(4)
            }))
        );
        let gone =
            rejected(tonic::Code::NotFound, ErrorInfo { reason: "BOARD_NOT_FOUND".into(), ..Default::default() });
        assert_eq!(judge(&gone), Judgement::Stop(SyncStopped::BoardNotFound));
        let seq = rejected(
            tonic::Code::FailedPrecondition,
            ErrorInfo { reason: "STALE_SEQ".into(), seq: 9, ..Default::default() },
        );
        assert_eq!(judge(&seq), Judgement::SkipPast(Seq(9)));
        assert_eq!(judge(&Error::OutcomeUnknown { message: "m".into() }), Judgement::RetrySameSeq);
        assert_eq!(judge(&Error::Unavailable { message: "m".into() }), Judgement::RetrySameSeq);
        let big = Error::InvalidArgument { reason: Reason::CheckpointTooLarge, message: "m".into() };
        assert!(matches!(judge(&big), Judgement::Stop(SyncStopped::Failed(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_fence_fires_margin_before_the_deadline() {
        let start = Instant::now();
        let (tx, rx) = watch::channel(LeaseState::Alive { deadline: start + Duration::from_secs(3) });
        let fence = tokio::spawn(lease_fence(Some((rx, Duration::from_secs(1)))));
        // A renewal pushes the deadline out before the first fence time.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.send_replace(LeaseState::Alive { deadline: start + Duration::from_secs(5) });
        let deadline = fence.await.expect("fence task");
        assert_eq!(deadline, start + Duration::from_secs(5));
        assert_eq!(Instant::now(), start + Duration::from_secs(4));
    }
}
