//! What every client-facing service shares: the shards, the input validator, the metrics, and the
//! helpers that instrument a call and build response headers.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hypercache_proto::routing::Router;
use hypercache_proto::v1 as pb;
use tokio::sync::watch;
use tonic::{Response, Status};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use super::validate::Validator;
use crate::error::ServiceError;
use crate::lease_home::LeaseHomes;
use crate::metrics::Metrics;
use crate::shard::{Shard, Shards};
use crate::watch_hub::HubState;

#[derive(Clone)]
pub struct Ctx {
    pub shards: Arc<Shards>,
    pub validator: Validator,
    pub metrics: Arc<Metrics>,
    /// Asks leases' home shards (puts that attach keys to another shard's lease).
    pub homes: LeaseHomes,
    /// Key -> shard, once the cluster's shard count is known (it never changes after).
    router: Arc<OnceLock<Router>>,
    /// Becomes true when the node starts a graceful shutdown.
    stopping: watch::Receiver<bool>,
}

impl Ctx {
    pub fn new(
        shards: Arc<Shards>,
        validator: Validator,
        metrics: Arc<Metrics>,
        homes: LeaseHomes,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Ctx { shards, validator, metrics, homes, router: Arc::new(OnceLock::new()), stopping }
    }

    /// Resolves once the node is shutting down. Long-lived calls (keepalive streams, campaigns)
    /// select on it so that a graceful shutdown does not wait for them.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.clone();
        // An error means the node is gone, which is as stopped as it gets.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Runs one request in its own span, recording its latency and status code under `method`.
    ///
    /// The span (`request`, level DEBUG, so it costs nothing unless enabled: see
    /// docs/operations.md) names the method; the node, shard and Raft term are recorded when the
    /// handler finds its shard ([`shard`](Self::shard), [`keyed_shard`](Self::keyed_shard)), so
    /// every event the request logs, down to the proposer and the state machine, carries them.
    pub async fn instrumented<T, F>(&self, method: &'static str, fut: F) -> Result<Response<T>, Status>
    where
        F: Future<Output = Result<T, ServiceError>>,
    {
        let span = tracing::debug_span!("request", method, node = Empty, shard = Empty, term = Empty);
        let started = Instant::now();
        let result = fut.instrument(span).await.map_err(ServiceError::into_status);
        let code = result.as_ref().map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code());
        self.metrics.observe(method, code, started.elapsed().as_secs_f64());
        result.map(Response::new)
    }

    pub fn shard(&self, id: u32) -> Result<Arc<Shard>, ServiceError> {
        self.shards.lookup(id).map(in_span)
    }

    /// The key -> shard map, read from this node's meta replica the first time it is there.
    pub fn router(&self) -> Option<&Router> {
        if let Some(r) = self.router.get() {
            return Some(r);
        }
        let meta = self.shards.meta()?;
        let stored = crate::placement::store::load_local(&meta).ok()??;
        Some(self.router.get_or_init(|| Router::new(stored.placement.shard_count)))
    }

    /// Shard `id` for a request on `key`: UNKNOWN_SHARD if this node has no replica of it,
    /// WRONG_SHARD if the key maps elsewhere (the client's routing table is stale).
    pub fn keyed_shard(&self, id: u32, key: &[u8]) -> Result<Arc<Shard>, ServiceError> {
        let shard = self.shards.lookup(id)?;
        if let Some(router) = self.router() {
            crate::routing::check_single_shard(router, id, [key])?;
        }
        Ok(in_span(shard))
    }
}

/// Records the shard a request found in the request's span (see [`Ctx::instrumented`]).
fn in_span(shard: Arc<Shard>) -> Arc<Shard> {
    let span = Span::current();
    if !span.is_disabled() {
        span.record("node", shard.node_id);
        span.record("shard", shard.id.0);
        span.record("term", shard.current_term());
    }
    shard
}

pub fn header(shard: &Shard, revision: u64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { shard_id: shard.id.0, revision, node_id: shard.node_id, raft_term: shard.current_term() })
}

/// Linearizable reads wait for the read barrier; serializable ones are served as they are, by
/// a voter that has applied something (see [`Shard::serves_local_reads`]). The revision in the
/// response header is the replica's applied revision, which clients compare with the newest
/// they saw of the shard to refuse an answer from the past.
pub async fn read_barrier(shard: &Shard, serializable: bool) -> Result<(), ServiceError> {
    if serializable {
        shard.serves_local_reads()
    } else {
        shard.read_barrier().await
    }
}

pub fn read_error(shard: &Shard, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal { shard: shard.id, detail: format!("reading the state machine: {e}") }
}

/// A reply of an unexpected shape: a bug, reported as INTERNAL rather than a panic.
pub fn unexpected(shard: &Shard, op: &str, got: impl std::fmt::Debug) -> ServiceError {
    ServiceError::Internal { shard: shard.id, detail: format!("{op}: unexpected state machine reply {got:?}") }
}

/// Runs `read` on a blocking thread while holding the shard's watch-hub lock. The state machine
/// commits every apply batch (and installs snapshots) under that lock, so what `read` sees is one
/// snapshot, at `hub.revision`. Scans need this: a sled iterator alone can show half of a
/// concurrent batch. Every apply of the shard waits while `read` runs, so `read` must be bounded
/// (one page of a range, the registry); the blocking thread keeps the scan off the Tokio workers.
pub async fn under_hub_lock<T, F>(shard: &Arc<Shard>, read: F) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: FnOnce(&Shard, &mut HubState) -> Result<T, ServiceError> + Send + 'static,
{
    let s = shard.clone();
    tokio::task::spawn_blocking(move || {
        let mut hub = s.hub.lock();
        read(&s, &mut hub)
    })
    .await
    .map_err(|e| ServiceError::Internal { shard: shard.id, detail: format!("a state-machine read task failed: {e}") })?
}

/// [`under_hub_lock`] for a plain read: its result and the revision it is a snapshot of.
pub async fn read_snapshot<T, F>(shard: &Arc<Shard>, read: F) -> Result<(T, u64), ServiceError>
where
    T: Send + 'static,
    F: FnOnce(&Shard, &HubState) -> Result<T, ServiceError> + Send + 'static,
{
    under_hub_lock(shard, move |s, hub| Ok((read(s, hub)?, hub.revision))).await
}
