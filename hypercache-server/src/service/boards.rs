//! `hypercache.v1.Boards`: boards with fenced ownership and checkpoints.

use std::time::Duration;

use hypercache_proto::keys::prefix_end;
use hypercache_proto::v1 as pb;
use hypercache_proto::v1::boards_server::Boards;
use hypercache_proto::Reason;
use tonic::{Request, Response, Status};

use super::ctx::{header, read_barrier, read_error, read_snapshot, unexpected, Ctx};
use super::game_common::{decode_kv, game_reply, id_of, rejected, scan, snapshot_then_watch};
use super::stream::{forward, Convert, Out};
use super::validate::RANGE_PAGE_BYTES;
use super::wire::write_id;
use crate::error::ServiceError;
use crate::machine::command::Request as SmRequest;
use crate::machine::command::{Assign, GameOp, GameReply, Rejection};
use crate::machine::game_ids::{Epoch, Seq, Term};
use crate::machine::game_records::{key, BoardRecord, BoardView, CheckpointRecord, BOARD_PREFIX, CKPT_PREFIX};
use crate::machine::overlay::{Event, EventKind};
use crate::shard::Shard;
use crate::types::KeyValue;
use crate::watch_hub::KeyFilter;

pub struct BoardsService {
    ctx: Ctx,
}

fn board(board_id: String, record: BoardRecord, lease: u64, revision: u64) -> pb::Board {
    pb::Board {
        board_id,
        params: record.params,
        owner: record.owner.map(|o| pb::BoardOwner { server_id: o.server_id, incarnation: o.incarnation.0 }),
        epoch: record.epoch.0,
        lease,
        revision,
    }
}

fn from_view(v: BoardView) -> pb::Board {
    board(v.board_id, v.record, v.lease.0, v.revision)
}

fn from_kv(shard: &Shard, kv: &KeyValue) -> Result<pb::Board, ServiceError> {
    Ok(board(id_of(BOARD_PREFIX, &kv.key), decode_kv(shard, kv)?, kv.lease.0, kv.mod_revision))
}

impl BoardsService {
    pub fn new(ctx: Ctx) -> Self {
        BoardsService { ctx }
    }

    async fn board_op(
        &self,
        shard_id: u32,
        write: Option<pb::WriteId>,
        op: GameOp,
        name: &str,
    ) -> Result<(pb::ResponseHeader, pb::Board), ServiceError> {
        let shard = self.ctx.shard(shard_id)?;
        let (revision, reply) = shard.submit_once(write_id(write)?, SmRequest::Game(op)).await?;
        match game_reply(&shard, name, reply)? {
            GameReply::Board(v) => Ok((header(&shard, revision).unwrap_or_default(), from_view(v))),
            other => Err(unexpected(&shard, name, other)),
        }
    }

    async fn create(&self, req: pb::CreateBoardRequest) -> Result<pb::CreateBoardResponse, ServiceError> {
        let v = &self.ctx.validator;
        v.id("board_id", &req.board_id)?;
        v.params("params", &req.params)?;
        v.checkpoint("checkpoint", &req.checkpoint)?;
        let lifetime_ms = req.lifetime_ms.map(|ms| v.ttl("lifetime_ms", ms)).transpose()?;
        let op =
            GameOp::CreateBoard { board_id: req.board_id, params: req.params, checkpoint: req.checkpoint, lifetime_ms };
        let (h, b) = self.board_op(req.shard_id, req.write, op, "create").await?;
        Ok(pb::CreateBoardResponse { header: Some(h), board: Some(b) })
    }

    async fn assign(&self, req: pb::AssignBoardRequest) -> Result<pb::AssignBoardResponse, ServiceError> {
        let v = &self.ctx.validator;
        v.id("board_id", &req.board_id)?;
        v.id("server_id", &req.server_id)?;
        v.text("request_id", &req.request_id, true)?;
        let fence = if req.election.is_empty() {
            if req.election_term != 0 {
                return Err(ServiceError::invalid(Reason::InvalidArgument, "election_term given without election"));
            }
            None
        } else {
            v.id("election", &req.election)?;
            Some((req.election, Term(req.election_term)))
        };
        let op = GameOp::AssignBoard(Assign {
            board_id: req.board_id,
            server_id: req.server_id,
            expected_epoch: Epoch(req.expected_epoch),
            request_id: req.request_id,
            fence,
        });
        let (h, b) = self.board_op(req.shard_id, req.write, op, "assign").await?;
        Ok(pb::AssignBoardResponse { header: Some(h), board: Some(b) })
    }

    async fn sync(&self, req: pb::SyncBoardRequest) -> Result<pb::SyncBoardResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("board_id", &req.board_id)?;
        self.ctx.validator.checkpoint("checkpoint", &req.checkpoint)?;
        let write = write_id(req.write)?;
        let op = GameOp::SyncBoard {
            board_id: req.board_id,
            epoch: Epoch(req.epoch),
            seq: Seq(req.seq),
            checkpoint: req.checkpoint,
        };
        let (revision, reply) = shard.submit_once(write, SmRequest::Game(op)).await?;
        match game_reply(&shard, "sync", reply)? {
            GameReply::Synced { seq, written } => {
                Ok(pb::SyncBoardResponse { header: header(&shard, revision), seq: seq.0, written })
            }
            other => Err(unexpected(&shard, "sync", other)),
        }
    }

    async fn get(&self, req: pb::GetBoardRequest) -> Result<pb::GetBoardResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("board_id", &req.board_id)?;
        read_barrier(&shard, req.serializable).await?;
        // Under the hub lock so that the owner record and the checkpoint are from one revision.
        let hub = shard.hub.lock();
        let revision = hub.revision;
        let read = |k: bytes::Bytes| shard.reader.get(&k).map_err(|e| read_error(&shard, e));
        let Some(kv) = read(key(BOARD_PREFIX, &req.board_id))? else {
            drop(hub);
            return Err(rejected(&shard, Rejection::BoardNotFound { board_id: req.board_id }));
        };
        let ckpt = read(key(CKPT_PREFIX, &req.board_id))?;
        drop(hub);
        let checkpoint = match ckpt {
            Some(c) => {
                let c: CheckpointRecord = decode_kv(&shard, &c)?;
                Some(pb::Checkpoint { seq: c.seq.0, epoch: c.epoch.0, data: c.data })
            }
            None => None,
        };
        Ok(pb::GetBoardResponse { header: header(&shard, revision), board: Some(from_kv(&shard, &kv)?), checkpoint })
    }

    async fn list(&self, req: pb::ListBoardsRequest) -> Result<pb::ListBoardsResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        if !req.owner.is_empty() {
            self.ctx.validator.id("owner", &req.owner)?;
        }
        if !req.page_token.is_empty() {
            self.ctx.validator.id("page_token", &req.page_token)?;
        }
        let limit = self.ctx.validator.limit(req.limit)?;
        read_barrier(&shard, req.serializable).await?;
        let end = prefix_end(BOARD_PREFIX);
        let mut start = key(BOARD_PREFIX, &req.page_token).to_vec();
        if !req.page_token.is_empty() {
            start.push(0); // strictly after the token
        }
        // One page is one snapshot: at most `limit` board rows (and RANGE_PAGE_BYTES) are scanned
        // under the hub lock, so with an owner filter a page may hold fewer boards than `limit`,
        // even none, and still name a next page.
        let owner = req.owner;
        let ((boards, next_page_token), revision) = read_snapshot(&shard, move |s, locked| {
            let page = s
                .reader
                .range(locked, &start, end.as_deref(), limit, false, RANGE_PAGE_BYTES)
                .map_err(|e| read_error(s, e))?;
            let mut boards = Vec::new();
            for kv in &page.kvs {
                let b = from_kv(s, kv)?;
                if owner.is_empty() || b.owner.as_ref().is_some_and(|o| o.server_id == owner) {
                    boards.push(b);
                }
            }
            let next = match (&page.next, page.kvs.last()) {
                (Some(_), Some(last)) => id_of(BOARD_PREFIX, &last.key),
                _ => String::new(),
            };
            Ok((boards, next))
        })
        .await?;
        Ok(pb::ListBoardsResponse { header: header(&shard, revision), boards, next_page_token })
    }

    async fn release(&self, req: pb::ReleaseBoardRequest) -> Result<pb::ReleaseBoardResponse, ServiceError> {
        self.ctx.validator.id("board_id", &req.board_id)?;
        self.ctx.validator.id("server_id", &req.server_id)?;
        let op = GameOp::ReleaseBoard { board_id: req.board_id, server_id: req.server_id, epoch: Epoch(req.epoch) };
        let (h, b) = self.board_op(req.shard_id, req.write, op, "release").await?;
        Ok(pb::ReleaseBoardResponse { header: Some(h), board: Some(b) })
    }

    async fn delete(&self, req: pb::DeleteBoardRequest) -> Result<pb::DeleteBoardResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("board_id", &req.board_id)?;
        let write = write_id(req.write)?;
        let op = GameOp::DeleteBoard { board_id: req.board_id, expected_epoch: req.expected_epoch.map(Epoch) };
        let (revision, _) = shard.submit_once(write, SmRequest::Game(op)).await?;
        Ok(pb::DeleteBoardResponse { header: header(&shard, revision) })
    }

    async fn watch_assignments(
        &self,
        req: pb::WatchAssignmentsRequest,
    ) -> Result<Out<pb::WatchAssignmentsResponse>, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("server_id", &req.server_id)?;
        shard.read_barrier().await?;
        let server = req.server_id.clone();
        let (events, revision, sub) = snapshot_then_watch(&shard, KeyFilter::prefix(BOARD_PREFIX), move |s, locked| {
            let mut out = Vec::new();
            for kv in scan(s, locked, BOARD_PREFIX)? {
                let b = from_kv(s, &kv)?;
                if b.owner.as_ref().is_some_and(|o| o.server_id == server) {
                    out.push(pb::AssignmentEvent {
                        r#type: pb::assignment_event::Type::Gained as i32,
                        board_id: b.board_id,
                        epoch: b.epoch,
                        revision: kv.mod_revision,
                    });
                }
            }
            Ok(out)
        })
        .await?;
        let first = pb::WatchAssignmentsResponse { header: header(&shard, revision), snapshot: true, events };
        Ok(forward(shard, sub, Some(first), Assignments { server: req.server_id }, Duration::from_secs(3600)))
    }
}

struct Assignments {
    server: String,
}

impl Assignments {
    fn owner_epoch(&self, shard: &Shard, kv: Option<&KeyValue>) -> Result<Option<Epoch>, ServiceError> {
        let Some(kv) = kv else { return Ok(None) };
        let r: BoardRecord = decode_kv(shard, kv)?;
        Ok(r.owner.filter(|o| o.server_id == self.server).map(|_| r.epoch))
    }
}

impl Convert<pb::WatchAssignmentsResponse> for Assignments {
    fn events(
        &mut self,
        shard: &Shard,
        events: &[Event],
    ) -> Result<Option<pb::WatchAssignmentsResponse>, ServiceError> {
        use pb::assignment_event::Type;
        let mut out = Vec::new();
        for e in events {
            let before = self.owner_epoch(shard, e.prev.as_ref())?;
            let (after, epoch_now) = match e.kind {
                EventKind::Put => {
                    let r: BoardRecord = decode_kv(shard, &e.kv)?;
                    (r.owner.as_ref().is_some_and(|o| o.server_id == self.server).then_some(r.epoch), Some(r.epoch))
                }
                EventKind::Delete => (None, None),
            };
            let board_id = id_of(BOARD_PREFIX, &e.kv.key);
            let event = |t: Type, epoch: Epoch| pb::AssignmentEvent {
                r#type: t as i32,
                board_id: board_id.clone(),
                epoch: epoch.0,
                revision: e.revision,
            };
            match (before, after) {
                (_, Some(epoch)) if before != Some(epoch) => out.push(event(Type::Gained, epoch)),
                (Some(old), None) => out.push(event(Type::Lost, epoch_now.unwrap_or(old))),
                _ => {}
            }
        }
        let Some(last) = events.last() else { return Ok(None) };
        Ok((!out.is_empty()).then(|| pb::WatchAssignmentsResponse {
            header: header(shard, last.revision),
            snapshot: false,
            events: out,
        }))
    }

    fn progress(&mut self, _shard: &Shard, _revision: u64) -> Option<pb::WatchAssignmentsResponse> {
        None
    }
}

#[tonic::async_trait]
impl Boards for BoardsService {
    type WatchAssignmentsStream = Out<pb::WatchAssignmentsResponse>;

    async fn create(&self, r: Request<pb::CreateBoardRequest>) -> Result<Response<pb::CreateBoardResponse>, Status> {
        self.ctx.instrumented("CreateBoard", BoardsService::create(self, r.into_inner())).await
    }

    async fn assign(&self, r: Request<pb::AssignBoardRequest>) -> Result<Response<pb::AssignBoardResponse>, Status> {
        self.ctx.instrumented("AssignBoard", BoardsService::assign(self, r.into_inner())).await
    }

    async fn sync(&self, r: Request<pb::SyncBoardRequest>) -> Result<Response<pb::SyncBoardResponse>, Status> {
        self.ctx.instrumented("SyncBoard", BoardsService::sync(self, r.into_inner())).await
    }

    async fn get(&self, r: Request<pb::GetBoardRequest>) -> Result<Response<pb::GetBoardResponse>, Status> {
        self.ctx.instrumented("GetBoard", BoardsService::get(self, r.into_inner())).await
    }

    async fn list(&self, r: Request<pb::ListBoardsRequest>) -> Result<Response<pb::ListBoardsResponse>, Status> {
        self.ctx.instrumented("ListBoards", BoardsService::list(self, r.into_inner())).await
    }

    async fn release(&self, r: Request<pb::ReleaseBoardRequest>) -> Result<Response<pb::ReleaseBoardResponse>, Status> {
        self.ctx.instrumented("ReleaseBoard", BoardsService::release(self, r.into_inner())).await
    }

    async fn delete(&self, r: Request<pb::DeleteBoardRequest>) -> Result<Response<pb::DeleteBoardResponse>, Status> {
        self.ctx.instrumented("DeleteBoard", BoardsService::delete(self, r.into_inner())).await
    }

    async fn watch_assignments(
        &self,
        r: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        self.ctx.instrumented("WatchAssignments", BoardsService::watch_assignments(self, r.into_inner())).await
    }
}
