//! Scripted players for demos, load tests and the chaos suite.
//!
//! [`run`] creates `games` games (or joins one existing game), starts `players` players in
//! each, and lets them play for `duration` through the public orchestrator API only: JoinGame,
//! a Play stream with inputs at `input_hz`, ExitGame at the end. Movement is plausible rather
//! than clever (see `steer`): random headings held for 0.5-2 s, a ring now and then, and a turn
//! back toward the centre near the edge. A player that dies joins again.
//!
//! The [`Report`] counts updates received, input-to-update latency (p50/p99/max, from sending
//! seq `s` to the first update with `ack_seq >= s`), errors by `operation:code`, re-routes
//! (full snapshots in the middle of a stream: the orchestrator moved the stream to a board's new
//! owner) and reconnects (streams the bot had to re-open).
//!
//! [`spectate`] draws one game live in the terminal.
//!
//! Not done: the bot does not aim at other players; kills happen by chance.

mod config;
mod connect;
mod player;
mod report;
mod spectate;
mod steer;
mod view;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};
use tonic::{Code, Status};

pub use config::{parse_duration, BotArgs, BotConfig};
pub use report::{percentile, Latency, Report, Reservoir};
pub use spectate::{render, spectate};
pub use steer::{toward, Steering};
pub use view::{Applied, BoardView};

use crate::proto::v1 as pb;
use connect::Orchestrators;
use player::Player;
use report::Recorder;

/// Games created concurrently.
const CREATE_CONCURRENCY: usize = 16;

/// Why a bot run could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{operation} failed: {} ({:?})", status.message(), status.code())]
    Rpc { operation: &'static str, status: Status },
    #[error("writing to the terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

/// Runs the configured players to the end of `config.duration` and reports what they saw.
pub async fn run(config: BotConfig) -> Result<Report, BotError> {
    config.validate()?;
    let orchestrators = Orchestrators::new(&config.orchestrators, &config.client_id)?;
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let deadline = started + config.duration;
    let games = match &config.join {
        Some(game_id) => vec![game_id.clone()],
        None => create_games(&config, &orchestrators, &recorder, deadline).await?,
    };
    recorder.games.store(games.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let input_interval = Duration::from_secs_f64(1.0 / f64::from(config.input_hz));
    let mut players = JoinSet::new();
    for (g, game_id) in games.iter().enumerate() {
        for p in 0..config.players {
            let player = Player {
                orchestrators: orchestrators.clone(),
                recorder: recorder.clone(),
                game_id: game_id.clone(),
                name: format!("{}-{g}-{p}", config.name_prefix),
                input_interval,
                deadline,
            };
            players.spawn(player.run());
        }
    }
    let total = players.len() as u64;
    let mut latencies = Vec::new();
    while let Some(done) = players.join_next().await {
        match done {
            Ok(samples) => latencies.extend(samples),
            Err(e) => tracing::error!(error = %e, "a player task failed"),
        }
    }
    Ok(recorder.report(started.elapsed(), total, latencies))
}

/// Creates the games, retrying rate limits and transient failures until `deadline`.
async fn create_games(
    config: &BotConfig,
    orchestrators: &Orchestrators,
    recorder: &Recorder,
    deadline: Instant,
) -> Result<Vec<String>, BotError> {
    let results: Vec<Result<String, BotError>> = futures::stream::iter(0..config.games)
        .map(|_| create_one(config, orchestrators, recorder, deadline))
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut games = Vec::new();
    for result in results {
        match result {
            Ok(id) => games.push(id),
            // Invalid parameters fail the run; anything else just means fewer games.
            Err(e) if is_invalid(&e) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "a game could not be created"),
        }
    }
    if games.is_empty() {
        return Err(BotError::Rpc {
            operation: "CreateGame",
            status: Status::unavailable("no game could be created before the deadline"),
        });
    }
    Ok(games)
}

fn is_invalid(e: &BotError) -> bool {
    matches!(e, BotError::Rpc { status, .. } if status.code() == Code::InvalidArgument)
}

async fn create_one(
    config: &BotConfig,
    orchestrators: &Orchestrators,
    recorder: &Recorder,
    deadline: Instant,
) -> Result<String, BotError> {
    let mut wait = Duration::from_millis(100);
    loop {
        let request = pb::CreateGameRequest {
            params: Some(config.params),
            lifetime_ms: config.lifetime.map_or(0, |l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
        };
        let mut client = orchestrators.client();
        let status = match timeout(Duration::from_secs(10), client.create_game(orchestrators.request(request))).await {
            Ok(Ok(r)) => return Ok(r.into_inner().game_id),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded("CreateGame timed out"),
        };
        recorder.error("create", &status);
        if status.code() == Code::InvalidArgument || Instant::now() + wait >= deadline {
            return Err(BotError::Rpc { operation: "CreateGame", status });
        }
        sleep_until(Instant::now() + wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}
