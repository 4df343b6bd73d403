//! A tiny fake KV server for client tests: answers according to a fixed [`Behaviour`] and
//! counts the calls it receives. Scripted fakes of the lease, watch and board services live in
//! [`scripted`].
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

pub mod scripted;
pub mod sharded;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::error_info::status_with_info;
use hypercache_proto::v1::kv_server::{Kv, KvServer};
use hypercache_proto::v1::*;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

#[derive(Clone)]
pub enum Behaviour {
    Serve,
    NotLeader(String),
    NoLeader,
    OutcomeUnknown,
    /// Answers puts only after this long (gets are served at once).
    SlowPut(Duration),
    /// Answers gets only after this long.
    SlowGet(Duration),
}

#[derive(Clone)]
pub struct Fake {
    pub behaviour: Behaviour,
    pub puts: Arc<AtomicU32>,
    pub gets: Arc<AtomicU32>,
    /// The write id of every put received, in order.
    pub put_ids: Arc<std::sync::Mutex<Vec<Option<WriteId>>>>,
}

impl Fake {
    pub fn new(behaviour: Behaviour) -> Self {
        Fake { behaviour, puts: Arc::default(), gets: Arc::default(), put_ids: Arc::default() }
    }

    fn refuse(&self) -> Result<(), Status> {
        let info = |reason: &str, not_applied: bool, leader: &str| ErrorInfo {
            reason: reason.into(),
            not_applied,
            leader_endpoint: leader.into(),
            leader_id: if leader.is_empty() { 0 } else { 2 },
            ..Default::default()
        };
        match &self.behaviour {
            Behaviour::NotLeader(leader) => Err(status_with_info(
                Code::FailedPrecondition,
                format!("not the leader; the leader is node 2 at {leader}"),
                &info("NOT_LEADER", true, leader),
            )),
            Behaviour::NoLeader => Err(status_with_info(Code::Unavailable, "no leader", &info("NO_LEADER", true, ""))),
            Behaviour::OutcomeUnknown => Err(status_with_info(
                Code::Unavailable,
                "proposal in flight when leadership was lost",
                &info("OUTCOME_UNKNOWN", false, ""),
            )),
            _ => Ok(()),
        }
    }

    fn kv(key: Bytes, value: Bytes) -> KeyValue {
        KeyValue { key, value, create_revision: 5, mod_revision: 5, version: 1, lease: 0 }
    }
}

fn header() -> Option<ResponseHeader> {
    Some(ResponseHeader { shard_id: 0, revision: 5, node_id: 2, raft_term: 1 })
}

#[tonic::async_trait]
impl Kv for Fake {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.refuse()?;
        if let Behaviour::SlowGet(delay) = self.behaviour {
            tokio::time::sleep(delay).await;
        }
        let key = request.into_inner().key;
        let kv = match key.as_ref() {
            b"present" => Some(Fake::kv(key, Bytes::from_static(b"value"))),
            b"big" => Some(Fake::kv(key, Bytes::from(vec![b'x'; 1 << 20]))),
            _ => None,
        };
        Ok(Response::new(GetResponse { header: header(), kv }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.put_ids.lock().expect("put ids").push(request.get_ref().write.clone());
        self.refuse()?;
        if let Behaviour::SlowPut(delay) = self.behaviour {
            tokio::time::sleep(delay).await;
        }
        let req = request.into_inner();
        if req.key.is_empty() {
            let info = ErrorInfo { reason: "EMPTY_KEY".into(), not_applied: true, ..Default::default() };
            return Err(status_with_info(Code::InvalidArgument, "key is empty; keys must be 1..=4096 bytes", &info));
        }
        Ok(Response::new(PutResponse { header: header(), prev_kv: None, kv: Some(Fake::kv(req.key, req.value)) }))
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

    async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    /// Succeeds only without compares (enough to test both branches); gets see `present`.
    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.refuse()?;
        let req = request.into_inner();
        let succeeded = req.compares.is_empty();
        let branch = if succeeded { req.success } else { req.failure };
        let responses = branch
            .into_iter()
            .filter_map(|op| op.op)
            .map(|op| {
                let op = match op {
                    request_op::Op::Get(get) => {
                        let kv =
                            (get.key.as_ref() == b"present").then(|| Fake::kv(get.key, Bytes::from_static(b"value")));
                        response_op::Op::Get(GetResponse { header: None, kv })
                    }
                    request_op::Op::Put(put) => response_op::Op::Put(PutResponse {
                        header: None,
                        prev_kv: None,
                        kv: Some(Fake::kv(put.key, put.value)),
                    }),
                    request_op::Op::Delete(_) => response_op::Op::Delete(DeleteResponse::default()),
                };
                ResponseOp { op: Some(op) }
            })
            .collect();
        Ok(Response::new(TxnResponse { header: header(), succeeded, responses }))
    }

    type WatchStream = scripted::BoxStream<WatchResponse>;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Serves `fake` on 127.0.0.1 at an OS-chosen port; returns "127.0.0.1:port".
pub async fn serve(fake: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tonic::transport::Server::builder()
        .add_service(KvServer::new(fake))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    addr.to_string()
}

/// Serves several services on 127.0.0.1 at an OS-chosen port; returns "127.0.0.1:port".
pub async fn serve_routes(routes: tonic::service::Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server =
        tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    addr.to_string()
}

/// Polls `condition` every few milliseconds until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A frozen node, as SIGSTOP leaves one: the kernel completes TCP handshakes into the listen
/// backlog, so connects succeed, requests are sent, and nothing ever answers. Keep the
/// listener alive for as long as the node should stay frozen.
pub fn frozen() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    (listener, addr)
}

/// An address nothing listens on.
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr.to_string()
}
