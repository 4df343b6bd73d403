//! One gRPC channel per game-server address, shared by every call and stream to that server.
//!
//! The original dialled a new connection per player stream. Here a tonic `Channel` (HTTP/2,
//! multiplexed) is created lazily the first time an address is used and then reused; tonic
//! reconnects it on its own and re-resolves the name when it does. Channels of addresses no
//! live server advertises any more are dropped when the registry view changes, so the pool is
//! bounded by the number of live servers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypercache_proto::poison::lock;
use tonic::transport::{Channel, Endpoint};

use super::error::Error;
use crate::proto::v1::game_server_client::GameServerClient;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest message accepted from a game server (a full snapshot of 64 players is a few KiB).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl ChannelPool {
    pub fn new() -> ChannelPool {
        ChannelPool::default()
    }

    /// A client for the game server at `address` (`host:port`), over the pooled channel.
    pub fn client(&self, address: &str) -> Result<GameServerClient<Channel>, Error> {
        let channel = self.channel(address)?;
        Ok(GameServerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub fn channel(&self, address: &str) -> Result<Channel, Error> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::Internal(format!("game server address {address:?} is not usable: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// Drops the channels of addresses not in `live`.
    pub fn retain(&self, live: &HashSet<&str>) {
        let mut channels = lock(&self.channels);
        channels.retain(|address, _| live.contains(address.as_str()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.channels).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_channel_per_address_and_pruned_with_the_registry() {
        let pool = ChannelPool::new();
        pool.client("127.0.0.1:1").unwrap();
        pool.client("127.0.0.1:1").unwrap();
        pool.client("127.0.0.1:2").unwrap();
        assert_eq!(pool.len(), 2);
        pool.retain(&HashSet::from(["127.0.0.1:2"]));
        assert_eq!(pool.len(), 1);
        assert!(pool.client("bad address with spaces").is_err());
    }
}
