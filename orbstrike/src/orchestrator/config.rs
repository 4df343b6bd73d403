//! The orchestrator's configuration: command-line flags with `ORBSTRIKE_*` environment
//! overrides ([`OrchestratorArgs`]), turned into one validated [`Config`].
//!
//! Every limit is checked at start-up and an error names the flag it concerns, so a bad
//! deployment fails at once with a readable message rather than at the first request.
//!
//! Example (every flag has an `ORBSTRIKE_*` twin, e.g. `ORBSTRIKE_TOKEN_SECRET_FILE`):
//!
//! ```text
//! orbstrike-orchestrator \
//!   --id orchestrator-0 \                         # election candidate; default: the host name
//!   --listen 0.0.0.0:7300 \                       # public gRPC API (Orchestrator service)
//!   --hypercache hypercache-0.hypercache:7001,hypercache-1.hypercache:7001 \
//!   --token-secret-file /etc/orbstrike/secret \   # shared by all replicas, >= 16 bytes
//!   --token-ttl-ms 3600000 \                      # player tokens live an hour
//!   --create-rate 5 --create-burst 10 \           # games per second per client, per replica
//!   --failover-margin-ms 1000 \                   # wait after a server's lease is gone
//!   --election orbstrike-failover \               # election of the failover master
//!   --election-ttl-ms 3000 \                      # the master's lease
//!   --scan-interval-ms 1000 \                     # board listing for counts and failover
//!   --reroute-timeout-ms 10000 \                  # how long a player waits for a moved board
//!   --admin-listen 0.0.0.0:7301 \                 # /metrics, /livez, /readyz (optional)
//!   --log-format json
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hypercache_client::validate_endpoint;

use super::token::MIN_SECRET_LEN;
use crate::process::hostname;

/// Default gRPC listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7300";
/// Default election name of the failover master.
pub const DEFAULT_ELECTION: &str = "orbstrike-failover";
/// Tick rate a game gets when its parameters say 0 ("server default"); resolved at creation so
/// a game ticks at the same rate on whichever server it lands.
pub const DEFAULT_TICK_HZ: u32 = 30;

/// Command-line flags (each also read from the `ORBSTRIKE_*` variable it names).
#[derive(Debug, Clone, clap::Args)]
pub struct OrchestratorArgs {
    /// This orchestrator's id: its election candidate name and the origin of its stats.
    /// Defaults to the host name; must differ between replicas.
    #[arg(long, env = "ORBSTRIKE_ID")]
    pub id: Option<String>,
    /// gRPC listen address of the public API.
    #[arg(long, env = "ORBSTRIKE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// HyperCache endpoints, host:port[,host:port...].
    #[arg(long, env = "ORBSTRIKE_HYPERCACHE", value_delimiter = ',', required = true)]
    pub hypercache: Vec<String>,
    /// Secret that signs player tokens, shared by all orchestrators (at least 16 bytes).
    #[arg(long, env = "ORBSTRIKE_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// File holding the token secret (trailing newlines are ignored).
    #[arg(long, env = "ORBSTRIKE_TOKEN_SECRET_FILE", conflicts_with = "token_secret")]
    pub token_secret_file: Option<PathBuf>,
    /// How long a player token stays valid.
    #[arg(long, env = "ORBSTRIKE_TOKEN_TTL_MS", default_value_t = 3_600_000)]
    pub token_ttl_ms: u64,
    /// Games per second one client may create (per orchestrator).
    #[arg(long, env = "ORBSTRIKE_CREATE_RATE", default_value_t = 5.0)]
    pub create_rate: f64,
    /// Games one client may create in a burst.
    #[arg(long, env = "ORBSTRIKE_CREATE_BURST", default_value_t = 10)]
    pub create_burst: u32,
    /// Extra wait, after a game server's registration is gone, before its boards are moved.
    #[arg(long, env = "ORBSTRIKE_FAILOVER_MARGIN_MS", default_value_t = 500)]
    pub failover_margin_ms: u64,
    /// HyperCache election the failover master is chosen by.
    #[arg(long, env = "ORBSTRIKE_ELECTION", default_value = DEFAULT_ELECTION)]
    pub election: String,
    /// TTL of the lease the failover master's leadership hangs on.
    #[arg(long, env = "ORBSTRIKE_ELECTION_TTL_MS", default_value_t = 3000)]
    pub election_ttl_ms: u64,
    /// How often all boards are listed (placement counts, failover, stats).
    #[arg(long, env = "ORBSTRIKE_SCAN_INTERVAL_MS", default_value_t = 1000)]
    pub scan_interval_ms: u64,
    /// How long a player's stream (or a join) waits for a moved board's new owner.
    #[arg(long, env = "ORBSTRIKE_REROUTE_TIMEOUT_MS", default_value_t = 10_000)]
    pub reroute_timeout_ms: u64,
    /// Admin HTTP listen address (/metrics, /livez, /readyz); off when unset.
    #[arg(long, env = "ORBSTRIKE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Log format: "text" or "json".
    #[arg(long, env = "ORBSTRIKE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// A configuration problem, naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}

/// The validated configuration of one orchestrator.
#[derive(Clone)]
pub struct Config {
    pub id: String,
    pub listen: SocketAddr,
    pub hypercache: Vec<String>,
    pub token_secret: Vec<u8>,
    pub token_ttl: Duration,
    pub create_rate: f64,
    pub create_burst: u32,
    pub failover_margin: Duration,
    pub election: String,
    pub election_ttl: Duration,
    pub scan_interval: Duration,
    pub reroute_timeout: Duration,
    /// How often game servers' counters are polled for WatchStats.
    pub stats_interval: Duration,
    pub admin_listen: Option<SocketAddr>,
    pub default_tick_hz: u32,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("hypercache", &self.hypercache)
            .field("token_secret", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("create_rate", &self.create_rate)
            .field("create_burst", &self.create_burst)
            .field("failover_margin", &self.failover_margin)
            .field("election", &self.election)
            .field("election_ttl", &self.election_ttl)
            .field("scan_interval", &self.scan_interval)
            .field("reroute_timeout", &self.reroute_timeout)
            .field("stats_interval", &self.stats_interval)
            .field("admin_listen", &self.admin_listen)
            .field("default_tick_hz", &self.default_tick_hz)
            .finish()
    }
}

impl Config {
    /// Defaults for everything but the store endpoints and the secret (tests and embedding);
    /// call [`validate`](Self::validate) after changing fields.
    pub fn new(hypercache: Vec<String>, token_secret: impl Into<Vec<u8>>) -> Config {
        Config {
            id: default_id(),
            listen: SocketAddr::from(([0, 0, 0, 0], 7300)),
            hypercache,
            token_secret: token_secret.into(),
            token_ttl: Duration::from_secs(3600),
            create_rate: 5.0,
            create_burst: 10,
            failover_margin: Duration::from_millis(500),
            election: DEFAULT_ELECTION.to_string(),
            election_ttl: Duration::from_millis(3000),
            scan_interval: Duration::from_millis(1000),
            reroute_timeout: Duration::from_secs(10),
            stats_interval: Duration::from_secs(1),
            admin_listen: None,
            default_tick_hz: DEFAULT_TICK_HZ,
        }
    }

    /// Checks every limit; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_empty() || self.id.len() > 128 || self.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("--id", format!("{:?} must be 1..=128 characters without whitespace", self.id)));
        }
        if self.hypercache.is_empty() {
            return Err(bad("--hypercache", "give at least one HyperCache endpoint host:port"));
        }
        for endpoint in &self.hypercache {
            validate_endpoint(endpoint).map_err(|e| bad("--hypercache", e.to_string()))?;
        }
        if self.token_secret.len() < MIN_SECRET_LEN {
            return Err(bad(
                "--token-secret",
                format!("is {} bytes; it must be at least {MIN_SECRET_LEN} bytes", self.token_secret.len()),
            ));
        }
        within("--token-ttl-ms", self.token_ttl, Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600))?;
        if !(self.create_rate.is_finite() && self.create_rate > 0.0 && self.create_rate <= 1_000_000.0) {
            return Err(bad("--create-rate", format!("{} must be in (0, 1000000] games/s", self.create_rate)));
        }
        if self.create_burst == 0 || self.create_burst > 1_000_000 {
            return Err(bad("--create-burst", format!("{} must be 1..=1000000", self.create_burst)));
        }
        within("--failover-margin-ms", self.failover_margin, Duration::ZERO, Duration::from_secs(60))?;
        let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if self.election.is_empty() || self.election.len() > 128 || !self.election.chars().all(id_char) {
            return Err(bad(
                "--election",
                format!("{:?} must be 1..=128 characters from [A-Za-z0-9._:-]", self.election),
            ));
        }
        within("--election-ttl-ms", self.election_ttl, Duration::from_millis(500), Duration::from_secs(60))?;
        within("--scan-interval-ms", self.scan_interval, Duration::from_millis(50), Duration::from_secs(60))?;
        within("--reroute-timeout-ms", self.reroute_timeout, Duration::from_millis(500), Duration::from_secs(120))?;
        within("stats_interval", self.stats_interval, Duration::from_millis(100), Duration::from_secs(60))?;
        if !(1..=120).contains(&self.default_tick_hz) {
            return Err(bad("default_tick_hz", format!("{} must be 1..=120", self.default_tick_hz)));
        }
        Ok(())
    }
}

fn within(field: &'static str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(bad(
            field,
            format!("{} ms must be {}..={} ms", value.as_millis(), min.as_millis(), max.as_millis()),
        ));
    }
    Ok(())
}

fn parse_addr(field: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|e| bad(field, format!("{value:?} is not an ip:port address ({e})")))
}

/// The host name, or a random id when it cannot be read.
fn default_id() -> String {
    hostname().unwrap_or_else(|| format!("orchestrator-{:08x}", rand::random::<u32>()))
}

impl TryFrom<OrchestratorArgs> for Config {
    type Error = ConfigError;

    fn try_from(args: OrchestratorArgs) -> Result<Config, ConfigError> {
        let secret = match (args.token_secret, args.token_secret_file) {
            (Some(s), None) => s.into_bytes(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(&path)
                    .map_err(|e| bad("--token-secret-file", format!("cannot read {}: {e}", path.display())))?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            (Some(_), Some(_)) => {
                return Err(bad("--token-secret", "give --token-secret or --token-secret-file, not both"))
            }
            (None, None) => return Err(bad("--token-secret", "required (or --token-secret-file)")),
        };
        let mut config = Config::new(args.hypercache, secret);
        if let Some(id) = args.id {
            config.id = id;
        }
        config.listen = parse_addr("--listen", &args.listen)?;
        config.token_ttl = Duration::from_millis(args.token_ttl_ms);
        config.create_rate = args.create_rate;
        config.create_burst = args.create_burst;
        config.failover_margin = Duration::from_millis(args.failover_margin_ms);
        config.election = args.election;
        config.election_ttl = Duration::from_millis(args.election_ttl_ms);
        config.scan_interval = Duration::from_millis(args.scan_interval_ms);
        config.reroute_timeout = Duration::from_millis(args.reroute_timeout_ms);
        config.admin_listen = args.admin_listen.as_deref().map(|a| parse_addr("--admin-listen", a)).transpose()?;
        if !matches!(args.log_format.as_str(), "text" | "json") {
            return Err(bad("--log-format", format!("{:?} must be \"text\" or \"json\"", args.log_format)));
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OrchestratorArgs,
    }

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["orch", "--hypercache", "127.0.0.1:7001", "--id", "o1"];
        argv.extend_from_slice(extra);
        Config::try_from(Cli::try_parse_from(argv).expect("flags parse").args)
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&["--token-secret", "0123456789abcdef"]).unwrap();
        assert_eq!(c.id, "o1");
        assert_eq!(c.failover_margin, Duration::from_millis(500));
        assert_eq!(c.election, DEFAULT_ELECTION);
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "the secret is redacted");
    }

    #[test]
    fn errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--token-secret"),
            (&["--token-secret", "short"], "--token-secret"),
            (&["--token-secret", "0123456789abcdef", "--create-rate", "0"], "--create-rate"),
            (&["--token-secret", "0123456789abcdef", "--election", "a b"], "--election"),
            (&["--token-secret", "0123456789abcdef", "--listen", "nowhere"], "--listen"),
            (&["--token-secret", "0123456789abcdef", "--token-ttl-ms", "5"], "--token-ttl-ms"),
            (&["--token-secret", "0123456789abcdef", "--admin-listen", "x"], "--admin-listen"),
            (&["--token-secret-file", "/nonexistent/secret"], "--token-secret-file"),
        ];
        for (flags, field) in cases {
            let err = parse(flags).expect_err(field);
            assert_eq!(err.field, *field, "{err}");
        }
        let mut c = Config::new(vec!["h:1".into(), "bad".into()], "0123456789abcdef");
        assert_eq!(c.validate().unwrap_err().field, "--hypercache");
        c.hypercache = vec!["h:1".into()];
        c.validate().unwrap();
    }

    #[test]
    fn the_secret_file_loses_its_trailing_newline() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "0123456789abcdef\n").unwrap();
        let path = file.path().to_string_lossy().to_string();
        let c = parse(&["--token-secret-file", &path]).unwrap();
        assert_eq!(c.token_secret, b"0123456789abcdef");
    }
}
