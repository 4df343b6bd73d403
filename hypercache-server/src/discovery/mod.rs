//! Peer discovery: where to look for the other nodes of this cluster.
//!
//! A discovery target yields *contact addresses* only. They may be IPs (a headless Service's A
//! records), and they are used once, to ask each node who it is ([`crate::discovery::join`]).
//! What goes into membership is each node's own advertised name, never a discovered IP, so a pod
//! that comes back with a new IP is still the same member under the same name.
//!
//! Targets (the `discovery` config key):
//! - `dns://<name>:<port>`: A/AAAA records of `<name>` (Kubernetes headless Service, Docker
//!   network alias), each at `<port>`.
//! - `dns+srv://<_service._proto.name>`: SRV records; each target host (a name) at its port.
//! - `static://<host:port>,<host:port>`: a fixed list (tests, or hosts without DNS).
//!
//! Resolution sits behind [`Resolve`] so tests can use a static list; DNS goes through
//! hickory-resolver with its cache capped at one second, because Docker's and CoreDNS's TTLs
//! (up to minutes) would hide a node that just appeared.

pub mod join;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolverBuilder, TokioResolver};

/// Longest time a DNS answer is reused.
const MAX_CACHE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A/AAAA records of `host`, each at `port`.
    Dns { host: String, port: u16 },
    /// SRV records of `name`.
    Srv { name: String },
    /// A fixed list of `host:port`.
    Static(Vec<String>),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery target {target:?}: {problem}")]
    BadTarget { target: String, problem: String },
    #[error("resolving {name}: {detail}")]
    Lookup { name: String, detail: String },
}

fn bad(target: &str, problem: impl Into<String>) -> DiscoveryError {
    DiscoveryError::BadTarget { target: target.to_string(), problem: problem.into() }
}

impl Target {
    /// Parses a `discovery` value; the error names the target and what is wrong with it.
    pub fn parse(spec: &str) -> Result<Target, DiscoveryError> {
        if let Some(rest) = spec.strip_prefix("dns://") {
            let (host, port) = split_host_port(rest).map_err(|p| bad(spec, p.to_string()))?;
            return Ok(Target::Dns { host, port });
        }
        if let Some(name) = spec.strip_prefix("dns+srv://") {
            // A trailing dot (a fully qualified name) is fine.
            let labels: Vec<&str> = name.strip_suffix('.').unwrap_or(name).split('.').collect();
            if labels.len() < 3 || !labels[0].starts_with('_') || !labels[1].starts_with('_') {
                return Err(bad(spec, "expected dns+srv://_<port-name>._tcp.<service>[.<namespace>...]"));
            }
            if labels.iter().skip(2).any(|l| l.is_empty()) {
                return Err(bad(spec, "empty DNS label"));
            }
            return Ok(Target::Srv { name: name.to_string() });
        }
        if let Some(list) = spec.strip_prefix("static://") {
            let mut out = Vec::new();
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                split_host_port(item).map_err(|p| bad(spec, p.to_string()))?;
                out.push(item.to_string());
            }
            if out.is_empty() {
                return Err(bad(spec, "static:// needs at least one host:port"));
            }
            return Ok(Target::Static(out));
        }
        Err(bad(spec, "must start with dns://, dns+srv:// or static://"))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dns { host, port } => write!(f, "dns://{host}:{port}"),
            Target::Srv { name } => write!(f, "dns+srv://{name}"),
            Target::Static(list) => write!(f, "static://{}", list.join(",")),
        }
    }
}

/// What is wrong with an address that should be `host:port` (the message quotes the address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{addr:?} is not host:port")]
    NotHostPort { addr: String },
    #[error("{addr:?} has an empty host")]
    EmptyHost { addr: String },
    #[error("{addr:?}: port must be 1..=65535")]
    BadPort { addr: String },
    /// Membership stores names; an IP would break as soon as the node comes back with another.
    #[error("{addr} is an IP; membership stores DNS names, never IPs")]
    IpNotName { addr: String },
}

/// `host:port` with a non-empty host and a port in 1..=65535.
pub fn split_host_port(s: &str) -> Result<(String, u16), AddrError> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| AddrError::NotHostPort { addr: s.to_string() })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(AddrError::EmptyHost { addr: s.to_string() });
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| AddrError::BadPort { addr: s.to_string() })?;
    Ok((host.to_string(), port))
}

/// Checks that `addr` is `host:port` with a DNS name for host, as membership stores it: an IP
/// would break as soon as the node comes back with another one.
pub fn require_dns_name(addr: &str) -> Result<(), AddrError> {
    let (host, _) = split_host_port(addr)?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(AddrError::IpNotName { addr: addr.to_string() });
    }
    Ok(())
}

/// Turns a discovery target into contact addresses (`host:port`).
pub trait Resolve: Send + Sync {
    fn resolve(&self) -> BoxFuture<'_, Result<Vec<String>, DiscoveryError>>;
}

/// Resolves a [`Target`] through DNS (or returns the static list).
pub struct DnsResolver {
    target: Target,
    dns: TokioResolver,
}

impl DnsResolver {
    /// Reads the system resolver configuration (`/etc/resolv.conf`, which Docker and Kubernetes
    /// provide to every container).
    pub fn shared(target: Target) -> Result<Arc<dyn Resolve>, DiscoveryError> {
        let builder = TokioResolver::builder_tokio()
            .map_err(|e| DiscoveryError::Lookup { name: "/etc/resolv.conf".into(), detail: e.to_string() })?;
        Ok(Arc::new(Self::from_builder(target, builder)))
    }

    /// Asks the given name servers instead of the system's (tests run their own DNS server).
    pub fn with_config(target: Target, config: ResolverConfig) -> DnsResolver {
        Self::from_builder(target, TokioResolver::builder_with_config(config, TokioConnectionProvider::default()))
    }

    fn from_builder(target: Target, mut builder: ResolverBuilder<TokioConnectionProvider>) -> DnsResolver {
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.positive_max_ttl = Some(MAX_CACHE_TTL);
        opts.negative_max_ttl = Some(MAX_CACHE_TTL);
        DnsResolver { target, dns: builder.build() }
    }
}

impl Resolve for DnsResolver {
    fn resolve(&self) -> BoxFuture<'_, Result<Vec<String>, DiscoveryError>> {
        Box::pin(async move {
            let lookup_err = |name: &str, e: &dyn fmt::Display| DiscoveryError::Lookup {
                name: name.to_string(),
                detail: e.to_string(),
            };
            let mut out = match &self.target {
                Target::Static(list) => list.clone(),
                Target::Dns { host, port } => {
                    let ips = self.dns.lookup_ip(host.as_str()).await.map_err(|e| lookup_err(host, &e))?;
                    ips.iter().map(|ip| std::net::SocketAddr::new(ip, *port).to_string()).collect()
                }
                Target::Srv { name } => {
                    let srv = self.dns.srv_lookup(name.as_str()).await.map_err(|e| lookup_err(name, &e))?;
                    srv.iter().map(|r| format!("{}:{}", r.target().to_utf8().trim_end_matches('.'), r.port())).collect()
                }
            };
            out.sort();
            out.dedup();
            Ok(out)
        })
    }
}

/// Builds the resolver for a `discovery` config value.
pub fn resolver_for(spec: &str) -> Result<Arc<dyn Resolve>, DiscoveryError> {
    DnsResolver::shared(Target::parse(spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for spec in [
            "dns://hypercache:7000",
            "dns+srv://_grpc._tcp.hypercache.default.svc.cluster.local",
            "static://localhost:7001,localhost:7002",
        ] {
            assert_eq!(Target::parse(spec).unwrap().to_string(), spec);
        }
        assert_eq!(Target::parse("dns://hc:7000").unwrap(), Target::Dns { host: "hc".into(), port: 7000 });
    }

    #[test]
    fn bad_targets_name_the_problem() {
        for (spec, needle) in [
            ("hypercache:7000", "must start with"),
            ("dns://hypercache", "not host:port"),
            ("dns://:7000", "empty host"),
            ("dns://hc:0", "port must be"),
            ("dns+srv://hypercache.default", "expected dns+srv://"),
            ("static://", "at least one"),
        ] {
            let e = Target::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    /// A one-socket DNS server: SRV records for `_grpc._tcp.hc.test.` and A records for `hc.test.`.
    async fn fake_dns() -> std::net::SocketAddr {
        use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
        use hickory_resolver::proto::rr::rdata::{A, SRV};
        use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let mut reply = Message::new();
                reply.set_id(query.id()).set_message_type(MessageType::Response).set_authoritative(true);
                for q in query.queries() {
                    reply.add_query(q.clone());
                    let name = q.name().clone();
                    let answers: Vec<RData> = match (q.query_type(), name.to_ascii().as_str()) {
                        (RecordType::SRV, "_grpc._tcp.hc.test.") => (0..3)
                            .map(|i| {
                                RData::SRV(SRV::new(0, 10, 7000, Name::from_ascii(format!("hc-{i}.hc.test.")).unwrap()))
                            })
                            .collect(),
                        (RecordType::A, "hc.test.") => (1..=2).map(|i| RData::A(A::new(10, 0, 0, i))).collect(),
                        _ => vec![],
                    };
                    if answers.is_empty() {
                        reply.set_response_code(ResponseCode::NXDomain);
                    }
                    for rdata in answers {
                        reply.add_answer(Record::from_rdata(name.clone(), 30, rdata));
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn srv_records_give_names_and_a_records_give_contact_addresses() {
        use hickory_resolver::config::NameServerConfigGroup;
        let dns = fake_dns().await;
        let config = || {
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[dns.ip()], dns.port(), true),
            )
        };
        let srv = DnsResolver::with_config(Target::parse("dns+srv://_grpc._tcp.hc.test.").unwrap(), config());
        assert_eq!(srv.resolve().await.unwrap(), vec!["hc-0.hc.test:7000", "hc-1.hc.test:7000", "hc-2.hc.test:7000"]);
        let a = DnsResolver::with_config(Target::parse("dns://hc.test.:7000").unwrap(), config());
        assert_eq!(a.resolve().await.unwrap(), vec!["10.0.0.1:7000", "10.0.0.2:7000"]);
        let missing = DnsResolver::with_config(Target::parse("dns://nothing.test.:7000").unwrap(), config());
        let e = missing.resolve().await.unwrap_err().to_string();
        assert!(e.contains("resolving nothing.test."), "{e}");
    }

    #[tokio::test]
    async fn a_static_target_resolves_to_its_sorted_list() {
        let r = resolver_for("static://b:2,a:1,b:2").unwrap();
        assert_eq!(r.resolve().await.unwrap(), vec!["a:1".to_string(), "b:2".to_string()]);
    }
}
