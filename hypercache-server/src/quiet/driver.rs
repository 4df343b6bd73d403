//! The node's one quiet timer: every heartbeat interval it looks at every replica on the node
//! ([`super::decide::step`]), stops or restarts their ticks, and sends one [`Beat`] to each
//! member of the quiet shards this node leads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hypercache_proto::raft::v1::quiet_client::QuietClient;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use prometheus::IntGauge;
use tokio::sync::watch;

use super::board::BeatBoard;
use super::decide::{step, Action, Role, Seen, State};
use super::Beat;
use crate::network::peer_call::{self, PeerCallError};
use crate::network::{PeerPool, RaftRpc};
use crate::shard::{Shard, Shards};
use crate::types::{NodeId, ShardId};

/// How the driver is paced; from `raft.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Length of one round: the heartbeat interval, so beats come as often as heartbeats did.
    pub round: Duration,
    /// Rounds without a new entry before a leader goes quiet (`raft.quiet_after_ms`).
    pub quiet_rounds: u32,
    /// A beat older than this holds nothing: the shortest election timeout, so a follower of a
    /// dead node starts electing as soon as it would have without quiet shards.
    pub fresh: Duration,
}

pub struct QuietDriver {
    pub node_id: NodeId,
    pub shards: Arc<Shards>,
    pub board: BeatBoard,
    pub pool: PeerPool,
    pub pacing: Pacing,
    pub gauge: IntGauge,
}

/// What the driver remembers between rounds.
#[derive(Default)]
struct Memory {
    states: HashMap<ShardId, State>,
    /// Members that answered a beat UNIMPLEMENTED (an older version): they would not hold.
    cannot_hold: HashSet<NodeId>,
    /// Shards a member answered it knows no leader of (it restarted while they were quiet): not
    /// settled, so [`step`] wakes them and they heartbeat.
    leaderless: HashSet<ShardId>,
}

impl QuietDriver {
    /// Runs rounds until the node stops.
    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut memory = Memory::default();
        let mut ticker = tokio::time::interval(self.pacing.round);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopping.changed() => return,
            }
            if *stopping.borrow() {
                return;
            }
            self.round(&mut memory).await;
        }
    }

    async fn round(&self, memory: &mut Memory) {
        let beats = self.board.quiet_leaders(self.pacing.fresh);
        let shards: Vec<Arc<Shard>> = self.shards.iter().collect();
        memory.states.retain(|id, _| shards.iter().any(|s| s.id == *id));
        let mut named = Vec::new();
        let mut members: BTreeMap<NodeId, String> = BTreeMap::new();
        for shard in &shards {
            let (seen, others) = self.look(shard, memory);
            let state = memory.states.entry(shard.id).or_insert(State::NEW);
            let (next, action) = step(*state, seen, self.pacing.quiet_rounds, beats.get(&shard.id).copied());
            apply(shard, action).await;
            *state = next;
            if let Some(term) = next.named() {
                named.push((shard.id, term));
                members.extend(others);
            }
        }
        if !named.is_empty() {
            let beat = Beat { from: self.node_id, quiet: named };
            let answers = self.send(&beat, &members).await;
            memory.cannot_hold.extend(answers.cannot_hold);
            memory.leaderless = answers.leaderless;
        } else {
            memory.leaderless.clear();
        }
        let not_ticking = memory.states.values().filter(|s| matches!(s, State::Quiet { .. } | State::Held)).count();
        self.gauge.set(i64::try_from(not_ticking).unwrap_or(i64::MAX));
    }

    /// The replica as [`step`] needs it, and the other members of its shard (id, address).
    fn look(&self, shard: &Shard, memory: &Memory) -> (Seen, Vec<(NodeId, String)>) {
        let metrics = shard.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let others: Vec<(NodeId, String)> =
            membership.nodes().filter(|(id, _)| **id != self.node_id).map(|(id, n)| (*id, n.addr.clone())).collect();
        let last_log_index = m.last_log_index.unwrap_or(0);
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower | ServerState::Learner => Role::Follower,
            ServerState::Candidate | ServerState::Shutdown => Role::Other,
        };
        let settled = role == Role::Leader
            && !memory.leaderless.contains(&shard.id)
            && membership.get_joint_config().len() == 1
            && m.last_applied.is_some_and(|l| l.index == last_log_index)
            && m.replication.as_ref().is_some_and(|r| {
                r.iter().all(|(id, matched)| *id == self.node_id || matched.is_some_and(|l| l.index == last_log_index))
            });
        let seen = Seen {
            role,
            term: m.vote.leader_id().term,
            leader: m.current_leader,
            last_log_index,
            settled,
            members_hold: others.iter().all(|(id, _)| !memory.cannot_hold.contains(id)),
        };
        (seen, others)
    }

    /// Sends `beat` to every member in `to` at once, each within one round.
    async fn send(&self, beat: &Beat, to: &BTreeMap<NodeId, String>) -> Answers {
        let calls = to.iter().filter(|(_, addr)| self.pool.links().allows(addr, RaftRpc::Append)).map(|(id, addr)| {
            let call = peer_call::call::<_, Vec<ShardId>, _, _, _, _>(
                &self.pool,
                addr,
                ShardId::META,
                beat,
                self.pacing.round,
                |channel, msg| async move { QuietClient::new(channel).beat(msg).await },
                |_, _| async { Err(tonic::Status::unimplemented("no old path for beats")) },
            );
            async move { (*id, addr, call.await) }
        });
        let mut answers = Answers::default();
        for (id, addr, result) in futures::future::join_all(calls).await {
            match result {
                Ok(leaderless) => answers.leaderless.extend(leaderless),
                Err(PeerCallError::Transport { code: tonic::Code::Unimplemented, .. }) => {
                    tracing::warn!(peer = id, addr = %addr, "peer does not know quiet beats (older version): its shards keep ticking");
                    answers.cannot_hold.push(id);
                }
                // A member that is down or cut off is not electing; it hears the next beat.
                Err(e) => tracing::debug!(peer = id, error = %e, "quiet beat not delivered"),
            }
        }
        answers
    }
}

/// What the members answered to one round's beats.
#[derive(Default)]
struct Answers {
    /// Members that do not know beats (an older version): they would not hold.
    cannot_hold: Vec<NodeId>,
    /// Shards some member's replica knows no leader of.
    leaderless: HashSet<ShardId>,
}

async fn apply(shard: &Shard, action: Action) {
    let raft = &shard.raft;
    match action {
        Action::Nothing => {}
        Action::StopTicking => {
            tracing::debug!(shard = %shard.id, "quiet: tick stopped");
            raft.runtime_config().tick(false);
        }
        Action::Tick => {
            tracing::debug!(shard = %shard.id, "quiet: ticking again");
            raft.runtime_config().tick(true);
        }
        Action::TickAndHeartbeat => {
            tracing::debug!(shard = %shard.id, "quiet: woken, heartbeat now");
            raft.runtime_config().tick(true);
            if let Err(e) = raft.trigger().heartbeat().await {
                tracing::debug!(shard = %shard.id, error = %e, "quiet: heartbeat not sent (raft stopping)");
            }
        }
    }
}
