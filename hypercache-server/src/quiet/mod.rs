//! Quiet shards: an idle shard replica costs its node nothing.
//!
//! Every openraft group ticks: its leader heartbeats each follower every heartbeat interval and
//! each follower checks its election timer, whether or not the shard has traffic. With 64 shard
//! replicas per node that was 6 % of a core at rest (docs/benchmarks.md, issue 19). Here a shard
//! whose leader has appended nothing for `raft.quiet_after_ms`, with every follower caught up,
//! goes quiet: the leader stops ticking (no heartbeats), and its followers stop ticking too (no
//! election timer) for as long as they keep hearing that the leader is alive.
//!
//! That liveness is one message per node pair, not per shard: every heartbeat interval, a node
//! that leads quiet shards sends each member of those shards one [`Beat`] listing them with
//! their terms (`service Quiet` in `raft.proto`). A follower holds a shard (tick off) only while
//! a beat younger than the election timeout names that shard, at a term at least its own, from
//! the node it knows as leader (or from any node while it knows none: a restarted follower has
//! not heard from its quiet leader yet). When the beats stop (the leader's node died, a link was
//! cut, the leader stepped down) the follower ticks again and, its last heartbeat long past,
//! elects at once: failover takes what it takes today, an election timeout after the last beat.
//!
//! Safety does not depend on any of this: a tick only decides *when* a leader heartbeats and a
//! follower campaigns; votes, appends, commits and read-index confirmations (which send their
//! own messages) work the same with the tick off. A quiet leader wakes on its next round after a
//! new entry (a write, a membership change, a lease expiry), ticks again, heartbeats at once,
//! and keeps naming the shard in one more beat so the follower hears the heartbeat before it
//! starts its own timer again. Writes do not wait for that: openraft replicates new entries as
//! they are appended, tick or not.
//!
//! A peer of an older version answers the beat UNIMPLEMENTED; shards with such a member never
//! go quiet (it would not hold its election timer). Beats are blocked with Raft appends by the
//! test links (`network/links.rs`), as they stand in for heartbeats.

pub mod board;
pub mod decide;
pub mod driver;

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, ShardId};

/// What a node that leads quiet shards tells the other members of those shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub from: NodeId,
    /// The quiet shards `from` leads, each with the term of its leadership.
    pub quiet: Vec<(ShardId, u64)>,
}
