//! One scripted player: join, play until game over (then join again) or the deadline, exit.
//!
//! The player sends an input every `1 / input_hz` seconds with a strictly increasing seq (kept
//! across reconnects of the same join, since the board remembers the last applied seq) and
//! measures how long each seq takes to be acknowledged. A full snapshot after the first one of a
//! stream means the orchestrator re-routed the stream to a new owner; an UNAVAILABLE end of the
//! stream (an orchestrator shutting down, say) makes the player re-open Play with the same
//! token on the next orchestrator.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::connect::Orchestrators;
use super::report::{Recorder, Reservoir, SAMPLES_PER_PLAYER};
use super::steer::Steering;
use super::view::{Applied, BoardView};
use crate::proto::v1 as pb;
use pb::play_request::Msg;

/// Inputs awaiting their acknowledgement (older ones are forgotten).
const MAX_PENDING: usize = 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How one Play stream ended.
enum SessionEnd {
    GameOver,
    Deadline,
    /// Re-open Play with the same token.
    Reconnect,
    /// Join again.
    Rejoin,
}

pub struct Player {
    pub orchestrators: Orchestrators,
    pub recorder: Arc<Recorder>,
    pub game_id: String,
    pub name: String,
    pub input_interval: Duration,
    pub deadline: Instant,
}

impl Player {
    /// Plays until the deadline (or until the game is gone); returns latency samples in µs.
    pub async fn run(self) -> Vec<u64> {
        let mut rng = StdRng::from_entropy();
        let mut samples = Reservoir::new(SAMPLES_PER_PLAYER);
        while Instant::now() < self.deadline {
            let Some(joined) = self.join().await else { break };
            let mut seq = 0;
            let mut reconnect_wait = Duration::from_millis(50);
            loop {
                match self.session(&joined, &mut seq, &mut rng, &mut samples).await {
                    SessionEnd::GameOver => {
                        Recorder::count(&self.recorder.game_overs);
                        break;
                    }
                    SessionEnd::Deadline => {
                        self.exit(&joined.token).await;
                        return samples.into_values();
                    }
                    SessionEnd::Reconnect => {
                        Recorder::count(&self.recorder.reconnects);
                        self.pause(reconnect_wait).await;
                        reconnect_wait = (reconnect_wait * 2).min(BACKOFF_MAX);
                    }
                    SessionEnd::Rejoin => {
                        self.pause(Duration::from_millis(100)).await;
                        break;
                    }
                }
            }
        }
        samples.into_values()
    }

    async fn pause(&self, wait: Duration) {
        sleep_until((Instant::now() + wait).min(self.deadline)).await;
    }

    /// Joins, retrying transient refusals; `None` when the game is gone or the deadline passed.
    async fn join(&self) -> Option<pb::JoinGameResponse> {
        let mut wait = Duration::from_millis(100);
        while Instant::now() < self.deadline {
            let request = pb::JoinGameRequest { game_id: self.game_id.clone(), name: self.name.clone() };
            let mut client = self.orchestrators.client();
            let status = match timeout(CALL_TIMEOUT, client.join_game(self.orchestrators.request(request))).await {
                Ok(Ok(response)) => {
                    Recorder::count(&self.recorder.joins);
                    return Some(response.into_inner());
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("JoinGame timed out"),
            };
            self.recorder.error("join", &status);
            if matches!(status.code(), Code::NotFound | Code::InvalidArgument) {
                tracing::warn!(game = %self.game_id, %status, "cannot join; this player stops");
                return None;
            }
            self.pause(wait).await;
            wait = (wait * 2).min(BACKOFF_MAX);
        }
        None
    }

    async fn exit(&self, token: &[u8]) {
        let request = self.orchestrators.request(pb::ExitGameRequest { token: token.to_vec().into() });
        let mut client = self.orchestrators.client();
        match timeout(Duration::from_secs(2), client.exit_game(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => self.recorder.error("exit", &status),
            Err(_) => self.recorder.error("exit", &Status::deadline_exceeded("ExitGame timed out")),
        }
    }

    async fn session(
        &self,
        joined: &pb::JoinGameResponse,
        seq: &mut u64,
        rng: &mut StdRng,
        samples: &mut Reservoir,
    ) -> SessionEnd {
        let (tx, rx) = mpsc::channel(64);
        let hello = pb::Hello { token: joined.token.clone(), ..Default::default() };
        // A new channel has room for the hello.
        let _ = tx.try_send(pb::PlayRequest { msg: Some(Msg::Hello(hello)) });
        let mut client = self.orchestrators.client();
        let opened = tokio::select! {
            _ = sleep_until(self.deadline) => return SessionEnd::Deadline,
            opened = timeout(CALL_TIMEOUT, client.play(self.orchestrators.request(ReceiverStream::new(rx)))) => opened,
        };
        let mut stream = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return self.ended_by(&status),
            Err(_) => return self.ended_by(&Status::deadline_exceeded("opening Play timed out")),
        };
        let mut view = BoardView::default();
        let mut steering = Steering::new(Instant::now());
        let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut ticks = tokio::time::interval(self.input_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut snapshots = 0u32;
        loop {
            tokio::select! {
                _ = sleep_until(self.deadline) => return SessionEnd::Deadline,
                _ = ticks.tick() => {
                    let now = Instant::now();
                    let radius = view.arena_radius().unwrap_or(1000.0);
                    let (direction, ring) = steering.next(view.position(joined.player_id), radius, now, rng);
                    *seq += 1;
                    let input = pb::Input { seq: *seq, direction: direction as i32, ring };
                    if tx.try_send(pb::PlayRequest { msg: Some(Msg::Input(input)) }).is_ok() {
                        Recorder::count(&self.recorder.inputs);
                        pending.push_back((*seq, now));
                        if pending.len() > MAX_PENDING {
                            pending.pop_front();
                        }
                    }
                }
                update = stream.next() => match update {
                    Some(Ok(update)) => {
                        Recorder::count(&self.recorder.updates);
                        let now = Instant::now();
                        while let Some(&(s, sent)) = pending.front() {
                            if s > update.ack_seq {
                                break;
                            }
                            pending.pop_front();
                            let us = u64::try_from(now.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                            samples.add(us, rng);
                        }
                        match view.apply(&update) {
                            Applied::Snapshot => {
                                snapshots += 1;
                                if snapshots > 1 {
                                    Recorder::count(&self.recorder.reroutes);
                                }
                            }
                            Applied::GameOver => return SessionEnd::GameOver,
                            Applied::Delta | Applied::Empty => {}
                        }
                    }
                    Some(Err(status)) => return self.ended_by(&status),
                    None => return SessionEnd::Rejoin,
                },
            }
        }
    }

    fn ended_by(&self, status: &Status) -> SessionEnd {
        self.recorder.error("play", status);
        match status.code() {
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded => SessionEnd::Reconnect,
            _ => SessionEnd::Rejoin,
        }
    }
}
