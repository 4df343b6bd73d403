//! The registry of game servers: register (log in), deregister, list, watch.
//!
//! A registration lives as long as its lease; the server's heartbeat is that lease's keepalive
//! (start a [`LeaseKeeper`](crate::LeaseKeeper) with [`Registration::lease`]). Re-registering an
//! id revokes the previous registration's lease (and what hangs on it) and returns a larger
//! incarnation, which is what lets the cluster fence a stale instance of the same server.
//! Register is not idempotent (a retry would bump the incarnation again), so a lost answer is
//! [`Error::OutcomeUnknown`].

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt;
use hypercache_proto::v1 as pb;
use pb::registry_client::RegistryClient as WireClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::call::{in_shard, request};
use crate::client::Client;
use crate::error::Error;
use crate::ids::Incarnation;
use crate::lease::Lease;
use crate::retry::OpKind;
use crate::stream::Resuming;
use crate::target::{Route, Target};
use crate::types::{duration_ms, millis_ceil, revision, LeaseId};

/// A registered game server, converted from the wire's `pb::GameServer` where the client
/// receives one, so that callers fence with typed ids rather than bare `u64`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameServer {
    pub server_id: String,
    /// `host:port` where the server's own API listens.
    pub address: String,
    /// How many boards it is willing to host.
    pub capacity: u32,
    pub labels: HashMap<String, String>,
    /// The registration's lease (always set: a registration lives as long as its lease).
    pub lease: LeaseId,
    pub incarnation: Incarnation,
    /// Revision at which this registration was written.
    pub revision: u64,
}

impl From<pb::GameServer> for GameServer {
    fn from(s: pb::GameServer) -> Self {
        GameServer {
            server_id: s.server_id,
            address: s.address,
            capacity: s.capacity,
            labels: s.labels,
            lease: LeaseId(s.lease),
            incarnation: Incarnation(s.incarnation),
            revision: s.revision,
        }
    }
}

/// What [`Client::register`] registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOptions {
    /// 1..=128 characters from `[A-Za-z0-9._:-]` (`INVALID_ID` otherwise).
    pub server_id: String,
    /// `host:port` of the game server's own API.
    pub address: String,
    /// How many boards it is willing to host.
    pub capacity: u32,
    pub labels: HashMap<String, String>,
    /// TTL of the registration's lease.
    pub ttl: Duration,
}

impl RegisterOptions {
    pub fn new(server_id: impl Into<String>, address: impl Into<String>, ttl: Duration) -> Self {
        RegisterOptions {
            server_id: server_id.into(),
            address: address.into(),
            capacity: 0,
            labels: HashMap::new(),
            ttl,
        }
    }
}

/// A successful registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub server_id: String,
    /// Larger than every earlier incarnation of this server id.
    pub incarnation: Incarnation,
    /// The registration's lease, with the deadline measured from the register request's send.
    pub lease: Lease,
    /// Revision the registration was written at.
    pub revision: u64,
}

/// A registry change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerChange {
    /// True for UP (registered or re-registered), false for DOWN (deregistered or expired; the
    /// record is the last registration).
    pub up: bool,
    pub server: GameServer,
    pub revision: u64,
}

/// What [`ServerWatch::next`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerUpdate {
    /// The live servers at `revision`: sent first, and again after every reconnect. Replace
    /// your view with it (changes between two streams are not replayed).
    Snapshot {
        revision: u64,
        servers: Vec<GameServer>,
    },
    Changes {
        revision: u64,
        changes: Vec<ServerChange>,
    },
}

/// A reconnecting registry watch (see [`Client::watch_servers`]).
pub struct ServerWatch(Resuming<pb::WatchServersResponse>);

impl ServerWatch {
    /// The next snapshot or batch of changes. A failure to reconnect is returned (retryable);
    /// calling again resumes with a fresh snapshot.
    pub async fn next(&mut self) -> Result<ServerUpdate, Error> {
        let response = self.0.next().await?;
        let revision = revision(response.header.as_ref());
        if response.snapshot {
            let servers = response.servers.into_iter().map(GameServer::from).collect();
            return Ok(ServerUpdate::Snapshot { revision, servers });
        }
        let changes = response
            .events
            .into_iter()
            .map(|e| ServerChange {
                up: e.r#type == pb::server_event::Type::Up as i32,
                server: GameServer::from(e.server.unwrap_or_default()),
                revision: e.revision,
            })
            .collect();
        Ok(ServerUpdate::Changes { revision, changes })
    }
}

impl Client {
    pub(crate) fn registry_wire(&self, channel: Channel) -> WireClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        WireClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Registers (or re-registers) a game server.
    pub async fn register(&self, options: RegisterOptions) -> Result<Registration, Error> {
        let pending = self.begin_write();
        let msg = pb::RegisterRequest {
            shard_id: 0,
            server_id: options.server_id.clone(),
            address: options.address,
            capacity: options.capacity,
            labels: options.labels,
            ttl_ms: millis_ceil(options.ttl),
            write: pending.id(),
        };
        let sent = Instant::now();
        let response = self
            .execute("register", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
                let mut registry = self.registry_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { registry.register(req).await }
            })
            .await?;
        let ttl = duration_ms(response.ttl_ms);
        Ok(Registration {
            server_id: options.server_id,
            incarnation: Incarnation(response.incarnation),
            lease: Lease { id: LeaseId(response.lease), ttl, deadline: sent + ttl },
            revision: revision(response.header.as_ref()),
        })
    }

    /// Ends the registration (revokes its lease). `incarnation` must be the current one
    /// (`STALE_INCARNATION` otherwise, with the current one in [`Error::stale_incarnation`]).
    pub async fn deregister(&self, server_id: &str, incarnation: Incarnation) -> Result<(), Error> {
        let pending = self.begin_write();
        let msg = pb::DeregisterRequest {
            shard_id: 0,
            server_id: server_id.to_string(),
            incarnation: incarnation.0,
            write: pending.id(),
        };
        self.execute("deregister", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
            let mut registry = self.registry_wire(ch);
            let req = request(in_shard!(msg.clone(), shard), t);
            async move { registry.deregister(req).await }
        })
        .await?;
        Ok(())
    }

    /// The live servers (linearizable, through the leader).
    pub async fn list_servers(&self) -> Result<Vec<GameServer>, Error> {
        let msg = pb::ListServersRequest { shard_id: 0, serializable: false };
        let response = self
            .execute("list_servers", OpKind::Read, Target::Home, Route::Leader, |ch, shard, t| {
                let mut registry = self.registry_wire(ch);
                let req = request(in_shard!(msg, shard), t);
                async move { registry.list(req).await }
            })
            .await?;
        Ok(response.servers.into_iter().map(GameServer::from).collect())
    }

    /// Watches the registry: a snapshot, then changes; reconnects on breaks.
    pub fn watch_servers(&self) -> ServerWatch {
        let msg = pb::WatchServersRequest { shard_id: 0 };
        let client = self.clone();
        ServerWatch(Resuming::new(
            self.clone(),
            "watch_servers",
            Box::new(move |ch, shard| {
                let mut registry = client.registry_wire(ch);
                async move { registry.watch(tonic::Request::new(in_shard!(msg, shard))).await }.boxed()
            }),
        ))
    }
}
