//! One gRPC channel per peer address.
//!
//! Channels are created with `connect_lazy`: creating one does no I/O, and the channel resolves
//! the peer's name and connects on first use and again after every connection failure. That is
//! what keeps a restarted pod with a new IP reachable under its stable name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub struct PeerPool {
    inner: Arc<Inner>,
}

struct Inner {
    // A std mutex: held only to look up or insert, never across an await.
    channels: Mutex<HashMap<String, Channel>>,
    connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid peer address {addr:?}: {source}")]
pub struct BadPeerAddr {
    addr: String,
    source: tonic::transport::Error,
}

impl PeerPool {
    pub fn new(connect_timeout: Duration) -> Self {
        PeerPool { inner: Arc::new(Inner { channels: Mutex::new(HashMap::new()), connect_timeout }) }
    }

    /// Drops the channel to `addr`; the next [`PeerPool::channel`] makes a new connection,
    /// resolving the name again. Callers holding clones of the old channel keep it until they
    /// ask again.
    pub fn evict(&self, addr: &str) {
        let mut channels = self.inner.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        channels.remove(addr);
    }

    /// The shared channel to `addr` (`host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, BadPeerAddr> {
        let mut channels = self.inner.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| BadPeerAddr { addr: addr.to_string(), source })?
            .connect_timeout(self.inner.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let ch = endpoint.connect_lazy();
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}
