//! The public `Orchestrator` gRPC service: CreateGame, JoinGame, ExitGame, ListGames and
//! WatchStats here; Play in `proxy`.
//!
//! Join and exit go straight to the owning game server over the pooled channel (the original
//! queued them in one Redis hash that every server deleted, losing joins). Any failure that
//! means "the board is elsewhere or moving" (MOVED, an unreachable server, a server that has
//! not loaded the board yet) re-resolves the owner and retries until `reroute_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use hypercache_client::{AssignBoard, CreateBoard, Epoch, Reason};
use tokio::time::{timeout, Instant};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::error::Error;
use super::game::{self, new_request_id};
use super::proxy;
use super::route::{classify_failure, resolve, Backoff, Failure, Wanted};
use super::shared::Shared;
use super::token::Claims;
use crate::proto::v1 as pb;
use pb::game_server_client::GameServerClient;

/// Games per ListGames page when the request says 0, and the most it may ask for.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;
/// Servers tried for one CreateGame before giving up.
const PLACEMENT_ATTEMPTS: usize = 3;
/// Longest single call to a game server.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `x-client-id` used as a rate-limit key (longer ones are cut).
const MAX_CLIENT_ID: usize = 128;

pub type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::Stats, Status>> + Send>>;

pub struct OrchestratorService {
    shared: Arc<Shared>,
}

impl OrchestratorService {
    pub fn new(shared: Arc<Shared>) -> OrchestratorService {
        OrchestratorService { shared }
    }

    fn finish<T>(&self, method: &str, started: Instant, result: Result<T, Error>) -> Result<Response<T>, Status> {
        let code = result.as_ref().map_or_else(Error::code, |_| tonic::Code::Ok);
        self.shared.metrics.observe(method, code, Some(started.elapsed()));
        if let Err(e) = &result {
            tracing::debug!(method, error = %e, "request failed");
        }
        result.map(Response::new).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl pb::orchestrator_server::Orchestrator for OrchestratorService {
    async fn create_game(
        &self,
        request: Request<pb::CreateGameRequest>,
    ) -> Result<Response<pb::CreateGameResponse>, Status> {
        let started = Instant::now();
        let result = create_game(&self.shared, request).await;
        self.finish("CreateGame", started, result)
    }

    async fn join_game(&self, request: Request<pb::JoinGameRequest>) -> Result<Response<pb::JoinGameResponse>, Status> {
        let started = Instant::now();
        let result = join_game(&self.shared, request.into_inner()).await;
        self.finish("JoinGame", started, result)
    }

    async fn exit_game(&self, request: Request<pb::ExitGameRequest>) -> Result<Response<pb::ExitGameResponse>, Status> {
        let started = Instant::now();
        let result = exit_game(&self.shared, request.into_inner()).await;
        self.finish("ExitGame", started, result)
    }

    type PlayStream = proxy::PlayStream;

    async fn play(&self, request: Request<Streaming<pb::PlayRequest>>) -> Result<Response<Self::PlayStream>, Status> {
        let result = proxy::play(self.shared.clone(), request).await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.shared.metrics.observe("Play", code, None);
        result
    }

    async fn list_games(
        &self,
        request: Request<pb::ListGamesRequest>,
    ) -> Result<Response<pb::ListGamesResponse>, Status> {
        let started = Instant::now();
        let result = list_games(&self.shared, request.into_inner()).await;
        self.finish("ListGames", started, result)
    }

    type WatchStatsStream = StatsStream;

    async fn watch_stats(&self, _: Request<pb::WatchStatsRequest>) -> Result<Response<Self::WatchStatsStream>, Status> {
        self.shared.metrics.observe("WatchStats", tonic::Code::Ok, None);
        Ok(Response::new(stats_stream(&self.shared)))
    }
}

/// The rate-limit key: `x-client-id` if given, else the peer IP.
fn client_key<T>(request: &Request<T>) -> String {
    let id = request.metadata().get("x-client-id").and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        return format!("id:{}", id.chars().take(MAX_CLIENT_ID).collect::<String>());
    }
    request.remote_addr().map_or_else(|| "unknown".to_string(), |a| format!("ip:{}", a.ip()))
}

async fn create_game(
    shared: &Shared,
    request: Request<pb::CreateGameRequest>,
) -> Result<pb::CreateGameResponse, Error> {
    let client = client_key(&request);
    let req = request.into_inner();
    let params = game::validate_params(req.params.as_ref(), shared.config.default_tick_hz)?;
    let lifetime = game::validate_lifetime(req.lifetime_ms)?;
    shared.limiter().check(&client, Instant::now()).map_err(|e| Error::ResourceExhausted(e.to_string()))?;
    {
        // Refuse before creating anything if there is nowhere to put the game.
        let placement = shared.placement();
        if !placement.is_synced() && placement.server_count() == 0 {
            return Err(Error::Unavailable("the game-server registry is not loaded yet; try again".into()));
        }
        placement.choose(&[]).map_err(|e| Error::ResourceExhausted(e.to_string()))?;
    }
    let game_id = game::new_game_id();
    let board = CreateBoard {
        board_id: game_id.clone(),
        params: game::encode_params(&params),
        checkpoint: game::initial_checkpoint(&params),
        lifetime,
    };
    shared.store.create_board(board).await?;
    match place(shared, &game_id).await {
        Ok(server_id) => {
            tracing::debug!(game = %game_id, server = %server_id, "game created");
            Ok(pb::CreateGameResponse { game_id, server_id })
        }
        Err(e) => {
            // Leave no unplaced game behind for a client that saw an error (only if still
            // unassigned: an assignment that did land wins).
            if let Err(d) = shared.store.delete_board(&game_id, Some(Epoch(0))).await {
                tracing::debug!(game = %game_id, error = %d, "cleaning up an unplaced game failed");
            }
            Err(e)
        }
    }
}

/// Assigns a new board (epoch 0) to the least-loaded live server; returns the owner.
async fn place(shared: &Shared, game_id: &str) -> Result<String, Error> {
    let mut excluded: Vec<String> = Vec::new();
    for _ in 0..PLACEMENT_ATTEMPTS {
        let exclude: Vec<&str> = excluded.iter().map(String::as_str).collect();
        let target = shared
            .placement()
            .reserve(game_id, &exclude, Instant::now())
            .map_err(|e| Error::ResourceExhausted(e.to_string()))?;
        let assign = AssignBoard {
            board_id: game_id.to_string(),
            server_id: target.server_id.clone(),
            expected_epoch: Epoch(0),
            request_id: new_request_id(),
            election: None,
        };
        match shared.store.assign_board(assign).await {
            Ok(board) => return Ok(board.owner.map_or(target.server_id, |o| o.server_id)),
            Err(e) => {
                shared.placement().unreserve(game_id);
                if e.is_reason(Reason::ServerNotLive) {
                    excluded.push(target.server_id);
                    continue;
                }
                if e.is_reason(Reason::StaleEpoch) || e.may_have_been_applied() {
                    // Assigned by the failover master meanwhile, or by our own lost attempt.
                    let owner = shared.store.get_board(game_id, false).await?.and_then(|r| r.board.owner);
                    if let Some(owner) = owner.filter(|o| !o.server_id.is_empty()) {
                        return Ok(owner.server_id);
                    }
                }
                return Err(e.into());
            }
        }
    }
    Err(Error::ResourceExhausted(format!(
        "no live game server accepted the game after {PLACEMENT_ATTEMPTS} attempts (tried {})",
        excluded.join(", ")
    )))
}

/// Calls the game server that owns `game_id`, following moves until `deadline`.
async fn call_owner<T, F, Fut>(shared: &Shared, game_id: &str, deadline: Instant, mut call: F) -> Result<T, Error>
where
    F: FnMut(GameServerClient<Channel>) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let mut wanted = Wanted::Any;
    let mut backoff = Backoff::default();
    let mut wait = Duration::ZERO;
    loop {
        let route = resolve(shared, game_id, wanted, wait, deadline).await?;
        let client = shared.pool.client(&route.address)?;
        let limit = deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(100), CALL_TIMEOUT);
        let status = match timeout(limit, call(client)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded(format!("no answer within {} ms", limit.as_millis())),
        };
        match classify_failure(&status) {
            Failure::Final => return Err(Error::GameServer { server: route.server_id, status }),
            Failure::Moved => {
                wanted = Wanted::NewerThan(route.epoch);
                wait = Duration::ZERO;
            }
            Failure::Broken | Failure::NotFound => {
                wanted = Wanted::Any;
                wait = backoff.next_delay();
            }
        }
        tracing::debug!(game = game_id, server = %route.server_id, %status, "game server call failed; retrying");
        if Instant::now() + wait >= deadline {
            return Err(Error::Unavailable(format!(
                "game {game_id:?}: its game server {} did not serve the request in time (last answer: {})",
                route.server_id,
                status.message()
            )));
        }
    }
}

async fn join_game(shared: &Shared, req: pb::JoinGameRequest) -> Result<pb::JoinGameResponse, Error> {
    game::validate_game_id(&req.game_id)?;
    game::validate_name(&req.name)?;
    let deadline = Instant::now() + shared.config.reroute_timeout;
    let add = pb::AddPlayerRequest { game_id: req.game_id.clone(), name: req.name };
    let added = call_owner(shared, &req.game_id, deadline, |mut client| {
        let add = add.clone();
        async move { client.add_player(add).await }
    })
    .await?;
    let expires_at_ms = game::now_ms().saturating_add(u64::try_from(shared.config.token_ttl.as_millis()).unwrap_or(0));
    let claims = Claims { game_id: req.game_id, player_id: added.player_id, expires_at_ms };
    let token = shared.tokens.sign(&claims).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(pb::JoinGameResponse { player_id: claims.player_id, token: token.into(), token_expires_at_ms: expires_at_ms })
}

async fn exit_game(shared: &Shared, req: pb::ExitGameRequest) -> Result<pb::ExitGameResponse, Error> {
    let claims = shared.tokens.verify(&req.token, game::now_ms()).map_err(|e| Error::Unauthenticated(e.to_string()))?;
    let deadline = Instant::now() + shared.config.reroute_timeout;
    let remove = pb::RemovePlayerRequest { game_id: claims.game_id.clone(), player_id: claims.player_id };
    call_owner(shared, &claims.game_id, deadline, |mut client| {
        let remove = remove.clone();
        async move {
            match client.remove_player(remove).await {
                // The player is not on the board (already dead or exited): exiting is idempotent.
                Err(s) if classify_failure(&s) == Failure::NotFound => Ok(Response::new(pb::RemovePlayerResponse {})),
                other => other,
            }
        }
    })
    .await?;
    Ok(pb::ExitGameResponse {})
}

async fn list_games(shared: &Shared, req: pb::ListGamesRequest) -> Result<pb::ListGamesResponse, Error> {
    let limit = match req.limit {
        0 => DEFAULT_LIST_LIMIT,
        l if l > MAX_LIST_LIMIT => {
            return Err(Error::InvalidArgument(format!(
                "limit = {l} exceeds the maximum of {MAX_LIST_LIMIT} games per page"
            )))
        }
        l => l,
    };
    let token = (!req.page_token.is_empty()).then_some(req.page_token);
    let page = shared.store.list_boards(None, limit, token, false).await?;
    Ok(pb::ListGamesResponse {
        games: page.boards.iter().map(game::summary).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    })
}

/// Every published Stats (the latest first, if any), until shutdown.
fn stats_stream(shared: &Shared) -> StatsStream {
    let state = (shared.stats.clone(), shared.shutdown.clone(), true);
    Box::pin(futures::stream::unfold(state, |(mut stats, mut shutdown, first)| async move {
        if first {
            let current = stats.borrow_and_update().clone();
            if let Some(s) = current {
                return Some((Ok(s), (stats, shutdown, false)));
            }
        }
        loop {
            let changed = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => false,
                changed = stats.changed() => changed.is_ok(),
            };
            if !changed {
                return None;
            }
            let current = stats.borrow_and_update().clone();
            if let Some(s) = current {
                return Some((Ok(s), (stats, shutdown, false)));
            }
        }
    }))
}
