//! The `orbstrike.v1.GameServer` gRPC service: a thin edge that validates requests, finds the
//! board's task in the table and forwards commands to it.
//!
//! `Play`: the first message must be `hello {game_id, player_id}` (within [`HELLO_TIMEOUT`]);
//! the call answers only once the player's stream is attached to the board, so an unknown
//! player or a board that is not here is the call's own status. Inputs are then forwarded to the
//! board's command queue by a small task per stream; a full queue slows that stream's reading
//! down, never the board. The response stream ends with the player's game over, or with
//! `UNAVAILABLE` "MOVED: ..." when the board stops being served here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::board_task::Command;
use super::error::GameError;
use super::hosted::Shared;
use super::subscribers::UPDATE_QUEUE;
use crate::proto::v1 as pb;
use crate::rules::{validate_name, Direction, PlayerId};
use pb::game_server_server::GameServer as GameServerApi;

/// How long a new Play stream may take to send its hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct GameService {
    pub(crate) shared: Arc<Shared>,
}

impl GameService {
    /// The board stopped (or was never really there) between the lookup and the answer.
    fn stopped(&self, board: &str) -> GameError {
        GameError::Stopped {
            board: board.to_string(),
            server: self.shared.server_id.clone(),
            why: "the board stopped while the request was in flight".into(),
        }
    }

    /// Sends `command` to the board and waits for its answer.
    async fn ask<T>(
        &self,
        board: &str,
        command: impl FnOnce(oneshot::Sender<Result<T, GameError>>) -> Command,
    ) -> Result<T, GameError> {
        self.ask_on(&self.shared.lookup(board)?, board, command).await
    }

    async fn ask_on<T>(
        &self,
        commands: &mpsc::Sender<Command>,
        board: &str,
        command: impl FnOnce(oneshot::Sender<Result<T, GameError>>) -> Command,
    ) -> Result<T, GameError> {
        let (reply, answer) = oneshot::channel();
        commands.send(command(reply)).await.map_err(|_| self.stopped(board))?;
        answer.await.map_err(|_| self.stopped(board))?
    }
}

fn require_game_id(game_id: &str) -> Result<(), GameError> {
    if game_id.is_empty() {
        return Err(GameError::InvalidArgument("game_id is empty".into()));
    }
    Ok(())
}

fn require_player(player_id: u32) -> Result<PlayerId, GameError> {
    if player_id == 0 {
        return Err(GameError::InvalidArgument("player_id is 0; player ids start at 1".into()));
    }
    Ok(PlayerId(player_id))
}

#[tonic::async_trait]
impl GameServerApi for GameService {
    async fn add_player(
        &self,
        request: Request<pb::AddPlayerRequest>,
    ) -> Result<Response<pb::AddPlayerResponse>, Status> {
        let r = request.into_inner();
        require_game_id(&r.game_id)?;
        validate_name(&r.name).map_err(|e| GameError::InvalidArgument(format!("invalid player name: {e}")))?;
        let name = r.name;
        let id = self.ask(&r.game_id, |reply| Command::AddPlayer { name, reply }).await?;
        Ok(Response::new(pb::AddPlayerResponse { player_id: id.0 }))
    }

    async fn remove_player(
        &self,
        request: Request<pb::RemovePlayerRequest>,
    ) -> Result<Response<pb::RemovePlayerResponse>, Status> {
        let r = request.into_inner();
        require_game_id(&r.game_id)?;
        let player = require_player(r.player_id)?;
        self.ask(&r.game_id, |reply| Command::RemovePlayer { player, reply }).await?;
        Ok(Response::new(pb::RemovePlayerResponse {}))
    }

    type PlayStream = ReceiverStream<Result<pb::PlayUpdate, Status>>;

    async fn play(&self, request: Request<Streaming<pb::PlayRequest>>) -> Result<Response<Self::PlayStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded(format!("no hello within {HELLO_TIMEOUT:?}")))??;
        let hello = match first.and_then(|m| m.msg) {
            Some(pb::play_request::Msg::Hello(hello)) => hello,
            _ => return Err(GameError::InvalidArgument("the first Play message must be hello".into()).into()),
        };
        require_game_id(&hello.game_id)?;
        let player = require_player(hello.player_id)?;
        let (updates, stream) = mpsc::channel(UPDATE_QUEUE);
        // The forwarder only holds a weak sender: the stream must end when the board drops its
        // sender (game over, MOVED), not linger because the forwarder is still alive.
        let weak = updates.downgrade();
        let (done, stream_ended) = oneshot::channel();
        let commands = self.shared.lookup(&hello.game_id)?;
        self.ask_on(&commands, &hello.game_id, |reply| Command::Subscribe { player, updates, done, reply }).await?;
        tokio::spawn(forward_inputs(inbound, commands, weak, stream_ended, player));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn server_stats(
        &self,
        _request: Request<pb::ServerStatsRequest>,
    ) -> Result<Response<pb::ServerStatsResponse>, Status> {
        let (boards, players) = self.shared.counts();
        let metrics = &self.shared.metrics;
        Ok(Response::new(pb::ServerStatsResponse {
            server_id: self.shared.server_id.clone(),
            boards,
            players,
            kills: metrics.kills.get(),
            inputs: metrics.inputs.get(),
        }))
    }
}

/// Forwards one player's inputs to its board until the client stops sending, the stream
/// breaks, the board is gone, or the player's update stream has ended (`stream_ended`). Holding
/// the inbound stream any longer would keep the HTTP/2 stream open after the call is over.
async fn forward_inputs(
    mut inbound: Streaming<pb::PlayRequest>,
    commands: mpsc::Sender<Command>,
    updates: mpsc::WeakSender<Result<pb::PlayUpdate, Status>>,
    mut stream_ended: oneshot::Receiver<()>,
    player: PlayerId,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stream_ended => return,
            next = inbound.message() => next,
        };
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return,
        };
        let Some(open) = updates.upgrade() else { return };
        match message.msg {
            Some(pb::play_request::Msg::Input(input)) => {
                let Some(direction) = Direction::from_wire(input.direction) else {
                    let status = Status::invalid_argument(format!("unknown direction {}", input.direction));
                    let _ = open.try_send(Err(status));
                    return;
                };
                drop(open);
                let command = Command::Input { player, seq: input.seq, direction, ring: input.ring };
                if commands.send(command).await.is_err() {
                    return;
                }
            }
            Some(pb::play_request::Msg::Hello(_)) | None => {
                // A repeated hello (or an empty message) changes nothing; ignoring it keeps a
                // re-sending proxy harmless.
            }
        }
    }
}
