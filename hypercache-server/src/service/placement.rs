//! The placement service (`hypercache.raft.v1.Placement`): the placement driver (on the meta
//! leader) sends each step for a replica to the node that must carry it out, and this node does
//! it with [`crate::placement_driver::ops`]. A service of its own, so the Raft transport carries Raft
//! alone.

use std::sync::Arc;

use hypercache_proto::raft::v1::placement_server::Placement;
use hypercache_proto::raft::v1::RaftMessage;
use tonic::{Request, Response, Status};

use crate::placement_driver::ops::{self, ShardOp};
use crate::replica::ReplicaHost;

use super::peer_msg;

pub struct PlacementService {
    host: Arc<ReplicaHost>,
}

impl PlacementService {
    pub fn new(host: Arc<ReplicaHost>) -> Self {
        PlacementService { host }
    }
}

/// Carries out the step in `msg` for its shard and answers how it went.
pub(super) async fn serve(host: &ReplicaHost, msg: RaftMessage) -> Result<Response<RaftMessage>, Status> {
    peer_msg::serve("ShardOp", msg, |shard, op: ShardOp| ops::serve(host, shard, op)).await
}

#[tonic::async_trait]
impl Placement for PlacementService {
    async fn shard_op(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        serve(&self.host, request.into_inner()).await
    }
}
