//! Opening and closing shard replicas on this node while it runs.
//!
//! The placement driver decides where replicas live and sends each node the steps it must take
//! (`placement_driver/ops.rs`); this module is how a node carries out "open a replica" and "close a
//! replica". Opening creates (or reopens) the shard's trees in the node's one sled `Db` and
//! starts its `Raft`; every replica shares the node's flusher (group commit) and peer pool (one
//! connection per peer pair). Closing stops the Raft and deletes the replica's data: it is only
//! asked for once the shard's committed membership no longer includes this node. A Close is
//! durable before it is acknowledged (trees dropped and flushed, snapshot file unlinked and its
//! directory fsynced), and no snapshot write of the replica (a build openraft started before
//! the Close, an install) lands after it: see `storage::Retired`.

use std::collections::HashMap;
use std::sync::Arc;

use hypercache_proto::poison::lock;
use openraft::async_runtime::WatchReceiver;
use openraft::Raft;
use tokio::sync::Mutex;

use crate::identity::Stamp;
use crate::lease_home::{follow_homes, LeaseHomes};
use crate::network::{NetworkFactory, PeerPool};
use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;
use crate::shard::{FollowHomes, Shard, ShardParts, Shards};
use crate::storage::{NodeStore, OpenError, Retired, ShardStorage};
use crate::types::{NodeId, ShardId};
use crate::watch_hub::HistoryLimits;

/// Why a replica could not be opened or closed. The placement driver resends the step on its
/// next round either way; at startup a failure to reopen a replica stops the node.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] OpenError),
    #[error("starting raft for shard {shard}: {source}")]
    Start { shard: ShardId, source: Box<openraft::error::Fatal<TypeConfig>> },
    /// Every node is a member of the meta group for as long as it is in the cluster.
    #[error("shard {shard}: the meta group's replica is never closed")]
    MetaNeverClosed { shard: ShardId },
    /// The blocking task that deletes the replica's data panicked or was cancelled.
    #[error("closing the replica of shard {shard}: {source}")]
    Close { shard: ShardId, source: tokio::task::JoinError },
}

/// What opening a replica needs; one per node.
pub struct ReplicaHost {
    pub node_id: NodeId,
    pub stamp: Arc<Stamp>,
    pub shards: Arc<Shards>,
    store: NodeStore,
    pool: PeerPool,
    raft_config: Arc<openraft::Config>,
    history: HistoryLimits,
    max_batch_bytes: usize,
    max_peer_message_bytes: usize,
    /// Opens and closes one at a time, so two steps for one shard never interleave.
    busy: Mutex<()>,
    /// The close flag of each open replica's storage.
    retired: std::sync::Mutex<HashMap<ShardId, Retired>>,
}

pub struct HostParts {
    pub stamp: Arc<Stamp>,
    pub shards: Arc<Shards>,
    pub store: NodeStore,
    pub pool: PeerPool,
    pub raft_config: Arc<openraft::Config>,
    pub history: HistoryLimits,
    pub max_batch_bytes: usize,
    pub max_peer_message_bytes: usize,
}

impl ReplicaHost {
    pub fn new(p: HostParts) -> Self {
        ReplicaHost {
            node_id: p.stamp.node_id,
            stamp: p.stamp,
            shards: p.shards,
            store: p.store,
            pool: p.pool,
            raft_config: p.raft_config,
            history: p.history,
            max_batch_bytes: p.max_batch_bytes,
            max_peer_message_bytes: p.max_peer_message_bytes,
            busy: Mutex::new(()),
            retired: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Opens shard `id`'s replica (creating empty storage if it has none) unless it is open.
    pub async fn open(&self, id: ShardId) -> Result<Arc<Shard>, ReplicaError> {
        let _busy = self.busy.lock().await;
        if let Some(shard) = self.shards.get(id) {
            return Ok(shard);
        }
        let shard = self.start(id).await?;
        self.shards.insert(shard.clone());
        tracing::info!(node = self.node_id, shard = %id, "replica opened");
        Ok(shard)
    }

    async fn start(&self, id: ShardId) -> Result<Arc<Shard>, ReplicaError> {
        let ShardStorage { log, state_machine, reader, hub, clock, retired } =
            ShardStorage::open(&self.store, id, self.history.clone())?;
        let committed = log.committed_handle();
        let network = NetworkFactory::new(id, self.stamp.clone(), self.pool.clone(), self.max_peer_message_bytes);
        let raft = Raft::new(self.node_id, self.raft_config.clone(), network, log, state_machine)
            .await
            .map_err(|source| ReplicaError::Start { shard: id, source: Box::new(source) })?;
        lock(&self.retired).insert(id, retired);
        tokio::spawn(campaign_after_restart(raft.clone(), id, self.node_id));
        let follow: FollowHomes = {
            let (raft, clock) = (raft.clone(), clock.clone());
            let homes = LeaseHomes::new(&self.shards, self.pool.clone());
            Box::new(move |proposer| Box::pin(follow_homes(id, raft, clock, proposer, homes)))
        };
        Ok(Arc::new(Shard::new(ShardParts {
            id,
            node_id: self.node_id,
            raft,
            reader,
            hub,
            clock,
            committed,
            max_batch_bytes: self.max_batch_bytes,
            follow_homes: follow,
        })))
    }

    /// Stops shard `id`'s replica and deletes its data. Idempotent.
    pub async fn close(&self, id: ShardId) -> Result<(), ReplicaError> {
        if id.is_meta() {
            return Err(ReplicaError::MetaNeverClosed { shard: id });
        }
        let _busy = self.busy.lock().await;
        if let Some(shard) = self.shards.remove(id) {
            shard.hub.lock().close();
            if let Err(e) = shard.raft.shutdown().await {
                tracing::warn!(shard = %id, error = %e, "raft shutdown while closing the replica");
            }
        }
        let retired = lock(&self.retired).remove(&id);
        let store = self.store.clone();
        // Waits for a snapshot write in progress, then deletes and flushes: blocking work.
        tokio::task::spawn_blocking(move || {
            if let Some(retired) = retired {
                retired.close();
            }
            store.remove_shard(id)
        })
        .await
        .map_err(|source| ReplicaError::Close { shard: id, source })??;
        tracing::info!(node = self.node_id, shard = %id, "replica closed and its data deleted");
        Ok(())
    }

    /// The data shards with storage on this node (reopened at startup).
    pub fn stored_shards(&self) -> Vec<ShardId> {
        self.store.stored_data_shards()
    }
}

/// A replica that led its shard before it stopped starts as a follower (its vote is read back
/// as not committed, ADR 41), so after a whole-cluster restart every group would wait an
/// election timeout for a leader. It asks for the next term at once instead, while no leader is
/// known and it is still a follower whose vote is its own uncommitted one (what such a restart
/// leaves: a running node's vote for itself is committed once it leads): its peers, restarted
/// too, hold no leader lease, and its log is as long as any. It tries for up to a second (its
/// peers may still be starting), then leaves elections to the timers.
async fn campaign_after_restart(raft: ShardRaft, shard: ShardId, node_id: NodeId) {
    const TRIES: u32 = 10;
    const GAP: std::time::Duration = std::time::Duration::from_millis(100);
    for _ in 0..TRIES {
        tokio::time::sleep(GAP).await;
        let idle = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            m.current_leader.is_none()
                && m.state == openraft::ServerState::Follower
                && !m.vote.is_committed()
                && m.vote.leader_id().node_id == node_id
                && m.membership_config.membership().voter_ids().any(|v| v == node_id)
        };
        if !idle {
            return;
        }
        tracing::info!(%shard, "led the shard before the restart and no leader is known: asking for the next term");
        if let Err(e) = raft.trigger().elect(true).await {
            tracing::debug!(%shard, error = %e, "campaign after restart");
            return;
        }
    }
}
