//! `hypercache.v1.Cluster`: this node's view of itself and its shard, and membership changes
//! (join, decommission; the rules live in `membership.rs`).

use std::sync::Arc;

use hypercache_proto::v1 as pb;
use hypercache_proto::v1::cluster_server::Cluster;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use crate::discovery::require_dns_name;
use crate::error::ServiceError;
use crate::membership::{JoinOutcome, MemberView, Membership};
use crate::shard::Shards;
use crate::types::{NodeInfo, ShardId};

pub struct ClusterService {
    shards: Arc<Shards>,
    me: NodeInfo,
    membership: Arc<Membership>,
}

impl ClusterService {
    pub fn new(shards: Arc<Shards>, me: NodeInfo, membership: Arc<Membership>) -> Self {
        ClusterService { shards, me, membership }
    }
}

fn member_pb(m: MemberView) -> pb::Member {
    pb::Member { node_id: m.id, name: m.node.name, endpoint: m.node.addr, voter: m.voter }
}

/// Join requests name a node as membership will store it: an id, a name, and a DNS endpoint.
fn validate_join(req: &pb::JoinRequest) -> Result<(), ServiceError> {
    if req.node_id == 0 {
        return Err(ServiceError::invalid("INVALID_ARGUMENT", "join: node_id must be >= 1"));
    }
    if req.name.trim().is_empty() || req.name.len() > 253 {
        return Err(ServiceError::invalid("INVALID_ARGUMENT", "join: name must be 1..=253 characters"));
    }
    require_dns_name(&req.endpoint)
        .map_err(|e| ServiceError::invalid("INVALID_ARGUMENT", format!("join: endpoint {e}")))
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
        let members = self.membership.members().into_iter().map(member_pb).collect();
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

    async fn join(&self, request: Request<pb::JoinRequest>) -> Result<Response<pb::JoinResponse>, Status> {
        let req = request.into_inner();
        validate_join(&req).map_err(ServiceError::into_status)?;
        let node = NodeInfo { name: req.name, addr: req.endpoint };
        let outcome = self.membership.join(req.node_id, node).await.map_err(ServiceError::into_status)?;
        Ok(Response::new(pb::JoinResponse {
            already_member: outcome == JoinOutcome::AlreadyMember,
            members: self.membership.members().into_iter().map(member_pb).collect(),
        }))
    }

    async fn decommission(
        &self,
        request: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        let name = request.into_inner().name;
        if name.trim().is_empty() {
            return Err(ServiceError::invalid("INVALID_ARGUMENT", "decommission: name is empty").into_status());
        }
        let node_id = self.membership.decommission(&name).await.map_err(ServiceError::into_status)?;
        Ok(Response::new(pb::DecommissionResponse {
            node_id,
            members: self.membership.members().into_iter().map(member_pb).collect(),
        }))
    }
}
