//! `hypercache.v1.Cluster`: this node's view of itself and its shard.

use std::sync::Arc;

use hypercache_proto::v1 as pb;
use hypercache_proto::v1::cluster_server::Cluster;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use crate::shard::Shards;
use crate::types::{NodeInfo, ShardId};

pub struct ClusterService {
    shards: Arc<Shards>,
    me: NodeInfo,
}

impl ClusterService {
    pub fn new(shards: Arc<Shards>, me: NodeInfo) -> Self {
        ClusterService { shards, me }
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let shard =
            self.shards.get(ShardId::DEFAULT).ok_or_else(|| Status::unavailable("this node hosts no shard yet"))?;
        let m = shard.metrics();
        let membership = m.membership_config.membership();
        let voters: Vec<_> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| pb::Member {
                node_id: *id,
                name: node.name.clone(),
                endpoint: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let leader_endpoint = m.current_leader.and_then(|l| shard.endpoint_of(l)).unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            node_id: m.id,
            name: self.me.name.clone(),
            endpoint: self.me.addr.clone(),
            shard_id: shard.id.0,
            role: role(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            leader_endpoint,
            commit_index: shard.committed_index(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            members,
            ready: shard.is_ready(),
        }))
    }
}
