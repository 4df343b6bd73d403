//! A running node: storage + one Raft per shard + the gRPC server (clients and peers on one port)
//! + the admin HTTP server, and the shutdown plumbing that ties them together.
//!
//! Graceful shutdown order (SIGTERM): not ready (`/readyz` 503) -> end watch streams, keepalive
//! streams and campaigns (SHUTTING_DOWN; clients resume elsewhere) -> hand the leadership of
//! every shard this node leads to another voter (`handover.rs`; bounded by
//! `shutdown_grace_ms`), so writes move on without waiting for an election timeout -> stop
//! accepting and finish in-flight requests (bounded by `shutdown_grace_ms`) -> stop Raft ->
//! flush sled -> exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::raft::v1::lease_home_server::LeaseHomeServer;
use hypercache_proto::raft::v1::placement_server::PlacementServer;
use hypercache_proto::raft::v1::quiet_server::QuietServer;
use hypercache_proto::raft::v1::raft_server::RaftServer;
use hypercache_proto::v1::boards_server::BoardsServer;
use hypercache_proto::v1::cluster_server::ClusterServer;
use hypercache_proto::v1::election_server::ElectionServer;
use hypercache_proto::v1::kv_server::KvServer;
use hypercache_proto::v1::lease_server::LeaseServer;
use hypercache_proto::v1::registry_server::RegistryServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::admin::{self, AdminState};
use crate::bootstrap;
use crate::config::{Config, ConfigError};
use crate::discovery::{self, DiscoveryError};
use crate::identity::{self, IdentityError};
use crate::lease_home::LeaseHomes;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::network::{Links, PeerPool};
use crate::placement_driver::driver::{self, Driver};
use crate::quiet::board::BeatBoard;
use crate::quiet::driver::{Pacing, QuietDriver};
use crate::raft_config::raft_config;
use crate::replica::{HostParts, ReplicaError, ReplicaHost};
use crate::service::{
    BoardsService, ClusterService, Ctx, ElectionService, KvService, LeaseHomeService, LeaseService, PlacementService,
    QuietService, RaftService, RegistryService, Validator,
};
use crate::shard::Shards;
use crate::storage::{NodeStore, OpenError, StoreLimits, StoreTasks};
use crate::types::{NodeInfo, ShardId};
use crate::watch_hub::HistoryLimits;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] OpenError),
    #[error("binding {what} on {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("raft configuration: {0}")]
    RaftConfig(#[from] Box<openraft::ConfigError>),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The static `peers` list does not parse (validation normally catches this first).
    #[error("the peers list: {0}")]
    Peers(ConfigError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("flushing storage at shutdown: {0}")]
    Flush(#[source] crate::storage::FlushError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("discovery: {0}")]
    Discovery(#[from] DiscoveryError),
}

/// A node serving until [`Node::shutdown`].
pub struct Node {
    config: Config,
    metrics: Arc<Metrics>,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    shards: Arc<Shards>,
    /// Test control over the outbound Raft links (`network/links.rs`).
    links: Links,
    /// Holds the sled `Db`; dropped last (see `release`).
    host: Arc<ReplicaHost>,
    accepting: Arc<AtomicBool>,
    /// Tells long-lived calls (keepalive streams, campaigns) to end.
    stopping: watch::Sender<bool>,
    stop_grpc: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    grpc_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    /// Cluster formation (static bootstrap or discovery) and the learner promoter.
    background: Vec<JoinHandle<()>>,
    store: NodeStore,
    store_tasks: StoreTasks,
}

impl Node {
    /// Binds the configured addresses and starts.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        let grpc = TcpListener::bind(config.listen_addr).await.map_err(|source| NodeError::Bind {
            what: "gRPC",
            addr: config.listen_addr,
            source,
        })?;
        let admin = TcpListener::bind(config.admin_addr).await.map_err(|source| NodeError::Bind {
            what: "admin HTTP",
            addr: config.admin_addr,
            source,
        })?;
        Node::start_on(config, grpc, admin).await
    }

    /// Starts on already-bound listeners (tests bind port 0 first to learn their addresses).
    pub async fn start_on(config: Config, grpc: TcpListener, admin: TcpListener) -> Result<Node, NodeError> {
        let grpc_addr = local_addr(&grpc, "gRPC", config.listen_addr)?;
        let admin_addr = local_addr(&admin, "admin HTTP", config.admin_addr)?;
        let metrics = Arc::new(Metrics::new()?);
        std::fs::create_dir_all(&config.data_dir).map_err(|e| OpenError::Other {
            shard: ShardId::DEFAULT,
            detail: format!("{}: {e}", config.data_dir.display()),
        })?;
        // Before any Raft state exists: the data dir is this id's from now on, and this start
        // either finds its incarnation or (an empty data dir) chooses a new one.
        let stamp = identity::Stamp::open(&config.data_dir, config.node_id)?;
        if stamp.fresh {
            tracing::info!(node = config.node_id, incarnation = %stamp.incarnation,
                "new data dir: stamped with a new incarnation");
        }
        let flush_hist = metrics.flush_seconds.clone();
        let limits = StoreLimits {
            cache_capacity_bytes: config.storage.cache_capacity_mb * 1024 * 1024,
            segment_bytes: config.storage.log_segment_mb * 1024 * 1024,
        };
        let (store, store_tasks) =
            NodeStore::open(&config.data_dir, limits, Some(Box::new(move |s| flush_hist.observe(s))))?;
        let pool = PeerPool::new(
            Duration::from_millis(config.raft.heartbeat_interval_ms.max(500)),
            config.max_peer_message_bytes(),
        );
        let raft_config = Arc::new(raft_config(&config.raft)?);
        let links = pool.links().clone();

        let history =
            HistoryLimits { events: config.watch.history_events, bytes: config.watch.history_mb * 1024 * 1024 };
        let shards = Arc::new(Shards::new(Vec::new()));
        let host = Arc::new(ReplicaHost::new(HostParts {
            stamp: stamp.clone(),
            shards: shards.clone(),
            store: store.clone(),
            pool: pool.clone(),
            raft_config,
            history,
            max_batch_bytes: config.max_entry_bytes(),
            max_peer_message_bytes: config.max_peer_message_bytes(),
        }));
        // The meta group first, then every data replica this node held when it stopped.
        let meta = host.open(ShardId::META).await?;
        for id in host.stored_shards() {
            host.open(id).await?;
        }

        let me =
            NodeInfo { name: config.name.clone(), addr: config.advertise_addr.clone(), incarnation: stamp.incarnation };
        let accepting = Arc::new(AtomicBool::new(true));
        let (stop_grpc, grpc_stop_rx) = watch::channel(false);
        let (stop_admin, admin_stop_rx) = watch::channel(false);

        let validator = Validator { max_value_bytes: config.limits.max_value_bytes };
        let (stopping, stopping_rx) = watch::channel(false);
        let homes = LeaseHomes::new(&shards, pool.clone());
        let ctx = Ctx::new(shards.clone(), validator, metrics.clone(), homes, stopping_rx);
        let client_max = config.max_client_message_bytes();
        let peer_max = config.max_peer_message_bytes();
        let kv = KvServer::new(KvService::new(ctx.clone()))
            .max_decoding_message_size(client_max)
            .max_encoding_message_size(client_max);
        let lease = LeaseServer::new(LeaseService::new(ctx.clone()));
        let registry = RegistryServer::new(RegistryService::new(ctx.clone()));
        let boards = BoardsServer::new(BoardsService::new(ctx.clone()))
            .max_decoding_message_size(client_max)
            .max_encoding_message_size(client_max);
        let election = ElectionServer::new(ElectionService::new(ctx.clone()));
        let membership = Membership::new(meta.clone());
        let driver = Driver::new(
            meta.clone(),
            membership.clone(),
            host.clone(),
            pool.clone(),
            metrics.clone(),
            driver::Settings {
                shard_count: config.shards,
                replication: config.replication,
                down_after: (config.replace_down_node_after_ms > 0)
                    .then(|| Duration::from_millis(config.replace_down_node_after_ms)),
            },
        );
        let cluster = ClusterServer::new(ClusterService::new(
            shards.clone(),
            me.clone(),
            stamp.clone(),
            !config.discovery.is_empty(),
            membership.clone(),
            driver.clone(),
            pool.clone(),
        ));
        let raft_svc = RaftServer::new(RaftService::new(
            shards.clone(),
            host.clone(),
            stamp.clone(),
            metrics.append_messages.clone(),
        ))
        .max_decoding_message_size(peer_max)
        .max_encoding_message_size(peer_max);
        // The same message limits as the Raft service, which served these calls before.
        let placement_svc = PlacementServer::new(PlacementService::new(host.clone()))
            .max_decoding_message_size(peer_max)
            .max_encoding_message_size(peer_max);
        let lease_home_svc = LeaseHomeServer::new(LeaseHomeService::new(shards.clone()))
            .max_decoding_message_size(peer_max)
            .max_encoding_message_size(peer_max);
        let beats = BeatBoard::default();
        let quiet_svc = QuietServer::new(QuietService::new(beats.clone(), shards.clone()))
            .max_decoding_message_size(peer_max)
            .max_encoding_message_size(peer_max);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc).map(|conn| {
            conn.inspect(|s| {
                // Raft and client RPCs are small and latency-bound.
                let _ = s.set_nodelay(true);
            })
        });
        let node_id = config.node_id;
        let grpc_task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(kv)
                .add_service(lease)
                .add_service(registry)
                .add_service(boards)
                .add_service(election)
                .add_service(cluster)
                .add_service(raft_svc)
                .add_service(placement_svc)
                .add_service(lease_home_svc)
                .add_service(quiet_svc)
                .serve_with_incoming_shutdown(incoming, wait_for(grpc_stop_rx))
                .await;
            if let Err(e) = result {
                tracing::error!(node = node_id, error = %e, "gRPC server failed");
            }
        });

        let admin_state = AdminState {
            shards: shards.clone(),
            metrics: metrics.clone(),
            accepting: accepting.clone(),
            stamp: stamp.clone(),
        };
        let admin_task = tokio::spawn(admin::serve(admin, admin_state, wait_for(admin_stop_rx)));

        let quiet_pool = pool.clone();
        let formation = if config.discovery.is_empty() {
            let peers = config.parsed_peers().map_err(NodeError::Peers)?;
            tokio::spawn(bootstrap::run(meta, me, stamp.clone(), peers, pool))
        } else {
            let resolver = discovery::resolver_for(&config.discovery)?;
            tokio::spawn(discovery::join::run(
                meta,
                me,
                stamp.clone(),
                config.bootstrap_expect,
                resolver,
                metrics.discovery_rounds.clone(),
                stopping.subscribe(),
            ))
        };
        let promoter = tokio::spawn(membership.run_promoter(stopping.subscribe()));
        let placement = tokio::spawn(driver.run(stopping.subscribe()));
        let mut background = vec![formation, promoter, placement];
        let r = &config.raft;
        if r.quiet_after_ms > 0 {
            let quiet = QuietDriver {
                node_id: config.node_id,
                shards: shards.clone(),
                board: beats,
                pool: quiet_pool,
                pacing: Pacing {
                    round: Duration::from_millis(r.heartbeat_interval_ms),
                    quiet_rounds: u32::try_from(r.quiet_after_ms.div_ceil(r.heartbeat_interval_ms)).unwrap_or(u32::MAX),
                    fresh: Duration::from_millis(r.election_timeout_min_ms),
                },
                gauge: metrics.quiet_replicas.clone(),
            };
            background.push(tokio::spawn(quiet.run(stopping.subscribe())));
        }

        tracing::info!(node = config.node_id, name = %config.name, grpc = %grpc_addr, admin = %admin_addr,
            advertise = %config.advertise_addr, "node started");
        Ok(Node {
            config,
            metrics,
            grpc_addr,
            admin_addr,
            shards,
            links,
            host,
            accepting,
            stopping,
            stop_grpc,
            stop_admin,
            grpc_task,
            admin_task,
            background,
            store,
            store_tasks,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn shards(&self) -> &Arc<Shards> {
        &self.shards
    }

    /// Which Raft messages this node sends to which peer: for tests that partition a cluster
    /// (see `network/links.rs`).
    pub fn raft_links(&self) -> &Links {
        &self.links
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Graceful shutdown; see the module docs for the order.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        tracing::info!(node = self.config.node_id, "shutting down: not ready, draining requests");
        self.accepting.store(false, Ordering::Release);
        // Streams and long polls never finish on their own: end them (clients resume elsewhere).
        let _ = self.stopping.send(true);
        for shard in self.shards.iter() {
            shard.hub.lock().close();
        }
        // Peers still reach this node here: the successor's catch-up and campaign need it.
        let handed = crate::handover::hand_over(&self.shards, self.config.node_id, grace).await;
        tracing::info!(moved = handed.moved, stuck = handed.stuck, "leadership handed over");
        let _ = self.stop_grpc.send(true);
        let mut grpc_task = self.grpc_task;
        if tokio::time::timeout(grace, &mut grpc_task).await.is_err() {
            tracing::warn!(
                node = self.config.node_id,
                grace_ms = grace.as_millis() as u64,
                "in-flight requests did not finish within the grace period; abandoning them"
            );
            grpc_task.abort();
        }
        for shard in self.shards.iter() {
            if let Err(e) = shard.raft.shutdown().await {
                tracing::warn!(shard = %shard.id, error = %e, "raft shutdown");
            }
        }
        let _ = self.stop_admin.send(true);
        let _ = tokio::time::timeout(grace, self.admin_task).await;
        let flushed = self.store.sm_flush.flush().await.map_err(NodeError::Flush);
        release(self.shards, self.host, self.store, self.background, self.store_tasks, grace).await;
        flushed?;
        tracing::info!(node = self.config.node_id, "shutdown complete");
        Ok(())
    }

    /// Stops serving at once without draining: for tests that simulate a crashed node. Data
    /// already flushed stays; nothing else is flushed on the way out.
    pub async fn crash(mut self) {
        self.accepting.store(false, Ordering::Release);
        self.grpc_task.abort();
        self.admin_task.abort();
        for shard in self.shards.iter() {
            let _ = shard.raft.shutdown().await;
        }
        let _ = (&mut self.grpc_task).await;
        let _ = (&mut self.admin_task).await;
        release(self.shards, self.host, self.store, self.background, self.store_tasks, Duration::from_secs(5)).await;
    }
}

/// Drops this node's storage handles and waits (bounded) until every other holder, openraft's
/// tasks included, has dropped theirs: the flusher task ends exactly then. After this returns the
/// sled `Db` is closed and the data directory may be opened again.
async fn release(
    shards: Arc<Shards>,
    host: Arc<ReplicaHost>,
    store: NodeStore,
    background: Vec<JoinHandle<()>>,
    store_tasks: StoreTasks,
    timeout: Duration,
) {
    for task in background {
        task.abort();
        let _ = task.await;
    }
    drop(shards);
    drop(host);
    drop(store);
    if !store_tasks.closed(timeout).await {
        tracing::warn!("storage was still in use {} ms after shutdown", timeout.as_millis());
    }
}

fn local_addr(l: &TcpListener, what: &'static str, addr: SocketAddr) -> Result<SocketAddr, NodeError> {
    l.local_addr().map_err(|source| NodeError::Bind { what, addr, source })
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    // Either a `true` is sent or the sender is dropped: both mean stop.
    let _ = rx.wait_for(|stop| *stop).await;
}
