//! How the workspace's long-running binaries (`hypercache`, the Orbstrike servers and bot) wait
//! to be stopped: SIGTERM, which Kubernetes, Docker and the demo send, or Ctrl-C. Here because
//! every binary depends on this crate; behind the `stop-signal` feature so the libraries' users
//! do not pull in signal handling.

/// Resolves on SIGTERM or Ctrl-C. If SIGTERM cannot be listened for, says so and waits for Ctrl-C.
pub async fn wait() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
