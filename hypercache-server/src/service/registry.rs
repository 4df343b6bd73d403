//! `hypercache.v1.Registry`: game servers log in with a lease; orchestrators list and watch them.

use std::collections::BTreeMap;
use std::time::Duration;

use hypercache_proto::v1 as pb;
use hypercache_proto::v1::registry_server::Registry;
use hypercache_proto::Reason;
use tonic::{Request, Response, Status};

use super::ctx::{header, read_barrier, read_snapshot, Ctx};
use super::game_common::{decode_kv, game_reply, scan, snapshot_then_watch};
use super::stream::{forward, Convert, Out};
use super::validate::MAX_LABELS;
use super::wire::write_id;
use crate::error::ServiceError;
use crate::machine::command::Request as SmRequest;
use crate::machine::command::{GameOp, GameReply};
use crate::machine::game_ids::ServerIncarnation;
use crate::machine::game_records::{ServerRecord, SERVER_PREFIX};
use crate::machine::overlay::{Event, EventKind};
use crate::shard::Shard;
use crate::types::KeyValue;
use crate::watch_hub::{HubState, KeyFilter};

pub struct RegistryService {
    ctx: Ctx,
}

fn server(record: ServerRecord, kv: &KeyValue) -> pb::GameServer {
    pb::GameServer {
        server_id: record.server_id,
        address: record.address,
        capacity: record.capacity,
        labels: record.labels.into_iter().collect(),
        lease: kv.lease.0,
        incarnation: record.incarnation.0,
        revision: kv.mod_revision,
    }
}

impl RegistryService {
    pub fn new(ctx: Ctx) -> Self {
        RegistryService { ctx }
    }

    async fn register(&self, req: pb::RegisterRequest) -> Result<pb::RegisterResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        let v = &self.ctx.validator;
        v.id("server_id", &req.server_id)?;
        v.text("address", &req.address, true)?;
        let ttl_ms = v.ttl("ttl_ms", req.ttl_ms)?;
        if req.labels.len() > MAX_LABELS {
            return Err(ServiceError::invalid(
                Reason::InvalidArgument,
                format!("{} labels; the limit is {MAX_LABELS}", req.labels.len()),
            ));
        }
        for (k, val) in &req.labels {
            v.text("label name", k, true)?;
            v.text("label value", val, false)?;
        }
        let write = write_id(req.write)?;
        let op = GameOp::Register {
            server_id: req.server_id,
            address: req.address,
            capacity: req.capacity,
            labels: req.labels.into_iter().collect::<BTreeMap<_, _>>(),
            ttl_ms,
        };
        let (revision, reply) = shard.submit_once(write, SmRequest::Game(op)).await?;
        match game_reply(&shard, "register", reply)? {
            GameReply::Registered { lease, incarnation, ttl_ms } => Ok(pb::RegisterResponse {
                header: header(&shard, revision),
                lease: lease.0,
                incarnation: incarnation.0,
                ttl_ms: i64::try_from(ttl_ms).unwrap_or(i64::MAX),
            }),
            other => Err(super::ctx::unexpected(&shard, "register", other)),
        }
    }

    async fn deregister(&self, req: pb::DeregisterRequest) -> Result<pb::DeregisterResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        self.ctx.validator.id("server_id", &req.server_id)?;
        let write = write_id(req.write)?;
        let op = GameOp::Deregister { server_id: req.server_id, incarnation: ServerIncarnation(req.incarnation) };
        let (revision, _) = shard.submit_once(write, SmRequest::Game(op)).await?;
        Ok(pb::DeregisterResponse { header: header(&shard, revision) })
    }

    fn servers(shard: &Shard, locked: &HubState) -> Result<Vec<pb::GameServer>, ServiceError> {
        scan(shard, locked, SERVER_PREFIX)?.iter().map(|kv| Ok(server(decode_kv(shard, kv)?, kv))).collect()
    }

    async fn list(&self, req: pb::ListServersRequest) -> Result<pb::ListServersResponse, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        read_barrier(&shard, req.serializable).await?;
        // The whole registry is one snapshot (one row per live game server).
        let (servers, revision) = read_snapshot(&shard, Self::servers).await?;
        Ok(pb::ListServersResponse { header: header(&shard, revision), servers })
    }

    async fn watch(&self, req: pb::WatchServersRequest) -> Result<Out<pb::WatchServersResponse>, ServiceError> {
        let shard = self.ctx.shard(req.shard_id)?;
        shard.read_barrier().await?;
        let (servers, revision, sub) =
            snapshot_then_watch(&shard, KeyFilter::prefix(SERVER_PREFIX), Self::servers).await?;
        let first =
            pb::WatchServersResponse { header: header(&shard, revision), snapshot: true, servers, events: vec![] };
        Ok(forward(shard, sub, Some(first), ServerEvents, Duration::from_secs(3600)))
    }
}

struct ServerEvents;

impl Convert<pb::WatchServersResponse> for ServerEvents {
    fn events(&mut self, shard: &Shard, events: &[Event]) -> Result<Option<pb::WatchServersResponse>, ServiceError> {
        let mut out = Vec::new();
        for e in events {
            let (kind, kv) = match (e.kind, &e.prev) {
                (EventKind::Put, _) => (pb::server_event::Type::Up, &e.kv),
                (EventKind::Delete, Some(prev)) => (pb::server_event::Type::Down, prev),
                (EventKind::Delete, None) => continue,
            };
            out.push(pb::ServerEvent {
                r#type: kind as i32,
                server: Some(server(decode_kv(shard, kv)?, kv)),
                revision: e.revision,
            });
        }
        let Some(last) = events.last() else { return Ok(None) };
        Ok((!out.is_empty()).then(|| pb::WatchServersResponse {
            header: header(shard, last.revision),
            snapshot: false,
            servers: vec![],
            events: out,
        }))
    }

    fn progress(&mut self, _shard: &Shard, _revision: u64) -> Option<pb::WatchServersResponse> {
        None
    }
}

#[tonic::async_trait]
impl Registry for RegistryService {
    type WatchStream = Out<pb::WatchServersResponse>;

    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        self.ctx.instrumented("Register", RegistryService::register(self, request.into_inner())).await
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        self.ctx.instrumented("Deregister", RegistryService::deregister(self, request.into_inner())).await
    }

    async fn list(
        &self,
        request: Request<pb::ListServersRequest>,
    ) -> Result<Response<pb::ListServersResponse>, Status> {
        self.ctx.instrumented("ListServers", RegistryService::list(self, request.into_inner())).await
    }

    async fn watch(&self, request: Request<pb::WatchServersRequest>) -> Result<Response<Self::WatchStream>, Status> {
        self.ctx.instrumented("WatchServers", RegistryService::watch(self, request.into_inner())).await
    }
}
