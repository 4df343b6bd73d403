//! Nodes of one cluster in one process, on loopback: what every in-process test cluster of the
//! workspace (the server's, the CLI's, Orbstrike's) starts from. Each node gets its own gRPC and
//! admin listener on a free `127.0.0.1` port, its own data dir under `root`, and the others as
//! static peers; callers adjust the configs (shard count, timeouts) before starting the nodes.
//! The listeners are bound before any config is written, so a port is never taken between
//! choosing it and using it.

use std::path::Path;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::node::{Node, NodeError};

/// One node to be: its config and the listeners it will serve on.
pub struct Planned {
    pub config: Config,
    grpc: TcpListener,
    admin: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error("binding a loopback port: {0}")]
    Bind(#[from] std::io::Error),
    #[error("node {name}: {source}")]
    Config { name: String, source: ConfigError },
    #[error("node {name} did not start: {source}")]
    Start { name: String, source: NodeError },
}

/// Binds the listeners of `n` nodes and writes their configs: node ids 1..=n, names `node-<id>`,
/// data dirs `root/node-<id>`, a small sled cache, static peers (none for a single node).
pub async fn plan(n: usize, root: &Path) -> Result<Vec<Planned>, LocalClusterError> {
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        listeners.push((TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?));
    }
    let mut addrs = Vec::with_capacity(n);
    for (grpc, admin) in &listeners {
        addrs.push((grpc.local_addr()?, admin.local_addr()?));
    }
    let peers: Vec<String> =
        if n == 1 { vec![] } else { addrs.iter().enumerate().map(|(i, (g, _))| format!("{}={g}", i + 1)).collect() };
    let planned = listeners
        .into_iter()
        .zip(addrs)
        .enumerate()
        .map(|(i, ((grpc, admin), (grpc_addr, admin_addr)))| {
            let mut config = Config {
                node_id: i as u64 + 1,
                name: format!("node-{}", i + 1),
                data_dir: root.join(format!("node-{}", i + 1)),
                listen_addr: grpc_addr,
                advertise_addr: grpc_addr.to_string(),
                admin_addr,
                peers: peers.clone(),
                ..Config::default()
            };
            config.storage.cache_capacity_mb = 8;
            Planned { config, grpc, admin }
        })
        .collect();
    Ok(planned)
}

impl Planned {
    /// Validates the (adjusted) config and starts the node on its listeners.
    pub async fn start(self) -> Result<(Config, Node), LocalClusterError> {
        let name = self.config.name.clone();
        self.config.validate().map_err(|source| LocalClusterError::Config { name: name.clone(), source })?;
        let node = Node::start_on(self.config.clone(), self.grpc, self.admin)
            .await
            .map_err(|source| LocalClusterError::Start { name, source })?;
        Ok((self.config, node))
    }
}
