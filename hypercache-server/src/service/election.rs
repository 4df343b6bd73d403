//! `hypercache.v1.Election`: Campaign, Resign, Leader, Observe.
//!
//! Campaign is a loop of atomic attempts: the state machine either makes the candidate leader
//! (with the next term) or names the current leader; in the second case the service waits for
//! the leader row to change (resignation or lease expiry) and tries again. It also stops waiting
//! when the candidate's own lease is gone. The caller's gRPC deadline bounds the whole wait.

use std::time::Duration;

use hypercache_proto::v1 as pb;
use hypercache_proto::v1::election_server::Election;
use tonic::{Request, Response, Status};

use super::ctx::{header, read_barrier, read_error, unexpected, Ctx};
use super::game_common::{decode_kv, game_reply, rejected, snapshot_then_watch};
use super::stream::{forward, Convert, Out};
use super::wire::write_id;
use crate::error::ServiceError;
use crate::machine::command::Request as SmRequest;
use crate::machine::command::{GameOp, GameReply, Rejection};
use crate::machine::game_ids::Term;
use crate::machine::game_records::{key, LeaderRecord, LeaderView, LEADER_PREFIX, TERM_PREFIX};
use crate::machine::overlay::{Event, EventKind};
use crate::shard::Shard;
use crate::types::{KeyValue, LeaseId};
use crate::watch_hub::KeyFilter;

/// How often a waiting campaign checks that its own lease still exists.
const LEASE_CHECK: Duration = Duration::from_millis(250);

pub struct ElectionService {
    ctx: Ctx,
}

fn leader(v: LeaderView) -> pb::ElectionLeader {
    pb::ElectionLeader { candidate: v.candidate, lease: v.lease.0, term: v.term.0 }
}

fn leader_of(shard: &Shard, kv: &KeyValue) -> Result<pb::ElectionLeader, ServiceError> {
    let r: LeaderRecord = decode_kv(shard, kv)?;
    Ok(pb::ElectionLeader { candidate: r.candidate, lease: kv.lease.0, term: r.term.0 })
}

impl ElectionService {
    pub fn new(ctx: Ctx) -> Self {
        ElectionService { ctx }
    }

    async fn campaign(&self, req: pb::CampaignRequest) -> Result<pb::CampaignResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let node = shard.node_id;
        tokio::select! {
            r = self.campaign_loop(shard, req) => r,
            _ = self.ctx.stopped() => Err(ServiceError::ShuttingDown { node }),
        }
    }

    async fn campaign_loop(
        &self,
        shard: std::sync::Arc<Shard>,
        req: pb::CampaignRequest,
    ) -> Result<pb::CampaignResponse, ServiceError> {
        self.ctx.validator.id("name", &req.name)?;
        self.ctx.validator.text("candidate", &req.candidate, true)?;
        let op = GameOp::Campaign { name: req.name.clone(), candidate: req.candidate, lease: LeaseId(req.lease) };
        loop {
            // Subscribe before trying, so a resignation right after a lost attempt is not missed.
            let mut sub = shard.subscribe(KeyFilter::key(key(LEADER_PREFIX, &req.name)), 0)?;
            // Early returns just drop `sub`; the hub forgets dropped subscriptions.
            // Untracked on purpose: this loop proposes the same campaign again after each lost
            // attempt, which a write id would answer with the first "lost". A campaign is
            // idempotent by (candidate, lease) instead (docs/api.md).
            let (revision, reply) = shard.submit(SmRequest::Game(op.clone())).await?;
            match game_reply(&shard, "campaign", reply)? {
                GameReply::Campaign { won: true, leader: Some(l) } => {
                    return Ok(pb::CampaignResponse { header: header(&shard, revision), leader: Some(leader(l)) });
                }
                GameReply::Campaign { won: false, .. } => {}
                other => return Err(unexpected(&shard, "campaign", other)),
            }
            // Wait for the leader row to be deleted, checking our own lease meanwhile.
            let mut check = tokio::time::interval(LEASE_CHECK);
            let freed = loop {
                tokio::select! {
                    batch = sub.rx.recv() => match batch {
                        Some(events) => if events.iter().any(|e| e.kind == EventKind::Delete) { break true },
                        // Cut off (slow) or reset: just try again.
                        None => break false,
                    },
                    _ = check.tick() => {
                        let ours = shard.reader.lease(LeaseId(req.lease)).map_err(|e| read_error(&shard, e))?;
                        if ours.is_none() {
                            return Err(rejected(&shard, Rejection::LeaseNotFound { id: LeaseId(req.lease) }));
                        }
                    }
                }
            };
            drop(sub);
            tracing::debug!(election = %req.name, freed, "campaign retrying");
        }
    }

    async fn resign(&self, req: pb::ResignRequest) -> Result<pb::ResignResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("name", &req.name)?;
        let write = write_id(req.write)?;
        let (revision, _) =
            shard.submit_once(write, SmRequest::Game(GameOp::Resign { name: req.name, term: Term(req.term) })).await?;
        Ok(pb::ResignResponse { header: header(&shard, revision) })
    }

    async fn leader(&self, req: pb::LeaderRequest) -> Result<pb::LeaderResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("name", &req.name)?;
        read_barrier(&shard, req.serializable).await?;
        let hub = shard.hub.lock();
        let revision = hub.revision;
        let row = shard.reader.get(&key(LEADER_PREFIX, &req.name)).map_err(|e| read_error(&shard, e))?;
        let term_row = shard.reader.get(&key(TERM_PREFIX, &req.name)).map_err(|e| read_error(&shard, e))?;
        drop(hub);
        let last_term = match term_row {
            Some(kv) => decode_kv::<Term>(&shard, &kv)?,
            None => Term(0),
        };
        let leader = row.map(|kv| leader_of(&shard, &kv)).transpose()?;
        Ok(pb::LeaderResponse { header: header(&shard, revision), leader, last_term: last_term.0 })
    }

    async fn observe(&self, req: pb::ObserveRequest) -> Result<Out<pb::ObserveResponse>, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("name", &req.name)?;
        shard.read_barrier().await?;
        let row_key = key(LEADER_PREFIX, &req.name);
        let filter = KeyFilter::key(row_key.clone());
        let (current, revision, sub) = snapshot_then_watch(&shard, filter, move |s, _| {
            s.reader.get(&row_key).map_err(|e| read_error(s, e))?.map(|kv| leader_of(s, &kv)).transpose()
        })
        .await?;
        let first = pb::ObserveResponse { header: header(&shard, revision), leader: current };
        Ok(forward(shard, sub, Some(first), Observer, Duration::from_secs(3600)))
    }
}

struct Observer;

impl Convert<pb::ObserveResponse> for Observer {
    fn events(&mut self, shard: &Shard, events: &[Event]) -> Result<Option<pb::ObserveResponse>, ServiceError> {
        // Only the latest state matters to an observer.
        let Some(last) = events.last() else { return Ok(None) };
        let leader = match last.kind {
            EventKind::Put => Some(leader_of(shard, &last.kv)?),
            EventKind::Delete => None,
        };
        Ok(Some(pb::ObserveResponse { header: header(shard, last.revision), leader }))
    }

    fn progress(&mut self, _shard: &Shard, _revision: u64) -> Option<pb::ObserveResponse> {
        None
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = Out<pb::ObserveResponse>;

    async fn campaign(&self, r: Request<pb::CampaignRequest>) -> Result<Response<pb::CampaignResponse>, Status> {
        self.ctx.instrumented("Campaign", ElectionService::campaign(self, r.into_inner())).await
    }

    async fn resign(&self, r: Request<pb::ResignRequest>) -> Result<Response<pb::ResignResponse>, Status> {
        self.ctx.instrumented("Resign", ElectionService::resign(self, r.into_inner())).await
    }

    async fn leader(&self, r: Request<pb::LeaderRequest>) -> Result<Response<pb::LeaderResponse>, Status> {
        self.ctx.instrumented("Leader", ElectionService::leader(self, r.into_inner())).await
    }

    async fn observe(&self, r: Request<pb::ObserveRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        self.ctx.instrumented("Observe", ElectionService::observe(self, r.into_inner())).await
    }
}
