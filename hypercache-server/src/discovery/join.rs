//! Forming or joining a cluster through discovery, for a node whose Raft state is empty.
//!
//! Each round: resolve the discovery target, ask every contact address who it is (Cluster.Status),
//! then [`decide`]:
//! - some node already belongs to a cluster: ask it to let us in (Cluster.Join; a follower
//!   answers NOT_LEADER with the leader's name and we ask the leader);
//! - otherwise, with `bootstrap_expect = N`: once N distinct nodes are visible, the one with the
//!   lowest id among them (the lowest StatefulSet ordinal) initializes the cluster with exactly
//!   those N as voters; everyone else waits and then joins;
//! - otherwise wait and look again.
//!
//! The loop ends as soon as this node's Raft state is not empty (it initialized, or the leader
//! replicated to it). A node with data never gets here at all ([`run`] checks first), so a
//! restart, with or without a new IP, never re-initializes or re-joins.
//!
//! Known limit (docs/operations.md): scaling a StatefulSet up *while* it bootstraps could let two
//! different nodes each see a different lowest set; bootstrap with exactly `bootstrap_expect`
//! replicas and scale afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::error_info::info_of;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::{JoinRequest, StatusRequest};
use hypercache_proto::Reason;
use openraft::error::{InitializeError, RaftError};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::Resolve;
use crate::identity::{ClusterId, Stamp};
use crate::shard::Shard;
use crate::types::{Incarnation, NodeId, NodeInfo};

/// Pause between discovery rounds while this node is not yet a member.
const ROUND: Duration = Duration::from_millis(500);
/// Bound on each contact (connect + Status or Join).
const CONTACT_TIMEOUT: Duration = Duration::from_secs(2);
/// Log the reason we are waiting at most this often.
const LOG_WAIT_EVERY: u32 = 20;

/// One node as it described itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The address we reached it at (may be an IP; never stored).
    pub contact: String,
    pub id: NodeId,
    pub node: NodeInfo,
    /// It belongs to a cluster (non-zero term or a known membership).
    pub initialized: bool,
    /// It knows a leader.
    pub has_leader: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Ask this contact address to let us join.
    Join { via: String },
    /// Initialize the cluster with these voters (we are the lowest id among them).
    Initialize(BTreeMap<NodeId, NodeInfo>),
    /// Nothing to do yet, for this reason.
    Wait(String),
}

/// The decision of one round; pure so the bootstrap rule is unit-tested.
pub fn decide(me: NodeId, me_node: &NodeInfo, expect: usize, others: &[Seen]) -> Plan {
    let members = others.iter().filter(|s| s.initialized && s.id != me);
    if let Some(s) = members.clone().find(|s| s.has_leader).or_else(|| members.clone().next()) {
        return Plan::Join { via: s.contact.clone() };
    }
    if expect == 0 {
        return Plan::Wait("no node that belongs to a cluster is visible, and bootstrap_expect is 0".into());
    }
    let mut visible: BTreeMap<NodeId, NodeInfo> = BTreeMap::from([(me, me_node.clone())]);
    for s in others {
        match visible.get(&s.id) {
            Some(known) if !known.same_endpoint(&s.node) => {
                return Plan::Wait(format!(
                    "two nodes claim id {}: {} and {}; every node needs its own id",
                    s.id, known, s.node
                ))
            }
            _ => {
                visible.insert(s.id, s.node.clone());
            }
        }
    }
    if visible.len() < expect {
        return Plan::Wait(format!("{} of the {expect} expected nodes are visible", visible.len()));
    }
    let chosen: BTreeMap<NodeId, NodeInfo> = visible.into_iter().take(expect).collect();
    match chosen.keys().next() {
        Some(lowest) if *lowest == me => Plan::Initialize(chosen),
        Some(lowest) => Plan::Wait(format!("waiting for node {lowest} ({}) to initialize", chosen[lowest])),
        None => Plan::Wait("no node visible".into()),
    }
}

/// Runs discovery rounds until this node's Raft state is not empty or `stop` fires.
pub async fn run(
    shard: Arc<Shard>,
    me: NodeInfo,
    stamp: Arc<Stamp>,
    expect: usize,
    resolver: Arc<dyn Resolve>,
    rounds: prometheus::IntCounter,
    mut stop: watch::Receiver<bool>,
) {
    let my_id = shard.node_id;
    let mut round: u32 = 0;
    loop {
        match shard.raft.is_initialized().await {
            Ok(true) => {
                if round > 0 {
                    tracing::info!(node = my_id, "this node is a cluster member now; discovery done");
                }
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "raft stopped before this node joined a cluster");
                return;
            }
        }
        let plan = match resolver.resolve().await {
            Ok(addrs) => {
                let seen = survey(&addrs, my_id).await;
                decide(my_id, &me, expect, &seen)
            }
            Err(e) => Plan::Wait(e.to_string()),
        };
        match plan {
            Plan::Join { via } => join(&via, my_id, &me).await,
            Plan::Initialize(members) => initialize(&shard, &stamp, members).await,
            Plan::Wait(reason) => {
                if round.is_multiple_of(LOG_WAIT_EVERY) {
                    tracing::info!(node = my_id, reason = %reason, "not a cluster member yet");
                }
            }
        }
        round += 1;
        rounds.inc();
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A one-off channel to a contact address: contact addresses may be IPs of pods that come and
/// go, so they are not kept in the peer pool.
async fn contact(addr: &str) -> Option<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).ok()?.connect_timeout(CONTACT_TIMEOUT);
    tokio::time::timeout(CONTACT_TIMEOUT, endpoint.connect()).await.ok()?.ok()
}

/// Asks every address who it is; unreachable ones and ourselves are left out.
async fn survey(addrs: &[String], me: NodeId) -> Vec<Seen> {
    let asks = addrs.iter().map(|addr| async move {
        let channel = contact(addr).await?;
        let mut client = ClusterClient::new(channel);
        let resp = tokio::time::timeout(CONTACT_TIMEOUT, client.status(StatusRequest {})).await.ok()?.ok()?;
        let s = resp.into_inner();
        if s.incarnation == 0 {
            return None;
        }
        Some(Seen {
            contact: addr.clone(),
            id: s.node_id,
            node: NodeInfo { name: s.name, addr: s.endpoint, incarnation: Incarnation(s.incarnation) },
            initialized: s.term > 0 || !s.members.is_empty(),
            has_leader: s.leader_id != 0,
        })
    });
    futures::future::join_all(asks).await.into_iter().flatten().filter(|s| s.id != me && s.id != 0).collect()
}

/// Sends Join to `via`, following one NOT_LEADER redirect.
pub(crate) async fn join(via: &str, me: NodeId, node: &NodeInfo) {
    let request = JoinRequest {
        node_id: me,
        name: node.name.clone(),
        endpoint: node.addr.clone(),
        incarnation: node.incarnation.0,
    };
    let mut target = via.to_string();
    for _ in 0..2 {
        let Some(channel) = contact(&target).await else {
            tracing::debug!(via = %target, "join: cannot reach");
            return;
        };
        let mut client = ClusterClient::new(channel);
        match tokio::time::timeout(CONTACT_TIMEOUT, client.join(request.clone())).await {
            Ok(Ok(resp)) => {
                let already = resp.into_inner().already_member;
                tracing::info!(via = %target, already_member = already, "asked the cluster to add this node");
                return;
            }
            Ok(Err(status)) => {
                let info = info_of(&status).unwrap_or_default();
                if info.known_reason() == Some(Reason::NotLeader) && !info.leader_endpoint.is_empty() {
                    target = info.leader_endpoint;
                    continue;
                }
                tracing::warn!(via = %target, reason = %info.reason, error = %status.message(), "join refused");
                return;
            }
            Err(_) => {
                tracing::debug!(via = %target, "join timed out");
                return;
            }
        }
    }
}

/// Stamps the data dir with a new cluster id (unless it has one), then initializes the meta
/// group with `members`.
pub(crate) async fn initialize(shard: &Shard, stamp: &Arc<Stamp>, members: BTreeMap<NodeId, NodeInfo>) {
    let ids: Vec<NodeId> = members.keys().copied().collect();
    let stamping = stamp.clone();
    match tokio::task::spawn_blocking(move || stamping.adopt_cluster(&ClusterId::random())).await {
        Ok(Ok(cluster)) => tracing::info!(cluster = %cluster, "this node forms the cluster"),
        Ok(Err(e)) => return tracing::warn!(error = %e, "stamping the cluster id failed; retrying"),
        Err(e) => return tracing::warn!(error = %e, "stamping the cluster id failed; retrying"),
    }
    match shard.raft.initialize(members).await {
        Ok(()) => tracing::info!(shard = %shard.id, voters = ?ids, "initialized the cluster"),
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
            tracing::info!(shard = %shard.id, reason = %e, "cluster already initialized")
        }
        Err(e) => tracing::warn!(shard = %shard.id, error = %e, "initialize failed; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u64) -> NodeInfo {
        NodeInfo { name: format!("hc-{}", i - 1), addr: format!("hc-{}:7000", i - 1), incarnation: Incarnation(i) }
    }

    fn seen(i: u64, initialized: bool) -> Seen {
        Seen { contact: format!("10.0.0.{i}:7000"), id: i, node: node(i), initialized, has_leader: initialized }
    }

    #[test]
    fn the_lowest_of_the_expected_nodes_initializes_with_exactly_them() {
        let others = [seen(2, false), seen(3, false), seen(4, false)];
        let Plan::Initialize(members) = decide(1, &node(1), 3, &others) else { panic!("node 1 must initialize") };
        assert_eq!(members.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(members[&2], node(2));
        // Everyone else waits for node 1.
        let others = [seen(1, false), seen(3, false)];
        assert!(matches!(decide(2, &node(2), 3, &others), Plan::Wait(r) if r.contains("node 1")));
    }

    #[test]
    fn nobody_initializes_before_enough_nodes_are_visible() {
        let others = [seen(2, false)];
        assert!(matches!(decide(1, &node(1), 3, &others), Plan::Wait(r) if r.contains("2 of the 3")));
        assert!(matches!(decide(1, &node(1), 0, &others), Plan::Wait(_)));
    }

    #[test]
    fn an_existing_cluster_is_joined_never_initialized_again() {
        // Even the lowest id joins once anyone belongs to a cluster; a node with a leader is preferred.
        let mut follower_without_leader = seen(3, true);
        follower_without_leader.has_leader = false;
        let others = [follower_without_leader, seen(2, true), seen(4, false)];
        assert_eq!(decide(1, &node(1), 3, &others), Plan::Join { via: "10.0.0.2:7000".into() });
    }

    #[test]
    fn two_nodes_with_one_id_block_bootstrap() {
        let mut twin = seen(2, false);
        twin.node.name = "other".into();
        let others = [seen(2, false), twin, seen(3, false)];
        assert!(matches!(decide(1, &node(1), 3, &others), Plan::Wait(r) if r.contains("claim id 2")));
    }
}
