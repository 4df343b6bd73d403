//! The Play proxy: one player's stream, forwarded to whichever game server owns the board, and
//! re-routed without the player reconnecting when the board moves.
//!
//! # Protocol
//!
//! 1. The player's first message must be `hello{token}` (within [`HELLO_TIMEOUT`]). A forged
//!    or tampered token ends the call with UNAUTHENTICATED "invalid token", an expired one with
//!    "token expired". Game and player ids come from the token only.
//! 2. The orchestrator resolves the board's owner (see `route`) and opens `GameServer.Play`
//!    there over the pooled channel, starting with `hello{game_id, player_id}`.
//! 3. Updates flow to the player as they come; inputs flow to the server through a small
//!    buffer. When it is full an input is dropped rather than delaying the stream (inputs are
//!    "latest intent": a newer one supersedes it). The player's response stream
//!    ([`PlayerStream`]) reads the game server's stream itself: an update costs no hop through
//!    the session task, which only hands it each new server stream and hears how it ended.
//! 4. A `GameOver` update is forwarded and ends the player's stream normally; so does a clean
//!    end of the server's stream.
//!
//! # Re-routing
//!
//! When the server's stream fails with UNAVAILABLE "MOVED:..." (the board moved), or with a
//! transport failure (the server died or is unreachable), the session looks up the owner again
//! ("MOVED" waits for an epoch newer than the refusing owner's; a broken connection accepts the
//! same owner again after a backoff), re-opens Play there and keeps forwarding. The new owner's
//! first update is a full snapshot, which the player takes as a resync. The search is bounded by
//! `reroute_timeout` from the break; then the player gets UNAVAILABLE naming why.
//!
//! While re-routing, inputs are read and all but the newest are dropped; the newest is sent
//! right after the new hello, so the player's current intent survives the move. An input whose
//! seq the new owner has already applied (its checkpoint carries the acked seq) is ignored by
//! the server.
//!
//! NOT_FOUND from the *first* owner is final (the player is not on the board); after a move it
//! means "the new owner has not loaded the board yet" and is retried.
//!
//! The token is checked once, at hello; a stream outlives its token's expiry. On orchestrator
//! shutdown every session ends with UNAVAILABLE so the player reconnects through another
//! replica with the same token.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{timeout, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::game::now_ms;
use super::route::{classify_failure, resolve, Backoff, Failure, Wanted};
use super::shared::Shared;
use super::token::Claims;
use crate::proto::v1 as pb;
use pb::play_request::Msg;
use pb::play_update::Body;

/// How long a new stream may take to send hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a game server to accept a Play stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Inputs buffered towards the game server.
const INPUT_BUFFER: usize = 32;

pub type PlayStream = Pin<Box<dyn Stream<Item = Result<pb::PlayUpdate, Status>> + Send>>;

/// Checks the hello and starts the session; the returned stream carries its updates.
pub async fn play(
    shared: Arc<Shared>,
    request: Request<Streaming<pb::PlayRequest>>,
) -> Result<Response<PlayStream>, Status> {
    let mut inbound = request.into_inner();
    let first = match timeout(HELLO_TIMEOUT, inbound.message()).await {
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "no hello within {} s; the first message must be hello{{token}}",
                HELLO_TIMEOUT.as_secs()
            )))
        }
        Ok(Err(status)) => return Err(status),
        Ok(Ok(None)) => return Err(Status::invalid_argument("the stream ended before hello")),
        Ok(Ok(Some(first))) => first,
    };
    let Some(Msg::Hello(hello)) = first.msg else {
        return Err(Status::invalid_argument("the first message must be hello{token}"));
    };
    let claims = shared.tokens.verify(&hello.token, now_ms()).map_err(|e| Status::unauthenticated(e.to_string()))?;
    let (ctl, ctl_rx) = mpsc::channel(2);
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let delivered = Arc::new(AtomicBool::new(false));
    let stream =
        PlayerStream { ctl: ctl_rx, current: None, ended: ended_tx, delivered: delivered.clone(), done: false };
    let span = tracing::info_span!("play", game = %claims.game_id, player = claims.player_id);
    let session = Session { shared, claims, ctl, delivered };
    tokio::spawn(session.run(inbound, ended).instrument(span));
    Ok(Response::new(Box::pin(stream)))
}

/// What the session tells the player's stream.
enum Ctl {
    /// Forward this game server stream from now on.
    Serve(Box<Streaming<pb::PlayUpdate>>),
    /// End the player's stream with this status.
    Fail(Status),
}

/// The player's response stream: forwards the current game server stream and reports to the
/// session how each one ended (a game over or a clean end also ends the player's stream).
struct PlayerStream {
    ctl: mpsc::Receiver<Ctl>,
    current: Option<Streaming<pb::PlayUpdate>>,
    ended: mpsc::UnboundedSender<Ended>,
    /// Set when an update of the current server stream reached the player.
    delivered: Arc<AtomicBool>,
    done: bool,
}

impl Stream for PlayerStream {
    type Item = Result<pb::PlayUpdate, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(server) = this.current.as_mut() {
                match server.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(update))) => {
                        this.delivered.store(true, Ordering::Release);
                        if matches!(update.body, Some(Body::GameOver(_))) {
                            this.current = None;
                            this.done = true;
                            let _ = this.ended.send(Ended::Finished);
                        }
                        return Poll::Ready(Some(Ok(update)));
                    }
                    Poll::Ready(Some(Err(status))) => {
                        this.current = None;
                        let _ = this.ended.send(Ended::Server(status));
                    }
                    Poll::Ready(None) => {
                        this.current = None;
                        this.done = true;
                        let _ = this.ended.send(Ended::Finished);
                        return Poll::Ready(None);
                    }
                    Poll::Pending => {}
                }
            }
            match this.ctl.poll_recv(cx) {
                Poll::Ready(Some(Ctl::Serve(server))) => this.current = Some(*server),
                Poll::Ready(Some(Ctl::Fail(status))) => {
                    this.current = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                // The session is gone (it ended the stream normally).
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// How one server stream ended.
enum Ended {
    PlayerGone,
    /// Game over, or the server ended the stream cleanly.
    Finished,
    Shutdown,
    Server(Status),
}

/// Keeps the play-streams gauge exact however a session ends.
struct Gauge(prometheus::IntGauge);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Session {
    shared: Arc<Shared>,
    claims: Claims,
    ctl: mpsc::Sender<Ctl>,
    delivered: Arc<AtomicBool>,
}

impl Session {
    /// `ended` hears from the player's stream how each server stream ended.
    async fn run(self, mut inbound: Streaming<pb::PlayRequest>, mut ended: mpsc::UnboundedReceiver<Ended>) {
        self.shared.metrics.play_streams.inc();
        let _gauge = Gauge(self.shared.metrics.play_streams.clone());
        let limit = self.shared.config.reroute_timeout;
        let mut deadline = Instant::now() + limit;
        let mut wanted = Wanted::Any;
        let mut wait = Duration::ZERO;
        let mut backoff = Backoff::default();
        let mut latest: Option<pb::Input> = None;
        let mut rerouting = false;
        loop {
            let lookup = resolve(&self.shared, &self.claims.game_id, wanted, wait, deadline);
            let route = match self.while_draining(&mut inbound, &mut latest, lookup).await {
                None => return,
                Some(Ok(route)) => route,
                Some(Err(e)) => return self.fail(e.into()).await,
            };
            let mut client = match self.shared.pool.client(&route.address) {
                Ok(client) => client,
                Err(e) => return self.fail(e.into()).await,
            };
            let (to_server, outbound) = mpsc::channel(INPUT_BUFFER);
            let hello = pb::Hello {
                token: Default::default(),
                game_id: route.game_id.clone(),
                player_id: self.claims.player_id,
            };
            // A new channel has room for these two.
            let _ = to_server.try_send(pb::PlayRequest { msg: Some(Msg::Hello(hello)) });
            if let Some(input) = latest.take() {
                let _ = to_server.try_send(pb::PlayRequest { msg: Some(Msg::Input(input)) });
            }
            let open = timeout(OPEN_TIMEOUT, client.play(ReceiverStream::new(outbound)));
            let status = match self.while_draining(&mut inbound, &mut latest, open).await {
                None => return,
                Some(Err(_)) => Status::deadline_exceeded(format!(
                    "game server {} did not accept the stream within {} s",
                    route.server_id,
                    OPEN_TIMEOUT.as_secs()
                )),
                Some(Ok(Err(status))) => status,
                Some(Ok(Ok(response))) => {
                    tracing::debug!(server = %route.server_id, epoch = route.epoch.0, "streaming");
                    let (end, delivered) = self.pump(&mut inbound, &mut ended, response.into_inner(), to_server).await;
                    if delivered {
                        deadline = Instant::now() + limit;
                        backoff = Backoff::default();
                    }
                    match end {
                        Ended::PlayerGone | Ended::Finished => return,
                        Ended::Shutdown => return self.shutting_down().await,
                        Ended::Server(status) => {
                            if delivered {
                                self.shared.metrics.reroutes.inc();
                                tracing::info!(server = %route.server_id, epoch = route.epoch.0, %status,
                                    "game server stream ended; re-routing");
                            }
                            status
                        }
                    }
                }
            };
            match classify_failure(&status) {
                Failure::Moved => {
                    wanted = Wanted::NewerThan(route.epoch);
                    wait = Duration::ZERO;
                }
                Failure::Broken => {
                    wanted = Wanted::Any;
                    wait = backoff.next_delay();
                }
                Failure::NotFound if rerouting => {
                    wanted = Wanted::Any;
                    wait = backoff.next_delay();
                }
                Failure::NotFound | Failure::Final => return self.fail(status).await,
            }
            rerouting = true;
            if Instant::now() + wait >= deadline {
                let message = format!(
                    "game {:?} could not be reached within {} s (last: {})",
                    self.claims.game_id,
                    limit.as_secs(),
                    status.message()
                );
                return self.fail(Status::unavailable(message)).await;
            }
        }
    }

    /// Hands the server stream to the player's stream, then forwards inputs until that stream
    /// ends or the player leaves; reports whether any update reached the player.
    async fn pump(
        &self,
        inbound: &mut Streaming<pb::PlayRequest>,
        ended: &mut mpsc::UnboundedReceiver<Ended>,
        server: Streaming<pb::PlayUpdate>,
        to_server: mpsc::Sender<pb::PlayRequest>,
    ) -> (Ended, bool) {
        self.delivered.store(false, Ordering::Release);
        let delivered = || self.delivered.load(Ordering::Acquire);
        if self.ctl.send(Ctl::Serve(Box::new(server))).await.is_err() {
            return (Ended::PlayerGone, false);
        }
        // Created once, not per message: this loop runs for every input.
        let shutdown = self.shared.shutdown_started();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return (Ended::Shutdown, delivered()),
                end = ended.recv() => return (end.unwrap_or(Ended::PlayerGone), delivered()),
                _ = self.ctl.closed() => return (Ended::PlayerGone, delivered()),
                msg = inbound.next() => match self.player_input(msg).await {
                    None => return (Ended::PlayerGone, delivered()),
                    Some(input) => match to_server.try_send(pb::PlayRequest { msg: Some(Msg::Input(input)) }) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => self.shared.metrics.dropped_inputs.inc(),
                        // The server stream is ending; how is reported on the other branch.
                        Err(TrySendError::Closed(_)) => {}
                    },
                },
            }
        }
    }

    /// Runs `work` while reading the player's inputs (keeping only the newest), and watching for
    /// the player leaving or shutdown (`None`: stop, the player has been told if needed).
    async fn while_draining<F: Future>(
        &self,
        inbound: &mut Streaming<pb::PlayRequest>,
        latest: &mut Option<pb::Input>,
        work: F,
    ) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                _ = self.shared.shutdown_started() => {
                    self.shutting_down().await;
                    return None;
                }
                _ = self.ctl.closed() => return None,
                msg = inbound.next() => match self.player_input(msg).await {
                    None => return None,
                    Some(input) => {
                        if latest.replace(input).is_some() {
                            self.shared.metrics.dropped_inputs.inc();
                        }
                    }
                },
            }
        }
    }

    /// The input in a player message; `None` when the player is gone or broke the protocol
    /// (and has been told).
    async fn player_input(&self, msg: Option<Result<pb::PlayRequest, Status>>) -> Option<pb::Input> {
        match msg {
            Some(Ok(pb::PlayRequest { msg: Some(Msg::Input(input)) })) => Some(input),
            Some(Ok(_)) => {
                self.fail(Status::invalid_argument("only the first message may be hello; then inputs")).await;
                None
            }
            Some(Err(status)) => {
                tracing::debug!(%status, "player stream broke");
                None
            }
            None => None,
        }
    }

    async fn fail(&self, status: Status) {
        tracing::debug!(%status, "ending player stream");
        let _ = self.ctl.send(Ctl::Fail(status)).await;
    }

    async fn shutting_down(&self) {
        self.fail(Status::unavailable("orchestrator shutting down; reconnect with the same token")).await;
    }
}
