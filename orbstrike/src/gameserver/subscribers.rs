//! The players' outbound streams of one board.
//!
//! After every tick each connected player gets one `PlayUpdate` (the tick, its own ack seq, and a
//! body): a full snapshot when it joins or needs a resync, otherwise the tick's delta. A player
//! that died gets a `GameOver` and its stream ends.
//!
//! Nothing here may block the tick, so every stream has a small bounded queue and is fed with
//! `try_send`. A player whose queue is full misses that update; since a delta only makes sense
//! on top of every earlier one, it is marked for a resync and gets a fresh snapshot as soon as
//! its queue has room again. Memory per player is bounded by the queue, whatever the network does.
//!
//! The last message of a stream (game over, "MOVED", superseded) must not be lost to a full
//! queue, so it is handed to a short-lived task that waits for room, bounded by a timeout.

use std::collections::HashMap;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::proto::v1 as pb;
use crate::rules::{Board, PlayerId, StepOutcome};

/// Updates queued per player stream: about a second at 30 Hz.
pub(crate) const UPDATE_QUEUE: usize = 32;
/// How long the last message of a stream may wait for room in its queue.
const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type UpdateSender = mpsc::Sender<Result<pb::PlayUpdate, Status>>;

struct Subscriber {
    updates: UpdateSender,
    needs_snapshot: bool,
    /// The ack seq of the last update sent (a dead player's game over repeats it).
    last_ack: u64,
    /// Dropped with the subscriber: tells the stream's input forwarder to stop reading.
    _done: oneshot::Sender<()>,
    _counted: Counted,
}

/// Keeps the server's play-streams gauge exact: counted while the subscriber exists, however
/// it is removed (game over, closed, superseded, board stopped).
struct Counted(IntGauge);

impl Counted {
    fn new(gauge: &IntGauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The connected players of one board.
pub(crate) struct Subscribers {
    game_id: String,
    by_player: HashMap<PlayerId, Subscriber>,
    /// The server's `play_streams` gauge.
    streams: IntGauge,
}

/// Sends the last message of a stream, waiting (off the tick) for room if the queue is full.
pub(crate) fn send_final(updates: UpdateSender, item: Result<pb::PlayUpdate, Status>) {
    match updates.try_send(item) {
        Err(mpsc::error::TrySendError::Full(item)) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(FINAL_SEND_TIMEOUT, updates.send(item)).await;
            });
        }
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

impl Subscribers {
    pub(crate) fn new(game_id: &str, streams: IntGauge) -> Subscribers {
        Subscribers { game_id: game_id.to_string(), by_player: HashMap::new(), streams }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_player.len()
    }

    /// Connects `player`; it gets a snapshot after the next tick. A stream the player already
    /// had (e.g. before an orchestrator re-routed it) is ended as superseded.
    pub(crate) fn add(&mut self, player: PlayerId, updates: UpdateSender, done: oneshot::Sender<()>) {
        let new = Subscriber {
            updates,
            needs_snapshot: true,
            last_ack: 0,
            _done: done,
            _counted: Counted::new(&self.streams),
        };
        if let Some(old) = self.by_player.insert(player, new) {
            send_final(
                old.updates,
                Err(Status::aborted(format!("superseded by a newer Play stream of player {player}"))),
            );
        }
    }

    /// Sends the tick's updates; returns how many updates were dropped for full queues.
    pub(crate) fn publish(&mut self, board: &Board, outcome: &StepOutcome) -> u64 {
        let tick = outcome.tick;
        for death in &outcome.removed {
            if let Some(s) = self.by_player.remove(&death.player) {
                let update = pb::PlayUpdate {
                    tick,
                    ack_seq: s.last_ack,
                    body: Some(pb::play_update::Body::GameOver(death.reason.to_wire())),
                };
                // Dropping the sender after the game over ends the stream.
                send_final(s.updates, Ok(update));
            }
        }
        if self.by_player.is_empty() {
            return 0;
        }
        let delta = pb::Delta {
            changed: outcome.changed.iter().filter_map(|id| board.player(*id)).map(pb::Player::from).collect(),
            removed: outcome.removed.iter().map(|d| d.player.0).collect(),
        };
        let mut snapshot: Option<pb::Snapshot> = None;
        let mut dropped = 0;
        let mut closed = Vec::new();
        for (id, s) in &mut self.by_player {
            let ack_seq = board.acked_seq(*id);
            let body = if s.needs_snapshot {
                let snap = snapshot.get_or_insert_with(|| pb::Snapshot {
                    game_id: self.game_id.clone(),
                    params: Some(pb::GameParams::from(board.params())),
                    players: board.players().map(pb::Player::from).collect(),
                });
                pb::play_update::Body::Snapshot(snap.clone())
            } else {
                pb::play_update::Body::Delta(delta.clone())
            };
            match s.updates.try_send(Ok(pb::PlayUpdate { tick, ack_seq, body: Some(body) })) {
                Ok(()) => {
                    s.needs_snapshot = false;
                    s.last_ack = ack_seq;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.needs_snapshot = true;
                    dropped += 1;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed.push(*id),
            }
        }
        for id in closed {
            self.by_player.remove(&id);
        }
        dropped
    }

    /// Ends every stream with `item()` as its last message.
    pub(crate) fn close_all(&mut self, item: impl Fn() -> Result<pb::PlayUpdate, Status>) {
        for (_, s) in self.by_player.drain() {
            send_final(s.updates, item());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{validate_params, Direction};

    fn board() -> Board {
        let params = pb::GameParams {
            arena_radius: 1000.0,
            max_players: 8,
            speed: 100.0,
            player_radius: 10.0,
            ring_radius: 30.0,
            tick_hz: 10,
        };
        Board::new(validate_params(&params, 30).expect("valid"), 1)
    }

    /// Subscribers of board "g1" and the play-streams gauge they keep.
    fn subscribers() -> (Subscribers, IntGauge) {
        let gauge = IntGauge::new("play_streams", "test").expect("gauge");
        (Subscribers::new("g1", gauge.clone()), gauge)
    }

    fn body(u: &pb::PlayUpdate) -> &pb::play_update::Body {
        u.body.as_ref().expect("body")
    }

    #[tokio::test]
    async fn snapshot_first_then_deltas_and_a_resync_after_a_full_queue() {
        let mut b = board();
        let a = b.add_player("a").unwrap();
        let (mut subs, _) = subscribers();
        let (tx, mut rx) = mpsc::channel(2);
        subs.add(a, tx, oneshot::channel().0);
        b.apply_input(a, 1, Direction::Up, false).unwrap();
        let out = b.step();
        assert_eq!(subs.publish(&b, &out), 0);
        let first = rx.recv().await.expect("update").expect("ok");
        assert_eq!((first.tick, first.ack_seq), (1, 1));
        assert!(
            matches!(body(&first), pb::play_update::Body::Snapshot(s) if s.game_id == "g1" && s.players.len() == 1)
        );
        let out = b.step();
        subs.publish(&b, &out);
        let second = rx.recv().await.expect("update").expect("ok");
        assert!(
            matches!(body(&second), pb::play_update::Body::Delta(d) if d.changed.len() == 1 && d.changed[0].id == a.0)
        );
        // Nobody reads: two fit, the third is dropped and the player is marked for a resync.
        for _ in 0..2 {
            let out = b.step();
            assert_eq!(subs.publish(&b, &out), 0);
        }
        let out = b.step();
        assert_eq!(subs.publish(&b, &out), 1);
        assert!(matches!(body(&rx.recv().await.unwrap().unwrap()), pb::play_update::Body::Delta(_)));
        assert!(matches!(body(&rx.recv().await.unwrap().unwrap()), pb::play_update::Body::Delta(_)));
        let out = b.step();
        subs.publish(&b, &out);
        let resync = rx.recv().await.unwrap().unwrap();
        assert_eq!(resync.tick, 6);
        assert!(matches!(body(&resync), pb::play_update::Body::Snapshot(_)), "a resync is a snapshot");
    }

    #[tokio::test]
    async fn a_dead_player_gets_game_over_and_its_stream_ends() {
        let mut b = board();
        let a = b.add_player("a").unwrap();
        let (mut subs, streams) = subscribers();
        let (tx, mut rx) = mpsc::channel(4);
        subs.add(a, tx, oneshot::channel().0);
        assert_eq!(streams.get(), 1);
        b.remove_player(a).unwrap();
        let out = b.step();
        subs.publish(&b, &out);
        let over = rx.recv().await.unwrap().unwrap();
        assert!(
            matches!(body(&over), pb::play_update::Body::GameOver(g) if g.reason == pb::GameOverReason::Exited as i32)
        );
        assert!(rx.recv().await.is_none(), "the stream ends after the game over");
        assert_eq!(subs.len(), 0);
        assert_eq!(streams.get(), 0, "the ended stream is no longer counted");
    }

    #[tokio::test]
    async fn a_second_stream_supersedes_the_first() {
        let (mut subs, streams) = subscribers();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, _rx2) = mpsc::channel(4);
        subs.add(PlayerId(1), tx1, oneshot::channel().0);
        subs.add(PlayerId(1), tx2, oneshot::channel().0);
        let status = rx1.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert!(rx1.recv().await.is_none());
        assert_eq!(subs.len(), 1);
        assert_eq!(streams.get(), 1, "the superseded stream is no longer counted");
        subs.close_all(|| Err(Status::unavailable("stopping")));
        assert_eq!(streams.get(), 0);
    }
}
