//! In-process test clusters: N real nodes (own sled dirs, own gRPC and admin ports on 127.0.0.1)
//! in one process, talking over real sockets.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hypercache_proto::error_info::info_of;
use hypercache_proto::v1::kv_client::KvClient;
use hypercache_proto::v1::{self as pb};
use hypercache_server::config::Config;
use hypercache_server::local_cluster;
use hypercache_server::node::Node;
use hypercache_server::types::ShardId;
use tempfile::TempDir;
use tonic::transport::Channel;

/// Polls `check` until it returns Some, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct TestCluster {
    pub root: TempDir,
    pub configs: Vec<Config>,
    pub nodes: Vec<Option<Node>>,
}

impl TestCluster {
    /// Starts `n` nodes with static peers; `tweak` adjusts every node's config.
    pub async fn start(n: usize, tweak: impl Fn(&mut Config)) -> TestCluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        for mut planned in local_cluster::plan(n, root.path()).await.expect("loopback ports") {
            let c = &mut planned.config;
            c.shutdown_grace_ms = 5_000;
            // One data shard unless a test asks for more (tests/sharding.rs does): the earlier
            // issues' guarantees are per shard, and one shard keeps these clusters light.
            c.shards = 1;
            tweak(c);
            let (config, node) = planned.start().await.expect("node starts");
            nodes.push(Some(node));
            configs.push(config);
        }
        TestCluster { root, configs, nodes }
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.configs[i].data_dir.clone()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.configs[i].advertise_addr.clone()
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub async fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::connect(format!("http://{}", self.endpoint(i)))
            .await
            .expect("connect")
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// Index of the node that every running replica of data shard 0 agrees leads it.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        eventually("a shard-0 leader every running replica agrees on", timeout, || async {
            let mut leader = None;
            for n in self.nodes.iter().flatten() {
                let Some(shard) = n.shards().get(ShardId(0)) else { continue };
                let l = shard.metrics().current_leader?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader? as usize - 1;
            let shard = self.nodes[l].as_ref()?.shards().get(ShardId(0))?;
            shard.is_ready().then_some(l)
        })
        .await
    }

    /// Index of the node that leads the meta group (membership), once every running node
    /// agrees.
    pub async fn wait_meta_leader(&self, timeout: Duration) -> usize {
        eventually("a meta leader every running node agrees on", timeout, || async {
            let mut leader = None;
            for n in self.nodes.iter().flatten() {
                let l = n.shards().meta()?.metrics().current_leader?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader? as usize - 1;
            self.nodes[l].as_ref()?.shards().meta()?.is_ready().then_some(l)
        })
        .await
    }

    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        node.shutdown().await.expect("graceful shutdown");
    }

    pub async fn crash(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        node.crash().await;
    }

    /// Restarts node `i` from its data directory on its original ports.
    pub async fn restart(&mut self, i: usize) {
        let node = start_again(&self.configs[i]).await.expect("restart");
        self.nodes[i] = Some(node);
    }

    /// Endpoints of the running nodes.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()).map(|i| self.endpoint(i)).collect()
    }

    /// Writes through whichever running node leads; see [`put_via`].
    pub async fn put(&self, key: &str, value: &str) -> Result<u64, tonic::Status> {
        put_via(&self.endpoints(), key, value).await
    }

    /// A linearizable get from the current leader. Right after a failover the read barrier can
    /// miss its quorum (`NO_LEADER`) or land on a node that just lost the lead (`NOT_LEADER`);
    /// both are retryable by contract, so they are retried for up to 15 s.
    pub async fn get(&self, key: &str) -> Option<pb::KeyValue> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let l = self.wait_leader(Duration::from_secs(15)).await;
            let req = pb::GetRequest { key: key.to_string().into(), ..Default::default() };
            match self.kv(l).await.get(req).await {
                Ok(r) => return r.into_inner().kv,
                Err(s) if is_retryable(&s) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("linearizable get of {key}: {s:?}"),
            }
        }
    }

    /// A serializable (local) get from node `i`; `None` also while the replica refuses local
    /// reads (`REPLICA_NOT_SERVING`: it is still empty right after a restart, or a learner).
    pub async fn local_get(&self, i: usize, key: &str) -> Option<pb::KeyValue> {
        self.local_get_in(i, 0, key).await
    }

    /// A serializable get of `key` in data shard `shard` from node `i`'s own replica.
    pub async fn local_get_in(&self, i: usize, shard: u32, key: &str) -> Option<pb::KeyValue> {
        let req = pb::GetRequest { shard_id: shard, key: key.to_string().into(), serializable: true };
        match self.kv(i).await.get(req).await {
            Ok(response) => response.into_inner().kv,
            Err(status) if status.code() == tonic::Code::Unavailable => None,
            Err(status) => panic!("serializable get from node {i}: {status}"),
        }
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// Starts a node again from `config`, binding its original addresses.
pub async fn start_again(config: &Config) -> Result<Node, hypercache_server::node::NodeError> {
    Node::start(config.clone()).await
}

/// Writes through whichever of `endpoints` leads, following NOT_LEADER and retrying only errors
/// that promise the write had no effect (or a failed connect). Returns the revision, or the first
/// error whose outcome is unknown or final.
pub async fn put_via(endpoints: &[String], key: &str, value: &str) -> Result<u64, tonic::Status> {
    put_in(endpoints, 0, key, value).await
}

/// [`put_via`] for data shard `shard` (the shard `key` maps to). Like the client library, the
/// put carries a write id of its own (a fresh client id, seq 1), so it is retried on every
/// endpoint after any error but a bad request until the 20 s deadline:
/// the shard applies it at most once (exactly-once writes), so a retry after a `NOT_LEADER`
/// whose entry may still commit, or after a lost answer, cannot apply it twice.
pub async fn put_in(endpoints: &[String], shard: u32, key: &str, value: &str) -> Result<u64, tonic::Status> {
    let req = pb::PutRequest {
        shard_id: shard,
        key: key.to_string().into(),
        value: value.to_string().into(),
        write: Some(pb::WriteId { client_id: test_client_id().to_vec().into(), seq: 1, first_incomplete: 1 }),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut target = 0usize;
    loop {
        let endpoint = &endpoints[target % endpoints.len()];
        let result = match KvClient::connect(format!("http://{endpoint}")).await {
            Ok(mut c) => c.put(req.clone()).await.map(|r| r.into_inner().header.map_or(0, |h| h.revision)),
            Err(e) => Err(tonic::Status::unavailable(format!("connect: {e}"))),
        };
        match result {
            Ok(rev) => return Ok(rev),
            Err(st) => {
                // Only a bad request is final; a wrong shard (UNKNOWN_SHARD while replicas
                // move), no leader or an unknown outcome move on to the next endpoint.
                if st.code() == tonic::Code::InvalidArgument || Instant::now() > deadline {
                    return Err(st);
                }
                target += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A client id no other call of this test binary uses: the process id, a counter and the time.
fn test_client_id() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&std::process::id().to_be_bytes());
    id[4..12].copy_from_slice(&n.to_be_bytes());
    id[12..].copy_from_slice(&nanos.to_be_bytes());
    id
}

/// A linearizable get of `key` from data shard `shard`, trying every endpoint until one leads.
/// Errors that promise no effect (no leader yet, not the leader, e.g. while the placement driver
/// moves a leader) are retried for up to 20 s; any other error fails the test.
pub async fn get_in(endpoints: &[String], shard: u32, key: &str) -> Option<pb::KeyValue> {
    let req = pb::GetRequest { shard_id: shard, key: key.to_string().into(), serializable: false };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0usize;
    loop {
        let endpoint = &endpoints[i % endpoints.len()];
        i += 1;
        if let Ok(mut kv) = KvClient::connect(format!("http://{endpoint}")).await {
            match kv.get(req.clone()).await {
                Ok(r) => return r.into_inner().kv,
                Err(st) => {
                    let retry = info_of(&st).is_some_and(|i| i.not_applied);
                    assert!(retry && Instant::now() < deadline, "get {key}: {st:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Errors a client retries: no leader yet, or asked a node that no longer leads.
fn is_retryable(s: &tonic::Status) -> bool {
    let reason = info_of(s).map(|i| i.reason).unwrap_or_default();
    reason == "NO_LEADER" || reason == "NOT_LEADER"
}
