//! [`GameServer`]: the wiring of one game server process (gRPC service, admin HTTP, session,
//! accept log), usable in-process by tests and demos.
//!
//! Shutdown order on [`GameServer::drain`]: not ready and no new players -> every board stops
//! taking inputs, writes a final checkpoint and releases itself -> deregister -> stop the gRPC
//! server (streams have already ended with "MOVED") and the admin port -> flush the accept log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hypercache_client::{Client, ClientConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::accept_log::{AcceptLog, AcceptLogWriter};
use super::admin;
use super::config::{Config, ConfigError};
use super::hosted::Shared;
use super::metrics::Metrics;
use super::service::GameService;
use super::session::{DrainReport, Session};
use crate::proto::v1::game_server_server::GameServerServer;

/// How long the gRPC server and the accept log get to finish after the boards are handed over.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a game server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum GameServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot bind the {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the accept log {}: {source}", path.display())]
    AcceptLog { path: PathBuf, source: std::io::Error },
    #[error("HyperCache client: {0}")]
    Client(#[from] hypercache_client::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the session task failed: {0}")]
    Session(String),
}

type GrpcTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A running game server. Dropping it without [`drain`](Self::drain) aborts it like a crash.
pub struct GameServer {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    advertise: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    session: Option<JoinHandle<DrainReport>>,
    grpc: Option<(oneshot::Sender<()>, GrpcTask)>,
    admin: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    accept_writer: Option<AcceptLogWriter>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), GameServerError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| GameServerError::Bind { what, addr, source })?;
    let bound = listener.local_addr().map_err(|source| GameServerError::Bind { what, addr, source })?;
    Ok((listener, bound))
}

impl GameServer {
    /// Validates `config`, binds the listeners, and starts serving: registering, watching
    /// assignments and hosting boards all happen in the background from here on.
    pub async fn start(config: Config) -> Result<GameServer, GameServerError> {
        let settings = Arc::new(config.validate()?);
        let metrics = Arc::new(Metrics::new()?);
        let (listener, local_addr) = bind("gRPC", settings.listen).await?;
        let advertise = settings.advertise_for(local_addr);
        let admin_listener = match settings.admin_listen {
            Some(addr) => Some(bind("admin", addr).await?),
            None => None,
        };
        let client = Client::new(ClientConfig::new(settings.hypercache.clone()))?;
        let server_id = settings.server_id.clone();
        let (accept_log, accept_writer) = match &settings.accept_log {
            Some(path) => {
                let (path, id, dropped) = (path.clone(), server_id.clone(), metrics.accept_log_dropped.clone());
                let opened = tokio::task::spawn_blocking(move || {
                    AcceptLog::open(&path, &id, dropped).map_err(|source| GameServerError::AcceptLog { path, source })
                })
                .await
                .map_err(|e| GameServerError::Session(format!("opening the accept log: {e}")))??;
                (opened.0, Some(opened.1))
            }
            None => (AcceptLog::disabled(&server_id, metrics.accept_log_dropped.clone()), None),
        };
        let shared = Arc::new(Shared::new(server_id.clone(), metrics));

        let (grpc_stop, grpc_stop_rx) = oneshot::channel::<()>();
        let service = GameServerServer::new(GameService { shared: shared.clone() });
        let grpc = tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
            crate::net::nodelay_incoming(listener),
            async move {
                let _ = grpc_stop_rx.await;
            },
        ));
        let admin_addr = admin_listener.as_ref().map(|(_, addr)| *addr);
        let admin = admin_listener.map(|(listener, _)| {
            let (stop, stop_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(admin::serve(listener, shared.clone(), async move {
                let _ = stop_rx.await;
            }));
            (stop, task)
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let session = Session {
            shared: shared.clone(),
            client,
            settings: settings.clone(),
            advertise: advertise.clone(),
            accept_log,
            generation: 0,
        };
        let session = tokio::spawn(session.run(shutdown_rx));
        tracing::info!(server = %server_id, %local_addr, %advertise, "game server started");
        Ok(GameServer {
            local_addr,
            admin_addr,
            advertise,
            shared,
            shutdown,
            session: Some(session),
            grpc: Some((grpc_stop, grpc)),
            admin,
            accept_writer,
        })
    }

    /// The bound gRPC address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound admin HTTP address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The address registered for orchestrators to dial.
    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    pub fn server_id(&self) -> &str {
        &self.shared.server_id
    }

    /// The Prometheus text exposition of this server's metrics (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// Board ids this server currently runs.
    pub fn running_boards(&self) -> Vec<String> {
        let mut ids = self.shared.with_boards(|boards| {
            boards
                .iter()
                .filter(|(_, h)| matches!(h, super::hosted::Hosted::Running(_)))
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
        });
        ids.sort();
        ids
    }

    /// Graceful shutdown (what SIGTERM does): see the module documentation.
    pub async fn drain(mut self) -> Result<DrainReport, GameServerError> {
        let _ = self.shutdown.send(true);
        let report = match self.session.take() {
            Some(session) => session.await.map_err(|e| GameServerError::Session(e.to_string()))?,
            None => DrainReport::default(),
        };
        if let Some((stop, mut task)) = self.grpc.take() {
            let _ = stop.send(());
            match tokio::time::timeout(STOP_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
                Err(_) => {
                    tracing::warn!("gRPC connections did not close in time; aborting");
                    task.abort();
                }
            }
        }
        if let Some((stop, task)) = self.admin.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(STOP_GRACE, task).await;
        }
        if let Some(writer) = self.accept_writer.take() {
            writer.finish(STOP_GRACE).await;
        }
        Ok(report)
    }

    /// Stops everything at once, like a crash: no final checkpoint, no release, no
    /// deregistration (the lease expires on its own).
    pub fn abort(mut self) {
        self.abort_tasks();
    }

    fn abort_tasks(&mut self) {
        if let Some(session) = self.session.take() {
            session.abort();
        }
        if let Some((_, task)) = self.grpc.take() {
            task.abort();
        }
        if let Some((_, task)) = self.admin.take() {
            task.abort();
        }
        // Connections already accepted outlive the listener task: make them find nothing here.
        self.shared.with_boards(|boards| boards.clear());
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

/// Runs a game server until `shutdown` resolves, then drains it (the binary's main loop).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<DrainReport, GameServerError> {
    let server = GameServer::start(config).await?;
    shutdown.await;
    tracing::info!(server = %server.server_id(), "stop requested; draining");
    server.drain().await
}
