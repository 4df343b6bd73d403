//! The admin HTTP port: `/metrics` (Prometheus text), `/livez`, `/readyz`.
//!
//! `/livez` answers whenever the process serves HTTP: it never depends on HyperCache, or a store
//! outage would make Kubernetes restart every orchestrator. `/readyz` is 200 only while the
//! orchestrator is not shutting down and its registry view is synced (it can place and route).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::shared::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: impl Future<Output = ()> + Send + 'static) {
    if let Err(e) = axum::serve(listener, router(shared)).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".to_string());
    }
    let placement = shared.placement();
    if !placement.is_synced() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: game-server registry not loaded\n".to_string());
    }
    (StatusCode::OK, format!("ready: {} live game servers\n", placement.server_count()))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render())
}
