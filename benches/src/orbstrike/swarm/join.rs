//! How players get onto boards: the two routes, joining, and opening a Play stream.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use orbstrike::proto::v1 as pb;
use pb::game_server_client::GameServerClient;
use pb::orchestrator_client::OrchestratorClient;
use pb::play_request::Msg;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::orbstrike::common::with_client_id;

/// How long a join may keep being refused with "not here yet" before it fails.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a player reaches its board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `GameServer.Play` on the board's game server.
    Direct,
    /// `Orchestrator.Play`, proxied by an orchestrator.
    Proxied,
}

/// The connections players use: to the game server (direct) and to the orchestrators.
#[derive(Clone)]
pub struct Links {
    pub direct: Vec<Channel>,
    pub proxied: Vec<Channel>,
}

impl Links {
    fn channel(&self, route: Route, n: usize) -> Result<Channel, Status> {
        let pool = match route {
            Route::Direct => &self.direct,
            Route::Proxied => &self.proxied,
        };
        if pool.is_empty() {
            return Err(Status::failed_precondition(format!("no {route:?} connection configured")));
        }
        Ok(pool[n % pool.len()].clone())
    }
}

/// A player that joined a board.
#[derive(Debug, Clone)]
pub struct Joined {
    pub route: Route,
    pub game_id: String,
    pub name: String,
    pub player_id: u32,
    /// The orchestrator's token (proxied players only).
    pub token: Bytes,
}

/// One board and the players the swarm plays on it.
#[derive(Debug, Clone)]
pub struct BoardPlan {
    pub game_id: String,
    pub players: Vec<Joined>,
}

/// Joins one player, retrying answers that mean "not served yet" until the patience runs out.
pub async fn join(links: &Links, route: Route, game_id: &str, name: &str, n: usize) -> Result<Joined, Status> {
    let deadline = Instant::now() + JOIN_PATIENCE;
    let mut wait = Duration::from_millis(25);
    loop {
        let channel = links.channel(route, n)?;
        let attempt = match route {
            Route::Direct => {
                let request = pb::AddPlayerRequest { game_id: game_id.to_string(), name: name.to_string() };
                let mut client = GameServerClient::new(channel);
                let call = client.add_player(request);
                match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Ok(r) => r.map(|r| (r.into_inner().player_id, Bytes::new())),
                    Err(_) => Err(Status::deadline_exceeded("AddPlayer took more than 10 s")),
                }
            }
            Route::Proxied => {
                let request =
                    with_client_id(pb::JoinGameRequest { game_id: game_id.to_string(), name: name.to_string() });
                let mut client = OrchestratorClient::new(channel);
                let call = client.join_game(request);
                match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Ok(r) => r.map(|r| {
                        let r = r.into_inner();
                        (r.player_id, r.token)
                    }),
                    Err(_) => Err(Status::deadline_exceeded("JoinGame took more than 10 s")),
                }
            }
        };
        match attempt {
            Ok((player_id, token)) => {
                return Ok(Joined { route, game_id: game_id.to_string(), name: name.to_string(), player_id, token })
            }
            // A game server answers NOT_FOUND until it has loaded a board it was just given,
            // UNAVAILABLE while loading it.
            Err(s) if matches!(s.code(), Code::NotFound | Code::Unavailable | Code::DeadlineExceeded) => {
                if Instant::now() + wait > deadline {
                    return Err(s);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(s) => return Err(s),
        }
    }
}

/// Joins `players` players to each game, `concurrency` joins at a time; `route_of(i)` says how
/// player `i` of a board plays.
pub async fn join_all(
    links: &Links,
    games: &[String],
    players: usize,
    route_of: fn(usize) -> Route,
    concurrency: usize,
) -> anyhow::Result<Vec<BoardPlan>> {
    let slots: Arc<Vec<(usize, usize)>> =
        Arc::new((0..games.len()).flat_map(|g| (0..players).map(move |p| (g, p))).collect());
    let games = Arc::new(games.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, slots.len().max(1)) {
        let (slots, games, next, links) = (slots.clone(), games.clone(), next.clone(), links.clone());
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(g, p)) = slots.get(i) else { return Ok::<_, anyhow::Error>(out) };
                let name = format!("hcb-{g}-{p}");
                let joined = join(&links, route_of(p), &games[g], &name, i)
                    .await
                    .map_err(|s| anyhow::anyhow!("joining {} as {name}: {:?} {}", games[g], s.code(), s.message()))?;
                out.push((g, joined));
            }
        });
    }
    let mut plans: Vec<BoardPlan> =
        games.iter().map(|g| BoardPlan { game_id: g.clone(), players: Vec::with_capacity(players) }).collect();
    while let Some(done) = workers.join_next().await {
        for (g, joined) in done.map_err(|e| anyhow::anyhow!("a join worker failed: {e}"))?? {
            plans[g].players.push(joined);
        }
    }
    Ok(plans)
}

pub(super) type UpdateStream = Pin<Box<dyn Stream<Item = Option<Result<pb::PlayUpdate, Status>>> + Send>>;

/// An open Play stream: where to send inputs, where updates arrive (`None` last: it ended).
pub(super) struct Opened {
    pub(super) inputs: mpsc::Sender<pb::PlayRequest>,
    pub(super) updates: UpdateStream,
}

pub(super) async fn open(links: &Links, joined: &Joined, n: usize) -> Result<Opened, Status> {
    let (tx, rx) = mpsc::channel(16);
    let hello = match joined.route {
        Route::Direct => {
            pb::Hello { token: Bytes::new(), game_id: joined.game_id.clone(), player_id: joined.player_id }
        }
        Route::Proxied => pb::Hello { token: joined.token.clone(), ..Default::default() },
    };
    // A new channel has room for the hello.
    let _ = tx.try_send(pb::PlayRequest { msg: Some(Msg::Hello(hello)) });
    let channel = links.channel(joined.route, n)?;
    let call = async {
        match joined.route {
            Route::Direct => GameServerClient::new(channel).play(ReceiverStream::new(rx)).await,
            Route::Proxied => OrchestratorClient::new(channel).play(ReceiverStream::new(rx)).await,
        }
    };
    let response = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| Status::deadline_exceeded("opening Play took more than 10 s"))??;
    let updates = response.into_inner().map(Some).chain(tokio_stream::once(None));
    Ok(Opened { inputs: tx, updates: Box::pin(updates) })
}
