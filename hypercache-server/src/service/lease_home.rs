//! The lease-home service (`hypercache.raft.v1.LeaseHome`): the leaders of shards whose keys hang
//! on leases of this node's shard ask which of those leases have ended (`crate::lease_home` has
//! the model and the asking side).

use std::sync::Arc;

use hypercache_proto::raft::v1::lease_home_server::LeaseHome;
use hypercache_proto::raft::v1::RaftMessage;
use tonic::{Request, Response, Status};

use crate::lease_home::{self, LeaseEndsReply};
use crate::shard::Shards;
use crate::types::LeaseId;

use super::peer_msg;

pub struct LeaseHomeService {
    shards: Arc<Shards>,
}

impl LeaseHomeService {
    pub fn new(shards: Arc<Shards>) -> Self {
        LeaseHomeService { shards }
    }
}

/// Answers which of the lease ids in `msg` have ended in its shard (a failure when this node does
/// not host or lead it: the asker tries the next replica).
pub(super) async fn serve(shards: &Shards, msg: RaftMessage) -> Result<Response<RaftMessage>, Status> {
    peer_msg::serve("LeaseEnds", msg, |id, ids: Vec<LeaseId>| async move {
        match shards.get(id) {
            Some(shard) => match lease_home::ended_here(&shard, &ids).await {
                Ok(ended) => LeaseEndsReply::Ended(ended),
                Err(e) => LeaseEndsReply::Failed(e.to_string()),
            },
            None => LeaseEndsReply::Failed(format!("this node hosts no replica of shard {id}")),
        }
    })
    .await
}

#[tonic::async_trait]
impl LeaseHome for LeaseHomeService {
    async fn lease_ends(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        serve(&self.shards, request.into_inner()).await
    }
}
