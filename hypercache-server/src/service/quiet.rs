//! The Quiet service (`hypercache.raft.v1.Quiet`): beats from nodes that lead quiet shards,
//! recorded for this node's quiet driver (`quiet/`). The answer names the shards of the beat
//! whose replica here knows no leader (this node restarted while they were quiet): their leader
//! wakes them and heartbeats, or the replica would never learn it, nor become ready.

use hypercache_proto::raft::v1::quiet_server::Quiet;
use hypercache_proto::raft::v1::RaftMessage;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::quiet::board::BeatBoard;
use crate::quiet::Beat;
use crate::shard::Shards;
use crate::types::ShardId;
use openraft::async_runtime::WatchReceiver;

use super::peer_msg;

pub struct QuietService {
    board: BeatBoard,
    shards: Arc<Shards>,
}

impl QuietService {
    pub fn new(board: BeatBoard, shards: Arc<Shards>) -> Self {
        QuietService { board, shards }
    }

    /// A beat from a quiet shard's leader stands in for its heartbeats: contact with the leader
    /// for every named shard whose replica here follows that node.
    fn heard(&self, beat: &Beat) {
        for (shard, _) in &beat.quiet {
            if let Some(s) = self.shards.get(*shard) {
                if s.raft.metrics().borrow_watched().current_leader == Some(beat.from) {
                    s.contact.heard();
                }
            }
        }
    }

    /// The shards named in `beat` whose replica here knows no leader.
    fn leaderless(&self, beat: &Beat) -> Vec<ShardId> {
        beat.quiet
            .iter()
            .filter(|(shard, _)| {
                self.shards.get(*shard).is_some_and(|s| s.raft.metrics().borrow_watched().current_leader.is_none())
            })
            .map(|(shard, _)| *shard)
            .collect()
    }
}

#[tonic::async_trait]
impl Quiet for QuietService {
    async fn beat(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        peer_msg::serve("Beat", request.into_inner(), |_, beat: Beat| async move {
            self.heard(&beat);
            let leaderless = self.leaderless(&beat);
            self.board.record(beat);
            leaderless
        })
        .await
    }
}
