//! A HyperCache cluster in containers, addressed only by names.
//!
//! Node `n` runs in a container with hostname `hypercache-<n>` (its StatefulSet-style ordinal
//! gives it node id n + 1), on a private network where it also answers to the alias
//! `hypercache` (the "headless Service"), with its data on the volume `...-data-<n>`. Every
//! (re)start gets an IP never used before in this cluster, so "same name, new IP" is what each
//! restart tests. The nodes are configured with `--discovery dns://hypercache:7000` and
//! `--bootstrap-expect <n>`; nothing else.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::docker::{ContainerSpec, DockerError, Scope};

pub const SERVICE: &str = "hypercache";
pub const GRPC_PORT: u16 = 7000;
pub const ADMIN_PORT: u16 = 7100;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unexpected(String),
}

/// One member as `hcctl node list --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Member {
    pub node_id: u64,
    pub name: String,
    pub endpoint: String,
    pub voter: bool,
    /// The node's data-dir incarnation as membership records it (hex).
    #[serde(default)]
    pub incarnation: String,
}

#[derive(Debug, serde::Deserialize)]
struct MemberList {
    members: Vec<Member>,
}

pub struct Cluster<'s> {
    scope: &'s Scope,
    image: String,
    network: String,
    /// First address of the network's IPv4 subnet.
    base: u32,
    next_ip: u32,
    expect: usize,
    /// Running (or stopped but not removed) node containers by ordinal, with their IPs.
    nodes: BTreeMap<usize, (String, Ipv4Addr)>,
}

/// A node's command line as on Kubernetes: data in `data_dir`, found by (and finding its peers
/// through) DNS, the first `expect` nodes bootstrapping; its id, name and advertised address
/// come from its hostname.
pub fn serve_args(data_dir: &str, expect: usize) -> Vec<String> {
    vec![
        "serve".into(),
        "--listen".into(),
        format!("0.0.0.0:{GRPC_PORT}"),
        "--admin".into(),
        format!("0.0.0.0:{ADMIN_PORT}"),
        "--data-dir".into(),
        data_dir.into(),
        "--discovery".into(),
        format!("dns://{SERVICE}:{GRPC_PORT}"),
        "--bootstrap-expect".into(),
        expect.to_string(),
    ]
}

pub fn hostname(ordinal: usize) -> String {
    format!("{SERVICE}-{ordinal}")
}

impl<'s> Cluster<'s> {
    /// A private network for a cluster whose first `expect` nodes bootstrap it.
    pub fn new(scope: &'s Scope, image: &str, expect: usize) -> Result<Cluster<'s>, ClusterError> {
        let (network, subnet) = scope.network("net")?;
        let base =
            subnet.split('/').next().and_then(|a| a.parse::<Ipv4Addr>().ok()).ok_or_else(|| {
                ClusterError::Unexpected(format!("network {network} has no IPv4 subnet ({subnet:?})"))
            })?;
        Ok(Cluster {
            scope,
            image: image.to_string(),
            network,
            base: u32::from(base),
            // Docker hands out .2, .3, ... to containers without an explicit IP (the clients);
            // nodes take fresh ones from .100 up, never reused.
            next_ip: 100,
            expect,
            nodes: BTreeMap::new(),
        })
    }

    pub fn ip(&self, ordinal: usize) -> Option<Ipv4Addr> {
        self.nodes.get(&ordinal).map(|(_, ip)| *ip)
    }

    fn container(&self, ordinal: usize) -> String {
        self.scope.name(&hostname(ordinal))
    }

    /// Starts node `ordinal` (creating its data volume the first time) at a new IP.
    pub fn start(&mut self, ordinal: usize) -> Result<Ipv4Addr, ClusterError> {
        let ip = Ipv4Addr::from(self.base + self.next_ip);
        self.next_ip += 1;
        let volume = self.scope.volume(&format!("data-{ordinal}"))?;
        let name = self.container(ordinal);
        let host = hostname(ordinal);
        let spec = ContainerSpec {
            name: name.clone(),
            image: self.image.clone(),
            hostname: Some(host.clone()),
            network: Some(self.network.clone()),
            ip: Some(ip.to_string()),
            aliases: vec![host, SERVICE.to_string()],
            volumes: vec![(volume, "/data".into())],
            entrypoint: None,
            args: serve_args("/data", self.expect),
            // HCJ_NODE_LOG overrides the nodes' log filter when a failure needs more detail.
            env: vec![(
                "HYPERCACHE_LOG".into(),
                std::env::var("HCJ_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )],
        };
        self.scope.run(&spec)?;
        self.nodes.insert(ordinal, (name, ip));
        Ok(ip)
    }

    /// Graceful stop (SIGTERM); the container and its volume stay.
    pub fn stop(&self, ordinal: usize) -> Result<(), ClusterError> {
        Ok(self.scope.stop(&self.container(ordinal), Duration::from_secs(10))?)
    }

    /// Removes the container (the volume stays), so the next start gets a new container and IP.
    pub fn remove(&mut self, ordinal: usize) -> Result<(), ClusterError> {
        self.scope.remove(&self.container(ordinal))?;
        self.nodes.remove(&ordinal);
        Ok(())
    }

    /// Removes the container and its data volume (after a decommission).
    pub fn destroy(&mut self, ordinal: usize) -> Result<(), ClusterError> {
        self.remove(ordinal)?;
        self.scope.remove_volume(&self.scope.name(&format!("data-{ordinal}")))?;
        Ok(())
    }

    /// Logs of one node's container.
    pub fn logs(&self, ordinal: usize, lines: usize) -> String {
        self.scope.logs(&self.container(ordinal), lines)
    }

    /// Polls node `ordinal`'s `/readyz` (leader known, caught up) from the host until it
    /// answers 200; returns when.
    pub fn wait_ready(&self, ordinal: usize, within: Duration) -> Result<Instant, ClusterError> {
        let ip = self.ip(ordinal).ok_or_else(|| ClusterError::Unexpected(format!("node {ordinal} is not running")))?;
        let addr = SocketAddr::from((ip, ADMIN_PORT));
        let deadline = Instant::now() + within;
        let container = self.container(ordinal);
        let mut last = None;
        for round in 0u64.. {
            match http_get(addr, "/readyz") {
                Some((200, _)) => return Ok(Instant::now()),
                answer => last = answer.or(last),
            }
            // A node that exited will never be ready: say so at once, with its logs.
            if round % 20 == 19 && self.scope.running(&container) == Some(false) {
                return Err(ClusterError::Unexpected(format!(
                    "{} exited; last log lines:\n{}",
                    hostname(ordinal),
                    self.logs(ordinal, 30)
                )));
            }
            if Instant::now() >= deadline {
                // What it waits for (the shard and its leader), and the cluster's view of the
                // shards, so a failure can be read without the containers.
                let said = last.map_or("no answer".to_string(), |(status, body)| format!("{status} {}", body.trim()));
                let shards = self.hcctl(&["--json", "shards"]).unwrap_or_else(|e| format!("hcctl shards failed: {e}"));
                return Err(ClusterError::Timeout(format!(
                    "{} not ready within {within:?}; /readyz said: {said}\nhcctl --json shards: {shards}\nlast log lines:\n{}",
                    hostname(ordinal),
                    self.logs(ordinal, 60)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unreachable!("the loop above only ends by returning")
    }

    /// Runs `hcctl --endpoints hypercache:7000 <args>` in a container on the network.
    pub fn hcctl(&self, args: &[&str]) -> Result<String, ClusterError> {
        let mut all = vec!["--endpoints".to_string(), format!("{SERVICE}:{GRPC_PORT}")];
        all.extend(args.iter().map(|a| a.to_string()));
        let spec = ContainerSpec {
            name: self.scope.name(&format!("hcctl-{}", self.next_client_id())),
            image: self.image.clone(),
            network: Some(self.network.clone()),
            entrypoint: Some("/hcctl".into()),
            args: all,
            ..ContainerSpec::default()
        };
        Ok(self.scope.run_once(&spec)?)
    }

    fn next_client_id(&self) -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
    }

    /// The members as the cluster reports them.
    pub fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let out = self.hcctl(&["--json", "node", "list"])?;
        let list: MemberList = serde_json::from_str(out.lines().last().unwrap_or_default())
            .map_err(|e| ClusterError::Unexpected(format!("node list output {out:?}: {e}")))?;
        Ok(list.members)
    }

    /// Retries `check` until it returns Ok(true) or `within` passes.
    pub fn eventually(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut() -> Result<bool, ClusterError>,
    ) -> Result<Duration, ClusterError> {
        let start = Instant::now();
        loop {
            let last = match check() {
                Ok(true) => return Ok(start.elapsed()),
                Ok(false) => "condition not met".to_string(),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= within {
                return Err(ClusterError::Timeout(format!("{what}: not within {within:?} ({last})")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a long-running client container with `entrypoint args` on the network; returns
    /// its name.
    pub fn start_client(&self, suffix: &str, entrypoint: &str, args: &[&str]) -> Result<String, ClusterError> {
        let name = self.scope.name(suffix);
        self.scope.run(&ContainerSpec {
            name: name.clone(),
            image: self.image.clone(),
            network: Some(self.network.clone()),
            entrypoint: Some(entrypoint.into()),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..ContainerSpec::default()
        })?;
        Ok(name)
    }
}

/// A plain HTTP/1.0 GET: the status and the body, or None if it does not answer within 500 ms.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_millis(500);
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    // HTTP/1.0: the server closes the connection after the response.
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
