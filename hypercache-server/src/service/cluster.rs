//! `hypercache.v1.Cluster`: this node's view of itself and the meta group, its data replicas, the
//! routing table, and membership changes (join, add, decommission; the rules live in
//! `membership.rs` and `placement_driver/driver.rs`).

use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::v1 as pb;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::cluster_server::Cluster;
use hypercache_proto::Reason;
use tonic::{Request, Response, Status};

use crate::discovery::require_dns_name;
use crate::error::ServiceError;
use crate::identity::Stamp;
use crate::membership::{JoinOutcome, MemberView, Membership};
use crate::network::PeerPool;
use crate::placement::store;
use crate::placement_driver::driver::Driver;
use crate::replica_status::role_of;
use crate::shard::{Shard, Shards};
use crate::types::{Incarnation, NodeInfo, ShardId};

pub struct ClusterService {
    shards: Arc<Shards>,
    me: NodeInfo,
    stamp: Arc<Stamp>,
    /// Joins must name a DNS endpoint (discovery mode); with static peers, members are recorded
    /// by the addresses the peers list gives, IPs included.
    names_only: bool,
    membership: Arc<Membership>,
    driver: Arc<Driver>,
    pool: PeerPool,
}

impl ClusterService {
    pub fn new(
        shards: Arc<Shards>,
        me: NodeInfo,
        stamp: Arc<Stamp>,
        names_only: bool,
        membership: Arc<Membership>,
        driver: Arc<Driver>,
        pool: PeerPool,
    ) -> Self {
        ClusterService { shards, me, stamp, names_only, membership, driver, pool }
    }

    fn meta(&self) -> Result<Arc<Shard>, Status> {
        self.shards
            .meta()
            .ok_or_else(|| ServiceError::NoReplica { node: self.stamp.node_id, shard: ShardId::META }.into_status())
    }

    /// Asks the node at `endpoint` who it is (AddNode), over the peer pool.
    async fn identify(&self, endpoint: &str) -> Result<pb::StatusResponse, ServiceError> {
        let unreachable = |e: String| {
            ServiceError::invalid(Reason::NodeUnreachable, format!("add node: cannot ask {endpoint} who it is: {e}"))
        };
        let channel = self.pool.channel(endpoint).map_err(|e| unreachable(e.to_string()))?;
        let mut client = ClusterClient::new(channel);
        let call = client.status(pb::StatusRequest {});
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(unreachable(s.message().to_string())),
            Err(_) => Err(unreachable("no answer within 3 s".into())),
        }
    }
}

fn member_pb(m: MemberView) -> pb::Member {
    pb::Member {
        node_id: m.id,
        name: m.node.name,
        endpoint: m.node.addr,
        voter: m.voter,
        incarnation: m.node.incarnation.0,
    }
}

/// Join requests name a node as membership will store it: an id, a name, an incarnation and
/// (checked by the caller) a DNS endpoint.
fn validate_join(req: &pb::JoinRequest) -> Result<(), ServiceError> {
    if req.node_id == 0 {
        return Err(ServiceError::invalid(Reason::InvalidArgument, "join: node_id must be >= 1"));
    }
    if req.incarnation == 0 {
        return Err(ServiceError::invalid(
            Reason::InvalidArgument,
            "join: incarnation must be non-zero (the joining node's data-dir stamp; nodes older than incarnations \
             cannot join)",
        ));
    }
    if req.name.trim().is_empty() || req.name.len() > 253 {
        return Err(ServiceError::invalid(Reason::InvalidArgument, "join: name must be 1..=253 characters"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let shard = self.meta()?;
        let m = shard.metrics();
        let members = self.membership.members().into_iter().map(member_pb).collect();
        let leader_endpoint = m.current_leader.and_then(|l| shard.endpoint_of(l)).unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            node_id: m.id,
            name: self.me.name.clone(),
            endpoint: self.me.addr.clone(),
            shard_id: shard.id.0,
            role: role_of(m.state).name().to_string(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            leader_endpoint,
            commit_index: shard.committed_index(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            members,
            ready: shard.is_ready(),
            incarnation: self.stamp.incarnation.0,
            cluster_id: self.stamp.cluster().map(|c| c.0).unwrap_or_default(),
        }))
    }

    async fn join(&self, request: Request<pb::JoinRequest>) -> Result<Response<pb::JoinResponse>, Status> {
        let req = request.into_inner();
        validate_join(&req).map_err(ServiceError::into_status)?;
        let node = NodeInfo { name: req.name, addr: req.endpoint, incarnation: Incarnation(req.incarnation) };
        let known = self.membership.members().into_iter().find(|m| m.id == req.node_id && m.node.same_endpoint(&node));
        // New members are recorded by DNS name in discovery mode; a member rejoining under the
        // endpoint membership already holds for it keeps it. With static peers (IPs allowed), a
        // node whose old entry was removed but whose re-add did not happen rejoins under the
        // address the peers list gives it.
        if known.is_none() && self.names_only {
            require_dns_name(&node.addr).map_err(|e| {
                ServiceError::invalid(Reason::InvalidArgument, format!("join: endpoint {e}")).into_status()
            })?;
        }
        let replacing = known.is_some_and(|m| m.node.incarnation != node.incarnation);
        if replacing {
            // Replacing a member's entry cuts the node off from its old self: only do it for the
            // incarnation the node itself reports now (not a forged or delayed request).
            self.meta()?.leader_term().map_err(ServiceError::into_status)?;
            let status = self.identify(&node.addr).await.map_err(ServiceError::into_status)?;
            if status.node_id != req.node_id || status.incarnation != req.incarnation {
                return Err(ServiceError::Membership {
                    reason: Reason::IncarnationMismatch,
                    message: format!(
                        "join: node {} asks to replace its membership entry with incarnation {:016x}, but {} reports \
                         node {} incarnation {:016x}",
                        req.node_id, req.incarnation, node.addr, status.node_id, status.incarnation
                    ),
                }
                .into_status());
            }
        }
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
            return Err(ServiceError::invalid(Reason::InvalidArgument, "decommission: name is empty").into_status());
        }
        let (node_id, replicas_left, removed) =
            self.driver.decommission(&name).await.map_err(ServiceError::into_status)?;
        Ok(Response::new(pb::DecommissionResponse {
            node_id,
            members: self.membership.members().into_iter().map(member_pb).collect(),
            replicas_left,
            removed,
        }))
    }

    async fn routing(&self, _request: Request<pb::RoutingRequest>) -> Result<Response<pb::RoutingResponse>, Status> {
        let meta = self.meta()?;
        let stored = store::load_local(&meta).map_err(|e| meta_internal(e.to_string()))?;
        let nodes: Vec<pb::Member> = self.membership.members().into_iter().map(member_pb).collect();
        let meta_leader_id = meta.metrics().current_leader.unwrap_or(0);
        let Some(stored) = stored else {
            return Ok(Response::new(pb::RoutingResponse { nodes, meta_leader_id, ..Default::default() }));
        };
        let p = stored.placement;
        let shards = p
            .shards
            .iter()
            .enumerate()
            .map(|(s, plan)| {
                // The leader this node knows of if it hosts the shard, else the preferred one.
                let known = self.shards.get(ShardId(s as u32)).and_then(|r| r.metrics().current_leader);
                pb::ShardRoute {
                    shard_id: s as u32,
                    replicas: plan.replicas.clone(),
                    leader_id: known.or(plan.replicas.first().copied()).unwrap_or(0),
                }
            })
            .collect();
        Ok(Response::new(pb::RoutingResponse {
            version: p.version,
            shard_count: p.shard_count,
            replication: p.replication,
            nodes,
            shards,
            draining: p.draining.into_iter().collect(),
            meta_leader_id,
            down: p.down.into_iter().collect(),
        }))
    }

    async fn local_shards(
        &self,
        request: Request<pb::LocalShardsRequest>,
    ) -> Result<Response<pb::LocalShardsResponse>, Status> {
        let with_size = request.into_inner().with_size;
        let shards = self.shards.clone();
        // Sizing reads whole trees: keep it off the async workers.
        let replicas = tokio::task::spawn_blocking(move || shards.data_statuses(with_size))
            .await
            .map_err(|e| meta_internal(format!("sizing the local shards: {e}")))?;
        Ok(Response::new(pb::LocalShardsResponse {
            node_id: self.shards.meta().map(|m| m.node_id).unwrap_or(0),
            name: self.me.name.clone(),
            replicas: replicas.into_iter().map(pb::ReplicaStatus::from).collect(),
        }))
    }

    async fn add_node(&self, request: Request<pb::AddNodeRequest>) -> Result<Response<pb::AddNodeResponse>, Status> {
        let endpoint = request.into_inner().endpoint;
        require_dns_name(&endpoint).map_err(|e| {
            ServiceError::invalid(Reason::InvalidArgument, format!("add node: endpoint {e}")).into_status()
        })?;
        self.meta()?.leader_term().map_err(ServiceError::into_status)?;
        let status = self.identify(&endpoint).await.map_err(ServiceError::into_status)?;
        if status.node_id == 0 {
            return Err(unidentified(format!("add node: {endpoint} did not report a node id")));
        }
        if status.incarnation == 0 {
            return Err(unidentified(format!(
                "add node: {endpoint} did not report a data-dir incarnation (a node older than this version?)"
            )));
        }
        let node = NodeInfo { name: status.name.clone(), addr: endpoint, incarnation: Incarnation(status.incarnation) };
        let outcome = self.membership.join(status.node_id, node).await.map_err(ServiceError::into_status)?;
        Ok(Response::new(pb::AddNodeResponse {
            node_id: status.node_id,
            name: status.name,
            already_member: outcome == JoinOutcome::AlreadyMember,
            members: self.membership.members().into_iter().map(member_pb).collect(),
        }))
    }
}

/// A failure reading the meta shard's own records: a bug or storage failure on this node.
fn meta_internal(detail: String) -> Status {
    ServiceError::Internal { shard: ShardId::META, detail }.into_status()
}

/// The node asked to join did not say who it is: membership stays as it is.
fn unidentified(message: String) -> Status {
    ServiceError::Membership { reason: Reason::UnidentifiedNode, message }.into_status()
}
