//! The drivers that keep the placement view current.
//!
//! - [`watch_registry`] follows the HyperCache registry watch: a snapshot of the live servers
//!   first (and after every reconnect), then UP/DOWN changes. While the watch is broken the view
//!   is marked unsynced, which stops failover decisions (a stale view could make live servers
//!   look dead) but not routing (the last known addresses are still the best guess).
//! - [`scan_boards`] lists every board each `scan_interval`: the counts feed placement, the
//!   orphan tracker decides what the failover master should move, and the total feeds stats.
//!   It also scans at once when a game server goes down (a DOWN event from the registry watch)
//!   and when an orphan's failover margin runs out, so a dead server's boards move
//!   `failover_margin` after its lease expired, not up to two scan intervals later.
//!
//! Not done: the scan is a full listing (1000 boards per page). At tens of thousands of games a
//! per-owner count maintained by the store would be cheaper; the interval is configurable.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hypercache_client::ServerUpdate;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use super::orphans::OrphanTracker;
use super::placement::LiveServer;
use super::shared::{BoardScan, Shared};

const WATCH_RETRY: Duration = Duration::from_millis(200);

/// Follows the registry until shutdown.
pub async fn watch_registry(shared: Arc<Shared>) {
    let mut watch = shared.store.watch_servers();
    loop {
        let update = tokio::select! {
            _ = shared.shutdown_started() => return,
            update = watch.next() => update,
        };
        match update {
            Ok(ServerUpdate::Snapshot { revision, servers }) => {
                tracing::debug!(revision, servers = servers.len(), "registry snapshot");
                shared.placement().replace_servers(servers.into_iter().map(LiveServer::from));
            }
            Ok(ServerUpdate::Changes { changes, .. }) => {
                let mut placement = shared.placement();
                for change in changes {
                    let server = LiveServer::from(change.server);
                    if change.up {
                        tracing::info!(server = %server.server_id, address = %server.address,
                            incarnation = server.incarnation.0, capacity = server.capacity, "game server up");
                        placement.server_up(server);
                    } else {
                        tracing::info!(server = %server.server_id, incarnation = server.incarnation.0,
                            "game server down");
                        placement.server_down(&server.server_id, server.incarnation);
                        shared.rescan.notify_one();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry watch broken; failover paused until it resumes");
                shared.placement().mark_unsynced();
                tokio::select! {
                    _ = shared.shutdown_started() => return,
                    _ = sleep(WATCH_RETRY) => {}
                }
                continue;
            }
        }
        let placement = shared.placement();
        shared.metrics.live_servers.set(i64::try_from(placement.server_count()).unwrap_or(i64::MAX));
        let live: HashSet<&str> = placement.live_servers().map(|s| s.address.as_str()).collect();
        shared.pool.retain(&live);
    }
}

/// Lists all boards every `scan_interval` and publishes the result until shutdown.
pub async fn scan_boards(shared: Arc<Shared>, scans: watch::Sender<Option<Arc<BoardScan>>>) {
    let mut tracker = OrphanTracker::new(shared.config.failover_margin);
    let mut ticks = tokio::time::interval(shared.config.scan_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // The next orphan whose margin runs out; far away when there is none.
        let due_at = tracker.next_due(Instant::now()).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shared.shutdown_started() => return,
            _ = ticks.tick() => {}
            _ = shared.rescan.notified() => {}
            _ = sleep_until(due_at) => {}
        }
        let boards = tokio::select! {
            _ = shared.shutdown_started() => return,
            listed = shared.store.list_all_boards(None) => match listed {
                Ok(boards) => boards,
                Err(e) => {
                    tracing::warn!(error = %e, "listing boards failed; placement counts and failover wait");
                    continue;
                }
            },
        };
        let due = {
            let mut placement = shared.placement();
            let owners = boards.iter().map(|b| (b.board_id.as_str(), b.owner.as_ref().map(|o| o.server_id.as_str())));
            placement.apply_scan(owners, Instant::now());
            if placement.is_synced() {
                tracker.observe(&boards, &placement, Instant::now())
            } else {
                Vec::new()
            }
        };
        shared.metrics.games.set(i64::try_from(boards.len()).unwrap_or(i64::MAX));
        shared.metrics.board_scans.inc();
        scans.send_replace(Some(Arc::new(BoardScan { boards, due })));
    }
}
