//! Leadership hand-over before a node stops. A leader that just stops leaves its shards without
//! a leader for an election timeout (up to `election_timeout_max_ms`): no write commits until a
//! follower's timer fires and it wins. On SIGTERM the node instead asks each shard it leads to
//! transfer leadership to its most up-to-date voter (openraft's `transfer_leader`: the leader
//! stops proposing and lets the target campaign at once, with its blessing, as soon as the
//! target's log has caught up), and waits, bounded, until every such shard has another leader.
//!
//! The request names the leader's last log position, and the target waits for its own log to
//! reach it for only `election_timeout_min`; a target still behind then ignores it, and the
//! leader, which no longer proposes, leads on without a successor. Under load the target is
//! often a few entries behind, and a slow disk or link can outlast that wait. So while a shard
//! is still led here, the leader asks again once its chosen voter has every entry.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use tokio::time::Instant;

use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;
use crate::shard::Shards;
use crate::types::{NodeId, ShardId};

/// How often the wait re-reads the shards' metrics.
const POLL: Duration = Duration::from_millis(5);

/// How long after asking a successor the leader may ask again: the request in flight may still
/// be waiting on the target's flush, and a request per poll would only crowd it.
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(50);

/// What a hand-over achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// Shards this node led that have another leader now.
    pub moved: usize,
    /// Shards this node led that still had no other leader when the wait ended (a single
    /// voter, no live peer, or the wait ran out): their followers elect one after a timeout.
    pub stuck: usize,
}

/// The voter that should lead `raft`'s shard after this node: the one whose replicated log is
/// furthest along, so the transfer waits least. None when this node does not lead or is alone.
fn successor(raft: &ShardRaft, me: NodeId) -> Option<NodeId> {
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return None;
    }
    m.membership_config.membership().voter_ids().filter(|id| *id != me).max_by_key(|id| (matched(&m, *id), *id))
}

fn led_by(raft: &ShardRaft, me: NodeId) -> bool {
    raft.metrics().borrow_watched().current_leader == Some(me)
}

/// True when `to` holds every entry of this leader's log (so a request to take over now would
/// not be ignored for a lag).
fn caught_up(raft: &ShardRaft, to: NodeId) -> bool {
    let m = raft.metrics().borrow_watched().clone();
    let matched = matched(&m, to);
    matched.is_some() && matched == m.last_log_index
}

/// The last index the leader knows `id` holds (None off a leader, or before its first answer).
fn matched(m: &RaftMetrics<TypeConfig>, id: NodeId) -> Option<u64> {
    m.replication.as_ref().and_then(|r| r.get(&id)).and_then(|l| l.as_ref()).map(|l| l.index)
}

/// One shard whose leadership this node asked to move.
struct Asked {
    shard: ShardId,
    raft: ShardRaft,
    to: NodeId,
    at: Instant,
}

/// Asks every shard of `shards` that this node (`me`) leads to hand its leadership to another
/// voter, then waits up to `wait` until none is led by this node any more.
pub async fn hand_over(shards: &Shards, me: NodeId, wait: Duration) -> Handover {
    let mut asked: Vec<Asked> = Vec::new();
    for shard in shards.iter() {
        let Some(to) = successor(&shard.raft, me) else { continue };
        match shard.raft.trigger().transfer_leader(to).await {
            Ok(()) => {
                tracing::info!(shard = %shard.id, to, "handing leadership over before stopping");
                asked.push(Asked { shard: shard.id, raft: shard.raft.clone(), to, at: Instant::now() });
            }
            Err(e) => tracing::warn!(shard = %shard.id, error = %e, "leadership hand-over not started"),
        }
    }
    let started = asked.len();
    let deadline = Instant::now() + wait;
    loop {
        asked.retain(|a| led_by(&a.raft, me));
        if asked.is_empty() || Instant::now() >= deadline {
            break;
        }
        for a in &mut asked {
            if a.at.elapsed() < ASK_AGAIN_AFTER || !caught_up(&a.raft, a.to) {
                continue;
            }
            a.at = Instant::now();
            match a.raft.trigger().transfer_leader(a.to).await {
                Ok(()) => tracing::debug!(shard = %a.shard, to = a.to, "asking the successor again, now caught up"),
                Err(e) => tracing::warn!(shard = %a.shard, error = %e, "leadership hand-over not asked again"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    for a in &asked {
        tracing::warn!(shard = %a.shard, wait_ms = wait.as_millis() as u64, "no other leader after the hand-over wait");
    }
    Handover { moved: started - asked.len(), stuck: asked.len() }
}
