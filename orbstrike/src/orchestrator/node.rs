//! Wiring: one orchestrator's listeners, background tasks and shutdown.
//!
//! Start: validate the config, connect the store client (lazily), start the registry watch, the
//! board scanner, the stats poller and the failover campaign, then serve gRPC (and admin HTTP).
//!
//! Shutdown: not ready -> the shutdown signal, which stops accepting connections, ends every
//! Play and WatchStats stream with a clear status (players reconnect elsewhere with their token),
//! lets unary calls in flight finish, and makes the failover master resign and revoke its lease
//! so another orchestrator takes over at once -> wait for all of it, bounded by
//! [`SHUTDOWN_GRACE`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hypercache_client::{Client, ClientConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::transport::Server;
use tracing::Instrument;

use super::config::{Config, ConfigError};
use super::error::Error;
use super::metrics::Metrics;
use super::service::OrchestratorService;
use super::shared::Shared;
use super::token::TokenKey;
use super::{admin, failover, stats, view_feeds};
use crate::proto::v1::orchestrator_server::OrchestratorServer;

/// How long shutdown waits for in-flight work before abandoning it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest message a player may send (hello, inputs and requests are tiny).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A running orchestrator.
pub struct Orchestrator {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    admin: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

fn bind_error(what: &str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { what: format!("binding the {what} address {addr}"), source }
}

impl Orchestrator {
    /// Binds `config.listen` (and `config.admin_listen`) and starts.
    pub async fn start(config: Config) -> Result<Orchestrator, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error("gRPC", config.listen))?;
        let admin = match config.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(bind_error("admin", addr))?),
            None => None,
        };
        Orchestrator::start_on(config, listener, admin).await
    }

    /// Starts on listeners the caller bound (tests bind 127.0.0.1:0).
    pub async fn start_on(
        config: Config,
        listener: TcpListener,
        admin: Option<TcpListener>,
    ) -> Result<Orchestrator, Error> {
        config.validate()?;
        let tokens = TokenKey::new(&config.token_secret)
            .map_err(|e| ConfigError { field: "--token-secret", message: e.to_string() })?;
        let store = Client::new(ClientConfig::new(config.hypercache.clone()))?;
        let metrics = Metrics::new().map_err(|e| Error::Internal(format!("registering metrics: {e}")))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (scans, scans_rx) = watch::channel(None);
        let (stats, stats_rx) = watch::channel(None);
        let shared = Arc::new(Shared::new(config, store, tokens, metrics, scans_rx, stats_rx, shutdown_rx.clone()));
        let span = tracing::info_span!("orchestrator", id = %shared.config.id);
        let tasks = vec![
            tokio::spawn(view_feeds::watch_registry(shared.clone()).instrument(span.clone())),
            tokio::spawn(view_feeds::scan_boards(shared.clone(), scans).instrument(span.clone())),
            tokio::spawn(stats::run(shared.clone(), stats).instrument(span.clone())),
            tokio::spawn(failover::run(shared.clone()).instrument(span.clone())),
        ];

        let local_addr = listener.local_addr().map_err(|source| Error::Io { what: "local address".into(), source })?;
        let incoming = crate::net::nodelay_incoming(listener);
        let service = OrchestratorServer::new(OrchestratorService::new(shared.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let mut stop = shutdown_rx.clone();
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        let server = tokio::spawn(server.instrument(span.clone()));

        let (admin, admin_addr) = match admin {
            Some(listener) => {
                let addr = listener.local_addr().ok();
                let mut stop = shutdown_rx.clone();
                let stop = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                (Some(tokio::spawn(admin::serve(listener, shared.clone(), stop).instrument(span))), addr)
            }
            None => (None, None),
        };
        tracing::info!(id = %shared.config.id, listen = %local_addr, admin = ?admin_addr, "orchestrator started");
        Ok(Orchestrator { shared, local_addr, admin_addr, shutdown, server, admin, tasks })
    }

    /// The bound gRPC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound admin HTTP address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn id(&self) -> &str {
        &self.shared.config.id
    }

    /// True while this orchestrator is the failover master.
    pub fn is_failover_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Live game servers in this orchestrator's registry view.
    pub fn live_servers(&self) -> usize {
        self.shared.placement().server_count()
    }

    /// The Prometheus text of this orchestrator's metrics.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// Graceful shutdown (see the module documentation).
    pub async fn shutdown(self) -> Result<(), Error> {
        tracing::info!(id = %self.shared.config.id, "orchestrator shutting down");
        self.shutdown.send_replace(true);
        let mut result = Ok(());
        match timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => result = Err(Error::Internal(format!("gRPC server failed: {e}"))),
            Ok(Err(e)) => result = Err(Error::Internal(format!("gRPC server task failed: {e}"))),
            Err(_) => tracing::warn!("calls in flight did not finish within {SHUTDOWN_GRACE:?}; abandoned"),
        }
        for task in self.tasks.into_iter().chain(self.admin) {
            let abort = task.abort_handle();
            if timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!("a background task did not stop within {SHUTDOWN_GRACE:?}; aborted");
                abort.abort();
            }
        }
        tracing::info!(id = %self.shared.config.id, "orchestrator stopped");
        result
    }
}

/// Runs an orchestrator until `shutdown` resolves, then shuts it down gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let orchestrator = Orchestrator::start(config).await?;
    shutdown.await;
    orchestrator.shutdown().await
}
