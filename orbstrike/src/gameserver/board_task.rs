//! The task that owns one board at one epoch: ticks it, applies commands, feeds the players'
//! streams and hands checkpoints to its writer.
//!
//! # Invariants
//!
//! - The task owns the [`Board`]: no lock, no sharing. Everything else talks to it through a
//!   bounded command queue (inputs, joins, exits, new streams) and a control channel (stop,
//!   drain) that is always looked at first.
//! - A tick runs only while the lease [`Fence`] is safe. Stopping is immediate: the task stops
//!   reading commands, so no input is applied after the moment it learns it may no longer own
//!   the board (lease within the margin of its deadline, `STALE_EPOCH` on a sync, the assignment
//!   watch reporting the board lost). Every stream then ends with `UNAVAILABLE` "MOVED: ...".
//! - A join (or exit) is answered only once a checkpoint containing it is in the store, so a
//!   joined player survives a failover. Commands are applied between ticks and the board is
//!   encoded right after a tick, so the first checkpoint that can contain it is the next tick's;
//!   that tick's checkpoint is written without waiting for the checkpoint interval.
//! - Nothing awaits inside a tick: streams are fed with `try_send`, the checkpoint is handed over
//!   through a `watch`, the accept log through a bounded channel.
//!
//! # Draining
//!
//! On a drain the task stops reading inputs and joins, runs one last tick (folding in the joins
//! and exits accepted since the previous one), waits for the writer to store that tick, releases
//! the board (so an orchestrator can reassign it at once), and ends the streams with "MOVED".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hypercache_client::{Epoch, Error as ClientError, Reason};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tonic::Status;

use super::accept_log::AcceptLog;
use super::checkpointer::{self, CheckpointStore, Encoded, SyncReport};
use super::error::GameError;
use super::fence::Fence;
use super::metrics::Metrics;
use super::subscribers::{Subscribers, UpdateSender};
use crate::proto::v1 as pb;
use crate::rules::{Board, DeathReason, Direction, InputOutcome, PlayerId, RemoveOutcome};

/// Commands queued per board (inputs of all its players, joins, exits, new streams).
pub(crate) const COMMAND_QUEUE: usize = 4096;
/// Commands applied in one go before the task looks at its timers again.
const COMMAND_BATCH: usize = 256;
/// Time a drained board always gets to release itself.
const RELEASE_GRACE: Duration = Duration::from_millis(500);

pub(crate) enum Command {
    AddPlayer {
        name: String,
        reply: oneshot::Sender<Result<PlayerId, GameError>>,
    },
    RemovePlayer {
        player: PlayerId,
        reply: oneshot::Sender<Result<(), GameError>>,
    },
    /// `done` is dropped when the stream ends (game over, stop, superseded, disconnected).
    Subscribe {
        player: PlayerId,
        updates: UpdateSender,
        done: oneshot::Sender<()>,
        reply: oneshot::Sender<Result<(), GameError>>,
    },
    Input {
        player: PlayerId,
        seq: u64,
        direction: Direction,
        ring: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Stop(StopReason),
    Drain,
}

/// Why a board task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The assignment watch says the board is no longer this server's at this epoch.
    Lost,
    /// A sync was refused with `STALE_EPOCH`: another epoch owns the board.
    Fenced { owner: Option<String>, epoch: Epoch },
    /// The board no longer exists (the game ended or was deleted).
    BoardGone,
    /// The registration lease came within the margin of its deadline.
    LeaseUnsafe,
    /// The store refused a checkpoint for a reason retrying cannot fix.
    SyncFailed(String),
    /// Handed over on a drain; `released` says whether the release went through.
    Drained { released: bool },
    /// The server is stopping without a drain.
    ServerStopping,
}

impl StopReason {
    /// A bounded metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            StopReason::Lost => "lost",
            StopReason::Fenced { .. } => "fenced",
            StopReason::BoardGone => "gone",
            StopReason::LeaseUnsafe => "lease",
            StopReason::SyncFailed(_) => "sync_failed",
            StopReason::Drained { .. } => "drained",
            StopReason::ServerStopping => "stopping",
        }
    }

    fn why(&self) -> String {
        match self {
            StopReason::Lost => "the board was reassigned".to_string(),
            StopReason::Fenced { owner: Some(owner), epoch } => format!("fenced: {owner} owns it at epoch {epoch}"),
            StopReason::Fenced { owner: None, epoch } => format!("fenced: unassigned at epoch {epoch}"),
            StopReason::BoardGone => "the game ended".to_string(),
            StopReason::LeaseUnsafe => "the server's registration lease is about to lapse".to_string(),
            StopReason::SyncFailed(e) => format!("checkpoint refused: {e}"),
            StopReason::Drained { .. } => "the server is draining; the board was handed over".to_string(),
            StopReason::ServerStopping => "the server is stopping".to_string(),
        }
    }
}

/// What a finished board task reports to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoardExit {
    pub(crate) board: Arc<str>,
    pub(crate) epoch: Epoch,
    pub(crate) generation: u64,
    pub(crate) reason: StopReason,
}

/// Everything a board task needs.
pub(crate) struct BoardSpec<S> {
    pub(crate) board_id: Arc<str>,
    pub(crate) epoch: Epoch,
    /// Distinguishes successive tasks of the same board and epoch in the session's table.
    pub(crate) generation: u64,
    pub(crate) server_id: Arc<str>,
    pub(crate) board: Board,
    pub(crate) store: S,
    pub(crate) fence: Fence,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) accept_log: AcceptLog,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) drain_timeout: Duration,
    /// Published player count (for ServerStats and the players gauge).
    pub(crate) players: Arc<AtomicUsize>,
}

enum Ack {
    Added(PlayerId, oneshot::Sender<Result<PlayerId, GameError>>),
    Removed(oneshot::Sender<Result<(), GameError>>),
}

/// A join or exit waiting for a checkpoint at `tick` or later.
struct PendingAck {
    tick: u64,
    ack: Ack,
}

impl PendingAck {
    fn succeed(self) {
        let _ = match self.ack {
            Ack::Added(id, reply) => reply.send(Ok(id)).map_err(|_| ()),
            Ack::Removed(reply) => reply.send(Ok(())).map_err(|_| ()),
        };
    }

    fn fail(self, error: GameError) {
        let _ = match self.ack {
            Ack::Added(_, reply) => reply.send(Err(error)).map_err(|_| ()),
            Ack::Removed(reply) => reply.send(Err(error)).map_err(|_| ()),
        };
    }
}

pub(crate) struct BoardTask<S: CheckpointStore> {
    spec: BoardSpec<S>,
    subscribers: Subscribers,
    pending: Vec<PendingAck>,
    inputs_since_tick: u32,
    next_checkpoint: Instant,
    /// Checkpoint right after the next tick (someone waits for it).
    urgent: bool,
    latest: watch::Sender<Option<Encoded>>,
    _writer: checkpointer::SyncerGuard,
}

impl<S: CheckpointStore> BoardTask<S> {
    /// Runs the board until it is stopped; see the module documentation.
    pub(crate) async fn run(
        spec: BoardSpec<S>,
        mut commands: mpsc::Receiver<Command>,
        mut control: watch::Receiver<Control>,
    ) -> BoardExit {
        let (latest, mut reports, writer) =
            checkpointer::spawn(spec.store.clone(), spec.board_id.clone(), spec.epoch, spec.metrics.clone());
        let interval = spec.board.params().tick_interval();
        let mut task = BoardTask {
            subscribers: Subscribers::new(&spec.board_id, spec.metrics.play_streams.clone()),
            pending: Vec::new(),
            inputs_since_tick: 0,
            next_checkpoint: Instant::now() + spec.checkpoint_interval,
            urgent: false,
            latest,
            _writer: writer,
            spec,
        };
        task.spec.players.store(task.spec.board.player_count(), Ordering::Relaxed);
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        // A late tick is not caught up with a burst: game time slows down instead.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let reason = loop {
            tokio::select! {
                biased;
                changed = control.changed() => {
                    let next = match changed {
                        Ok(()) => control.borrow_and_update().clone(),
                        Err(_) => Control::Stop(StopReason::ServerStopping),
                    };
                    match next {
                        Control::Run => {}
                        Control::Stop(reason) => break reason,
                        Control::Drain => break task.drain(&mut reports).await,
                    }
                }
                Some(report) = reports.recv() => {
                    if let Some(reason) = task.on_report(report) {
                        break reason;
                    }
                }
                _ = ticker.tick() => {
                    if !task.spec.fence.is_safe() {
                        break StopReason::LeaseUnsafe;
                    }
                    task.tick();
                }
                command = commands.recv() => {
                    let Some(command) = command else { break StopReason::ServerStopping };
                    task.handle(command);
                    for _ in 1..COMMAND_BATCH {
                        match commands.try_recv() {
                            Ok(command) => task.handle(command),
                            Err(_) => break,
                        }
                    }
                }
            }
        };
        task.finish(reason)
    }

    fn handle(&mut self, command: Command) {
        let board = &mut self.spec.board;
        match command {
            Command::Input { player, seq, direction, ring } => {
                if let Ok(InputOutcome::Applied) = board.apply_input(player, seq, direction, ring) {
                    self.inputs_since_tick = self.inputs_since_tick.saturating_add(1);
                }
            }
            Command::AddPlayer { name, reply } => match board.add_player(&name) {
                Ok(id) => {
                    self.pending.push(PendingAck { tick: board.tick() + 1, ack: Ack::Added(id, reply) });
                    self.urgent = true;
                }
                Err(error) => {
                    let _ = reply.send(Err(GameError::Join { board: self.spec.board_id.to_string(), error }));
                }
            },
            Command::RemovePlayer { player, reply } => match board.remove_player(player) {
                Ok(RemoveOutcome::Removed) => {
                    self.pending.push(PendingAck { tick: board.tick() + 1, ack: Ack::Removed(reply) });
                    self.urgent = true;
                }
                Ok(RemoveOutcome::AlreadyGone) => {
                    let _ = reply.send(Ok(()));
                }
                Err(_) => {
                    let _ = reply.send(Err(self.unknown(player)));
                }
            },
            Command::Subscribe { player, updates, done, reply } => {
                if board.player(player).is_some() {
                    self.subscribers.add(player, updates, done);
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(self.unknown(player)));
                }
            }
        }
    }

    fn unknown(&self, player: PlayerId) -> GameError {
        GameError::UnknownPlayer { board: self.spec.board_id.to_string(), player }
    }

    fn tick(&mut self) {
        let started = std::time::Instant::now();
        let spec = &mut self.spec;
        let outcome = spec.board.step();
        let inputs = std::mem::take(&mut self.inputs_since_tick);
        if inputs > 0 {
            spec.accept_log.record(&spec.board_id, spec.epoch, outcome.tick, inputs);
            spec.metrics.inputs.inc_by(u64::from(inputs));
        }
        let kills = outcome.removed.iter().filter(|d| matches!(d.reason, DeathReason::Killed { .. })).count();
        spec.metrics.kills.inc_by(kills as u64);
        let dropped = self.subscribers.publish(&spec.board, &outcome);
        spec.metrics.resyncs.inc_by(dropped);
        spec.players.store(spec.board.player_count(), Ordering::Relaxed);
        let now = Instant::now();
        if self.urgent || now >= self.next_checkpoint {
            let encoded = Encoded { tick: spec.board.tick(), data: spec.board.encode_checkpoint() };
            self.latest.send_replace(Some(encoded));
            self.next_checkpoint = now + spec.checkpoint_interval;
            self.urgent = false;
        }
        spec.metrics.ticks.inc();
        spec.metrics.tick_seconds.observe(started.elapsed().as_secs_f64());
    }

    /// Acts on the writer's report; `Some` when the board must stop.
    fn on_report(&mut self, report: SyncReport) -> Option<StopReason> {
        match report {
            SyncReport::Synced { tick } => {
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.pending).into_iter().partition(|p| p.tick <= tick);
                self.pending = waiting;
                ready.into_iter().for_each(PendingAck::succeed);
                None
            }
            SyncReport::StaleSeq { stored } => {
                // The store holds a newer seq than this board's tick (written under this epoch by
                // an earlier process of this server): jump past it so the next checkpoint lands.
                self.spec.board.advance_tick_to(stored.0);
                for p in &mut self.pending {
                    p.tick = p.tick.max(stored.next().0);
                }
                self.urgent = true;
                None
            }
            SyncReport::Fenced { owner, epoch } => Some(StopReason::Fenced { owner, epoch }),
            SyncReport::Gone => Some(StopReason::BoardGone),
            SyncReport::Failed(e) => Some(StopReason::SyncFailed(e)),
        }
    }

    async fn drain(&mut self, reports: &mut mpsc::UnboundedReceiver<SyncReport>) -> StopReason {
        if !self.spec.fence.is_safe() {
            return StopReason::LeaseUnsafe;
        }
        let deadline = Instant::now() + self.spec.drain_timeout;
        self.urgent = true;
        self.tick();
        let final_tick = self.spec.board.tick();
        loop {
            tokio::select! {
                report = reports.recv() => match report {
                    Some(SyncReport::Synced { tick }) => {
                        self.on_report(SyncReport::Synced { tick });
                        if tick >= final_tick {
                            break;
                        }
                    }
                    Some(SyncReport::Fenced { owner, epoch }) => return StopReason::Fenced { owner, epoch },
                    Some(SyncReport::Gone) => return StopReason::BoardGone,
                    Some(other) => {
                        tracing::warn!(board = %self.spec.board_id, report = ?other, "final checkpoint not written");
                        break;
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => {
                    tracing::warn!(board = %self.spec.board_id, "final checkpoint not confirmed before the drain deadline");
                    break;
                }
            }
        }
        // Released even without a final checkpoint: the next owner resumes from the previous one
        // at once, instead of waiting for this server's lease to expire. The release gets a
        // moment of its own even if the checkpoint used up the drain time.
        let released = self.release(deadline.max(Instant::now() + RELEASE_GRACE)).await;
        StopReason::Drained { released }
    }

    /// Releases the board, retrying transient failures until `deadline`.
    async fn release(&self, deadline: Instant) -> bool {
        let spec = &self.spec;
        let mut delay = Duration::from_millis(50);
        loop {
            let attempt =
                tokio::time::timeout_at(deadline, spec.store.release(&spec.board_id, &spec.server_id, spec.epoch))
                    .await;
            let err = match attempt {
                Ok(Ok(())) => return true,
                Ok(Err(err)) => err,
                Err(_) => {
                    tracing::warn!(board = %spec.board_id, "release did not complete before the drain deadline");
                    return false;
                }
            };
            if err.is_reason(Reason::NotOwner) || err.is_reason(Reason::BoardNotFound) {
                // Someone else owns it already (or it is gone): nothing left to hand over.
                return false;
            }
            if !transient(&err) || Instant::now() + delay >= deadline {
                tracing::warn!(board = %spec.board_id, error = %err, "release failed");
                return false;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    fn finish(mut self, reason: StopReason) -> BoardExit {
        let spec = &self.spec;
        let stopped = || GameError::Stopped {
            board: spec.board_id.to_string(),
            server: spec.server_id.to_string(),
            why: reason.why(),
        };
        for pending in std::mem::take(&mut self.pending) {
            pending.fail(stopped());
        }
        let tick = spec.board.tick();
        if reason == StopReason::BoardGone {
            let over = pb::GameOver { reason: pb::GameOverReason::GameEnded as i32, killer_id: 0 };
            self.subscribers.close_all(|| {
                Ok(pb::PlayUpdate { tick, ack_seq: 0, body: Some(pb::play_update::Body::GameOver(over)) })
            });
        } else {
            self.subscribers.close_all(|| Err(Status::from(stopped())));
        }
        spec.players.store(0, Ordering::Relaxed);
        BoardExit { board: spec.board_id.clone(), epoch: spec.epoch, generation: spec.generation, reason }
    }
}

fn transient(err: &ClientError) -> bool {
    err.is_retryable() || matches!(err, ClientError::OutcomeUnknown { .. } | ClientError::Internal { .. })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hypercache_client::LeaseState;
    use prost::Message;

    use super::*;
    use crate::gameserver::checkpointer::fake::FakeStore;
    use crate::gameserver::fence::test_fence;
    use crate::rules::{validate_params, Board};

    struct Harness {
        store: FakeStore,
        commands: mpsc::Sender<Command>,
        control: watch::Sender<Control>,
        lease: watch::Sender<LeaseState>,
        task: tokio::task::JoinHandle<BoardExit>,
    }

    fn start() -> Harness {
        let params = pb::GameParams {
            arena_radius: 1000.0,
            max_players: 2,
            speed: 100.0,
            player_radius: 10.0,
            ring_radius: 30.0,
            tick_hz: 20,
        };
        let store = FakeStore::owned_by("gs-1", Epoch(3));
        let (lease, fence) = test_fence(Duration::from_secs(3600));
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let spec = BoardSpec {
            board_id: Arc::from("g1"),
            epoch: Epoch(3),
            generation: 1,
            server_id: Arc::from("gs-1"),
            board: Board::new(validate_params(&params, 30).expect("valid"), 1),
            store: store.clone(),
            fence,
            accept_log: AcceptLog::disabled("gs-1", metrics.accept_log_dropped.clone()),
            metrics,
            checkpoint_interval: Duration::from_millis(250),
            drain_timeout: Duration::from_secs(5),
            players: Arc::new(AtomicUsize::new(0)),
        };
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (control, control_rx) = watch::channel(Control::Run);
        let task = tokio::spawn(BoardTask::run(spec, commands_rx, control_rx));
        Harness { store, commands, control, lease, task }
    }

    impl Harness {
        async fn add(&self, name: &str) -> Result<PlayerId, GameError> {
            let (reply, rx) = oneshot::channel();
            self.commands.send(Command::AddPlayer { name: name.into(), reply }).await.expect("board runs");
            rx.await.expect("answered")
        }

        async fn subscribe(&self, player: PlayerId) -> mpsc::Receiver<Result<pb::PlayUpdate, Status>> {
            let (updates, rx) = mpsc::channel(64);
            let (reply, answer) = oneshot::channel();
            let done = oneshot::channel().0;
            self.commands.send(Command::Subscribe { player, updates, done, reply }).await.expect("board runs");
            answer.await.expect("answered").expect("subscribed");
            rx
        }

        fn stored(&self) -> pb::BoardCheckpoint {
            self.store.with(|s| pb::BoardCheckpoint::decode(s.data.as_ref()).expect("stored checkpoint decodes"))
        }
    }

    fn assert_moved(status: &Status) {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().starts_with("MOVED:"), "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_is_answered_only_once_a_checkpoint_holds_the_player() {
        let h = start();
        let id = h.add("alice").await.expect("joins");
        let stored = h.stored();
        assert!(stored.players.iter().any(|p| p.id == id.0 && p.name == "alice"), "{stored:?}");
        let seq = h.store.with(|s| s.seq);
        assert_eq!(seq, stored.tick, "seq = tick");
        h.add("bob").await.expect("second joins");
        let err = h.add("carol").await.expect_err("max_players is 2");
        assert_eq!(Status::from(err).code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test(start_paused = true)]
    async fn players_get_a_snapshot_then_deltas_with_growing_ticks_and_acks() {
        let h = start();
        let id = h.add("alice").await.unwrap();
        let mut updates = h.subscribe(id).await;
        let first = updates.recv().await.unwrap().unwrap();
        assert!(matches!(first.body, Some(pb::play_update::Body::Snapshot(_))));
        let mut last_tick = first.tick;
        for seq in 1..=5u64 {
            h.commands.send(Command::Input { player: id, seq, direction: Direction::Up, ring: false }).await.unwrap();
            let update = loop {
                let u = updates.recv().await.unwrap().unwrap();
                assert!(u.tick > last_tick, "ticks grow");
                last_tick = u.tick;
                assert!(matches!(u.body, Some(pb::play_update::Body::Delta(_))));
                if u.ack_seq == seq {
                    break u;
                }
            };
            assert_eq!(update.ack_seq, seq);
        }
        // Checkpoints keep advancing in the store while the board runs.
        let before = h.store.with(|s| s.seq);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(h.store.with(|s| s.seq) > before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_sync_refused_with_stale_epoch_stops_the_board_and_ends_streams_with_moved() {
        let mut h = start();
        let id = h.add("alice").await.unwrap();
        let mut updates = h.subscribe(id).await;
        let epoch = h.store.reassign("gs-2");
        let exit = (&mut h.task).await.expect("task ends by itself");
        assert_eq!(exit.reason, StopReason::Fenced { owner: Some("gs-2".into()), epoch });
        let status = loop {
            match updates.recv().await.expect("stream ends with a status") {
                Ok(_) => continue,
                Err(status) => break status,
            }
        };
        assert_moved(&status);
        assert!(status.message().contains("gs-2"), "{status:?}");
        assert!(updates.recv().await.is_none());
        // Nothing of the old epoch was accepted after the reassignment.
        h.store.with(|s| {
            let first_refused = s.attempts.iter().position(|a| !a.2).expect("a refused sync");
            assert!(s.attempts[first_refused..].iter().all(|a| !a.2));
        });
        // The command queue is closed: nothing more is applied.
        assert!(h
            .commands
            .send(Command::Input { player: id, seq: 9, direction: Direction::Up, ring: false })
            .await
            .is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_board_stops_when_the_lease_is_about_to_lapse() {
        let mut h = start();
        let id = h.add("alice").await.unwrap();
        let mut updates = h.subscribe(id).await;
        // Deadline 50 ms away, margin 100 ms: unsafe now.
        h.lease.send_replace(LeaseState::Alive { deadline: Instant::now() + Duration::from_millis(50) });
        let exit = (&mut h.task).await.unwrap();
        assert_eq!(exit.reason, StopReason::LeaseUnsafe);
        let status = loop {
            if let Err(status) = updates.recv().await.unwrap() {
                break status;
            }
        };
        assert_moved(&status);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_writes_a_final_checkpoint_and_releases_the_board() {
        let mut h = start();
        let id = h.add("alice").await.unwrap();
        let mut updates = h.subscribe(id).await;
        h.commands.send(Command::Input { player: id, seq: 1, direction: Direction::Right, ring: false }).await.unwrap();
        while updates.recv().await.unwrap().unwrap().ack_seq < 1 {}
        h.control.send_replace(Control::Drain);
        let exit = (&mut h.task).await.unwrap();
        assert_eq!(exit.reason, StopReason::Drained { released: true });
        let (seq, released) = h.store.with(|s| (s.seq, s.released));
        assert!(released);
        let stored = h.stored();
        assert_eq!(stored.tick, seq);
        let mut last = None;
        while let Some(item) = updates.recv().await {
            last = Some(item);
        }
        let status = last.expect("updates").expect_err("ends with a status");
        assert_moved(&status);
        assert_eq!(stored.acked_seq.get(&id.0), Some(&1), "the final checkpoint holds the last input");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_fails_pending_joins_with_moved() {
        let mut h = start();
        // The control channel is looked at first, so a join queued behind a stop never applies.
        h.control.send_replace(Control::Stop(StopReason::Lost));
        let (reply, rx) = oneshot::channel();
        let _ = h.commands.send(Command::AddPlayer { name: "late".into(), reply }).await;
        let exit = (&mut h.task).await.unwrap();
        assert_eq!(exit.reason, StopReason::Lost);
        assert!(rx.await.is_err(), "never answered: the caller maps this to MOVED");
    }
}
