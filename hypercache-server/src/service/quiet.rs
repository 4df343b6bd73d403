//! The Quiet service (`hypercache.raft.v1.Quiet`): beats from nodes that lead quiet shards,
//! recorded for this node's quiet driver (`quiet/`).

use hypercache_proto::raft::v1::quiet_server::Quiet;
use hypercache_proto::raft::v1::RaftMessage;
use tonic::{Request, Response, Status};

use crate::quiet::board::BeatBoard;
use crate::quiet::Beat;

use super::peer_msg;

pub struct QuietService {
    board: BeatBoard,
}

impl QuietService {
    pub fn new(board: BeatBoard) -> Self {
        QuietService { board }
    }
}

#[tonic::async_trait]
impl Quiet for QuietService {
    async fn beat(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        peer_msg::serve("Beat", request.into_inner(), |_, beat: Beat| async move {
            self.board.record(beat);
        })
        .await
    }
}
