//! A tiny fake of a sharded cluster: a few nodes that share one state (as if replication were
//! instant), each hosting some shards and leading some. They serve `Cluster.Routing` from a
//! script of tables (`None`: UNIMPLEMENTED, like a server that predates sharding), and the KV
//! and lease calls the sharding tests need, refusing like the real server: UNKNOWN_SHARD for a
//! shard the node does not host, WRONG_SHARD for a key of another shard, NOT_LEADER (with the
//! shard's leader) on a follower. Every call is recorded as (node, op, shard).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hypercache_proto::error_info::status_with_info;
use hypercache_proto::routing::Router;
use hypercache_proto::v1::cluster_server::{Cluster, ClusterServer};
use hypercache_proto::v1::kv_server::{Kv, KvServer};
use hypercache_proto::v1::lease_server::{Lease, LeaseServer};
use hypercache_proto::v1::*;
use tokio::sync::mpsc;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};

use super::scripted::{lock, BoxStream};

#[derive(Default)]
pub struct State {
    pub shard_count: u32,
    /// Successive `Routing` answers; the last one repeats. `None`: UNIMPLEMENTED.
    pub tables: VecDeque<Option<RoutingResponse>>,
    /// Node name -> endpoint.
    pub endpoints: BTreeMap<String, String>,
    /// Node name -> shards it hosts.
    pub hosts: HashMap<String, Vec<u32>>,
    /// Shard -> leading node name.
    pub leaders: HashMap<u32, String>,
    pub data: BTreeMap<Bytes, KeyValue>,
    /// Node name -> the revision its replicas are stuck at: its serializable reads answer
    /// from that revision (a lagging follower).
    pub lagging: HashMap<String, u64>,
    /// Per shard: (revision, key) of every write, for watches.
    pub history: HashMap<u32, Vec<(u64, Bytes)>>,
    /// Watch streams end after this many messages the first time a shard is watched.
    pub first_stream_messages: usize,
    pub calls: Vec<(String, &'static str, u32)>,
    pub routing_calls: u32,
    /// (node, shard, start_revision) of every watch.
    pub watches: Vec<(String, u32, u64)>,
}

pub type Shared = Arc<Mutex<State>>;

impl State {
    /// A routing table naming every node and, per shard, the hosts and the leader.
    pub fn table(&self, version: u64) -> RoutingResponse {
        let ids: BTreeMap<&String, u64> = self.endpoints.keys().zip(1..).collect();
        RoutingResponse {
            version,
            shard_count: self.shard_count,
            replication: 1,
            nodes: self
                .endpoints
                .iter()
                .map(|(name, endpoint)| Member {
                    node_id: ids[name],
                    name: name.clone(),
                    endpoint: endpoint.clone(),
                    voter: true,
                    incarnation: ids[name],
                })
                .collect(),
            shards: (0..self.shard_count)
                .map(|shard| ShardRoute {
                    shard_id: shard,
                    replicas: self
                        .hosts
                        .iter()
                        .filter(|(_, shards)| shards.contains(&shard))
                        .map(|(name, _)| ids[name])
                        .collect(),
                    leader_id: self.leaders.get(&shard).map_or(0, |name| ids[name]),
                })
                .collect(),
            draining: vec![],
            meta_leader_id: 1,
            down: vec![],
        }
    }

    fn put(&mut self, shard: u32, key: Bytes, value: Bytes) -> KeyValue {
        let history = self.history.entry(shard).or_default();
        let revision = history.last().map_or(0, |(r, _)| *r) + 1;
        history.push((revision, key.clone()));
        let kv = KeyValue {
            key: key.clone(),
            value,
            mod_revision: revision,
            create_revision: revision,
            version: 1,
            lease: 0,
        };
        self.data.insert(key, kv.clone());
        kv
    }

    pub fn revision(&self, shard: u32) -> u64 {
        self.history.get(&shard).and_then(|h| h.last()).map_or(0, |(r, _)| *r)
    }
}

#[derive(Clone)]
pub struct FakeNode {
    pub name: String,
    pub state: Shared,
}

fn refusal(code: Code, reason: &str, info: ErrorInfo) -> Status {
    let info = ErrorInfo { reason: reason.into(), not_applied: true, ..info };
    status_with_info(code, format!("{reason} (fake)"), &info)
}

impl FakeNode {
    /// Records the call and refuses it the way a real node would.
    fn admit(&self, op: &'static str, shard: u32, key: Option<&[u8]>, leader_only: bool) -> Result<(), Status> {
        let mut state = lock(&self.state);
        state.calls.push((self.name.clone(), op, shard));
        if !state.hosts.get(&self.name).is_some_and(|s| s.contains(&shard)) {
            return Err(refusal(Code::NotFound, "UNKNOWN_SHARD", ErrorInfo { shard_id: shard, ..Default::default() }));
        }
        if let Some(key) = key {
            if Router::new(state.shard_count).shard_of(key) != shard {
                return Err(refusal(
                    Code::FailedPrecondition,
                    "WRONG_SHARD",
                    ErrorInfo { shard_id: shard, ..Default::default() },
                ));
            }
        }
        let leader = state.leaders.get(&shard).cloned().unwrap_or_default();
        if leader_only && leader != self.name {
            let info = ErrorInfo {
                shard_id: shard,
                leader_endpoint: state.endpoints.get(&leader).cloned().unwrap_or_default(),
                ..Default::default()
            };
            return Err(refusal(Code::FailedPrecondition, "NOT_LEADER", info));
        }
        Ok(())
    }

    fn header(&self, shard: u32) -> Option<ResponseHeader> {
        Some(ResponseHeader { shard_id: shard, revision: lock(&self.state).revision(shard), node_id: 1, raft_term: 1 })
    }
}

#[tonic::async_trait]
impl Cluster for FakeNode {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn decommission(&self, _: Request<DecommissionRequest>) -> Result<Response<DecommissionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn routing(&self, _: Request<RoutingRequest>) -> Result<Response<RoutingResponse>, Status> {
        let mut state = lock(&self.state);
        state.routing_calls += 1;
        let answer = if state.tables.len() > 1 { state.tables.pop_front() } else { state.tables.front().cloned() };
        match answer.flatten() {
            Some(table) => Ok(Response::new(table)),
            None => Err(Status::unimplemented("no routing here")),
        }
    }
    async fn local_shards(&self, _: Request<LocalShardsRequest>) -> Result<Response<LocalShardsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn add_node(&self, _: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl Kv for FakeNode {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let req = request.into_inner();
        self.admit("get", req.shard_id, Some(&req.key), !req.serializable)?;
        let state = lock(&self.state);
        let mut header =
            ResponseHeader { shard_id: req.shard_id, revision: state.revision(req.shard_id), node_id: 1, raft_term: 1 };
        let mut kv = state.data.get(&req.key).cloned();
        if let Some(&stuck) = state.lagging.get(&self.name).filter(|_| req.serializable) {
            header.revision = header.revision.min(stuck);
            kv = kv.filter(|kv| kv.mod_revision <= stuck);
        }
        Ok(Response::new(GetResponse { header: Some(header), kv }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        self.admit("put", req.shard_id, Some(&req.key), true)?;
        let kv = lock(&self.state).put(req.shard_id, req.key, req.value);
        Ok(Response::new(PutResponse { header: self.header(req.shard_id), prev_kv: None, kv: Some(kv) }))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn compare_and_swap(
        &self,
        _: Request<CompareAndSwapRequest>,
    ) -> Result<Response<CompareAndSwapResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    /// Prefixes only; `start` resumes (inclusive), like the real server's continuation.
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        self.admit("range", req.shard_id, None, !req.serializable)?;
        let state = lock(&self.state);
        let router = Router::new(state.shard_count);
        let limit = if req.limit == 0 { 1000 } else { req.limit as usize };
        let in_range = |k: &Bytes| {
            k.starts_with(&req.prefix)
                && k.as_ref() >= req.start.as_ref()
                && (req.end.is_empty() || k.as_ref() < req.end.as_ref())
                && k.as_ref() >= req.continuation.as_ref()
        };
        let mut matching =
            state.data.values().filter(|kv| in_range(&kv.key) && router.shard_of(&kv.key) == req.shard_id).cloned();
        let kvs: Vec<KeyValue> = matching.by_ref().take(limit).collect();
        let continuation = matching.next().map(|kv| kv.key).unwrap_or_default();
        drop(state);
        Ok(Response::new(RangeResponse { header: self.header(req.shard_id), kvs, continuation }))
    }

    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchStream = BoxStream<WatchResponse>;

    /// Streams the shard's history from `start_revision`, one revision per message; the first
    /// stream of each shard ends after `first_stream_messages`, later ones stay open.
    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        self.admit("watch", req.shard_id, None, false)?;
        let (tx, rx) = mpsc::channel(64);
        let (messages, close) = {
            let mut state = lock(&self.state);
            let first = !state.watches.iter().any(|(_, s, _)| *s == req.shard_id);
            state.watches.push((self.name.clone(), req.shard_id, req.start_revision));
            let limit = if first { state.first_stream_messages } else { usize::MAX };
            let history = state.history.get(&req.shard_id).cloned().unwrap_or_default();
            let messages: Vec<WatchResponse> = history
                .into_iter()
                .filter(|(r, _)| *r >= req.start_revision)
                .take(limit)
                .map(|(revision, key)| WatchResponse {
                    header: Some(ResponseHeader { shard_id: req.shard_id, revision, ..Default::default() }),
                    events: vec![Event {
                        r#type: event::Type::Put as i32,
                        kv: Some(KeyValue { key, mod_revision: revision, ..Default::default() }),
                        prev_kv: None,
                    }],
                    progress: false,
                })
                .collect();
            (messages, limit != usize::MAX)
        };
        tokio::spawn(async move {
            for message in messages {
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if !close {
                tx.closed().await;
            }
        });
        Ok(Response::new(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))))
    }
}

#[tonic::async_trait]
impl Lease for FakeNode {
    async fn grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        self.admit("lease_grant", req.shard_id, None, true)?;
        let id = u64::from(req.shard_id) << 48 | 7;
        Ok(Response::new(LeaseGrantResponse { header: self.header(req.shard_id), id, ttl_ms: req.ttl_ms }))
    }
    async fn revoke(&self, request: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let req = request.into_inner();
        self.admit("lease_revoke", req.shard_id, None, true)?;
        Ok(Response::new(LeaseRevokeResponse { header: self.header(req.shard_id), deleted_keys: 0 }))
    }
    type KeepAliveStream = BoxStream<LeaseKeepAliveResponse>;
    async fn keep_alive(
        &self,
        _: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn keep_alive_once(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let req = request.into_inner();
        self.admit("lease_keep_alive_once", req.shard_id, None, true)?;
        Ok(Response::new(LeaseKeepAliveResponse { header: self.header(req.shard_id), id: req.id, ttl_ms: 1000 }))
    }
    async fn time_to_live(
        &self,
        _: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Binds one listener per name, then serves a [`FakeNode`] on each with the shared state (its
/// `endpoints` filled in). Returns the state and the endpoints in `names` order.
pub async fn cluster(names: &[&str], shard_count: u32) -> (Shared, Vec<String>) {
    let mut listeners = Vec::new();
    let state: Shared =
        Arc::new(Mutex::new(State { shard_count, first_stream_messages: usize::MAX, ..State::default() }));
    for name in names {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = listener.local_addr().expect("addr").to_string();
        lock(&state).endpoints.insert(name.to_string(), endpoint);
        listeners.push((name.to_string(), listener));
    }
    let mut endpoints = Vec::new();
    for (name, listener) in listeners {
        endpoints.push(lock(&state).endpoints[&name].clone());
        let node = FakeNode { name, state: state.clone() };
        let routes = Routes::new(KvServer::new(node.clone()))
            .add_service(ClusterServer::new(node.clone()))
            .add_service(LeaseServer::new(node));
        let server =
            tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(server);
    }
    (state, endpoints)
}
