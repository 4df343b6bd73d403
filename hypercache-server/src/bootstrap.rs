//! One-time cluster initialization with static peers, and re-joining for a node whose data dir
//! is new.
//!
//! Rule: only the node with the lowest id in `peers` may initialize, only while its own Raft
//! state is empty, only once every peer has said who it is (its name, endpoint and data-dir
//! incarnation, which the membership records), and only if no peer reports an existing cluster
//! (a non-zero term or a known membership). A node with data never re-initializes: openraft
//! itself refuses `initialize` once a vote or log exists, and we do not even try.
//!
//! Every other node with empty Raft state, and the lowest one once a peer reports a cluster, asks
//! the cluster to add it (Cluster.Join, through any member; a follower redirects to the leader)
//! until its state is not empty. For a node of a new cluster that is a no-op (it is already a
//! voter with this incarnation, and the leader's first append ends the loop); for a node
//! restarted on an empty volume it is how the cluster learns its new incarnation and replaces its
//! old entry (`membership.rs`): until then it refuses the messages meant for its old self.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::StatusRequest;

use crate::config::Peer;
use crate::discovery::join;
use crate::identity::Stamp;
use crate::network::PeerPool;
use crate::shard::Shard;
use crate::types::{Incarnation, NodeId, NodeInfo};

const RETRY: Duration = Duration::from_millis(500);
/// Log why we wait at most every this many rounds.
const LOG_EVERY: u32 = 20;

/// Runs until the shard is initialized (by us or by someone else).
pub async fn run(shard: Arc<Shard>, me: NodeInfo, stamp: Arc<Stamp>, peers: Vec<Peer>, pool: PeerPool) {
    let my_id = shard.node_id;
    let others: BTreeMap<NodeId, String> =
        peers.iter().filter(|p| p.id != my_id).map(|p| (p.id, p.addr.clone())).collect();
    let lowest = peers.iter().map(|p| p.id).min().is_none_or(|lowest| lowest == my_id);
    let mut rounds: u32 = 0;
    loop {
        match shard.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "raft stopped before bootstrap");
                return;
            }
        }
        let seen = survey(&others, &pool).await;
        let members_seen: Vec<&String> = seen.values().filter(|s| s.initialized).map(|s| &s.contact).collect();
        if let Some(via) = members_seen.first() {
            if rounds.is_multiple_of(LOG_EVERY) {
                tracing::info!(via = %via, "a peer belongs to an initialized cluster; asking it to add this node");
            }
            join::join(via, my_id, &me).await;
        } else if lowest && seen.len() == others.len() {
            let mut members: BTreeMap<NodeId, NodeInfo> = seen.into_iter().map(|(id, s)| (id, s.node)).collect();
            members.insert(my_id, me.clone());
            join::initialize(&shard, &stamp, members).await;
        } else if rounds.is_multiple_of(LOG_EVERY) {
            tracing::info!(
                answered = seen.len(),
                peers = others.len(),
                lowest,
                "waiting for the peers before the cluster forms"
            );
        }
        rounds += 1;
        tokio::time::sleep(RETRY).await;
    }
}

/// A peer as it described itself.
struct SeenPeer {
    contact: String,
    node: NodeInfo,
    initialized: bool,
}

/// Asks every peer who it is; those that answer, by id. A peer answering with another id than
/// configured (a misconfigured peers list) is left out.
async fn survey(others: &BTreeMap<NodeId, String>, pool: &PeerPool) -> BTreeMap<NodeId, SeenPeer> {
    let asks = others.iter().map(|(id, addr)| async move {
        let channel = pool.channel(addr).ok()?;
        let mut client = ClusterClient::new(channel);
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(1));
        let s = tokio::time::timeout(Duration::from_secs(1), client.status(req)).await.ok()?.ok()?.into_inner();
        if s.node_id != *id || s.incarnation == 0 {
            tracing::warn!(peer = id, addr = %addr, reported = s.node_id, "peer answered as another node id; ignored");
            return None;
        }
        let node = NodeInfo { name: s.name, addr: addr.clone(), incarnation: Incarnation(s.incarnation) };
        Some((*id, SeenPeer { contact: addr.clone(), node, initialized: s.term > 0 || !s.members.is_empty() }))
    });
    futures::future::join_all(asks).await.into_iter().flatten().collect()
}
