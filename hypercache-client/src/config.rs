//! Client configuration and endpoint validation.
//!
//! Endpoints are `host:port` strings, exactly as a node advertises itself (a DNS name such as
//! `hypercache-0.hypercache:7001`, an IPv4 address, or a bracketed IPv6 address). They are
//! validated here but never resolved: tonic resolves the name each time it (re)connects, so a pod
//! that comes back with a new IP is found again. Freezing an address at start-up is exactly the
//! Redis Cluster failure this project exists to avoid.

use std::time::Duration;

use crate::error::Error;

/// Default maximum gRPC message size: the largest value (1 MiB by default, at most 4 MiB) plus
/// room for the key and metadata.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;

/// The namespace of clients that do not name one (see [`ClientConfig::namespace`]).
pub const DEFAULT_NAMESPACE: &str = "hypercache";

/// How a [`Client`](crate::Client) reaches the cluster and how hard it tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Seed endpoints, `host:port`. Any node will do: the client follows leader redirects.
    pub endpoints: Vec<String>,
    /// Deadline for one operation, all retries included.
    pub request_timeout: Duration,
    /// How long one attempt may go unanswered before the client stops waiting on that endpoint
    /// (a frozen node accepts connections and never answers): the endpoint is skipped for a
    /// while (`health.rs`) and a read moves to the next replica at once. A write whose attempt
    /// times out may have reached the leader: it fails with `OutcomeUnknown` at this point
    /// instead of at the overall deadline. Keep it above the slowest answer a healthy cluster
    /// gives (a write waits for a quorum's fsync) and below the servers' election timeout plus
    /// a little, so that a frozen leader costs about one election. Long polls and stream
    /// openers are bounded by their own deadlines instead.
    pub attempt_timeout: Duration,
    /// Deadline for establishing one TCP connection.
    pub connect_timeout: Duration,
    /// Attempts per operation (first try, retries and redirects all count).
    pub max_attempts: u32,
    /// First retry delay; doubles per retry up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Names the game deployment. The game services (registry, boards, elections) and leases
    /// granted without a key live in the *home shard*, the shard this string maps to like a
    /// key (so `{tag}` rules apply). Boards, registrations and election terms reference each
    /// other atomically inside one shard: **every client of one deployment must use the same
    /// namespace**, or they will not see each other's servers and boards. Default
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Largest gRPC message sent or accepted.
    pub max_message_bytes: usize,
}

impl ClientConfig {
    /// A configuration with default timeouts and retry policy for these seed endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig { endpoints: endpoints.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// See [`ClientConfig::attempt_timeout`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// See [`ClientConfig::namespace`].
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Checks every field; the error names the offending entry or limit.
    pub fn validate(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() {
            return Err(Error::config("no endpoints configured; give at least one host:port"));
        }
        for endpoint in &self.endpoints {
            validate_endpoint(endpoint)?;
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config("request_timeout must be greater than zero"));
        }
        if self.attempt_timeout.is_zero() {
            return Err(Error::config("attempt_timeout must be greater than zero"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config("connect_timeout must be greater than zero"));
        }
        if self.max_attempts == 0 {
            return Err(Error::config("max_attempts must be at least 1"));
        }
        if self.backoff_base > self.backoff_max {
            return Err(Error::config(format!(
                "backoff_base ({:?}) must not exceed backoff_max ({:?})",
                self.backoff_base, self.backoff_max
            )));
        }
        if self.namespace.is_empty() {
            return Err(Error::config("namespace must not be empty; every client of one deployment uses the same one"));
        }
        if self.max_message_bytes < 1024 {
            return Err(Error::config(format!("max_message_bytes ({}) must be at least 1024", self.max_message_bytes)));
        }
        Ok(())
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            request_timeout: Duration::from_secs(5),
            // The servers' default election timeout is 0.6-1.2 s, so an election takes at least
            // ~0.65 s: a write stuck on a frozen leader is given up on within that election
            // plus 0.5 s (issue 16), and a healthy write (a quorum fsync, ~1-10 ms; 100s of ms
            // on a loaded 2-core machine) stays well inside it.
            attempt_timeout: Duration::from_millis(750),
            connect_timeout: Duration::from_secs(1),
            // Enough attempts to ride out a leader election (about 1.2-2.4 s with the server's
            // default timings; 24 attempts back off 2.1-4.2 s in total); the request deadline
            // bounds the total either way.
            max_attempts: 24,
            backoff_base: Duration::from_millis(25),
            // While a shard elects, retries poll for its new leader: the poll interval is how
            // late the client notices it, so it stays well under the 0.5 s a write may stall
            // beyond the election (issue 16). 200 ms keeps a whole fleet of clients at 5 polls
            // per second each.
            backoff_max: Duration::from_millis(200),
            namespace: DEFAULT_NAMESPACE.to_string(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Checks that `endpoint` is `host:port` (IPv6 hosts in brackets) with a port in 1..=65535.
pub fn validate_endpoint(endpoint: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::config(format!("invalid endpoint {endpoint:?}: {why}; expected host:port"));
    if endpoint.contains("://") {
        return Err(bad("no scheme allowed"));
    }
    if endpoint.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad("contains whitespace or '/'"));
    }
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if host.starts_with('[') != host.ends_with(']') || (!host.starts_with('[') && host.contains(':')) {
        return Err(bad("IPv6 hosts must be in brackets, e.g. [::1]:7001"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(bad("port 0 is not a valid destination")),
        Ok(_) => Ok(()),
        Err(_) => Err(bad("port must be a number in 1..=65535")),
    }
}

/// Splits a comma-separated endpoint list (the CLI and benchmark flag format).
pub fn parse_endpoint_list(list: &str) -> Result<Vec<String>, Error> {
    let endpoints: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if endpoints.is_empty() {
        return Err(Error::config(format!("no endpoints in {list:?}; give host:port[,host:port...]")));
    }
    for endpoint in &endpoints {
        validate_endpoint(endpoint)?;
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_addresses_and_bracketed_ipv6() {
        for ok in ["localhost:7001", "hypercache-0.hypercache.default.svc:7001", "10.0.0.1:1", "[::1]:65535"] {
            assert!(validate_endpoint(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_endpoints_and_names_them() {
        for bad in ["", "host", ":7001", "host:", "host:0", "host:65536", "host:x", "http://h:1", "::1:7001", "a b:1"] {
            let err = validate_endpoint(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn config_validation() {
        assert!(ClientConfig::new(["a:1"]).validate().is_ok());
        assert!(ClientConfig::new(Vec::<String>::new()).validate().is_err());
        let err = ClientConfig::new(["a:1", "b"]).validate().expect_err("bad second entry");
        assert!(err.to_string().contains("\"b\""), "{err}");
        assert!(ClientConfig::new(["a:1"]).max_attempts(0).validate().is_err());
        assert!(ClientConfig::new(["a:1"]).attempt_timeout(Duration::ZERO).validate().is_err());
        let inverted = ClientConfig::new(["a:1"]).backoff(Duration::from_secs(2), Duration::from_secs(1));
        assert!(inverted.validate().is_err());
        assert!(ClientConfig::new(["a:1"]).namespace("").validate().is_err());
        assert_eq!(ClientConfig::new(["a:1"]).namespace, DEFAULT_NAMESPACE);
    }

    #[test]
    fn endpoint_lists() {
        assert_eq!(parse_endpoint_list("a:1, b:2,").expect("valid"), vec!["a:1", "b:2"]);
        assert!(parse_endpoint_list(" , ").is_err());
        assert!(parse_endpoint_list("a:1,b").is_err());
    }
}
