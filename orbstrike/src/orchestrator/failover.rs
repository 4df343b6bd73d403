//! The failover master: the one orchestrator that moves boards off dead servers.
//!
//! # Election and fencing
//!
//! Every orchestrator campaigns in the HyperCache election `config.election` with a lease of
//! `election_ttl` kept alive by a [`LeaseKeeper`]. The winner gets a *term* that is larger than
//! every earlier term and passes `(election, term)` to every `Boards.Assign`: once another
//! orchestrator has won, the store refuses the old term (`STALE_TERM`), so a deposed master that
//! is still running (paused, partitioned) cannot move anything. The master also stops on its
//! own the moment its lease is no longer safe (`deadline - ttl/4`), the lease is lost, or the
//! store says its term is stale; it then campaigns again with a fresh lease. On shutdown it
//! resigns and revokes its lease so another orchestrator takes over at once. (The original
//! rotated a never-renewed SETNX lease among all orchestrators and had no fencing.)
//!
//! # What moves
//!
//! Every orchestrator tracks orphans from its board scans (`OrphanTracker` in `orphans.rs`, pure); only the
//! master acts on them. A board is an orphan when
//! - it has no owner: released by a draining server (epoch > 0: moved at once), or never
//!   assigned (epoch 0: moved after the margin, so a CreateGame in flight can finish);
//! - its owner is not registered: the registry drops a server when its lease expires, so this
//!   already means "lease TTL passed"; the master waits `failover_margin` more from when it
//!   first saw the absence (watch lag, a server re-registering);
//! - its owner is registered with a different incarnation than the one it was assigned under
//!   (the server restarted and lost its memory), after the margin too.
//!
//! A move is `Assign(expected_epoch = scanned epoch, fresh request id, election term)` to the
//! least-loaded live server: if anything changed since the scan the store refuses with
//! `STALE_EPOCH` and the next scan decides again. Target liveness is checked by the store
//! (`SERVER_NOT_LIVE`), so a board is never moved onto a dead server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hypercache_client::{AssignBoard, Error as StoreError, LeaseKeeper, LeaseState, Reason, Term};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::game::new_request_id;
use super::orphans::Orphan;
use super::shared::{BoardScan, Shared};

/// How long one campaign call waits before it is repeated.
const CAMPAIGN_WAIT: Duration = Duration::from_secs(5);
/// Moves in flight at once.
const MOVE_CONCURRENCY: usize = 32;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Why leadership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    LeaseUnsafe,
    Deposed,
}

/// What one move came to.
enum Moved {
    Done,
    Skipped,
    /// No live server has room.
    NoRoom,
    Deposed,
}

/// Campaigns, leads, and campaigns again, until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut scans = shared.scans.clone();
    while !shared.is_shutting_down() {
        let Some((keeper, term)) = campaign(&shared).await else { continue };
        shared.set_leader(true);
        tracing::info!(election = %shared.config.election, term = term.0, "became the failover master");
        let ended = lead(&shared, &keeper, term, &mut scans).await;
        shared.set_leader(false);
        match ended {
            Ended::Shutdown => {
                if let Err(e) = shared.store.resign(&shared.config.election, term).await {
                    tracing::debug!(error = %e, "resigning failed; the lease revoke ends leadership anyway");
                }
                if let Err(e) = keeper.stop_and_revoke().await {
                    tracing::debug!(error = %e, "revoking the election lease failed; it will expire");
                }
                tracing::info!(term = term.0, "resigned as failover master");
                return;
            }
            Ended::LeaseUnsafe | Ended::Deposed => {
                tracing::warn!(term = term.0, reason = ?ended, "stopped acting as failover master; campaigning again");
                let _ = keeper.stop_and_revoke().await;
            }
        }
    }
}

/// Grants a lease and campaigns until this orchestrator leads (`Some`), the lease is lost or
/// shutdown begins (`None`).
async fn campaign(shared: &Shared) -> Option<(LeaseKeeper, Term)> {
    let config = &shared.config;
    let lease = tokio::select! {
        _ = shared.shutdown_started() => return None,
        granted = shared.store.grant(config.election_ttl) => granted,
    };
    let lease = match lease {
        Ok(lease) => lease,
        Err(e) => {
            tracing::warn!(error = %e, "cannot grant the election lease; retrying");
            pause(shared, RETRY_DELAY).await;
            return None;
        }
    };
    let keeper = match LeaseKeeper::spawn(shared.store.clone(), lease) {
        Ok(keeper) => keeper,
        Err(e) => {
            tracing::error!(error = %e, "cannot keep the election lease alive");
            pause(shared, RETRY_DELAY).await;
            return None;
        }
    };
    let mut lease_state = keeper.subscribe();
    loop {
        let result = tokio::select! {
            _ = shared.shutdown_started() => None,
            _ = lease_state.wait_for(LeaseState::is_lost) => None,
            r = shared.store.campaign(&config.election, &config.id, lease.id, CAMPAIGN_WAIT) => Some(r),
        };
        match result {
            None => break,
            Some(Ok(leadership)) => return Some((keeper, leadership.term)),
            Some(Err(e)) if e.is_reason(Reason::LeaseNotFound) => break,
            Some(Err(StoreError::DeadlineExceeded { .. } | StoreError::OutcomeUnknown { .. })) => {}
            Some(Err(e)) if e.is_retryable() => pause(shared, RETRY_DELAY).await,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "campaign failed");
                pause(shared, RETRY_DELAY).await;
            }
        }
    }
    let _ = keeper.stop_and_revoke().await;
    None
}

async fn pause(shared: &Shared, delay: Duration) {
    tokio::select! {
        _ = shared.shutdown_started() => {}
        _ = sleep(delay) => {}
    }
}

/// Acts on every new scan while the lease is safe and the term current.
async fn lead(
    shared: &Shared,
    keeper: &LeaseKeeper,
    term: Term,
    scans: &mut watch::Receiver<Option<Arc<BoardScan>>>,
) -> Ended {
    let margin = shared.config.election_ttl / 4;
    let mut lease_state = keeper.subscribe();
    // Scans published before leadership may predate the last master's moves: wait for a new one.
    scans.borrow_and_update();
    loop {
        // The keeper publishes renewals, not the passing of time: wake up when the vouched
        // deadline minus the margin arrives, unless a renewal moves it first.
        let unsafe_at = keeper.deadline().checked_sub(margin).unwrap_or_else(Instant::now);
        tokio::select! {
            _ = shared.shutdown_started() => return Ended::Shutdown,
            _ = sleep_until(unsafe_at) => {
                if !keeper.is_safe(margin) {
                    return Ended::LeaseUnsafe;
                }
                continue;
            }
            changed = lease_state.changed() => {
                if changed.is_err() || lease_state.borrow_and_update().is_lost() {
                    return Ended::LeaseUnsafe;
                }
                continue;
            }
            changed = scans.changed() => {
                if changed.is_err() {
                    return Ended::Shutdown;
                }
            }
        }
        let Some(scan) = scans.borrow_and_update().clone() else { continue };
        if scan.due.is_empty() {
            continue;
        }
        if !keeper.is_safe(margin) {
            return Ended::LeaseUnsafe;
        }
        let moves = futures::stream::iter(scan.due.iter().cloned())
            .map(|orphan| move_board(shared, orphan, term))
            .buffer_unordered(MOVE_CONCURRENCY)
            .collect::<Vec<Moved>>()
            .await;
        if moves.iter().any(|m| matches!(m, Moved::Deposed)) {
            return Ended::Deposed;
        }
        let no_room = moves.iter().filter(|m| matches!(m, Moved::NoRoom)).count();
        if no_room > 0 {
            let why = shared.placement().choose(&[]).err().map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(boards = no_room, why = %why, "orphaned boards wait for a game server with room");
        }
    }
}

/// Assigns one orphan to the least-loaded live server, fenced by epoch and term.
async fn move_board(shared: &Shared, orphan: Orphan, term: Term) -> Moved {
    let target = shared.placement().reserve(&orphan.board_id, &[], Instant::now());
    let target = match target {
        Ok(target) => target,
        Err(e) => {
            tracing::debug!(board = %orphan.board_id, error = %e, "cannot move an orphaned board");
            return Moved::NoRoom;
        }
    };
    let assign = AssignBoard {
        board_id: orphan.board_id.clone(),
        server_id: target.server_id.clone(),
        expected_epoch: orphan.epoch,
        request_id: new_request_id(),
        election: Some((shared.config.election.clone(), term)),
    };
    match shared.store.assign_board(assign).await {
        Ok(board) => {
            shared.metrics.failover_moves.inc();
            tracing::info!(board = %orphan.board_id, from = ?orphan.owner, to = %target.server_id,
                why = ?orphan.kind, epoch = board.epoch.0, term = term.0, "moved board");
            Moved::Done
        }
        Err(e) => {
            shared.placement().unreserve(&orphan.board_id);
            if e.is_reason(Reason::StaleTerm) || e.is_reason(Reason::NotElectionLeader) {
                tracing::warn!(board = %orphan.board_id, term = term.0, error = %e, "the store refused our term");
                return Moved::Deposed;
            }
            if e.is_reason(Reason::StaleEpoch) || e.is_reason(Reason::BoardNotFound) {
                tracing::debug!(board = %orphan.board_id, error = %e, "board changed since the scan");
            } else {
                tracing::warn!(board = %orphan.board_id, to = %target.server_id, error = %e,
                    "moving board failed; the next scan retries");
            }
            Moved::Skipped
        }
    }
}
