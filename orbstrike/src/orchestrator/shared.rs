//! The state every part of one orchestrator shares: the store client, the placement view, the
//! game-server channel pool, the token key, the rate limiter and the published scans and stats.
//!
//! Locks are std mutexes held for a few map operations and never across an `.await`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hypercache_client::{Board, Client};
use hypercache_proto::poison::lock;
use tokio::sync::{watch, Notify};

use super::config::Config;
use super::metrics::Metrics;
use super::orphans::Orphan;
use super::placement::Placement;
use super::pool::ChannelPool;
use super::ratelimit::{RateLimiter, DEFAULT_MAX_CLIENTS};
use super::token::TokenKey;
use crate::proto::v1 as pb;

/// One listing of all boards, with what the failover master should move.
#[derive(Debug)]
pub struct BoardScan {
    pub boards: Vec<Board>,
    /// Boards without a usable owner for long enough (empty while the registry view is stale).
    pub due: Vec<Orphan>,
}

pub struct Shared {
    pub config: Config,
    pub store: Client,
    placement: Mutex<Placement>,
    pub pool: ChannelPool,
    pub tokens: TokenKey,
    limiter: Mutex<RateLimiter>,
    pub metrics: Metrics,
    pub scans: watch::Receiver<Option<Arc<BoardScan>>>,
    pub stats: watch::Receiver<Option<pb::Stats>>,
    /// Becomes true once, when shutdown begins.
    pub shutdown: watch::Receiver<bool>,
    leader: AtomicBool,
    /// Asks the board scanner for a scan now (a game server just went down).
    pub rescan: Notify,
}

impl Shared {
    pub fn new(
        config: Config,
        store: Client,
        tokens: TokenKey,
        metrics: Metrics,
        scans: watch::Receiver<Option<Arc<BoardScan>>>,
        stats: watch::Receiver<Option<pb::Stats>>,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        let limiter = RateLimiter::new(config.create_rate, config.create_burst, DEFAULT_MAX_CLIENTS);
        Shared {
            config,
            store,
            placement: Mutex::new(Placement::new()),
            pool: ChannelPool::new(),
            tokens,
            limiter: Mutex::new(limiter),
            metrics,
            scans,
            stats,
            shutdown,
            leader: AtomicBool::new(false),
            rescan: Notify::new(),
        }
    }

    pub fn placement(&self) -> MutexGuard<'_, Placement> {
        lock(&self.placement)
    }

    pub fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.limiter)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown begins (at once if it has).
    pub async fn shutdown_started(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which only happens at the very end: stop too.
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Release);
        self.metrics.failover_leader.set(i64::from(leader));
    }
}
