//! One gRPC channel per peer address.
//!
//! Channels are created with `connect_lazy`: creating one does no I/O, and the channel resolves
//! the peer's name and connects on first use and again after every connection failure. That is
//! what keeps a restarted pod with a new IP reachable under its stable name.
//!
//! Each peer also gets, on first use, an [`AppendBatcher`] over its channel: the one queue through
//! which every shard's AppendEntries to that peer leave, batched.

use hypercache_proto::poison::lock;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::batch::AppendBatcher;
use super::links::Links;

#[derive(Clone)]
pub struct PeerPool {
    inner: Arc<Inner>,
}

struct Inner {
    // A std mutex: held only to look up or insert, never across an await.
    channels: Mutex<HashMap<String, Peer>>,
    connect_timeout: Duration,
    max_message_bytes: usize,
    links: Links,
}

struct Peer {
    channel: Channel,
    /// Created on first use: only peers that receive appends need the task.
    appends: Option<AppendBatcher>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid peer address {addr:?}: {source}")]
pub struct BadPeerAddr {
    addr: String,
    source: tonic::transport::Error,
}

impl PeerPool {
    /// `max_message_bytes` is the peer message limit the batchers keep their batches within.
    pub fn new(connect_timeout: Duration, max_message_bytes: usize) -> Self {
        PeerPool {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                connect_timeout,
                max_message_bytes,
                links: Links::default(),
            }),
        }
    }

    /// Test control over which messages go to which peer (see `links.rs`).
    pub fn links(&self) -> &Links {
        &self.inner.links
    }

    /// Drops the channel to `addr` (and its batcher); the next [`PeerPool::channel`] makes a new
    /// connection, resolving the name again. Callers holding clones of the old channel keep it
    /// until they ask again.
    pub fn evict(&self, addr: &str) {
        let mut channels = lock(&self.inner.channels);
        channels.remove(addr);
    }

    /// The shared channel to `addr` (`host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, BadPeerAddr> {
        let mut channels = lock(&self.inner.channels);
        self.peer(&mut channels, addr).map(|p| p.channel.clone())
    }

    /// The batcher through which every shard's AppendEntries to `addr` leave. Must be called on
    /// a Tokio runtime (the batcher is a task).
    pub fn appends(&self, addr: &str) -> Result<AppendBatcher, BadPeerAddr> {
        let mut channels = lock(&self.inner.channels);
        let max = self.inner.max_message_bytes;
        let peer = self.peer(&mut channels, addr)?;
        Ok(peer
            .appends
            .get_or_insert_with(|| AppendBatcher::spawn(addr.to_string(), peer.channel.clone(), max))
            .clone())
    }

    fn peer<'a>(&self, channels: &'a mut HashMap<String, Peer>, addr: &str) -> Result<&'a mut Peer, BadPeerAddr> {
        match channels.entry(addr.to_string()) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => Ok(e.insert(Peer { channel: self.connect(addr)?, appends: None })),
        }
    }

    fn connect(&self, addr: &str) -> Result<Channel, BadPeerAddr> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| BadPeerAddr { addr: addr.to_string(), source })?
            .connect_timeout(self.inner.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_lazy())
    }
}
