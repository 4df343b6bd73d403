//! Boards: an owner record `{server, incarnation, epoch}` and a checkpoint `{seq, data}`.
//!
//! Ownership is fenced by the epoch: every assignment bumps it, and a checkpoint write
//! ([`Client::sync_board`]) is accepted only with the current epoch, so an owner that lost the
//! board learns it on its next write (`STALE_EPOCH`, with the current owner in
//! [`Error::stale_epoch`]) and must stop serving the board at once. The sync loop doing exactly
//! that is [`BoardSyncer`](crate::BoardSyncer).
//!
//! Retries: every board write carries a write id (exactly-once, see the crate docs), so a lost
//! answer is retried within the deadline and a repeat returns the first outcome. `Sync` with
//! the same (epoch, seq) and `Assign` with the same request id are also idempotent on their own
//! (for callers that repeat them after the deadline, with a new write id); only the *last*
//! assignment's request id is remembered, so such a repeat that raced with a newer assignment
//! fails with `STALE_EPOCH` although the first attempt may have succeeded.

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use hypercache_proto::v1 as pb;
use hypercache_proto::Reason;
use pb::boards_client::BoardsClient as WireClient;
use tonic::transport::Channel;

use crate::call::{in_shard, request};
use crate::client::Client;
use crate::error::Error;
use crate::ids::{Epoch, Incarnation, Seq, Term};
use crate::retry::OpKind;
use crate::stream::Resuming;
use crate::target::{Route, Target};
use crate::types::{millis_ceil, revision, LeaseId};

/// A board's owner record and parameters, converted from the wire's `pb::Board` where the
/// client receives one, so that callers fence with typed ids rather than bare `u64`s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Board {
    pub board_id: String,
    /// Opaque game parameters given at creation.
    pub params: Bytes,
    /// `None` while unassigned.
    pub owner: Option<BoardOwner>,
    pub epoch: Epoch,
    /// The lease carrying the board's lifetime; `None` for a board without one (0 on the wire).
    pub lease: Option<LeaseId>,
    /// Revision of the last owner change.
    pub revision: u64,
}

/// A board's owner: a registered server and the incarnation it had when it was assigned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BoardOwner {
    pub server_id: String,
    pub incarnation: Incarnation,
}

/// A board's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Checkpoint {
    pub seq: Seq,
    /// Epoch of the owner that wrote it.
    pub epoch: Epoch,
    pub data: Bytes,
}

impl From<pb::Board> for Board {
    fn from(b: pb::Board) -> Self {
        Board {
            board_id: b.board_id,
            params: b.params,
            owner: b.owner.map(BoardOwner::from),
            epoch: Epoch(b.epoch),
            lease: (b.lease != 0).then_some(LeaseId(b.lease)),
            revision: b.revision,
        }
    }
}

impl From<pb::BoardOwner> for BoardOwner {
    fn from(o: pb::BoardOwner) -> Self {
        BoardOwner { server_id: o.server_id, incarnation: Incarnation(o.incarnation) }
    }
}

impl From<pb::Checkpoint> for Checkpoint {
    fn from(c: pb::Checkpoint) -> Self {
        Checkpoint { seq: Seq(c.seq), epoch: Epoch(c.epoch), data: c.data }
    }
}

/// What [`Client::create_board`] creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateBoard {
    pub board_id: String,
    /// Opaque game parameters.
    pub params: Bytes,
    /// Initial checkpoint data (seq 0).
    pub checkpoint: Bytes,
    /// When set, the board and its checkpoint are deleted when this elapses.
    pub lifetime: Option<Duration>,
}

impl CreateBoard {
    pub fn new(board_id: impl Into<String>) -> Self {
        CreateBoard { board_id: board_id.into(), ..Self::default() }
    }
}

/// What [`Client::assign_board`] asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignBoard {
    pub board_id: String,
    /// Must be a live (registered) server (`SERVER_NOT_LIVE` otherwise).
    pub server_id: String,
    /// The epoch the caller last saw (`STALE_EPOCH` if it moved on).
    pub expected_epoch: Epoch,
    /// Non-empty, at most 128 bytes; repeating the last assignment's id returns its result.
    pub request_id: String,
    /// Fencing by an election: `(name, term)` must be the election's current term
    /// (`STALE_TERM` otherwise).
    pub election: Option<(String, Term)>,
}

/// Result of [`Client::sync_board`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncResult {
    /// The seq the store holds after the call.
    pub seq: Seq,
    /// False when the seq equalled the stored one (an idempotent repeat; nothing written).
    pub written: bool,
}

/// A board with its checkpoint, as [`Client::get_board`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardRecord {
    pub board: Board,
    pub checkpoint: Option<Checkpoint>,
    /// The serving node's revision.
    pub revision: u64,
}

/// One page of [`Client::list_boards`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardPage {
    pub boards: Vec<Board>,
    /// `Some` when more boards remain: pass it to the next call.
    pub next_page_token: Option<String>,
}

/// A change in what a server owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentChange {
    /// True for GAINED (sync with `epoch`), false for LOST (`epoch` ended the ownership).
    pub gained: bool,
    pub board_id: String,
    pub epoch: Epoch,
    pub revision: u64,
}

/// What [`AssignmentWatch::next`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentUpdate {
    /// Everything the server owns at `revision` (all `gained`): first, and after every
    /// reconnect. Boards missing from it are no longer owned, whatever was seen before.
    Snapshot {
        revision: u64,
        owned: Vec<AssignmentChange>,
    },
    Changes {
        revision: u64,
        changes: Vec<AssignmentChange>,
    },
}

/// A reconnecting watch of one server's assignments (see [`Client::watch_assignments`]).
pub struct AssignmentWatch(Resuming<pb::WatchAssignmentsResponse>);

impl AssignmentWatch {
    /// The next snapshot or batch of changes. A failure to reconnect is returned (retryable);
    /// calling again resumes with a fresh snapshot.
    pub async fn next(&mut self) -> Result<AssignmentUpdate, Error> {
        let response = self.0.next().await?;
        let revision = revision(response.header.as_ref());
        let changes = response
            .events
            .into_iter()
            .map(|e| AssignmentChange {
                gained: e.r#type == pb::assignment_event::Type::Gained as i32,
                board_id: e.board_id,
                epoch: Epoch(e.epoch),
                revision: e.revision,
            })
            .collect();
        Ok(if response.snapshot {
            AssignmentUpdate::Snapshot { revision, owned: changes }
        } else {
            AssignmentUpdate::Changes { revision, changes }
        })
    }
}

fn route(serializable: bool) -> Route {
    if serializable {
        Route::First
    } else {
        Route::Leader
    }
}

impl Client {
    pub(crate) fn boards_wire(&self, channel: Channel) -> WireClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        WireClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Creates a board, unassigned at epoch 0 (`BOARD_EXISTS` if the id is taken).
    pub async fn create_board(&self, board: CreateBoard) -> Result<Board, Error> {
        let pending = self.begin_write();
        let msg = pb::CreateBoardRequest {
            shard_id: 0,
            board_id: board.board_id,
            params: board.params,
            checkpoint: board.checkpoint,
            lifetime_ms: board.lifetime.map(millis_ceil),
            write: pending.id(),
        };
        let response = self
            .execute("create_board", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
                let mut boards = self.boards_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { boards.create(req).await }
            })
            .await?;
        Ok(Board::from(response.board.unwrap_or_default()))
    }

    /// Assigns the board to a server, bumping the epoch; returns the board as assigned.
    pub async fn assign_board(&self, assign: AssignBoard) -> Result<Board, Error> {
        let (election, election_term) = assign.election.unwrap_or_default();
        let pending = self.begin_write();
        let msg = pb::AssignBoardRequest {
            shard_id: 0,
            board_id: assign.board_id,
            server_id: assign.server_id,
            expected_epoch: assign.expected_epoch.0,
            request_id: assign.request_id,
            election,
            election_term: election_term.0,
            write: pending.id(),
        };
        let response = self
            .execute("assign_board", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
                let mut boards = self.boards_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { boards.assign(req).await }
            })
            .await?;
        Ok(Board::from(response.board.unwrap_or_default()))
    }

    /// Writes a checkpoint, fenced by `epoch`; `seq` must be above the stored one (an equal
    /// seq is an idempotent success with `written = false`; a lower one is `STALE_SEQ`).
    pub async fn sync_board(&self, board_id: &str, epoch: Epoch, seq: Seq, data: Bytes) -> Result<SyncResult, Error> {
        let pending = self.begin_write();
        let msg = pb::SyncBoardRequest {
            shard_id: 0,
            board_id: board_id.to_string(),
            epoch: epoch.0,
            seq: seq.0,
            checkpoint: data,
            write: pending.id(),
        };
        let response = self
            .execute("sync_board", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
                let mut boards = self.boards_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { boards.sync(req).await }
            })
            .await?;
        Ok(SyncResult { seq: Seq(response.seq), written: response.written })
    }

    /// Reads a board and its checkpoint; `None` if it does not exist. Linearizable unless
    /// `serializable`.
    pub async fn get_board(&self, board_id: &str, serializable: bool) -> Result<Option<BoardRecord>, Error> {
        let msg = pb::GetBoardRequest { shard_id: 0, board_id: board_id.to_string(), serializable };
        let result = self
            .execute("get_board", OpKind::Read, Target::Home, route(serializable), |ch, shard, t| {
                let mut boards = self.boards_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { boards.get(req).await }
            })
            .await;
        match result {
            Ok(r) => Ok(r.board.map(|board| BoardRecord {
                board: board.into(),
                checkpoint: r.checkpoint.map(Checkpoint::from),
                revision: revision(r.header.as_ref()),
            })),
            Err(err) if err.is_reason(Reason::BoardNotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// One page of boards (all, or those `owner` owns); `limit` 0 means the server default.
    pub async fn list_boards(
        &self,
        owner: Option<&str>,
        limit: u32,
        page_token: Option<String>,
        serializable: bool,
    ) -> Result<BoardPage, Error> {
        let msg = pb::ListBoardsRequest {
            shard_id: 0,
            owner: owner.unwrap_or_default().to_string(),
            limit,
            page_token: page_token.unwrap_or_default(),
            serializable,
        };
        let response = self
            .execute("list_boards", OpKind::Read, Target::Home, route(serializable), |ch, shard, t| {
                let mut boards = self.boards_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { boards.list(req).await }
            })
            .await?;
        let next_page_token = (!response.next_page_token.is_empty()).then_some(response.next_page_token);
        Ok(BoardPage { boards: response.boards.into_iter().map(Board::from).collect(), next_page_token })
    }

    /// Every board (or every board `owner` owns), following pages. Each page is read at its
    /// own revision, so a board changing hands meanwhile may appear twice or not at all; use
    /// [`get_board`](Self::get_board) for an authoritative answer about one board.
    pub async fn list_all_boards(&self, owner: Option<&str>) -> Result<Vec<Board>, Error> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_boards(owner, 0, token, false).await?;
            all.extend(page.boards);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The owner gives the board up: owner cleared, epoch bumped (fencing any late sync).
    pub async fn release_board(&self, board_id: &str, server_id: &str, epoch: Epoch) -> Result<Board, Error> {
        let pending = self.begin_write();
        let msg = pb::ReleaseBoardRequest {
            shard_id: 0,
            board_id: board_id.to_string(),
            server_id: server_id.to_string(),
            epoch: epoch.0,
            write: pending.id(),
        };
        let response = self
            .execute("release_board", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
                let mut boards = self.boards_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { boards.release(req).await }
            })
            .await?;
        Ok(Board::from(response.board.unwrap_or_default()))
    }

    /// Deletes the board and its checkpoint; with `expected_epoch`, only at that epoch.
    pub async fn delete_board(&self, board_id: &str, expected_epoch: Option<Epoch>) -> Result<(), Error> {
        let pending = self.begin_write();
        let msg = pb::DeleteBoardRequest {
            shard_id: 0,
            board_id: board_id.to_string(),
            expected_epoch: expected_epoch.map(|e| e.0),
            write: pending.id(),
        };
        self.execute("delete_board", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
            let mut boards = self.boards_wire(ch);
            let req = request(in_shard!(msg.clone(), shard), t);
            async move { boards.delete(req).await }
        })
        .await?;
        Ok(())
    }

    /// Watches what `server_id` owns: a snapshot, then boards gained and lost.
    pub fn watch_assignments(&self, server_id: &str) -> AssignmentWatch {
        let msg = pb::WatchAssignmentsRequest { shard_id: 0, server_id: server_id.to_string() };
        let client = self.clone();
        AssignmentWatch(Resuming::new(
            self.clone(),
            "watch_assignments",
            Box::new(move |ch, shard| {
                let mut boards = client.boards_wire(ch);
                let req = tonic::Request::new(in_shard!(msg.clone(), shard));
                async move { boards.watch_assignments(req).await }.boxed()
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_board_converts_to_typed_ids_and_lease_zero_is_none() {
        let wire = pb::Board {
            board_id: "b1".into(),
            params: Bytes::from_static(b"p"),
            owner: Some(pb::BoardOwner { server_id: "srv-a".into(), incarnation: 2 }),
            epoch: 5,
            lease: 0,
            revision: 9,
        };
        let board = Board::from(wire.clone());
        assert_eq!(
            board,
            Board {
                board_id: "b1".into(),
                params: Bytes::from_static(b"p"),
                owner: Some(BoardOwner { server_id: "srv-a".into(), incarnation: Incarnation(2) }),
                epoch: Epoch(5),
                lease: None,
                revision: 9,
            }
        );
        let leased = Board::from(pb::Board { lease: 3 << 48 | 1, owner: None, ..wire });
        assert_eq!((leased.lease, leased.owner), (Some(LeaseId(3 << 48 | 1)), None));

        let wire = pb::Checkpoint { seq: 4, epoch: 5, data: Bytes::from_static(b"d") };
        assert_eq!(Checkpoint::from(wire), Checkpoint { seq: Seq(4), epoch: Epoch(5), data: Bytes::from_static(b"d") });
    }
}
