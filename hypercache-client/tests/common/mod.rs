//! A tiny fake KV server for client tests: answers according to a fixed [`Behaviour`] and
//! counts the calls it receives.
#![allow(dead_code)]

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
}

impl Fake {
    pub fn new(behaviour: Behaviour) -> Self {
        Fake { behaviour, puts: Arc::default(), gets: Arc::default() }
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
        KeyValue { key, value, create_revision: 5, mod_revision: 5, version: 1 }
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

/// An address nothing listens on.
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr.to_string()
}
