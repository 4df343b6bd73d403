//! A peer of an earlier version, for tests: it serves the Raft service alone, as nodes did before
//! the Placement and LeaseHome services, and answers the old `ShardOp` and `LeaseEnds` paths with
//! fixed payloads. Shows that the asking side falls back to those paths.

use hypercache_proto::raft::v1::raft_server::{Raft, RaftServer};
use hypercache_proto::raft::v1::{RaftBatch, RaftMessage, RaftReply};
use tonic::{Request, Response, Status};

struct OldPeer {
    shard_op: bytes::Bytes,
    lease_ends: bytes::Bytes,
}

fn answer(shard_id: u32, payload: &bytes::Bytes) -> Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage { shard_id, payload: payload.clone(), ..Default::default() }))
}

#[tonic::async_trait]
impl Raft for OldPeer {
    async fn append_entries(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("old test peer: no Raft here"))
    }
    type AppendBatchStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftReply, Status>> + Send + 'static>>;
    async fn append_batch(&self, _: Request<RaftBatch>) -> Result<Response<Self::AppendBatchStream>, Status> {
        Err(Status::unimplemented("old test peer: no Raft here"))
    }
    async fn vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("old test peer: no Raft here"))
    }
    async fn pre_vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("old test peer: no Raft here"))
    }
    async fn install_snapshot(
        &self,
        _: Request<tonic::Streaming<RaftMessage>>,
    ) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("old test peer: no Raft here"))
    }
    async fn transfer_leader(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("old test peer: no Raft here"))
    }
    async fn shard_op(&self, r: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        answer(r.into_inner().shard_id, &self.shard_op)
    }
    async fn lease_ends(&self, r: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        answer(r.into_inner().shard_id, &self.lease_ends)
    }
}

/// Starts an old peer on a free loopback port; returns its `host:port`.
pub(crate) async fn serve(shard_op: bytes::Bytes, lease_ends: bytes::Bytes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let svc = RaftServer::new(OldPeer { shard_op, lease_ends });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr.to_string()
}
