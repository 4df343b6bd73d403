//! The admin HTTP port: `/metrics` (Prometheus text), `/livez`, `/readyz`.
//!
//! `/livez` answers 200 whenever the process can serve HTTP: it must never depend on quorum, or
//! Kubernetes would restart every pod of a cluster that lost quorum and make things worse.
//! `/readyz` is 200 only when the node is not shutting down, belongs to the cluster under its
//! data dir's incarnation, and every shard knows a leader and has applied everything it knows
//! committed. A node restarted on an empty volume says so while the cluster replaces its old
//! membership entry (`membership.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::identity::Stamp;
use crate::metrics::Metrics;
use crate::shard::Shards;

#[derive(Clone)]
pub struct AdminState {
    pub shards: Arc<Shards>,
    pub metrics: Arc<Metrics>,
    /// False once shutdown has begun.
    pub accepting: Arc<AtomicBool>,
    pub stamp: Arc<Stamp>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub async fn serve(listener: TcpListener, state: AdminState, stop: impl Future<Output = ()> + Send + 'static) {
    if let Err(e) = axum::serve(listener, router(state)).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if !s.accepting.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".to_string());
    }
    if let Some(why) = rejoining(&s) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"));
    }
    for shard in s.shards.iter() {
        if !shard.is_ready() {
            let m = shard.metrics();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "not ready: shard {} leader={:?} applied={} committed={}\n",
                    shard.id,
                    m.current_leader,
                    m.last_applied.map_or(0, |l| l.index),
                    shard.committed_index()
                ),
            );
        }
    }
    (StatusCode::OK, "ready\n".to_string())
}

/// Why this node is not (yet) a member under its own incarnation, if it is not: the meta
/// group's membership, as this node knows it, does not list it as a voter with this data dir.
fn rejoining(s: &AdminState) -> Option<String> {
    let meta = s.shards.meta()?;
    let m = meta.metrics();
    let membership = m.membership_config.membership();
    let (id, inc) = (s.stamp.node_id, s.stamp.incarnation);
    let fresh = if s.stamp.fresh { "this node started on an empty data dir, " } else { "" };
    let Some(node) = membership.get_node(&id) else {
        return Some(format!(
            "{fresh}incarnation {inc}: not a member of a cluster yet; asking the cluster to add it (hcctl node list)"
        ));
    };
    if node.incarnation != inc {
        return Some(format!(
            "{fresh}incarnation {inc}: the cluster still lists this node as its previous incarnation {}; \
             it is being replaced (old entry removed, then this one added as a learner)",
            node.incarnation
        ));
    }
    if !membership.voter_ids().any(|v| v == id) {
        return Some(format!("{fresh}incarnation {inc}: a learner, catching up before it becomes a voter"));
    }
    None
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render(&s.shards))
}
