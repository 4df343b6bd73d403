//! Scripted fakes of the lease, KV watch and board services: each call takes the next answer
//! from a shared script (then a default), and every request is recorded with the instant it
//! arrived, so tests can check what the client sent and when.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use hypercache_proto::error_info::status_with_info;
use hypercache_proto::v1::boards_server::Boards;
use hypercache_proto::v1::kv_server::Kv;
use hypercache_proto::v1::lease_server::Lease;
use hypercache_proto::v1::*;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status, Streaming};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn stream_of<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> BoxStream<T> {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

fn header(revision: u64) -> Option<ResponseHeader> {
    Some(ResponseHeader { shard_id: 0, revision, node_id: 1, raft_term: 1 })
}

fn refusal(code: Code, message: &str, info: ErrorInfo) -> Status {
    status_with_info(code, message, &ErrorInfo { not_applied: true, ..info })
}

fn no_leader() -> Status {
    refusal(Code::Unavailable, "no leader", ErrorInfo { reason: "NO_LEADER".into(), ..Default::default() })
}

fn lease_not_found() -> Status {
    refusal(Code::NotFound, "lease not found", ErrorInfo { reason: "LEASE_NOT_FOUND".into(), ..Default::default() })
}

/// A shared script: the next answer, or the default once the queue is empty.
pub struct Script<A, R> {
    pub answers: VecDeque<A>,
    pub default: A,
    /// What each call asked, with the instant it arrived.
    pub received: Vec<(Instant, R)>,
}

impl<A: Clone, R> Script<A, R> {
    pub fn new(answers: impl IntoIterator<Item = A>, default: A) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Script { answers: answers.into_iter().collect(), default, received: Vec::new() }))
    }

    fn next(&mut self, request: R) -> A {
        self.received.push((Instant::now(), request));
        self.answers.pop_front().unwrap_or_else(|| self.default.clone())
    }
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("script lock")
}

// ---------------------------------------------------------------------------------------------
// Leases

/// How the fake answers one keepalive.
#[derive(Clone, Debug)]
pub enum KeepAliveAnswer {
    /// `ttl_ms`, sent after `delay`.
    Ttl { ttl_ms: i64, delay: Duration },
    /// ttl_ms = 0: the lease is gone.
    Gone,
    /// The stream ends with LEASE_NOT_FOUND.
    NotFound,
    /// The stream ends with NO_LEADER.
    NoLeader,
    /// No answer at all (the stream stays open).
    Hang,
}

pub type LeaseScript = Arc<Mutex<Script<KeepAliveAnswer, u64>>>;

#[derive(Clone)]
pub struct LeaseFake {
    pub script: LeaseScript,
    /// Counts grants and revokes.
    pub writes: Arc<Mutex<u32>>,
}

impl LeaseFake {
    pub fn new(script: LeaseScript) -> Self {
        LeaseFake { script, writes: Arc::default() }
    }
}

#[tonic::async_trait]
impl Lease for LeaseFake {
    async fn grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        *lock(&self.writes) += 1;
        let ttl_ms = request.into_inner().ttl_ms;
        Ok(Response::new(LeaseGrantResponse { header: header(1), id: 7, ttl_ms }))
    }

    /// Lease 7 exists; any other is not found.
    async fn revoke(&self, request: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        *lock(&self.writes) += 1;
        if request.into_inner().id != 7 {
            return Err(lease_not_found());
        }
        Ok(Response::new(LeaseRevokeResponse { header: header(2), deleted_keys: 1 }))
    }

    type KeepAliveStream = BoxStream<LeaseKeepAliveResponse>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let script = self.script.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let answer = lock(&script).next(req.id);
                let reply = match answer {
                    KeepAliveAnswer::Ttl { ttl_ms, delay } => {
                        tokio::time::sleep(delay).await;
                        Ok(LeaseKeepAliveResponse { header: header(1), id: req.id, ttl_ms })
                    }
                    KeepAliveAnswer::Gone => Ok(LeaseKeepAliveResponse { header: header(1), id: req.id, ttl_ms: 0 }),
                    KeepAliveAnswer::NotFound => Err(lease_not_found()),
                    KeepAliveAnswer::NoLeader => Err(no_leader()),
                    KeepAliveAnswer::Hang => continue,
                };
                let last = reply.is_err();
                if tx.send(reply).await.is_err() || last {
                    break;
                }
            }
            // Keep the response stream open until the client goes away.
            tx.closed().await;
        });
        Ok(Response::new(stream_of(rx)))
    }

    async fn keep_alive_once(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let answer = lock(&self.script).next(id);
        match answer {
            KeepAliveAnswer::Ttl { ttl_ms, delay } => {
                tokio::time::sleep(delay).await;
                Ok(Response::new(LeaseKeepAliveResponse { header: header(1), id, ttl_ms }))
            }
            KeepAliveAnswer::Gone => Ok(Response::new(LeaseKeepAliveResponse { header: header(1), id, ttl_ms: 0 })),
            KeepAliveAnswer::NotFound => Err(lease_not_found()),
            KeepAliveAnswer::NoLeader => Err(no_leader()),
            KeepAliveAnswer::Hang => std::future::pending().await,
        }
    }

    async fn time_to_live(
        &self,
        _: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

// ---------------------------------------------------------------------------------------------
// KV watch

/// How one watch stream behaves: it serves the history from the requested start revision
/// minus `rewind` (a misbehaving server replaying old events), one revision per message,
/// `messages` messages, then ends as `end` says.
#[derive(Clone, Debug)]
pub struct StreamPlan {
    pub rewind: u64,
    pub messages: usize,
    pub end: StreamEnd,
}

#[derive(Clone, Debug)]
pub enum StreamEnd {
    /// The stream ends cleanly.
    Close,
    /// The stream ends with a transport-like error (no ErrorInfo).
    Reset,
    /// WATCHER_TOO_SLOW with `ErrorInfo.revision` = the next revision it would have sent.
    TooSlow,
    /// Stays open, sending nothing more.
    Idle,
}

pub struct WatchState {
    /// `history[i]` holds the events of revision `i + 1`.
    pub history: Vec<Vec<Event>>,
    /// Start revisions below this are COMPACTED.
    pub oldest: u64,
    pub plans: VecDeque<StreamPlan>,
    pub default_plan: StreamPlan,
    /// (server name, start_revision) of every watch call.
    pub calls: Vec<(&'static str, u64)>,
    pub ranges: u32,
}

pub type WatchScript = Arc<Mutex<WatchState>>;

/// `n` revisions of puts on key "k"; revision 4 writes two keys (one revision, two events).
pub fn history(n: u64) -> Vec<Vec<Event>> {
    let put = |key: &str, rev: u64| Event {
        r#type: event::Type::Put as i32,
        kv: Some(KeyValue {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(format!("v{rev}")),
            create_revision: 1,
            mod_revision: rev,
            version: rev,
            lease: 0,
        }),
        prev_kv: None,
    };
    (1..=n).map(|rev| if rev == 4 { vec![put("k", rev), put("k2", rev)] } else { vec![put("k", rev)] }).collect()
}

pub fn watch_script(
    history: Vec<Vec<Event>>,
    oldest: u64,
    plans: Vec<StreamPlan>,
    default_plan: StreamPlan,
) -> WatchScript {
    Arc::new(Mutex::new(WatchState {
        history,
        oldest,
        plans: plans.into(),
        default_plan,
        calls: Vec::new(),
        ranges: 0,
    }))
}

#[derive(Clone)]
pub struct WatchFake {
    pub name: &'static str,
    pub script: WatchScript,
}

#[tonic::async_trait]
impl Kv for WatchFake {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn compare_and_swap(
        &self,
        _: Request<CompareAndSwapRequest>,
    ) -> Result<Response<CompareAndSwapResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    /// Reports the last revision of the history as the current one.
    async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let mut state = lock(&self.script);
        state.ranges += 1;
        let current = state.history.len() as u64;
        Ok(Response::new(RangeResponse { header: header(current), kvs: vec![], continuation: Bytes::new() }))
    }

    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let start = request.into_inner().start_revision;
        let (plan, history, oldest) = {
            let mut state = lock(&self.script);
            state.calls.push((self.name, start));
            let plan = state.plans.pop_front().unwrap_or_else(|| state.default_plan.clone());
            (plan, state.history.clone(), state.oldest)
        };
        if start < oldest {
            let info = ErrorInfo { reason: "COMPACTED".into(), oldest_revision: oldest, ..Default::default() };
            return Err(refusal(Code::OutOfRange, &format!("revision {start} is compacted; oldest is {oldest}"), info));
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let first = start.saturating_sub(plan.rewind).max(1);
            let mut next = first;
            for _ in 0..plan.messages {
                let Some(events) = history.get((next - 1) as usize) else { break };
                let message = WatchResponse { header: header(next), events: events.clone(), progress: false };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                next += 1;
            }
            match plan.end {
                StreamEnd::Close => {}
                StreamEnd::Reset => {
                    let _ = tx.send(Err(Status::unavailable("connection reset by peer"))).await;
                }
                StreamEnd::TooSlow => {
                    let info = ErrorInfo { reason: "WATCHER_TOO_SLOW".into(), revision: next, ..Default::default() };
                    let _ = tx.send(Err(refusal(Code::ResourceExhausted, "watcher too slow", info))).await;
                }
                StreamEnd::Idle => tx.closed().await,
            }
        });
        Ok(Response::new(stream_of(rx)))
    }
}

// ---------------------------------------------------------------------------------------------
// Boards

/// How the fake answers one sync.
#[derive(Clone, Debug)]
pub enum SyncAnswer {
    Ok,
    /// NO_LEADER (not applied).
    NoLeader,
    /// OUTCOME_UNKNOWN (the sync may have been applied), answered after `delay`.
    Unknown {
        delay: Duration,
    },
    /// STALE_EPOCH with the current owner.
    StaleEpoch {
        owner: &'static str,
        epoch: u64,
        incarnation: u64,
    },
    BoardNotFound,
}

/// (epoch, seq, data) of a sync.
pub type SyncCall = (u64, u64, Bytes);
pub type BoardsScript = Arc<Mutex<Script<SyncAnswer, SyncCall>>>;

#[derive(Clone)]
pub struct BoardsFake {
    pub script: BoardsScript,
}

fn board_not_found() -> Status {
    refusal(Code::NotFound, "board not found", ErrorInfo { reason: "BOARD_NOT_FOUND".into(), ..Default::default() })
}

#[tonic::async_trait]
impl Boards for BoardsFake {
    async fn create(&self, _: Request<CreateBoardRequest>) -> Result<Response<CreateBoardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn assign(&self, _: Request<AssignBoardRequest>) -> Result<Response<AssignBoardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn sync(&self, request: Request<SyncBoardRequest>) -> Result<Response<SyncBoardResponse>, Status> {
        let req = request.into_inner();
        let answer = lock(&self.script).next((req.epoch, req.seq, req.checkpoint.clone()));
        match answer {
            SyncAnswer::Ok => Ok(Response::new(SyncBoardResponse { header: header(9), seq: req.seq, written: true })),
            SyncAnswer::NoLeader => Err(no_leader()),
            SyncAnswer::Unknown { delay } => Err({
                tokio::time::sleep(delay).await;
                status_with_info(
                    Code::Unavailable,
                    "proposal in flight when leadership was lost",
                    &ErrorInfo { reason: "OUTCOME_UNKNOWN".into(), not_applied: false, ..Default::default() },
                )
            }),
            SyncAnswer::StaleEpoch { owner, epoch, incarnation } => {
                let info = ErrorInfo {
                    reason: "STALE_EPOCH".into(),
                    owner: owner.into(),
                    epoch,
                    incarnation,
                    ..Default::default()
                };
                let message = format!("epoch {} of board {} is stale", req.epoch, req.board_id);
                Err(refusal(Code::FailedPrecondition, &message, info))
            }
            SyncAnswer::BoardNotFound => Err(board_not_found()),
        }
    }

    async fn get(&self, _: Request<GetBoardRequest>) -> Result<Response<GetBoardResponse>, Status> {
        Err(board_not_found())
    }

    async fn list(&self, _: Request<ListBoardsRequest>) -> Result<Response<ListBoardsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn release(&self, _: Request<ReleaseBoardRequest>) -> Result<Response<ReleaseBoardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete(&self, _: Request<DeleteBoardRequest>) -> Result<Response<DeleteBoardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchAssignmentsStream = BoxStream<WatchAssignmentsResponse>;

    async fn watch_assignments(
        &self,
        _: Request<WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}
