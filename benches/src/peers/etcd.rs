//! etcd v3 over its gRPC KV API: a put is `KV.Put` (linearizable: committed by a quorum and
//! fsynced before the answer), a linearizable get is `KV.Range`, a serializable one is `KV.Range`
//! with `serializable = true` (answered from the asked member's store). `--etcd-connections` HTTP/2
//! channels per member, each shared by the workers assigned to it, as etcd's own `benchmark` tool
//! shares `--conns` connections among `--clients`.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};

use super::{bounded, OpFailure, Read};

/// The generated messages and client of `proto/proto/peers/etcd/kv.proto`.
pub mod pb {
    #![allow(clippy::all, clippy::unwrap_used)]
    tonic::include_proto!("etcdserverpb");
}

type KvClient = pb::kv_client::KvClient<Channel>;

pub struct Connector {
    /// Every member's first channel, then every member's second, and so on.
    channels: Vec<KvClient>,
    timeout: Duration,
}

impl Connector {
    /// Channels connect lazily: a member that is down fails its workers' operations, which the
    /// report counts, rather than the whole run.
    pub fn new(endpoints: &[String], timeout: Duration, connections: usize) -> anyhow::Result<Connector> {
        let channels = (0..connections)
            .flat_map(|_| endpoints.iter())
            .map(|e| {
                let channel = Endpoint::from_shared(format!("http://{e}"))
                    .with_context(|| format!("etcd endpoint {e:?}"))?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok(KvClient::new(channel))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!channels.is_empty(), "--endpoints names no etcd member");
        Ok(Connector { channels, timeout })
    }

    /// Worker i uses channel i mod (members x connections): members take turns.
    pub fn connect(&self, worker: usize) -> Conn {
        Conn { kv: self.channels[worker % self.channels.len()].clone(), timeout: self.timeout }
    }
}

pub struct Conn {
    kv: KvClient,
    timeout: Duration,
}

impl Conn {
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), OpFailure> {
        let request = pb::PutRequest { key, value, lease: 0 };
        bounded(self.timeout, async { self.kv.put(request).await.map(drop).map_err(status_failure) }).await
    }

    pub async fn get(&mut self, key: Bytes, read: Read) -> Result<(), OpFailure> {
        let request = pb::RangeRequest { key, serializable: read == Read::Serializable, ..Default::default() };
        bounded(self.timeout, async { self.kv.range(request).await.map(drop).map_err(status_failure) }).await
    }
}

fn status_failure(status: tonic::Status) -> OpFailure {
    let kind = match status.code() {
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DeadlineExceeded => "timeout",
        tonic::Code::ResourceExhausted => "overloaded",
        _ => "error",
    };
    OpFailure::new(kind, format!("etcd: {}: {}", status.code(), status.message()))
}
