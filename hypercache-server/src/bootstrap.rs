//! One-time cluster initialization with static peers.
//!
//! Rule: only the node with the lowest id in `peers` may initialize, only while its own Raft
//! state is empty, and only if no reachable peer reports an existing cluster (a non-zero term or
//! a known membership). A node with data never re-initializes: openraft itself refuses
//! `initialize` once a vote or log exists, and we do not even try.
//!
//! Why this is safe even in the corner case where the lowest node was wiped and its peers are
//! unreachable: `initialize` writes the same membership entry at index 0 that the real cluster
//! already holds, and a lone node cannot reach a quorum, so it commits nothing of its own; when
//! the peers return, their longer log wins. Wiped nodes should still get a new id (pitfalls.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::StatusRequest;
use openraft::error::{InitializeError, RaftError};

use crate::config::Peer;
use crate::network::PeerPool;
use crate::shard::Shard;
use crate::types::{NodeId, NodeInfo};

const RETRY: Duration = Duration::from_millis(500);

/// Runs until the shard is initialized (by us or by someone else) or this node is not the one
/// to initialize it.
pub async fn run(shard: Arc<Shard>, me: NodeInfo, peers: Vec<Peer>, pool: PeerPool) {
    let my_id = shard.node_id;
    let members: BTreeMap<NodeId, NodeInfo> = if peers.is_empty() {
        BTreeMap::from([(my_id, me.clone())])
    } else {
        peers.iter().map(|p| (p.id, NodeInfo { name: format!("node-{}", p.id), addr: p.addr.clone() })).collect()
    };
    if members.keys().next() != Some(&my_id) {
        return;
    }
    // Our own name for ourselves, as configured.
    let members: BTreeMap<NodeId, NodeInfo> =
        members.into_iter().map(|(id, n)| if id == my_id { (id, me.clone()) } else { (id, n) }).collect();
    loop {
        match shard.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "raft stopped before bootstrap");
                return;
            }
        }
        if let Some(peer) = initialized_peer(&members, my_id, &pool).await {
            tracing::info!(peer = %peer, "a peer already belongs to an initialized cluster; not initializing");
            return;
        }
        match shard.raft.initialize(members.clone()).await {
            Ok(()) => {
                tracing::info!(shard = %shard.id, members = ?members.keys().collect::<Vec<_>>(), "initialized the cluster");
                return;
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(shard = %shard.id, reason = %e, "cluster already initialized");
                return;
            }
            Err(e) => {
                tracing::warn!(shard = %shard.id, error = %e, "initialize failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The first peer that reports an existing cluster, if any answers so.
async fn initialized_peer(members: &BTreeMap<NodeId, NodeInfo>, me: NodeId, pool: &PeerPool) -> Option<String> {
    for (id, node) in members {
        if *id == me {
            continue;
        }
        let Ok(channel) = pool.channel(&node.addr) else { continue };
        let mut client = ClusterClient::new(channel);
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(1));
        if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(1), client.status(req)).await {
            let s = resp.into_inner();
            if s.term > 0 || !s.members.is_empty() {
                return Some(node.to_string());
            }
        }
    }
    None
}
