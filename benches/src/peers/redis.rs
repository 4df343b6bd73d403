//! Redis over RESP, one connection per worker (as `redis-benchmark -c` opens one per client: a
//! connection blocked in `WAIT` holds up every command queued behind it). A put is `SET`, followed
//! in the same round trip by `WAIT n` when `--redis-wait n` asks for replica acknowledgements
//! (fewer acknowledgements than n before the deadline is a failure, `not_replicated`). A
//! linearizable get is `GET` on the primary (the first endpoint); a serializable one is `GET` on
//! endpoint i mod n, replicas included. Durability (AOF `appendfsync always`) and replication are
//! the servers' configuration, not the client's.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::AsyncConnectionConfig;
use anyhow::Context;
use bytes::Bytes;

use super::{bounded, OpFailure, Read};

pub struct Connector {
    servers: Vec<::redis::Client>,
    timeout: Duration,
    wait: u32,
}

impl Connector {
    pub fn new(endpoints: &[String], timeout: Duration, wait: u32) -> anyhow::Result<Connector> {
        let servers = endpoints
            .iter()
            .map(|e| ::redis::Client::open(format!("redis://{e}/")).with_context(|| format!("Redis endpoint {e:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!servers.is_empty(), "--endpoints names no Redis server");
        Ok(Connector { servers, timeout, wait })
    }

    /// Worker `worker`'s connections: to the primary, and to its server for serializable reads.
    pub async fn connect(&self, worker: usize) -> anyhow::Result<Conn> {
        let primary = self.open(0).await?;
        let index = worker % self.servers.len();
        let reads = if index == 0 { primary.clone() } else { self.open(index).await? };
        Ok(Conn { primary, reads, timeout: self.timeout, wait: self.wait })
    }

    async fn open(&self, index: usize) -> anyhow::Result<MultiplexedConnection> {
        // The crate's own deadlines (500 ms per response by default) would cut WAIT short; the
        // benchmark's deadline applies instead.
        let config = AsyncConnectionConfig::new().set_connection_timeout(Some(self.timeout)).set_response_timeout(None);
        let server = &self.servers[index];
        server
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to Redis at {}", server.get_connection_info().addr()))
    }
}

pub struct Conn {
    primary: MultiplexedConnection,
    reads: MultiplexedConnection,
    timeout: Duration,
    wait: u32,
}

impl Conn {
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), OpFailure> {
        let (timeout, wait) = (self.timeout, self.wait);
        let primary = &mut self.primary;
        bounded(timeout, async move {
            if wait == 0 {
                return ::redis::cmd("SET")
                    .arg(&key[..])
                    .arg(&value[..])
                    .exec_async(primary)
                    .await
                    .map_err(redis_failure);
            }
            // WAIT gives up at half the deadline, so a write the replicas did not acknowledge is
            // reported as such (`not_replicated`) rather than as the deadline's `timeout`.
            let wait_ms = u64::try_from(timeout.as_millis() / 2).unwrap_or(u64::MAX).max(1);
            let (acked,): (u32,) = ::redis::pipe()
                .cmd("SET")
                .arg(&key[..])
                .arg(&value[..])
                .ignore()
                .cmd("WAIT")
                .arg(wait)
                .arg(wait_ms)
                .query_async(primary)
                .await
                .map_err(redis_failure)?;
            if acked < wait {
                return Err(OpFailure::new("not_replicated", format!("WAIT {wait}: {acked} replica(s) acknowledged")));
            }
            Ok(())
        })
        .await
    }

    pub async fn get(&mut self, key: Bytes, read: Read) -> Result<(), OpFailure> {
        let conn = match read {
            Read::Linearizable => &mut self.primary,
            Read::Serializable => &mut self.reads,
        };
        bounded(self.timeout, async move {
            let _: Option<Vec<u8>> =
                ::redis::cmd("GET").arg(&key[..]).query_async(conn).await.map_err(redis_failure)?;
            Ok(())
        })
        .await
    }
}

fn redis_failure(e: ::redis::RedisError) -> OpFailure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        "unavailable"
    } else {
        "error"
    };
    OpFailure::new(kind, format!("redis: {e}"))
}
