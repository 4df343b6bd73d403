//! Node configuration: one strict struct, layered as defaults < TOML file < `HYPERCACHE_*`
//! environment < command-line flags, then [`Config::validate`]d before anything starts.
//!
//! Unknown keys are errors at every layer (a typo must never silently fall back to a default).
//! Nested keys in the environment use a double underscore: `HYPERCACHE_RAFT__HEARTBEAT_INTERVAL_MS`.
//! `HYPERCACHE_ENDPOINTS` (read by `hcctl`), `HYPERCACHE_LOG` (the log filter) and
//! `HYPERCACHE_FAILPOINTS` (`failpoints.rs`) are not config keys and are ignored here.
//!
//! Peers are `id=host:port` names. They are stored in membership as written and resolved each
//! time a connection is made, so a peer whose IP changes behind a stable DNS name stays reachable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::discovery::{require_dns_name, Target};
use crate::identity;
use crate::types::NodeId;

/// Below this a node is declared down for a slow poll or a restart, and its replicas move for
/// nothing.
pub const MIN_REPLACE_DOWN_AFTER_MS: u64 = 2_000;

/// Hard protocol limit on key length; not configurable (see docs/api.md).
pub const MAX_KEY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's id, >= 1, unique in the cluster and never reused for a wiped node. 0 (unset):
    /// the id persisted in the data dir, else the hostname's StatefulSet ordinal + 1
    /// (see `identity.rs`).
    pub node_id: NodeId,
    /// Human-readable name, unique in the cluster; `hcctl node decommission` takes it. Defaults to
    /// the hostname when `discovery` is set, else `node-{node_id}`.
    pub name: String,
    /// Where sled data and snapshots live.
    pub data_dir: PathBuf,
    /// gRPC listen address (clients and peers).
    pub listen_addr: SocketAddr,
    /// `host:port` other nodes and clients use to reach this node. With `discovery` it must be a
    /// DNS name (membership stores names, never IPs) and defaults to `<hostname>:<listen port>`;
    /// otherwise it defaults to `listen_addr`.
    pub advertise_addr: String,
    /// Admin HTTP listen address: /metrics, /livez, /readyz.
    pub admin_addr: SocketAddr,
    /// Static cluster members including this node, as `id=host:port`. Exclusive with `discovery`.
    pub peers: Vec<String>,
    /// Where to find the other nodes: `dns://<name>:<port>` (A records, e.g. a headless Service),
    /// `dns+srv://_<port-name>._tcp.<service>` or `static://host:port,...`. Empty: static `peers`.
    pub discovery: String,
    /// With `discovery`: the number of nodes that form a new cluster. The lowest id among the
    /// first N visible nodes initializes it; 0 means this node only ever joins an existing one.
    pub bootstrap_expect: usize,
    /// Data shards, used when this node creates the cluster's placement (the meta leader does,
    /// once); after that the cluster's recorded count rules and this value is ignored.
    pub shards: u32,
    /// Replicas per data shard (at most the node count), recorded like `shards`.
    pub replication: u32,
    /// How long a node may fail to answer the placement driver before its replicas are
    /// re-created on other nodes (when there are enough of them); 0 disables it. Used by
    /// whichever node leads the meta group.
    pub replace_down_node_after_ms: u64,
    /// `text` or `json`.
    pub log_format: String,
    pub limits: Limits,
    pub raft: RaftSettings,
    pub storage: StorageSettings,
    pub watch: WatchSettings,
    /// How long a graceful shutdown may take before in-flight work is abandoned.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest value accepted by Put / CompareAndSwap.
    pub max_value_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log after a snapshot, so slightly lagging followers avoid a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Maximum entries per AppendEntries message.
    pub max_entries_per_append: u64,
    pub install_snapshot_timeout_ms: u64,
    /// A shard replica this long without a new log entry, with every follower caught up, goes
    /// quiet: it stops ticking (no heartbeats, no election timer) until traffic or a failure
    /// wakes it (`quiet/`). 0 keeps every shard ticking.
    pub quiet_after_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// sled page cache size. sled's own default (1 GiB) is far above our idle memory budget.
    pub cache_capacity_mb: u64,
    /// Size of one segment file of the node's Raft log: a full segment is closed and the next
    /// one started; segments no shard needs any more are deleted whole.
    pub log_segment_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// Events kept per shard for watches to resume from (the oldest are evicted first).
    pub history_events: usize,
    /// Memory the event history may hold per shard, in MiB (keys, values and previous values).
    pub history_mb: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings { history_events: 100_000, history_mb: 64 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 0,
            name: String::new(),
            data_dir: PathBuf::from("./data/node"),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
            advertise_addr: String::new(),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 7101)),
            peers: Vec::new(),
            discovery: String::new(),
            bootstrap_expect: 0,
            shards: 16,
            replication: 3,
            replace_down_node_after_ms: 300_000,
            log_format: "text".to_string(),
            limits: Limits::default(),
            raft: RaftSettings::default(),
            storage: StorageSettings::default(),
            watch: WatchSettings::default(),
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_value_bytes: 1024 * 1024 }
    }
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 1200,
            snapshot_after_entries: 20_000,
            logs_kept_after_snapshot: 5_000,
            max_entries_per_append: 16,
            install_snapshot_timeout_ms: 10_000,
            quiet_after_ms: 2_000,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings { cache_capacity_mb: 32, log_segment_mb: 64 }
    }
}

/// One static peer: `id=host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub addr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("config: {field}: {problem}")]
    Invalid { field: &'static str, problem: String },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, problem: problem.into() }
}

impl Config {
    /// Layers defaults, an optional TOML file, the environment and `overrides` (command-line
    /// flags, serialized with unset fields skipped), then fills derived defaults and validates.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid("--config", format!("file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig
            .merge(Env::prefixed("HYPERCACHE_").ignore(&["ENDPOINTS", "LOG", "FAILPOINTS"]).split("__"))
            .merge(Serialized::defaults(overrides));
        let mut config: Config = fig.extract().map_err(Box::new)?;
        config.fill_defaults(identity::hostname().as_deref())?;
        config.validate()?;
        Ok(config)
    }

    /// Fills the id, name and advertised address left unset (see their docs).
    pub fn fill_defaults(&mut self, hostname: Option<&str>) -> Result<(), ConfigError> {
        let discovery = !self.discovery.is_empty();
        let id_error = |e: identity::IdentityError| invalid("node_id", e.to_string().trim_start_matches("node_id: "));
        let persisted = identity::persisted_id(&self.data_dir).map_err(id_error)?;
        if self.node_id != 0 || discovery || persisted.is_some() {
            self.node_id = identity::resolve_id(self.node_id, &self.data_dir, hostname).map_err(id_error)?;
        }
        if self.name.is_empty() {
            self.name = match hostname {
                Some(host) if discovery => host.split('.').next().unwrap_or(host).to_string(),
                _ => format!("node-{}", self.node_id),
            };
        }
        if self.advertise_addr.is_empty() {
            self.advertise_addr = match hostname {
                Some(host) if discovery && self.listen_addr.ip().is_unspecified() => {
                    format!("{host}:{}", self.listen_addr.port())
                }
                _ => self.listen_addr.to_string(),
            };
        }
        Ok(())
    }

    /// Checks every field; the error names the field and the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be set and >= 1 (e.g. --node-id 1)"));
        }
        if self.name.trim().is_empty() || self.name.len() > 253 {
            return Err(invalid("name", "must be 1..=253 characters"));
        }
        validate_host_port("advertise_addr", &self.advertise_addr)?;
        if self.listen_addr.ip().is_unspecified() && self.advertise_addr == self.listen_addr.to_string() {
            return Err(invalid(
                "advertise_addr",
                format!("must be set when listen_addr is {} (peers cannot dial it)", self.listen_addr),
            ));
        }
        if self.listen_addr == self.admin_addr && self.listen_addr.port() != 0 {
            return Err(invalid("admin_addr", "must differ from listen_addr"));
        }
        let peers = self.parsed_peers()?;
        if !peers.is_empty() {
            match peers.iter().find(|p| p.id == self.node_id) {
                None => return Err(invalid("peers", format!("must include this node (id {}) when set", self.node_id))),
                Some(me) if me.addr != self.advertise_addr => {
                    return Err(invalid(
                        "peers",
                        format!("entry {}={} disagrees with advertise_addr {}", me.id, me.addr, self.advertise_addr),
                    ))
                }
                Some(_) => {}
            }
        }
        if !self.discovery.is_empty() {
            if !peers.is_empty() {
                return Err(invalid("discovery", "set either discovery or peers, not both"));
            }
            Target::parse(&self.discovery).map_err(|e| invalid("discovery", e.to_string()))?;
            require_dns_name(&self.advertise_addr)
                .map_err(|e| invalid("advertise_addr", format!("must be a DNS name when discovery is set: {e}")))?;
        }
        if self.bootstrap_expect > 0 && self.discovery.is_empty() {
            return Err(invalid("bootstrap_expect", "needs discovery (with static peers the lowest id initializes)"));
        }
        if self.bootstrap_expect > 99 {
            return Err(invalid("bootstrap_expect", format!("must be 0..=99, got {}", self.bootstrap_expect)));
        }
        if !(1..=1024).contains(&self.shards) {
            return Err(invalid("shards", format!("must be 1..=1024, got {}", self.shards)));
        }
        if !(1..=7).contains(&self.replication) {
            return Err(invalid("replication", format!("must be 1..=7, got {}", self.replication)));
        }
        if self.replace_down_node_after_ms != 0 && self.replace_down_node_after_ms < MIN_REPLACE_DOWN_AFTER_MS {
            return Err(invalid(
                "replace_down_node_after_ms",
                format!("must be 0 (never) or >= {MIN_REPLACE_DOWN_AFTER_MS}, got {}", self.replace_down_node_after_ms),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("log_format", format!("must be \"text\" or \"json\", got {:?}", self.log_format)));
        }
        let max_value = self.limits.max_value_bytes;
        if max_value == 0 || max_value > 64 * 1024 * 1024 {
            return Err(invalid("limits.max_value_bytes", format!("must be 1..=67108864, got {max_value}")));
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 || r.heartbeat_interval_ms * 2 > r.election_timeout_min_ms {
            return Err(invalid(
                "raft.heartbeat_interval_ms",
                format!(
                    "must be >= 1 and at most half of raft.election_timeout_min_ms ({})",
                    r.election_timeout_min_ms
                ),
            ));
        }
        if r.quiet_after_ms != 0 && r.quiet_after_ms < r.election_timeout_max_ms {
            return Err(invalid(
                "raft.quiet_after_ms",
                format!(
                    "must be 0 (never quiet) or at least raft.election_timeout_max_ms ({}), got {}",
                    r.election_timeout_max_ms, r.quiet_after_ms
                ),
            ));
        }
        if r.election_timeout_min_ms >= r.election_timeout_max_ms {
            return Err(invalid("raft.election_timeout_max_ms", "must be greater than raft.election_timeout_min_ms"));
        }
        if r.snapshot_after_entries == 0 {
            return Err(invalid("raft.snapshot_after_entries", "must be >= 1"));
        }
        if r.max_entries_per_append == 0 || r.max_entries_per_append > 10_000 {
            return Err(invalid("raft.max_entries_per_append", "must be 1..=10000"));
        }
        if r.install_snapshot_timeout_ms < 1000 {
            return Err(invalid("raft.install_snapshot_timeout_ms", "must be >= 1000"));
        }
        if self.watch.history_events == 0 || self.watch.history_events > 10_000_000 {
            return Err(invalid("watch.history_events", "must be 1..=10000000"));
        }
        if self.watch.history_mb == 0 || self.watch.history_mb > 16 * 1024 {
            return Err(invalid("watch.history_mb", "must be 1..=16384"));
        }
        if self.storage.cache_capacity_mb == 0 {
            return Err(invalid("storage.cache_capacity_mb", "must be >= 1"));
        }
        if self.storage.log_segment_mb == 0 || self.storage.log_segment_mb > 1024 {
            return Err(invalid("storage.log_segment_mb", "must be 1..=1024"));
        }
        if self.shutdown_grace_ms == 0 {
            return Err(invalid("shutdown_grace_ms", "must be >= 1"));
        }
        Ok(())
    }

    /// The static peers, parsed. Duplicate ids or addresses are errors.
    pub fn parsed_peers(&self) -> Result<Vec<Peer>, ConfigError> {
        let mut out: Vec<Peer> = Vec::with_capacity(self.peers.len());
        for spec in &self.peers {
            let (id, addr) = spec
                .split_once('=')
                .ok_or_else(|| invalid("peers", format!("{spec:?} is not of the form id=host:port")))?;
            let id: NodeId = id
                .trim()
                .parse()
                .ok()
                .filter(|id| *id >= 1)
                .ok_or_else(|| invalid("peers", format!("{spec:?}: id must be an integer >= 1")))?;
            let addr = addr.trim().to_string();
            validate_host_port("peers", &addr)?;
            if out.iter().any(|p| p.id == id) {
                return Err(invalid("peers", format!("node id {id} appears twice")));
            }
            if out.iter().any(|p| p.addr == addr) {
                return Err(invalid("peers", format!("address {addr} appears twice")));
            }
            out.push(Peer { id, addr });
        }
        Ok(out)
    }

    /// Largest gRPC message the client API accepts: a maximal key and value plus envelope, so an
    /// over-limit value still decodes and is refused by validation with a message naming the limit.
    pub fn max_client_message_bytes(&self) -> usize {
        2 * (self.limits.max_value_bytes + MAX_KEY_BYTES) + 64 * 1024
    }

    /// Payload bound of one Raft entry. A single compare-and-swap may carry two maximal values
    /// (expected and new); the proposer cuts batches at this size, and a lone oversized
    /// transaction is impossible because validation caps keys and values first.
    pub fn max_entry_bytes(&self) -> usize {
        (2 * (self.limits.max_value_bytes + MAX_KEY_BYTES) + 64 * 1024).max(1024 * 1024)
    }

    /// Largest peer message: a full AppendEntries batch of maximal entries.
    pub fn max_peer_message_bytes(&self) -> usize {
        let per_entry = self.max_entry_bytes() + 1024;
        (self.raft.max_entries_per_append as usize * per_entry).max(4 * 1024 * 1024) + 64 * 1024
    }
}

fn validate_host_port(field: &'static str, addr: &str) -> Result<(), ConfigError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| invalid(field, format!("{addr:?} is not host:port")))?;
    if host.is_empty() {
        return Err(invalid(field, format!("{addr:?} has an empty host")));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(invalid(field, format!("{addr:?} has an invalid port"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct NoOverrides {}

    fn base() -> Config {
        let mut c = Config { node_id: 1, ..Config::default() };
        c.fill_defaults(None).unwrap();
        c
    }

    #[test]
    fn defaults_validate_once_node_id_is_set() {
        base().validate().expect("valid");
    }

    #[test]
    fn discovery_needs_a_dns_name_to_advertise_and_no_static_peers() {
        let mut c = base();
        c.discovery = "dns://hypercache:7000".into();
        c.advertise_addr = "10.0.0.7:7000".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("advertise_addr") && err.contains("is an IP"), "{err}");
        c.advertise_addr = "hypercache-0:7000".into();
        c.validate().unwrap();
        c.peers = vec!["1=hypercache-0:7000".into()];
        assert!(c.validate().unwrap_err().to_string().contains("either discovery or peers"));
        c.peers.clear();
        c.discovery = "hypercache:7000".into();
        assert!(c.validate().unwrap_err().to_string().contains("dns://"));
    }

    #[test]
    fn missing_node_id_is_named() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("node_id"), "{err}");
    }

    #[test]
    fn bad_peers_are_rejected_with_the_entry_named() {
        let mut c = base();
        c.peers = vec!["1=127.0.0.1:7001".into(), "x=foo:1".into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("\"x=foo:1\""), "{err}");
        c.peers = vec!["2=127.0.0.1:7002".into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("must include this node"), "{err}");
        c.peers = vec!["1=127.0.0.1:7001".into(), "1=127.0.0.1:7002".into()];
        assert!(c.validate().unwrap_err().to_string().contains("appears twice"));
    }

    #[test]
    fn unknown_keys_in_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "node_id = 1\nnode_idd = 2\n").unwrap();
        let err = Config::load(Some(&path), NoOverrides {}).unwrap_err().to_string();
        assert!(err.contains("node_idd"), "{err}");
        std::fs::write(&path, "node_id = 1\n[raft]\nheartbeat = 5\n").unwrap();
        let err = Config::load(Some(&path), NoOverrides {}).unwrap_err().to_string();
        assert!(err.contains("heartbeat"), "{err}");
    }

    #[test]
    fn example_config_in_repo_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("hypercache.example.toml");
        let c = Config::load(Some(&path), NoOverrides {}).expect("example config is valid");
        assert_eq!(c.node_id, 1);
    }

    #[test]
    fn raft_timing_is_checked() {
        let mut c = base();
        c.raft.heartbeat_interval_ms = 800;
        assert!(c.validate().unwrap_err().to_string().contains("heartbeat_interval_ms"));
        let mut c = base();
        c.limits.max_value_bytes = 0;
        assert!(c.validate().unwrap_err().to_string().contains("max_value_bytes"));
        let mut c = base();
        c.replace_down_node_after_ms = 500;
        assert!(c.validate().unwrap_err().to_string().contains("replace_down_node_after_ms"));
        c.replace_down_node_after_ms = 0;
        c.validate().expect("0 disables replacing down nodes");
        let mut c = base();
        c.storage.log_segment_mb = 0;
        assert!(c.validate().unwrap_err().to_string().contains("storage.log_segment_mb"));
    }
}
