//! Which inbound Raft messages this node accepts: only those meant for this node, this data
//! dir's incarnation, and this node's cluster.
//!
//! A pod recreated on an empty volume comes back with its old node id but a new incarnation
//! (`identity.rs`). Its peers' memberships still record the old one, so every AppendEntries,
//! vote request and snapshot they send it names the old incarnation and is refused here, before
//! openraft sees it: the node never grants a vote or stores log entries as the voter it was, and
//! so never helps elect a leader that misses committed entries nor counts toward a quorum with a
//! log it lost. It takes part again once the cluster has replaced its membership entries with its
//! new incarnation (`membership.rs` for the meta group, the placement driver for data shards).
//!
//! A refusal is FAILED_PRECONDITION: the sender treats the node as unreachable and backs off.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypercache_proto::poison::lock;
use hypercache_proto::raft::v1::RaftMessage;
use tonic::Status;

use crate::identity::{ClusterId, Stamp};

/// Refusals are logged at most this often (a peer retries every heartbeat).
const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Admission {
    stamp: Arc<Stamp>,
    last_logged: Mutex<Option<Instant>>,
}

impl Admission {
    pub fn new(stamp: Arc<Stamp>) -> Self {
        Admission { stamp, last_logged: Mutex::new(None) }
    }

    /// Ok when `msg` (a Raft request) may be handed to openraft. Adopts the sender's cluster id
    /// when this data dir has none yet.
    pub async fn check(&self, msg: &RaftMessage) -> Result<(), Status> {
        let me = &self.stamp;
        let refused = if msg.to_node != me.node_id {
            Some(format!(
                "WRONG_NODE: shard {} message for node {} reached node {}",
                msg.shard_id, msg.to_node, me.node_id
            ))
        } else if msg.to_incarnation != me.incarnation.0 {
            Some(format!(
                "STALE_INCARNATION: shard {} message for node {} incarnation {:016x}, but this node's data dir is \
                 incarnation {} (it was recreated, e.g. on an empty volume); it takes part again once the cluster \
                 has re-added it under its new incarnation",
                msg.shard_id, me.node_id, msg.to_incarnation, me.incarnation
            ))
        } else {
            self.cluster_mismatch(msg).await
        };
        match refused {
            None => Ok(()),
            Some(reason) => {
                self.log(&reason);
                Err(Status::failed_precondition(reason))
            }
        }
    }

    async fn cluster_mismatch(&self, msg: &RaftMessage) -> Option<String> {
        if msg.cluster_id.is_empty() {
            return None;
        }
        let theirs = ClusterId(msg.cluster_id.clone());
        let mine = match self.stamp.cluster() {
            Some(c) => c,
            None => {
                let stamp = self.stamp.clone();
                let adopt = theirs.clone();
                match tokio::task::spawn_blocking(move || stamp.adopt_cluster(&adopt)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Some(format!("STAMP_FAILED: {e}")),
                    Err(e) => return Some(format!("STAMP_FAILED: {e}")),
                }
            }
        };
        (mine != theirs).then(|| {
            format!(
                "WRONG_CLUSTER: shard {} message from cluster {theirs}, but this node's data dir belongs to cluster {mine}",
                msg.shard_id
            )
        })
    }

    fn log(&self, reason: &str) {
        let mut last = lock(&self.last_logged);
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(node = self.stamp.node_id, reason, "refused a Raft message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to_node: u64, to_incarnation: u64, cluster: &str) -> RaftMessage {
        RaftMessage { shard_id: 0, payload: Default::default(), to_node, to_incarnation, cluster_id: cluster.into() }
    }

    fn reason(r: Result<(), Status>) -> String {
        r.expect_err("refused").message().split(':').next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn only_messages_for_this_node_incarnation_and_cluster_get_through() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = Stamp::open(dir.path(), 2).unwrap();
        let me = stamp.incarnation.0;
        let gate = Admission::new(stamp.clone());

        assert_eq!(reason(gate.check(&msg(3, me, "")).await), "WRONG_NODE");
        // The old self of a node restarted on an empty volume, and a sender that knows no incarnation.
        assert_eq!(reason(gate.check(&msg(2, me ^ 1, "")).await), "STALE_INCARNATION");
        assert_eq!(reason(gate.check(&msg(2, 0, "")).await), "STALE_INCARNATION");
        // Refused messages adopt nothing.
        assert_eq!(reason(gate.check(&msg(2, me ^ 1, "aa")).await), "STALE_INCARNATION");
        assert_eq!(stamp.cluster(), None);

        // The first accepted message with a cluster id stamps the data dir with it...
        gate.check(&msg(2, me, "")).await.unwrap();
        assert_eq!(stamp.cluster(), None);
        gate.check(&msg(2, me, "aa")).await.unwrap();
        assert_eq!(stamp.cluster(), Some(ClusterId("aa".into())));
        assert_eq!(Stamp::open(dir.path(), 2).unwrap().cluster(), Some(ClusterId("aa".into())));
        // ...and another cluster is refused from then on.
        assert_eq!(reason(gate.check(&msg(2, me, "bb")).await), "WRONG_CLUSTER");
        gate.check(&msg(2, me, "aa")).await.unwrap();
    }
}
