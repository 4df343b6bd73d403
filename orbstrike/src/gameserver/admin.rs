//! The admin HTTP port: `/metrics` (Prometheus text), `/livez`, `/readyz`.
//!
//! `/livez` is 200 whenever the process serves HTTP: it never depends on HyperCache, or an outage
//! of the store would get every game server restarted on top of it. `/readyz` is 200 only while
//! the server is registered with a lease it may act on and is not draining.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::hosted::Shared;

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: impl Future<Output = ()> + Send + 'static) {
    if let Err(e) = axum::serve(listener, router(shared)).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n")
    } else if !shared.is_serving() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: not registered with a safe lease\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Refresh the board and player gauges from the table at scrape time.
    shared.counts();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render())
}
