//! The systems the KV load generator drives (`hcbench --system`): HyperCache through its client
//! library, and the peers it is measured against in the same run, etcd and Redis, through their
//! own protocols. Every system gets the same closed loop, key space, values and deadline
//! ([`crate::load`]); only the connection differs, and each backend says how it maps "put",
//! "linearizable get" and "serializable get" onto its system.

pub mod etcd;
pub mod redis;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hypercache_client::{Client, ClientConfig};

/// Which system `--endpoints` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// HyperCache nodes, through hypercache-client (routing, retries, sessions).
    Hypercache,
    /// etcd v3 members (gRPC KV API); workers take the members in turn.
    Etcd,
    /// A Redis primary first, then its replicas (RESP, one connection per worker).
    Redis,
}

/// How a get is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Reflects every write acknowledged before it was sent.
    Linearizable,
    /// Served from the local copy of whichever replica is asked; may be stale.
    Serializable,
}

/// One failed operation: a short kind for the report's counters, and its message.
#[derive(Debug)]
pub struct OpFailure {
    pub kind: &'static str,
    pub message: String,
}

impl OpFailure {
    pub fn new(kind: &'static str, message: impl Into<String>) -> OpFailure {
        OpFailure { kind, message: message.into() }
    }
}

/// What a backend needs to open connections.
#[derive(Debug, Clone)]
pub struct Target {
    pub system: System,
    pub endpoints: Vec<String>,
    /// Deadline of every operation.
    pub timeout: Duration,
    /// Redis only: replicas that must acknowledge each write (`WAIT n`); 0 sends no WAIT.
    pub redis_wait: u32,
    /// etcd only: HTTP/2 connections per member.
    pub etcd_connections: usize,
}

/// Opens one connection per worker to the system under test.
pub enum Connector {
    Hypercache(Client),
    Etcd(etcd::Connector),
    Redis(redis::Connector),
}

impl Connector {
    pub async fn new(target: &Target) -> anyhow::Result<Connector> {
        Ok(match target.system {
            System::Hypercache => {
                let config = ClientConfig::new(target.endpoints.clone()).request_timeout(target.timeout);
                Connector::Hypercache(Client::new(config).context("creating the HyperCache client")?)
            }
            System::Etcd => {
                Connector::Etcd(etcd::Connector::new(&target.endpoints, target.timeout, target.etcd_connections)?)
            }
            System::Redis => {
                Connector::Redis(redis::Connector::new(&target.endpoints, target.timeout, target.redis_wait)?)
            }
        })
    }

    /// The connection of worker `worker` (HyperCache's client is shared: it multiplexes itself).
    pub async fn connect(&self, worker: usize) -> anyhow::Result<Conn> {
        Ok(match self {
            Connector::Hypercache(client) => Conn::Hypercache(client.clone()),
            Connector::Etcd(c) => Conn::Etcd(c.connect(worker)),
            Connector::Redis(c) => Conn::Redis(c.connect(worker).await?),
        })
    }
}

/// One worker's connection.
pub enum Conn {
    Hypercache(Client),
    Etcd(etcd::Conn),
    Redis(redis::Conn),
}

impl Conn {
    /// Writes `value` under `key`; `Ok` once the system acknowledged it durably by its own rules.
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), OpFailure> {
        match self {
            Conn::Hypercache(client) => client.put(key, value).await.map(drop).map_err(hypercache_failure),
            Conn::Etcd(c) => c.put(key, value).await,
            Conn::Redis(c) => c.put(key, value).await,
        }
    }

    /// Reads `key`; a missing key is a success (the read was served).
    pub async fn get(&mut self, key: Bytes, read: Read) -> Result<(), OpFailure> {
        match self {
            Conn::Hypercache(client) => {
                let r = match read {
                    Read::Linearizable => client.get(key).await,
                    Read::Serializable => client.get_serializable(key).await,
                };
                r.map(drop).map_err(hypercache_failure)
            }
            Conn::Etcd(c) => c.get(key, read).await,
            Conn::Redis(c) => c.get(key, read).await,
        }
    }
}

fn hypercache_failure(e: hypercache_client::Error) -> OpFailure {
    OpFailure::new(e.kind(), e.to_string())
}

/// Runs `op` under `timeout`; a late answer is a `timeout` failure.
async fn bounded<T>(timeout: Duration, op: impl Future<Output = Result<T, OpFailure>>) -> Result<T, OpFailure> {
    match tokio::time::timeout(timeout, op).await {
        Ok(r) => r,
        Err(_) => Err(OpFailure::new("timeout", format!("no answer within {} ms", timeout.as_millis()))),
    }
}
