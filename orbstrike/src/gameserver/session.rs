//! The session: registration, lease, assignments, and the lifecycle of every hosted board.
//!
//! # Model
//!
//! The server's right to serve boards is its registration lease. One *incarnation* is one
//! successful `Register` (with its lease and its incarnation number):
//!
//! ```text
//! register ──> serve ──(lease within margin of deadline)──> stop all boards ──┬─ renewed: serve again
//!    ^                                                                        └─ lost ─────┐
//!    └──────────────────────────────── new incarnation ───────────────────────────────────┘
//! serve ──(SIGTERM)──> drain: final checkpoints, release every board, deregister, exit
//! ```
//!
//! While serving, the assignment watch drives the table of boards ([`Shared`]): a board gained at
//! epoch `e` is loaded ([`loader`](super::loader)) and started as a [`BoardTask`] owning epoch
//! `e`; a board lost, or gained again at another epoch, is stopped at once (a new epoch is always
//! reloaded from the store: another server may have owned it in between). A watch snapshot
//! replaces the table: boards missing from it are stopped.
//!
//! **A board that stopped here at epoch `e` is never resumed here at `e`.** If the watch still
//! says this server owns it at `e` (after a lease scare the server recovered from, or after a
//! refused checkpoint), the server releases it instead, which bumps the epoch and lets an
//! orchestrator reassign it, possibly right back here. So the "MOVED" that ended its streams is
//! always followed by a newer epoch, which is what orchestrators wait for.
//!
//! Stopping is layered so that no single path has to be prompt: each board task checks the lease
//! fence before every tick and stops on a refused sync; the session additionally stops all boards
//! the moment the fence fires and whenever the watch reports a loss.
//!
//! # Not done (deliberately)
//!
//! - The server does not enforce its capacity against assignments (placement is the
//!   orchestrators' job); it logs a warning when it hosts more than it registered for.
//! - Two processes configured with the same server id fence each other through re-registration
//!   (the newer incarnation revokes the older one's lease), but may overlap by up to the lease
//!   margin; server ids must be unique.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use hypercache_client::{AssignmentUpdate, Client, Epoch, LeaseKeeper, RegisterOptions, Registration};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};

use super::accept_log::AcceptLog;
use super::board_task::{BoardExit, BoardSpec, BoardTask, Control, StopReason, COMMAND_QUEUE};
use super::config::Settings;
use super::fence::Fence;
use super::hosted::{BoardHandle, Hosted, Shared};
use super::loader::{self, LoadOutcome};
use crate::rules::Board;

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Boards handed back to the store (owner cleared, epoch bumped).
    pub released: Vec<String>,
    /// Boards that could not be released (fenced meanwhile, or the store was unreachable).
    pub not_released: Vec<String>,
    /// Whether the registration was ended explicitly (otherwise its lease expires on its own).
    pub deregistered: bool,
}

enum End {
    Shutdown,
    LeaseLost,
}

type Loaded = (String, Epoch, LoadOutcome);

/// The boards and loads of one incarnation.
struct Incarnation {
    number: hypercache_client::Incarnation,
    fence: Fence,
    boards: JoinSet<BoardExit>,
    loads: JoinSet<Loaded>,
}

pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: Client,
    pub(crate) settings: Arc<Settings>,
    pub(crate) advertise: String,
    pub(crate) accept_log: AcceptLog,
    pub(crate) generation: u64,
}

/// Resolves when shutdown is requested (or whoever could request it is gone).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Session {
    /// Runs until shutdown is requested, then drains.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> DrainReport {
        loop {
            let Some(registration) = self.register(&mut shutdown).await else {
                return DrainReport::default();
            };
            let keeper = match LeaseKeeper::spawn(self.client.clone(), registration.lease) {
                Ok(keeper) => keeper,
                Err(e) => {
                    // Only fails outside a Tokio runtime, which cannot be the case here.
                    tracing::error!(error = %e, "cannot keep the registration lease alive");
                    return DrainReport::default();
                }
            };
            let fence = Fence::new(keeper.subscribe(), self.settings.lease_margin);
            let mut inc =
                Incarnation { number: registration.incarnation, fence, boards: JoinSet::new(), loads: JoinSet::new() };
            match self.serve(&mut inc, &mut shutdown).await {
                End::Shutdown => {
                    let mut report = self.drain(&mut inc).await;
                    match self.client.deregister(&self.settings.server_id, inc.number).await {
                        Ok(()) => report.deregistered = true,
                        Err(e) => tracing::warn!(error = %e, "deregistration failed; the lease will expire instead"),
                    }
                    keeper.stop().await;
                    tracing::info!(
                        server = %self.settings.server_id,
                        released = report.released.len(),
                        not_released = report.not_released.len(),
                        deregistered = report.deregistered,
                        "drained"
                    );
                    return report;
                }
                End::LeaseLost => {
                    let state = keeper.stop().await;
                    tracing::warn!(
                        server = %self.settings.server_id,
                        incarnation = inc.number.0,
                        ?state,
                        "registration lease lost; all boards stopped; registering again"
                    );
                }
            }
        }
    }

    /// Registers, retrying with backoff; `None` if shutdown is requested first.
    async fn register(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Registration> {
        let s = &self.settings;
        let mut delay = Duration::from_millis(100);
        loop {
            let mut options = RegisterOptions::new(s.server_id.clone(), self.advertise.clone(), s.lease_ttl);
            options.capacity = s.capacity;
            options.labels.insert("version".into(), env!("CARGO_PKG_VERSION").into());
            tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => return None,
                result = self.client.register(options) => match result {
                    Ok(registration) => {
                        self.shared.metrics.registrations.inc();
                        tracing::info!(
                            server = %s.server_id,
                            incarnation = registration.incarnation.0,
                            advertise = %self.advertise,
                            "registered"
                        );
                        return Some(registration);
                    }
                    Err(e) => tracing::warn!(server = %s.server_id, error = %e, ?delay, "registration failed; retrying"),
                },
            }
            tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Serves boards until shutdown (`Shutdown`) or until the lease is lost (`LeaseLost`).
    async fn serve(&mut self, inc: &mut Incarnation, shutdown: &mut watch::Receiver<bool>) -> End {
        loop {
            let recovered = tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => return End::Shutdown,
                recovered = inc.fence.recovered() => recovered,
            };
            if !recovered {
                return End::LeaseLost;
            }
            self.shared.set_serving(true);
            let (updates_tx, mut updates) = mpsc::channel(16);
            let watcher = AbortOnDrop(tokio::spawn(watch_assignments(
                self.client.clone(),
                self.settings.server_id.clone(),
                updates_tx,
            )));
            let mut fence = inc.fence.clone();
            let shutdown_now = loop {
                tokio::select! {
                    biased;
                    _ = shutdown_requested(shutdown) => break true,
                    _ = fence.unsafe_now() => break false,
                    Some(update) = updates.recv() => self.on_update(inc, update),
                    Some(loaded) = inc.loads.join_next() => self.on_loaded(inc, loaded),
                    Some(exit) = inc.boards.join_next() => self.on_exit(exit),
                }
            };
            drop(watcher);
            self.shared.set_serving(false);
            if shutdown_now {
                return End::Shutdown;
            }
            self.shared.metrics.lease_fenced.inc();
            tracing::warn!(
                server = %self.settings.server_id,
                incarnation = inc.number.0,
                "lease within the margin of its deadline: stopping every board"
            );
            self.stop_all(inc, StopReason::LeaseUnsafe).await;
        }
    }

    fn on_update(&mut self, inc: &mut Incarnation, update: AssignmentUpdate) {
        match update {
            AssignmentUpdate::Snapshot { owned, revision } => {
                let wanted: HashMap<String, Epoch> = owned.into_iter().map(|c| (c.board_id, c.epoch)).collect();
                let stale: Vec<String> = self.shared.with_boards(|boards| {
                    boards
                        .iter()
                        .filter(|(id, h)| wanted.get(*id) != Some(&h.epoch()))
                        .map(|(id, _)| id.clone())
                        .collect()
                });
                tracing::debug!(revision, owned = wanted.len(), stale = stale.len(), "assignment snapshot");
                for id in stale {
                    self.stop_board(&id, StopReason::Lost);
                }
                for (id, epoch) in wanted {
                    self.gain(inc, id, epoch);
                }
            }
            AssignmentUpdate::Changes { changes, .. } => {
                for change in changes {
                    if change.gained {
                        self.gain(inc, change.board_id, change.epoch);
                    } else {
                        self.lose(&change.board_id, change.epoch);
                    }
                }
            }
        }
    }

    fn gain(&mut self, inc: &mut Incarnation, board: String, epoch: Epoch) {
        let current = self.shared.with_boards(|boards| boards.get(&board).map(Hosted::epoch));
        match current {
            Some(e) if e == epoch => return,
            Some(_) => self.stop_board(&board, StopReason::Lost),
            None => {}
        }
        if self.shared.departed_at(&board).is_some_and(|stopped| stopped >= epoch) {
            self.release_detached(board, epoch, "it stopped here at this epoch before");
            return;
        }
        let (hosted, _) = self.shared.counts();
        if hosted >= u64::from(self.settings.capacity) {
            tracing::warn!(board = %board, hosted, capacity = self.settings.capacity, "assigned beyond capacity");
        }
        let client = self.client.clone();
        let (server, number, tick_hz) = (self.settings.server_id.clone(), inc.number, self.settings.tick_hz);
        let id = board.clone();
        let abort = inc.loads.spawn(async move {
            let outcome = loader::load(&client, &id, epoch, &server, number, tick_hz).await;
            (id, epoch, outcome)
        });
        self.shared.with_boards(|boards| boards.insert(board, Hosted::Loading { epoch, abort }));
    }

    fn lose(&mut self, board: &str, epoch: Epoch) {
        let ours = self.shared.with_boards(|boards| boards.get(board).is_some_and(|h| h.epoch() <= epoch));
        if ours {
            self.stop_board(board, StopReason::Lost);
        }
    }

    /// Releases a board this server owns but will not serve, in the background.
    fn release_detached(&self, board: String, epoch: Epoch, why: &'static str) {
        tracing::info!(board = %board, epoch = epoch.0, why, "releasing the board for a clean reassignment");
        self.shared.depart(&board, epoch);
        let (client, server) = (self.client.clone(), self.settings.server_id.clone());
        tokio::spawn(async move {
            if let Err(e) = client.release_board(&board, &server, epoch).await {
                tracing::warn!(board = %board, epoch = epoch.0, error = %e, "release failed");
            }
        });
    }

    /// Removes the board from the table and stops whatever serves it.
    fn stop_board(&self, board: &str, reason: StopReason) {
        let removed = self.shared.with_boards(|boards| boards.remove(board));
        if let Some(hosted) = &removed {
            self.shared.depart(board, hosted.epoch());
        }
        match removed {
            Some(Hosted::Loading { abort, epoch }) => {
                abort.abort();
                tracing::info!(board, epoch = epoch.0, reason = reason.label(), "board lost while loading");
            }
            Some(Hosted::Running(handle)) => {
                handle.control.send_replace(Control::Stop(reason));
            }
            Some(Hosted::Broken { .. }) | None => {}
        }
    }

    fn on_loaded(&mut self, inc: &mut Incarnation, loaded: Result<Loaded, JoinError>) {
        let Ok((board, epoch, outcome)) = loaded else { return }; // aborted: the board was lost meanwhile
        let expected = self
            .shared
            .with_boards(|boards| matches!(boards.get(&board), Some(Hosted::Loading { epoch: e, .. }) if *e == epoch));
        if !expected {
            return;
        }
        match outcome {
            LoadOutcome::Ready(state) => self.start_board(inc, board, epoch, *state),
            LoadOutcome::NotOurs(why) => {
                self.shared.with_boards(|boards| boards.remove(&board));
                tracing::info!(board = %board, epoch = epoch.0, %why, "gained board is not ours to serve");
            }
            LoadOutcome::Broken(why) => {
                tracing::error!(board = %board, epoch = epoch.0, %why, "gained board cannot be served");
                self.shared.with_boards(|boards| boards.insert(board, Hosted::Broken { epoch, why }));
            }
            LoadOutcome::EarlierIncarnation { owner_incarnation } => {
                self.shared.with_boards(|boards| boards.remove(&board));
                tracing::info!(board = %board, epoch = epoch.0, owner_incarnation = owner_incarnation.0, incarnation = inc.number.0, "earlier owner");
                self.release_detached(board, epoch, "it is assigned to an earlier incarnation of this server");
            }
        }
    }

    fn start_board(&mut self, inc: &mut Incarnation, board_id: String, epoch: Epoch, board: Board) {
        self.generation += 1;
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (control, control_rx) = watch::channel(Control::Run);
        let players = Arc::new(AtomicUsize::new(board.player_count()));
        let (tick, count) = (board.tick(), board.player_count());
        let spec = BoardSpec {
            board_id: Arc::from(board_id.as_str()),
            epoch,
            generation: self.generation,
            server_id: Arc::from(self.settings.server_id.as_str()),
            board,
            store: self.client.clone(),
            fence: inc.fence.clone(),
            metrics: self.shared.metrics.clone(),
            accept_log: self.accept_log.clone(),
            checkpoint_interval: self.settings.checkpoint_interval,
            drain_timeout: self.settings.drain_timeout,
            players: players.clone(),
        };
        inc.boards.spawn(BoardTask::run(spec, commands_rx, control_rx));
        let handle = BoardHandle { epoch, generation: self.generation, commands, control, players };
        self.shared.with_boards(|boards| boards.insert(board_id.clone(), Hosted::Running(handle)));
        self.shared.metrics.boards_started.inc();
        tracing::info!(board = %board_id, epoch = epoch.0, tick, players = count, "board gained");
    }

    fn on_exit(&self, exit: Result<BoardExit, JoinError>) {
        let exit = match exit {
            Ok(exit) => exit,
            Err(e) => {
                // A board task panicked: drop every entry whose task is gone.
                tracing::error!(error = %e, "a board task failed");
                self.shared.with_boards(|boards| {
                    boards.retain(|_, h| !matches!(h, Hosted::Running(handle) if handle.commands.is_closed()))
                });
                return;
            }
        };
        self.shared.with_boards(|boards| {
            if matches!(boards.get(&*exit.board), Some(Hosted::Running(h)) if h.generation == exit.generation) {
                boards.remove(&*exit.board);
            }
        });
        self.shared.depart(&exit.board, exit.epoch);
        self.shared.metrics.boards_stopped.with_label_values(&[exit.reason.label()]).inc();
        let (board, epoch, reason) = (&exit.board, exit.epoch, &exit.reason);
        match reason {
            StopReason::Fenced { .. } | StopReason::SyncFailed(_) | StopReason::LeaseUnsafe => {
                tracing::warn!(board = %board, epoch = epoch.0, ?reason, "board fenced")
            }
            StopReason::Drained { released } => {
                tracing::info!(board = %board, epoch = epoch.0, released, "board drained")
            }
            _ => tracing::info!(board = %board, epoch = epoch.0, ?reason, "board stopped"),
        }
    }

    /// Stops every board and load of the incarnation and waits for the tasks to end.
    async fn stop_all(&mut self, inc: &mut Incarnation, reason: StopReason) {
        let ids: Vec<String> = self.shared.with_boards(|boards| boards.keys().cloned().collect());
        for id in ids {
            self.stop_board(&id, reason.clone());
        }
        inc.loads.abort_all();
        while inc.loads.join_next().await.is_some() {}
        // Stopping is immediate (the tasks only end their streams), so this is short.
        while let Some(exit) = inc.boards.join_next().await {
            self.on_exit(exit);
        }
    }

    /// Hands every board back: running boards write a final checkpoint and release themselves;
    /// boards still loading (or broken) are released directly.
    async fn drain(&mut self, inc: &mut Incarnation) -> DrainReport {
        self.shared.set_draining();
        let entries: Vec<(String, Hosted)> = self.shared.with_boards(|boards| boards.drain().collect());
        tracing::info!(server = %self.settings.server_id, boards = entries.len(), "draining");
        let mut release_directly = Vec::new();
        for (id, hosted) in entries {
            match hosted {
                Hosted::Running(handle) => {
                    handle.control.send_replace(Control::Drain);
                }
                Hosted::Loading { epoch, abort } => {
                    abort.abort();
                    release_directly.push((id, epoch));
                }
                Hosted::Broken { epoch, .. } => release_directly.push((id, epoch)),
            }
        }
        inc.loads.abort_all();
        let mut report = DrainReport::default();
        let server = self.settings.server_id.clone();
        let client = self.client.clone();
        let releases = futures::future::join_all(release_directly.into_iter().map(|(id, epoch)| {
            let (client, server) = (client.clone(), server.clone());
            async move {
                let released = client.release_board(&id, &server, epoch).await;
                if let Err(e) = &released {
                    tracing::warn!(board = %id, epoch = epoch.0, error = %e, "release failed");
                }
                (id, released.is_ok())
            }
        }));
        let boards = &mut inc.boards;
        let exits = async {
            let mut exits = Vec::new();
            while let Some(exit) = boards.join_next().await {
                exits.push(exit);
            }
            exits
        };
        // Each board bounds its own drain; this only guards against a task that never ends.
        let limit = self.settings.drain_timeout + Duration::from_secs(1);
        let outcome = tokio::time::timeout(limit, futures::future::join(releases, exits)).await;
        let (released, exits) = match outcome {
            Ok(done) => done,
            Err(_) => {
                tracing::warn!(?limit, "drain did not finish in time; abandoning the remaining boards");
                inc.boards.abort_all();
                (Vec::new(), Vec::new())
            }
        };
        for (id, ok) in released {
            if ok {
                report.released.push(id)
            } else {
                report.not_released.push(id)
            }
        }
        for exit in exits {
            if let Ok(exit) = &exit {
                let id = exit.board.to_string();
                match exit.reason {
                    StopReason::Drained { released: true } => report.released.push(id),
                    _ => report.not_released.push(id),
                }
            }
            self.on_exit(exit);
        }
        report.released.sort();
        report.not_released.sort();
        report
    }
}

/// Forwards the assignment watch of `server_id` until the receiver is gone; the watch reconnects
/// by itself and starts every connection with a snapshot.
async fn watch_assignments(client: Client, server_id: String, updates: mpsc::Sender<AssignmentUpdate>) {
    let mut watch = client.watch_assignments(&server_id);
    loop {
        match watch.next().await {
            Ok(update) => {
                if updates.send(update).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(server = %server_id, error = %e, "assignment watch failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
