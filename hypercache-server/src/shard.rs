//! A shard replica on this node: its openraft `Raft`, a reader over its state machine, and the
//! write and read paths with their error mapping.
//!
//! Write path: the [`Proposer`] packs concurrent transactions into one entry and calls
//! `client_write` on the leader. Openraft answers `ForwardToLeader` both when the node was not
//! leader when the write reached it (never appended: no effect) and when the entry was appended
//! and then truncated from this node's log (`DeleteConflictLog`). The second does NOT prove the
//! write is gone: with five or more voters another node may hold the entry and a later leader
//! may commit it. The two cannot be told apart from the error, so a `ForwardToLeader` from a
//! proposal maps to [`ServiceError::NotLeader`] with `maybe_applied` (not_applied = false); only
//! the check before proposing ([`Shard::check_leader_hint`]) promises "no effect". A client
//! then retries with the same write id, which the state machine deduplicates
//! (`machine/session.rs`). If the Raft stops while the entry is in flight the outcome is unknown
//! and reported as such.
//!
//! Read path: linearizable reads call `ensure_linearizable` (read index: the leader confirms its
//! leadership with a quorum, then waits until its state machine has applied up to the commit
//! index it saw) and then read the local state machine. Serializable reads skip that step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hypercache_proto::poison::{read, write};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use openraft::{RaftMetrics, ServerState};
use tokio::task::JoinHandle;

use crate::contact::LeaderContact;
use crate::error::ServiceError;
use crate::lease_clock::{LeaseClock, Renewal, EXPIRE_BATCH};
use crate::machine::command::{Applied, LeaseOp, Reply, Request, Tracked, WriteId};
use crate::proposer::{ProposeError, Proposer};
use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;
use crate::read_index::ReadIndex;
use crate::replica_status::{role_of, ReplicaStatus};
use crate::storage::KvReader;
use crate::types::{LeaseId, NodeId, NodeInfo, ShardId};
use crate::watch_hub::{KeyFilter, SubscribeError, Subscription, WatchHub};

/// Least time between two keepalive barriers: at most 100 barriers a second for keepalives,
/// whatever their number, for at most 10 ms more keepalive latency (TTLs are seconds in practice;
/// the holder's deadline is measured from when it sent the keepalive, so the wait is safe).
const KEEPALIVE_BARRIER_GAP: Duration = Duration::from_millis(10);

pub struct Shard {
    pub id: ShardId,
    pub node_id: NodeId,
    pub raft: ShardRaft,
    pub reader: KvReader,
    pub hub: Arc<WatchHub>,
    pub clock: Arc<LeaseClock>,
    /// When this replica last heard from its leader (recorded by the peer services).
    pub contact: Arc<LeaderContact>,
    /// Highest log index known committed, maintained by the log store.
    committed: Arc<AtomicU64>,
    read_index: ReadIndex,
    /// Paced barriers for lease keepalives (see `read_index.rs`).
    keepalive_index: ReadIndex,
    proposer: Proposer,
    expiry_task: JoinHandle<()>,
    /// Learns the ends of other shards' leases that keys here hang on (`lease_home.rs`).
    follow_task: JoinHandle<()>,
}

/// What a shard replica is made of (see `node.rs`).
pub struct ShardParts {
    pub id: ShardId,
    pub node_id: NodeId,
    pub raft: ShardRaft,
    pub reader: KvReader,
    pub hub: Arc<WatchHub>,
    pub clock: Arc<LeaseClock>,
    pub committed: Arc<AtomicU64>,
    pub max_batch_bytes: usize,
    /// The task that learns the ends of other shards' leases keys here hang on, given the
    /// shard's proposer (`lease_home::follow_homes`). Passed in rather than named here: lease
    /// homes sit above shards (they ask them), so the shard must not reach up for them.
    pub follow_homes: FollowHomes,
}

/// Builds a shard's lease-home follower from its proposer (see [`ShardParts::follow_homes`]).
pub type FollowHomes = Box<dyn FnOnce(Proposer) -> futures::future::BoxFuture<'static, ()> + Send>;

impl Drop for Shard {
    fn drop(&mut self) {
        self.expiry_task.abort();
        self.follow_task.abort();
    }
}

impl Shard {
    pub fn new(p: ShardParts) -> Self {
        let read_index = ReadIndex::spawn(p.raft.clone());
        let keepalive_index = ReadIndex::spawn_paced(p.raft.clone(), KEEPALIVE_BARRIER_GAP);
        let proposer = Proposer::spawn(p.raft.clone(), p.max_batch_bytes);
        let expiry_task = tokio::spawn(drive_expiry(p.id, p.raft.clone(), p.clock.clone(), proposer.clone()));
        let follow_task = tokio::spawn((p.follow_homes)(proposer.clone()));
        Shard {
            id: p.id,
            node_id: p.node_id,
            raft: p.raft,
            reader: p.reader,
            hub: p.hub,
            clock: p.clock,
            contact: Arc::new(LeaderContact::default()),
            committed: p.committed,
            read_index,
            keepalive_index,
            proposer,
            expiry_task,
            follow_task,
        }
    }

    pub fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The current Raft term, read without cloning the metrics (this is on every response).
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Ready: a leader is known and alive (this node, or one heard from within the leader lease:
    /// see `contact.rs`), and everything this node knows committed is applied.
    pub fn is_ready(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let led = m.state == ServerState::Leader || (m.current_leader.is_some() && self.contact.within(lease));
        led && applied >= self.committed_index()
    }

    /// What this replica says about itself (`Cluster.LocalShards`, and the placement driver's
    /// poll of its own node). `with_size` counts keys and bytes, which reads the whole tree:
    /// callers on an async worker pass false or move the call to a blocking thread.
    pub fn status(&self, with_size: bool) -> ReplicaStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let matched = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0))).collect())
            .unwrap_or_default();
        let (keys, size_bytes) = if with_size { self.reader.size() } else { (0, 0) };
        // The effective membership is the last one in the log; until it is applied it may
        // not be committed, and a new leader may not have it (see the placement driver).
        let applied = m.last_applied.map(|l| l.index);
        let membership_pending = m.membership_config.log_id().is_some_and(|l| applied < Some(l.index));
        ReplicaStatus {
            shard: self.id,
            role: role_of(m.state),
            term: m.current_term,
            leader: m.current_leader,
            commit_index: self.committed_index(),
            applied_index: applied.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            keys,
            size_bytes,
            matched,
            ready: self.is_ready(),
            membership_pending,
            member_incarnations: membership.nodes().map(|(id, node)| (*id, node.incarnation)).collect(),
        }
    }

    /// Whether this replica may answer a serializable read from its local state: only a voter
    /// that has applied an entry past the initial membership. A learner can be any distance
    /// behind (it is being added, or its volume was wiped and it rejoined), and an empty replica
    /// would answer "no such key" for every key: both are answers no client could tell from the
    /// truth, so they are refused (`REPLICA_NOT_SERVING`, retried elsewhere by clients).
    pub fn serves_local_reads(&self) -> Result<(), ServiceError> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let voter = m.membership_config.membership().voter_ids().any(|id| id == self.node_id);
        let applied = m.last_applied.is_some_and(|l| l.index > 0);
        let why = match (voter, applied) {
            (true, true) => return Ok(()),
            (false, _) => "not a voter (a learner, or not a member)",
            (true, false) => "empty (nothing applied yet)",
        };
        Err(ServiceError::NotServing { node: self.node_id, shard: self.id, why })
    }

    /// The endpoint of `node` according to the current membership.
    pub fn endpoint_of(&self, node: NodeId) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
    }

    /// NotLeader, or NoLeader when no leader is known: a promise of no effect (nothing was
    /// proposed).
    fn not_leader(&self, leader_id: Option<NodeId>, leader_node: Option<NodeInfo>) -> ServiceError {
        if leader_id.is_none() {
            return ServiceError::NoLeader { shard: self.id };
        }
        let leader_endpoint = leader_node.map(|n| n.addr).or_else(|| leader_id.and_then(|l| self.endpoint_of(l)));
        ServiceError::NotLeader { node: self.node_id, shard: self.id, leader_id, leader_endpoint, maybe_applied: false }
    }

    /// A `ForwardToLeader` answered to a read barrier: nothing was proposed.
    fn forward(&self, f: ForwardToLeader<TypeConfig>) -> ServiceError {
        self.not_leader(f.leader_id, f.leader_node)
    }

    /// A `ForwardToLeader` answered to a proposal: its entry may have been appended here and
    /// truncated, and may still be committed by another leader (see the module comment).
    fn forward_proposal(&self, f: ForwardToLeader<TypeConfig>) -> ServiceError {
        let leader_endpoint = f.leader_node.map(|n| n.addr).or_else(|| f.leader_id.and_then(|l| self.endpoint_of(l)));
        ServiceError::NotLeader {
            node: self.node_id,
            shard: self.id,
            leader_id: f.leader_id,
            leader_endpoint,
            maybe_applied: true,
        }
    }

    /// Fails fast with NotLeader/NoLeader when this node is known not to lead, before proposing.
    fn check_leader_hint(&self) -> Result<(), ServiceError> {
        let m = self.raft.metrics();
        let (state, leader) = {
            let m = m.borrow_watched();
            (m.state, m.current_leader)
        };
        match state {
            ServerState::Leader => Ok(()),
            ServerState::Shutdown => Err(ServiceError::ShuttingDown { node: self.node_id }),
            _ => Err(self.not_leader(leader, None)),
        }
    }

    /// Replicates `request` (batched with concurrent writes) and returns its result once applied
    /// on this (leader) node. With a `write` id it is applied at most once however often it is
    /// repeated (a repeat returns the first outcome).
    pub async fn write(&self, write: Option<WriteId>, request: Request) -> Result<Applied, ServiceError> {
        self.check_leader_hint()?;
        let tracked = write.is_some();
        // A quiet leader's lease is renewed by the proposer (see `Proposer::propose`).
        let proposed = self.proposer.propose(Tracked { write, request }).await;
        let applied = proposed.map_err(|e| match e {
            ProposeError::Raft(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => self.forward_proposal(f),
            ProposeError::Raft(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                ServiceError::Internal { shard: self.id, detail: e.to_string() }
            }
            // The entry was cut from this node's log when it adopted another leader's; another
            // node may hold it and commit it. NOT_LEADER says "maybe applied" (ADR 33): the
            // client retries at the leader with the same write id, which applies it once.
            ProposeError::Raft(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => self.forward_proposal(f),
            ProposeError::Raft(RaftError::APIError(ClientWriteError::PreconditionFailed(e))) => {
                ServiceError::Internal { shard: self.id, detail: e.to_string() }
            }
            ProposeError::Raft(RaftError::Fatal(e)) => ServiceError::OutcomeUnknown {
                shard: self.id,
                detail: format!("raft stopped while the write was in flight: {e}"),
            },
            ProposeError::Stopped => ServiceError::ShuttingDown { node: self.node_id },
            ProposeError::Mismatch(detail) => ServiceError::Internal { shard: self.id, detail },
        })?;
        if tracked && crate::failpoints::lose_this_reply() {
            tracing::warn!(shard = %self.id, "failpoint lose-reply: an applied write is answered OUTCOME_UNKNOWN");
            return Err(ServiceError::OutcomeUnknown {
                shard: self.id,
                detail: "failpoint lose-reply: the write was applied, its reply dropped".into(),
            });
        }
        Ok(applied)
    }

    /// Like [`Shard::write`] without a write id (internal writes), with a rejection turned into
    /// an error: (revision, reply).
    pub async fn submit(&self, request: Request) -> Result<(u64, Reply), ServiceError> {
        self.submit_once(None, request).await
    }

    /// [`Shard::submit`] of a client's write, exactly once per `write` id.
    pub async fn submit_once(&self, write: Option<WriteId>, request: Request) -> Result<(u64, Reply), ServiceError> {
        let Applied { revision, outcome } = self.write(write, request).await?;
        outcome.map(|reply| (revision, reply)).map_err(|rejection| ServiceError::Rejected {
            shard: self.id,
            revision,
            rejection,
        })
    }

    /// Renews lease `id` on the leader. Answered only after a read barrier, so leadership was
    /// confirmed after the request arrived and every earlier expiry is applied (see
    /// `lease_clock.rs`).
    pub async fn keep_alive(&self, id: LeaseId) -> Result<Renewal, ServiceError> {
        self.barrier(&self.keepalive_index).await?;
        let term = self.leader_term()?;
        Ok(self.clock.keep_alive(id, term))
    }

    /// A read barrier for lease questions (paced like keepalives): after it, this node led after
    /// the question arrived and has applied every lease end committed before.
    pub async fn lease_barrier(&self) -> Result<(), ServiceError> {
        self.barrier(&self.keepalive_index).await
    }

    /// Registers a watcher on this replica's hub; see [`Shard::subscribe_error`].
    pub fn subscribe(&self, filter: KeyFilter, start: u64) -> Result<Subscription, ServiceError> {
        self.hub.lock().subscribe(filter, start).map_err(|e| self.subscribe_error(e))
    }

    pub fn subscribe_error(&self, e: SubscribeError) -> ServiceError {
        match e {
            SubscribeError::Compacted { requested, oldest } => {
                ServiceError::Compacted { shard: self.id, requested, oldest }
            }
            SubscribeError::Closed => ServiceError::ShuttingDown { node: self.node_id },
        }
    }

    /// The term this node leads, or NotLeader.
    pub fn leader_term(&self) -> Result<u64, ServiceError> {
        let m = self.raft.metrics();
        let (state, term, leader) = {
            let m = m.borrow_watched();
            (m.state, m.current_term, m.current_leader)
        };
        if state == ServerState::Leader {
            Ok(term)
        } else {
            Err(self.not_leader(leader, None))
        }
    }

    /// Waits until a linearizable read may be served from the local state machine.
    pub async fn read_barrier(&self) -> Result<(), ServiceError> {
        if crate::failpoints::on(crate::failpoints::Failpoint::StaleRead) {
            return Ok(());
        }
        self.barrier(&self.read_index).await
    }

    async fn barrier(&self, index: &ReadIndex) -> Result<(), ServiceError> {
        self.check_leader_hint()?;
        match index.barrier().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => Err(self.forward(f)),
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
                Err(ServiceError::NoLeader { shard: self.id })
                    .inspect_err(|_| tracing::debug!(shard = %self.id, error = %e, "read index: quorum not reached"))
            }
            Err(RaftError::Fatal(_)) => Err(ServiceError::ShuttingDown { node: self.node_id }),
        }
    }
}

/// On the leader, proposes the expiry of leases whose deadlines passed; elsewhere, waits.
///
/// Raft metrics change on every apply; only a change of role or term matters here, so the
/// deadlines are looked at only then, when the lease set changed, or when the next deadline is due.
async fn drive_expiry(shard: ShardId, raft: ShardRaft, clock: Arc<LeaseClock>, proposer: Proposer) {
    let mut metrics = raft.metrics();
    let mut role: Option<(bool, u64)> = None;
    let mut next = None;
    let mut due = true;
    loop {
        let now_role = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        let role_changed = role != Some(now_role);
        role = Some(now_role);
        match now_role {
            (true, term) if role_changed || due => {
                let (expired, wake) = clock.take_expired(term);
                next = wake;
                for ids in expired.chunks(EXPIRE_BATCH) {
                    let (proposer, ids) = (proposer.clone(), ids.to_vec());
                    tokio::spawn(async move {
                        let n = ids.len();
                        match proposer
                            .propose(Tracked { write: None, request: Request::Lease(LeaseOp::Expire { ids }) })
                            .await
                        {
                            Ok(_) => tracing::debug!(shard = %shard, leases = n, "expired leases"),
                            // Not leader any more: the next leader resets deadlines and decides anew.
                            Err(e) => {
                                tracing::info!(shard = %shard, leases = n, error = ?e, "lease expiry not committed")
                            }
                        }
                    });
                }
            }
            (false, _) if role_changed => {
                clock.step_down();
                next = None;
            }
            _ => {}
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        due = tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return } else { false },
            _ = clock.changed() => true,
            _ = sleep => true,
        };
    }
}

/// The shard replicas this node hosts: the meta group and the data shards the placement driver
/// gave it. Replicas come and go while the node runs (see `replica.rs`); readers take a snapshot.
pub struct Shards {
    map: RwLock<BTreeMap<ShardId, Arc<Shard>>>,
}

impl Shards {
    pub fn new(shards: Vec<Arc<Shard>>) -> Self {
        Shards { map: RwLock::new(shards.into_iter().map(|s| (s.id, s)).collect()) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ShardId, Arc<Shard>>> {
        read(&self.map)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ShardId, Arc<Shard>>> {
        write(&self.map)
    }

    pub fn get(&self, id: ShardId) -> Option<Arc<Shard>> {
        self.read().get(&id).cloned()
    }

    /// The meta group's replica (every node has one from startup on).
    pub fn meta(&self) -> Option<Arc<Shard>> {
        self.get(ShardId::META)
    }

    /// A data shard for a client request: UNKNOWN_SHARD when this node hosts no replica of it
    /// (the client refreshes its routing table), and the meta group is never a client's shard.
    pub fn lookup(&self, id: u32) -> Result<Arc<Shard>, ServiceError> {
        let map = self.read();
        match map.get(&ShardId(id)) {
            Some(s) if !s.id.is_meta() => Ok(s.clone()),
            _ => Err(ServiceError::UnknownShard {
                shard: id,
                known: map.keys().filter(|s| !s.is_meta()).map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Every replica, the meta group last.
    pub fn iter(&self) -> std::vec::IntoIter<Arc<Shard>> {
        self.read().values().cloned().collect::<Vec<_>>().into_iter()
    }

    /// The data-shard replicas, in shard order.
    pub fn data(&self) -> Vec<Arc<Shard>> {
        self.read().values().filter(|s| !s.id.is_meta()).cloned().collect()
    }

    /// The status of every data-shard replica, in shard order (see [`Shard::status`]).
    pub fn data_statuses(&self, with_size: bool) -> Vec<ReplicaStatus> {
        self.data().iter().map(|s| s.status(with_size)).collect()
    }

    pub fn insert(&self, shard: Arc<Shard>) {
        self.write().insert(shard.id, shard);
    }

    pub fn remove(&self, id: ShardId) -> Option<Arc<Shard>> {
        self.write().remove(&id)
    }
}
