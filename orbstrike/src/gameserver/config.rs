//! The game server's configuration: one strict struct, from flags or `ORBSTRIKE_*` environment
//! variables, checked once at start-up by [`Config::validate`] (errors name the flag).
//!
//! Example (every flag has an `ORBSTRIKE_*` twin, e.g. `ORBSTRIKE_HYPERCACHE`):
//!
//! ```text
//! orbstrike-gameserver \
//!   --server-id gs-0 \                          # registry id; default: the host name
//!   --listen 0.0.0.0:7400 \                     # gRPC (GameServer service)
//!   --advertise gs-0.gameservers:7400 \         # what orchestrators dial; default: host name + port
//!   --hypercache hypercache-0.hypercache:7001,hypercache-1.hypercache:7001 \
//!   --capacity 200 \                            # boards this server offers to host
//!   --tick-hz 30 \                              # ticks per second of boards whose tick_hz is 0
//!   --checkpoint-interval-ms 250 \              # fenced Boards.Sync period per board
//!   --lease-ttl-ms 2000 --lease-margin-ms 500 \ # registration lease; self-fence margin
//!   --admin-listen 0.0.0.0:7401 \               # /metrics, /livez, /readyz (optional)
//!   --accept-log /var/log/orbstrike/accept.jsonl \ # one JSON line per tick with inputs (optional)
//!   --drain-timeout-ms 10000                    # SIGTERM: time allowed to hand boards over
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::process::hostname;
use crate::rules::TICK_HZ;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:7400";
pub const DEFAULT_CAPACITY: u32 = 200;
pub const DEFAULT_TICK_HZ: u32 = 30;
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 250;
pub const DEFAULT_LEASE_TTL_MS: u64 = 2000;
pub const DEFAULT_LEASE_MARGIN_MS: u64 = 500;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 10_000;

/// Flags and environment of `orbstrike-gameserver`; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Config {
    /// Registry id of this server, 1..=128 of [A-Za-z0-9._:-] (default: the host name).
    #[arg(long, env = "ORBSTRIKE_SERVER_ID")]
    pub server_id: Option<String>,
    /// gRPC listen address of the GameServer service.
    #[arg(long, env = "ORBSTRIKE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// host:port orchestrators dial (default: the listen IP, or the host name if it listens on
    /// all interfaces, with the bound port).
    #[arg(long, env = "ORBSTRIKE_ADVERTISE")]
    pub advertise: Option<String>,
    /// HyperCache endpoints, comma-separated host:port (DNS names welcome).
    #[arg(long, env = "ORBSTRIKE_HYPERCACHE", value_delimiter = ',', required = true)]
    pub hypercache: Vec<String>,
    /// Boards this server is willing to host (registered in the registry).
    #[arg(long, env = "ORBSTRIKE_CAPACITY", default_value_t = DEFAULT_CAPACITY)]
    pub capacity: u32,
    /// Tick rate of boards whose params say tick_hz = 0 (1..=120).
    #[arg(long, env = "ORBSTRIKE_TICK_HZ", default_value_t = DEFAULT_TICK_HZ)]
    pub tick_hz: u32,
    /// Period of each board's fenced checkpoint sync.
    #[arg(long, env = "ORBSTRIKE_CHECKPOINT_INTERVAL_MS", default_value_t = DEFAULT_CHECKPOINT_INTERVAL_MS)]
    pub checkpoint_interval_ms: u64,
    /// TTL of the registration lease (the heartbeat).
    #[arg(long, env = "ORBSTRIKE_LEASE_TTL_MS", default_value_t = DEFAULT_LEASE_TTL_MS)]
    pub lease_ttl_ms: u64,
    /// The server stops serving boards this long before the lease deadline it can vouch for.
    #[arg(long, env = "ORBSTRIKE_LEASE_MARGIN_MS", default_value_t = DEFAULT_LEASE_MARGIN_MS)]
    pub lease_margin_ms: u64,
    /// Admin HTTP address for /metrics, /livez and /readyz (off when unset).
    #[arg(long, env = "ORBSTRIKE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Append one JSON line per tick in which a board accepted inputs (off when unset).
    #[arg(long, env = "ORBSTRIKE_ACCEPT_LOG")]
    pub accept_log: Option<PathBuf>,
    /// On SIGTERM, how long boards get for their final checkpoint and release.
    #[arg(long, env = "ORBSTRIKE_DRAIN_TIMEOUT_MS", default_value_t = DEFAULT_DRAIN_TIMEOUT_MS)]
    pub drain_timeout_ms: u64,
}

impl Config {
    /// Defaults for everything but the HyperCache endpoints (for in-process use and tests).
    pub fn new<I, S>(hypercache: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Config {
            server_id: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 7400)),
            advertise: None,
            hypercache: hypercache.into_iter().map(Into::into).collect(),
            capacity: DEFAULT_CAPACITY,
            tick_hz: DEFAULT_TICK_HZ,
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            lease_ttl_ms: DEFAULT_LEASE_TTL_MS,
            lease_margin_ms: DEFAULT_LEASE_MARGIN_MS,
            admin_listen: None,
            accept_log: None,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
        }
    }

    /// Checks every field and resolves the defaults that depend on the host.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let server_id = match &self.server_id {
            Some(id) => id.clone(),
            None => hostname().ok_or_else(|| {
                invalid("server-id", "not set and the host name is unknown; set --server-id or ORBSTRIKE_SERVER_ID")
            })?,
        };
        validate_server_id(&server_id)?;
        if let Some(advertise) = &self.advertise {
            hypercache_client::validate_endpoint(advertise).map_err(|e| invalid("advertise", e.to_string()))?;
        }
        let hypercache: Vec<String> =
            self.hypercache.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
        if hypercache.is_empty() {
            return Err(invalid("hypercache", "no endpoints given; expected host:port[,host:port...]"));
        }
        for endpoint in &hypercache {
            hypercache_client::validate_endpoint(endpoint).map_err(|e| invalid("hypercache", e.to_string()))?;
        }
        in_range("capacity", u64::from(self.capacity), 1, 100_000)?;
        in_range("tick-hz", u64::from(self.tick_hz), u64::from(*TICK_HZ.start()), u64::from(*TICK_HZ.end()))?;
        in_range("checkpoint-interval-ms", self.checkpoint_interval_ms, 10, 60_000)?;
        in_range("lease-ttl-ms", self.lease_ttl_ms, 300, 600_000)?;
        // The keeper renews every ttl/3; a margin of half the TTL or more would fence the server
        // before a single renewal could land.
        if self.lease_margin_ms == 0 || self.lease_margin_ms >= self.lease_ttl_ms / 2 {
            return Err(invalid(
                "lease-margin-ms",
                format!(
                    "{} must be above 0 and below half of --lease-ttl-ms ({})",
                    self.lease_margin_ms,
                    self.lease_ttl_ms / 2
                ),
            ));
        }
        in_range("drain-timeout-ms", self.drain_timeout_ms, 100, 600_000)?;
        Ok(Settings {
            server_id,
            listen: self.listen,
            advertise: self.advertise.clone(),
            hypercache,
            capacity: self.capacity,
            tick_hz: self.tick_hz,
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            lease_margin: Duration::from_millis(self.lease_margin_ms),
            admin_listen: self.admin_listen,
            accept_log: self.accept_log.clone(),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
        })
    }
}

/// A validated [`Config`] with host-dependent defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server_id: String,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub hypercache: Vec<String>,
    pub capacity: u32,
    pub tick_hz: u32,
    pub checkpoint_interval: Duration,
    pub lease_ttl: Duration,
    pub lease_margin: Duration,
    pub admin_listen: Option<SocketAddr>,
    pub accept_log: Option<PathBuf>,
    pub drain_timeout: Duration,
}

impl Settings {
    /// The address to register: `--advertise`, else the bound address with an unspecified IP
    /// replaced by the host name (orchestrators on other hosts must be able to dial it).
    pub fn advertise_for(&self, bound: SocketAddr) -> String {
        if let Some(advertise) = &self.advertise {
            return advertise.clone();
        }
        let host = match bound.ip() {
            ip if ip.is_unspecified() => hostname().unwrap_or_else(|| "localhost".to_string()),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        format!("{host}:{}", bound.port())
    }
}

/// A configuration field that is invalid; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}

fn in_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("{value} is out of range: must be within {min}..={max}")))
    }
}

/// The registry's id rule: 1..=128 characters of `[A-Za-z0-9._:-]`.
fn validate_server_id(id: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if id.is_empty() || id.len() > 128 || !id.chars().all(ok_char) {
        return Err(invalid("server-id", format!("{id:?} must be 1..=128 characters of [A-Za-z0-9._:-]")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn valid() -> Config {
        Config { server_id: Some("gs-1".into()), ..Config::new(["127.0.0.1:7001"]) }
    }

    #[test]
    fn flags_parse_with_defaults_and_lists() {
        let cli = Cli::try_parse_from(["gs", "--hypercache", "a:1,b:2", "--server-id", "x"]).expect("parses");
        assert_eq!(cli.config, Config { server_id: Some("x".into()), ..Config::new(["a:1", "b:2"]) });
        assert!(Cli::try_parse_from(["gs"]).is_err(), "--hypercache is required");
    }

    #[test]
    fn defaults_are_valid() {
        let s = valid().validate().expect("valid");
        assert_eq!(s.checkpoint_interval, Duration::from_millis(250));
        assert_eq!(s.lease_ttl, Duration::from_secs(2));
        assert_eq!(s.advertise_for("10.1.2.3:7400".parse().unwrap()), "10.1.2.3:7400");
        assert_eq!(s.advertise_for("[::1]:9".parse().unwrap()), "[::1]:9");
        let with = Settings { advertise: Some("gs.example:1".into()), ..s };
        assert_eq!(with.advertise_for("0.0.0.0:7400".parse().unwrap()), "gs.example:1");
    }

    #[test]
    fn every_invalid_field_is_named() {
        let cases: Vec<(&str, Config)> = vec![
            ("server-id", Config { server_id: Some("has space".into()), ..valid() }),
            ("server-id", Config { server_id: Some(String::new()), ..valid() }),
            ("advertise", Config { advertise: Some("no-port".into()), ..valid() }),
            ("hypercache", Config { hypercache: vec![], ..valid() }),
            ("hypercache", Config { hypercache: vec!["a:1".into(), "http://b:2".into()], ..valid() }),
            ("capacity", Config { capacity: 0, ..valid() }),
            ("tick-hz", Config { tick_hz: 0, ..valid() }),
            ("tick-hz", Config { tick_hz: 121, ..valid() }),
            ("checkpoint-interval-ms", Config { checkpoint_interval_ms: 5, ..valid() }),
            ("lease-ttl-ms", Config { lease_ttl_ms: 100, ..valid() }),
            ("lease-margin-ms", Config { lease_margin_ms: 0, ..valid() }),
            ("lease-margin-ms", Config { lease_margin_ms: 1500, ..valid() }),
            ("drain-timeout-ms", Config { drain_timeout_ms: 0, ..valid() }),
        ];
        for (field, config) in cases {
            let err = config.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().starts_with(&format!("invalid --{field}: ")), "{err}");
        }
    }
}
