//! The placement driver: on the meta group's leader, a loop that moves every data shard toward
//! its placement, one membership change per shard at a time, and spreads shard leaders.
//!
//! Each round (every [`ROUND`]):
//! 1. Read the placement (after a read barrier); create it for a new cluster; retarget it when
//!    the meta group's voters or the draining set changed.
//! 2. Ask every node which replicas it hosts (`Cluster.LocalShards`): role, term, membership and,
//!    on leaders, how far each replica has replicated. The answers are read into domain types
//!    right there; everything after works on those.
//! 3. For each shard, send at most one step (see [`next_steps`]): create the shard; open a
//!    replica on a target node; add it as a learner; make a caught-up learner a voter; then remove
//!    a voter the target no longer has (a leaving leader last, when no transfer moved it off);
//!    close replicas that left the membership; move the leadership to the preferred replica.
//! 4. Remove draining nodes from the cluster once no shard has them as a member any more.
//!
//! What to do is decided in `decide.rs` (down nodes, committed membership only, leadership transfers);
//! this file does the reading, writing and sending around it.
//!
//! Everything the driver knows is re-read each round, so a new meta leader simply carries on,
//! and a step whose answer was lost is sent again (every step is idempotent, `ops.rs`). A driver
//! deposed while a round runs sends nothing more: its meta term is checked again right before
//! each step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use hypercache_proto::poison::lock;
use hypercache_proto::v1 as pb;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::Reason;
use openraft::ServerState;
use tokio::sync::watch;
use tracing::Instrument;

use super::decide::{
    down_nodes, drained_everywhere, leader_of, next_steps, note_silence, pending_shards, stale_member_steps, Elections,
    Reports, Step,
};
use super::ops::{self, ShardOp};
use crate::error::ServiceError;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::network::PeerPool;
use crate::placement::store::{self, StoreError};
use crate::placement::Placement;
use crate::replica::ReplicaHost;
use crate::replica_status::ReplicaStatus;
use crate::shard::Shard;
use crate::types::{NodeId, NodeInfo, ShardId};

/// Time between rounds.
pub const ROUND: Duration = Duration::from_millis(300);
/// How long a node may take to say which replicas it hosts.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Driver {
    meta: Arc<Shard>,
    membership: Arc<Membership>,
    host: Arc<ReplicaHost>,
    pool: PeerPool,
    metrics: Arc<Metrics>,
    settings: Settings,
    state: Mutex<State>,
}

/// The driver's configuration (from the node's config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Used only when this driver creates the cluster's placement.
    pub shard_count: u32,
    pub replication: u32,
    /// How long a node may stay silent before it is marked down (None: never).
    pub down_after: Option<Duration>,
}

#[derive(Default)]
struct State {
    elections: Elections,
    /// Data shards each node reported last round (None: it did not answer).
    hosted: BTreeMap<NodeId, Option<Vec<ShardId>>>,
    /// Since when each silent node has not answered a poll (while this driver ran rounds).
    silent_since: BTreeMap<NodeId, Instant>,
}

impl Driver {
    pub fn new(
        meta: Arc<Shard>,
        membership: Arc<Membership>,
        host: Arc<ReplicaHost>,
        pool: PeerPool,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Arc<Driver> {
        Arc::new(Driver { meta, membership, host, pool, metrics, settings, state: Mutex::new(State::default()) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Runs rounds while this node leads the meta group, until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ROUND) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if self.meta.metrics().state != ServerState::Leader {
                self.metrics.placement_pending.set(0);
                continue;
            }
            // One span per round (level DEBUG: see docs/operations.md): the steps it sends and
            // the placement writes it makes log under it, with the meta term it ran in.
            let span = tracing::debug_span!("placement_round", term = tracing::field::Empty);
            if let Err(e) = self.round().instrument(span).await {
                tracing::debug!(error = %e, "placement round ended early");
            }
        }
    }

    /// The meta group's voters (the nodes replicas may live on) and every member's address.
    fn nodes(&self) -> (BTreeMap<NodeId, String>, BTreeMap<NodeId, NodeInfo>) {
        let members = self.membership.members();
        let voters = members.iter().filter(|m| m.voter).map(|m| (m.id, m.node.name.clone())).collect();
        let all = members.into_iter().map(|m| (m.id, m.node)).collect();
        (voters, all)
    }

    async fn round(&self) -> Result<(), StoreError> {
        let term = self.meta.leader_term()?;
        tracing::Span::current().record("term", term);
        let (voters, members) = self.nodes();
        let stored = store::load(&self.meta).await?;
        let (mut placement, mut revision) = match stored {
            None => {
                let p = Placement::new(self.settings.shard_count, self.settings.replication, &voters);
                let rev = store::save(&self.meta, 0, &p).await?;
                tracing::info!(
                    shards = p.shard_count,
                    replication = p.replication,
                    nodes = voters.len(),
                    "created the cluster's placement"
                );
                (p, rev)
            }
            Some(s) => (s.placement, s.mod_revision),
        };
        // Nodes that left the meta group (or came back as new incarnations) are no longer draining.
        let left = placement.drained(&members);
        // The draining, down and target changes of this round go to the meta group in one write.
        let stored_version = placement.version;
        if !left.is_empty() {
            for d in &left {
                placement.stop_draining(*d);
            }
            placement.version += 1;
        }
        let reports = self.poll(&members).await;
        let now = Instant::now();
        let down = {
            let mut st = self.state();
            note_silence(&mut st.silent_since, &reports, now);
            down_nodes(&placement, &voters, &reports, &st.silent_since, self.settings.down_after, now)
        };
        if down != placement.down {
            for id in down.difference(&placement.down) {
                tracing::warn!(node = id, "node is down: re-creating its replicas on the other nodes");
            }
            for id in placement.down.difference(&down) {
                tracing::info!(node = id, "down node is back: it gets replicas again");
            }
            placement.down = down;
            placement.version += 1;
        }
        if let Some(next) = placement.retarget(&voters) {
            tracing::info!(version = next.version, "placement retargeted");
            placement = next;
        }
        if placement.version != stored_version {
            revision = store::save(&self.meta, revision, &placement).await?;
        }

        self.state().hosted =
            reports.iter().map(|(id, r)| (*id, r.as_ref().map(|rs| rs.iter().map(|s| s.shard).collect()))).collect();

        // Shards that reported a leader now exist.
        let mut created_now = false;
        for (s, plan) in placement.shards.iter_mut().enumerate() {
            if !plan.created && leader_of(&reports, ShardId(s as u32)).is_some() {
                plan.created = true;
                created_now = true;
            }
        }
        if created_now {
            placement.version += 1;
            store::save(&self.meta, revision, &placement).await?;
        }

        let mut steps = {
            let st = self.state();
            next_steps(&placement, &reports, |shard| {
                st.elections.gate(shard, leader_of(&reports, shard).map(|(id, _)| id), now)
            })
        };
        // A shard that still lists a node's previous incarnation takes only that removal this round.
        let replacing = stale_member_steps(&placement, &reports, &members);
        if !replacing.is_empty() {
            steps.retain(|step| !replacing.iter().any(|r| r.shard == step.shard));
            steps.extend(replacing);
        }
        let pending = pending_shards(&placement, &reports);
        self.metrics.placement_pending.set(pending as i64);
        {
            let mut st = self.state();
            for step in steps.iter().filter(|s| matches!(s.op, ShardOp::TransferLeader { .. })) {
                if let Some((leader, _)) = leader_of(&reports, step.shard) {
                    st.elections.started(step.shard, leader, now);
                }
            }
        }
        // A driver deposed during this round must not act on what it saw: a new driver may already
        // have added a replica this round's poll did not show (and would close).
        if self.meta.leader_term().ok() != Some(term) {
            return Ok(());
        }
        self.execute(term, steps, &members).await;
        self.retire_drained(&placement, &reports).await;
        Ok(())
    }

    async fn execute(&self, term: u64, steps: Vec<Step>, members: &BTreeMap<NodeId, NodeInfo>) {
        let sends = steps.into_iter().filter_map(|step| {
            let addr = members.get(&step.to)?.addr.clone();
            let op = match step.op {
                // The new replica's address comes from the meta membership.
                ShardOp::AddLearner { id, .. } => ShardOp::AddLearner { id, node: members.get(&id)?.clone() },
                // Every initializer must send the very same membership, so a voter whose address is
                // unknown (it left the cluster) stops the step instead of being left out.
                ShardOp::Initialize { voters } => ShardOp::Initialize {
                    voters: voters.keys().map(|id| Some((*id, members.get(id)?.clone()))).collect::<Option<_>>()?,
                },
                other => other,
            };
            Some(async move {
                let shard = step.shard;
                // Steps of one round run side by side and the poll that chose them took up to a
                // second: a driver deposed meanwhile leaves the shards to its successor.
                if self.meta.leader_term().ok() != Some(term) {
                    tracing::debug!(shard = %shard, to = step.to, op = ?op, "placement step dropped: no longer the driver");
                    return;
                }
                tracing::debug!(shard = %shard, to = step.to, op = ?op, "placement step");
                let result = if step.to == self.host.node_id {
                    ops::apply(&self.host, shard, op.clone()).await
                } else {
                    ops::send(&self.pool, &addr, shard, &op).await
                };
                match result {
                    Ok(()) => tracing::info!(shard = %shard, node = step.to, op = ?op, "placement step done"),
                    Err(e) => {
                        tracing::info!(shard = %shard, node = step.to, op = ?op, error = %e, "placement step failed")
                    }
                }
            })
        });
        join_all(sends).await;
    }

    /// Asks every member which replicas it hosts.
    async fn poll(&self, members: &BTreeMap<NodeId, NodeInfo>) -> Reports {
        let polls = members.iter().map(|(id, node)| async move {
            if *id == self.host.node_id {
                return (*id, Some(self.host.shards.data_statuses(false)));
            }
            let Ok(channel) = self.pool.channel(&node.addr) else { return (*id, None) };
            let mut client = ClusterClient::new(channel);
            let call = client.local_shards(pb::LocalShardsRequest { with_size: false });
            let Ok(Ok(reply)) = tokio::time::timeout(POLL_TIMEOUT, call).await else { return (*id, None) };
            (*id, Some(read_report(*id, reply.into_inner().replicas)))
        });
        join_all(polls).await.into_iter().collect()
    }

    /// Removes draining nodes that no shard has as a member any more and that host nothing.
    async fn retire_drained(&self, placement: &Placement, reports: &Reports) {
        for d in &placement.draining {
            if !drained_everywhere(*d, placement, reports) {
                continue;
            }
            let Some(member) = self.membership.members().into_iter().find(|m| m.id == *d) else {
                continue;
            };
            // A new incarnation under the drained id (it came back on an empty volume) is a new
            // node: the next round drops the stale mark.
            if placement.draining_incarnations.get(d).is_some_and(|drained| *drained != member.node.incarnation) {
                continue;
            }
            let name = member.node.name;
            match self.membership.decommission(&name).await {
                Ok(_) => tracing::info!(node = d, name = %name, "drained node left the cluster"),
                Err(e) => tracing::info!(node = d, name = %name, error = %e, "removing the drained node deferred"),
            }
        }
    }

    /// Starts decommissioning `name` (on the meta leader): it stops getting replicas, its
    /// replicas move away, then it leaves. Returns its id and how many replicas it still hosts.
    pub async fn decommission(&self, name: &str) -> Result<(NodeId, u32, bool), ServiceError> {
        self.meta.leader_term()?;
        let target = self.membership.removable(name)?;
        let members = self.membership.members();
        let stored = store::load(&self.meta).await.map_err(store_error)?;
        let Some(stored) = stored else {
            // No placement yet: nothing to move.
            self.membership.decommission(name).await?;
            return Ok((target.id, 0, true));
        };
        let mut placement = stored.placement;
        let others = members.iter().filter(|m| m.voter && m.id != target.id && !placement.draining.contains(&m.id));
        if others.count() == 0 {
            return Err(ServiceError::Membership {
                reason: Reason::LastReplicaHolder,
                message: format!(
                    "{name} is the last node that can hold replicas; decommissioning it would leave shards with no \
                     replica. Add a node first"
                ),
            });
        }
        if placement.start_draining(target.id, target.node.incarnation) {
            placement.version += 1;
            store::save(&self.meta, stored.mod_revision, &placement).await.map_err(store_error)?;
            tracing::info!(node = target.id, name, "decommission started: moving its replicas away");
        }
        let left = self.state().hosted.get(&target.id).cloned().flatten().map(|v| v.len() as u32).unwrap_or(0);
        Ok((target.id, left, false))
    }
}

fn store_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::Service(s) => s,
        StoreError::Conflict => ServiceError::Membership {
            reason: Reason::MembershipBusy,
            message: "the placement changed meanwhile; retry".into(),
        },
        StoreError::Corrupt(d) => ServiceError::Internal { shard: ShardId::META, detail: d },
    }
}

/// A node's answer to the poll, in domain types (the decisions read nothing else). A replica
/// whose role this build does not know (a newer node's) is left out: acting on a misread role
/// could take a follower for the leader, and leaving it out only makes the driver resend an
/// idempotent `Open` or skip that shard's membership steps for a round. The node itself answered,
/// so it is not counted silent (which would, after `replace_down_node_after_ms`, rebuild its
/// replicas elsewhere).
fn read_report(node: NodeId, replicas: Vec<pb::ReplicaStatus>) -> Vec<ReplicaStatus> {
    let mut read = Vec::with_capacity(replicas.len());
    for replica in replicas {
        let shard = replica.shard_id;
        match ReplicaStatus::try_from(replica) {
            Ok(status) => read.push(status),
            Err(e) => {
                tracing::warn!(node, shard, error = %e, "placement poll: replica report not understood; left out")
            }
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica whose role this build does not know (a newer node's) is left out of the
    /// report, but the node's other replicas still count: the node answered, so it must not
    /// drift towards "down" and have its replicas rebuilt elsewhere.
    #[test]
    fn a_replica_with_an_unknown_role_does_not_silence_its_node() {
        let replica =
            |shard_id: u32, role: &str| pb::ReplicaStatus { shard_id, role: role.into(), ..Default::default() };
        let report = read_report(2, vec![replica(0, "follower"), replica(1, "observer"), replica(2, "leader")]);
        let shards: Vec<ShardId> = report.iter().map(|r| r.shard).collect();
        assert_eq!(shards, vec![ShardId(0), ShardId(2)]);
    }
}
