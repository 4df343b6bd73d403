//! The checkpoint writer of one board: fenced `Boards.Sync` with `seq = tick`.
//!
//! The board task encodes the board right after a tick and hands `(tick, bytes)` over through a
//! `watch` channel; this task writes the newest one it finds, one sync in flight at a time, and
//! reports back. So a slow store never slows the tick: checkpoints in between are simply skipped.
//!
//! Why `seq = tick` is safe: a board is encoded at most once per tick and only right after the
//! tick (joins and exits between ticks appear in the next tick's checkpoint), so one seq always
//! carries the same bytes, which is what the store's idempotent "equal seq" success assumes. A
//! retry after an unclear outcome may therefore use either the same or a newer tick.
//!
//! Reports: `Synced` (the store holds this tick), `StaleSeq` (it holds a newer seq: the board
//! moves its tick past it), `Fenced` (`STALE_EPOCH`: another owner; stop at once), `Gone`
//! (`BOARD_NOT_FOUND`: the game was deleted), `Failed` (a refusal retrying cannot fix).
//!
//! [`CheckpointStore`] is the seam to HyperCache, so the board task can be tested against a fake.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypercache_client::{Client, Epoch, Error as ClientError, Reason, Seq};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::metrics::Metrics;

/// The store operations a board owner needs.
pub(crate) trait CheckpointStore: Clone + Send + Sync + 'static {
    /// Writes a checkpoint fenced by `epoch` (see `Client::sync_board`).
    fn sync(
        &self,
        board: &str,
        epoch: Epoch,
        seq: Seq,
        data: Bytes,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Gives the board up (see `Client::release_board`).
    fn release(&self, board: &str, server: &str, epoch: Epoch) -> impl Future<Output = Result<(), ClientError>> + Send;
}

impl CheckpointStore for Client {
    async fn sync(&self, board: &str, epoch: Epoch, seq: Seq, data: Bytes) -> Result<(), ClientError> {
        self.sync_board(board, epoch, seq, data).await.map(|_| ())
    }

    async fn release(&self, board: &str, server: &str, epoch: Epoch) -> Result<(), ClientError> {
        self.release_board(board, server, epoch).await.map(|_| ())
    }
}

/// A board encoded right after `tick`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Encoded {
    pub(crate) tick: u64,
    pub(crate) data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncReport {
    Synced { tick: u64 },
    StaleSeq { stored: Seq },
    Fenced { owner: Option<String>, epoch: Epoch },
    Gone,
    Failed(String),
}

/// What a failed sync means.
enum Verdict {
    Retry,
    Report(SyncReport),
    Stop(SyncReport),
}

fn verdict(err: &ClientError) -> Verdict {
    if let Some(owner) = err.stale_epoch() {
        return Verdict::Stop(SyncReport::Fenced { owner: owner.owner, epoch: owner.epoch });
    }
    if err.is_reason(Reason::BoardNotFound) {
        return Verdict::Stop(SyncReport::Gone);
    }
    if let Some(stored) = err.stale_seq() {
        return Verdict::Report(SyncReport::StaleSeq { stored });
    }
    // Sync is idempotent per (epoch, seq): "maybe applied" is as retryable as "not applied".
    if err.is_retryable() || err.may_have_been_applied() {
        return Verdict::Retry;
    }
    Verdict::Stop(SyncReport::Failed(err.to_string()))
}

const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Aborts the writer task when the board task ends, however it ends.
pub(crate) struct SyncerGuard(JoinHandle<()>);

impl Drop for SyncerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the writer of `board` at `epoch`. Returns where to hand encoded boards, where reports
/// arrive, and the guard that stops the writer.
pub(crate) fn spawn<S: CheckpointStore>(
    store: S,
    board: Arc<str>,
    epoch: Epoch,
    metrics: Arc<Metrics>,
) -> (watch::Sender<Option<Encoded>>, mpsc::UnboundedReceiver<SyncReport>, SyncerGuard) {
    let (latest_tx, latest) = watch::channel(None);
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let task = tokio::spawn(write_loop(store, board, epoch, metrics, latest, reports_tx));
    (latest_tx, reports, SyncerGuard(task))
}

async fn write_loop<S: CheckpointStore>(
    store: S,
    board: Arc<str>,
    epoch: Epoch,
    metrics: Arc<Metrics>,
    mut latest: watch::Receiver<Option<Encoded>>,
    reports: mpsc::UnboundedSender<SyncReport>,
) {
    let mut synced: Option<u64> = None;
    let mut delay = RETRY_MIN;
    while latest.changed().await.is_ok() {
        loop {
            let Some(encoded) = latest.borrow_and_update().clone() else { break };
            if synced.is_some_and(|s| s >= encoded.tick) {
                break;
            }
            let started = std::time::Instant::now();
            let result = store.sync(&board, epoch, Seq(encoded.tick), encoded.data).await;
            metrics.sync_seconds.observe(started.elapsed().as_secs_f64());
            let err = match result {
                Ok(()) => {
                    metrics.syncs.with_label_values(&["ok"]).inc();
                    synced = Some(encoded.tick);
                    delay = RETRY_MIN;
                    if reports.send(SyncReport::Synced { tick: encoded.tick }).is_err() {
                        return;
                    }
                    break;
                }
                Err(err) => err,
            };
            match verdict(&err) {
                Verdict::Retry => {
                    metrics.syncs.with_label_values(&["retry"]).inc();
                    tracing::debug!(board = %board, epoch = epoch.0, tick = encoded.tick, error = %err, "sync failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Verdict::Report(report) => {
                    metrics.syncs.with_label_values(&["stale_seq"]).inc();
                    tracing::warn!(board = %board, epoch = epoch.0, tick = encoded.tick, ?report, "store holds a newer seq");
                    let _ = reports.send(report);
                    break;
                }
                Verdict::Stop(report) => {
                    let label = match &report {
                        SyncReport::Fenced { .. } => "fenced",
                        SyncReport::Gone => "gone",
                        _ => "failed",
                    };
                    metrics.syncs.with_label_values(&[label]).inc();
                    let _ = reports.send(report);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`CheckpointStore`] with the store's fencing rules, for board task tests.

    use std::sync::{Arc, Mutex};

    use hypercache_proto::poison::lock;
    use hypercache_proto::v1::ErrorInfo;

    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct State {
        pub(crate) epoch: Epoch,
        pub(crate) owner: Option<String>,
        pub(crate) seq: u64,
        pub(crate) data: Bytes,
        /// Every sync attempt: (epoch, seq, accepted).
        pub(crate) attempts: Vec<(u64, u64, bool)>,
        pub(crate) released: bool,
    }

    #[derive(Debug, Clone, Default)]
    pub(crate) struct FakeStore(pub(crate) Arc<Mutex<State>>);

    impl FakeStore {
        pub(crate) fn owned_by(server: &str, epoch: Epoch) -> FakeStore {
            let state = State { epoch, owner: Some(server.to_string()), ..State::default() };
            FakeStore(Arc::new(Mutex::new(state)))
        }

        pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut lock(&self.0))
        }

        /// What an orchestrator's reassignment does.
        pub(crate) fn reassign(&self, server: &str) -> Epoch {
            self.with(|s| {
                s.epoch = s.epoch.next();
                s.owner = Some(server.to_string());
                s.epoch
            })
        }
    }

    fn rejected(code: tonic::Code, info: ErrorInfo) -> ClientError {
        let reason = info.known_reason().expect("a known reason");
        ClientError::Rejected { code, reason, message: info.reason.clone(), info: Box::new(info) }
    }

    impl CheckpointStore for FakeStore {
        async fn sync(&self, _board: &str, epoch: Epoch, seq: Seq, data: Bytes) -> Result<(), ClientError> {
            self.with(|s| {
                if epoch != s.epoch || s.owner.is_none() {
                    s.attempts.push((epoch.0, seq.0, false));
                    let info = ErrorInfo {
                        reason: Reason::StaleEpoch.into(),
                        owner: s.owner.clone().unwrap_or_default(),
                        epoch: s.epoch.0,
                        ..Default::default()
                    };
                    return Err(rejected(tonic::Code::FailedPrecondition, info));
                }
                if seq.0 < s.seq {
                    s.attempts.push((epoch.0, seq.0, false));
                    let info = ErrorInfo { reason: Reason::StaleSeq.into(), seq: s.seq, ..Default::default() };
                    return Err(rejected(tonic::Code::FailedPrecondition, info));
                }
                s.attempts.push((epoch.0, seq.0, true));
                s.seq = seq.0;
                s.data = data;
                Ok(())
            })
        }

        async fn release(&self, _board: &str, server: &str, epoch: Epoch) -> Result<(), ClientError> {
            self.with(|s| {
                if s.epoch != epoch || s.owner.as_deref() != Some(server) {
                    let info = ErrorInfo { reason: Reason::NotOwner.into(), ..Default::default() };
                    return Err(rejected(tonic::Code::FailedPrecondition, info));
                }
                s.owner = None;
                s.epoch = s.epoch.next();
                s.released = true;
                Ok(())
            })
        }
    }
}
