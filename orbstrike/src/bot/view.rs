//! A player's mirror of the board, rebuilt from snapshots and kept current by deltas.

use std::collections::BTreeMap;

use crate::proto::v1 as pb;
use pb::play_update::Body;

/// What an update was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Snapshot,
    Delta,
    GameOver,
    Empty,
}

#[derive(Debug, Clone, Default)]
pub struct BoardView {
    pub game_id: String,
    pub params: Option<pb::GameParams>,
    pub tick: u64,
    pub players: BTreeMap<u32, pb::Player>,
}

impl BoardView {
    pub fn apply(&mut self, update: &pb::PlayUpdate) -> Applied {
        self.tick = self.tick.max(update.tick);
        match &update.body {
            Some(Body::Snapshot(s)) => {
                self.tick = update.tick;
                self.game_id = s.game_id.clone();
                self.params = s.params;
                self.players = s.players.iter().map(|p| (p.id, p.clone())).collect();
                Applied::Snapshot
            }
            Some(Body::Delta(d)) => {
                for p in &d.changed {
                    self.players.insert(p.id, p.clone());
                }
                for id in &d.removed {
                    self.players.remove(id);
                }
                Applied::Delta
            }
            Some(Body::GameOver(_)) => Applied::GameOver,
            None => Applied::Empty,
        }
    }

    pub fn position(&self, player_id: u32) -> Option<(f64, f64)> {
        self.players.get(&player_id).map(|p| (p.x, p.y))
    }

    pub fn arena_radius(&self) -> Option<f64> {
        self.params.as_ref().map(|p| p.arena_radius)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(id: u32, x: f64) -> pb::Player {
        pb::Player { id, name: format!("p{id}"), x, ..Default::default() }
    }

    #[test]
    fn snapshots_replace_and_deltas_patch() {
        let mut v = BoardView::default();
        let snap = pb::PlayUpdate {
            tick: 5,
            ack_seq: 0,
            body: Some(Body::Snapshot(pb::Snapshot {
                game_id: "g".into(),
                params: Some(pb::GameParams { arena_radius: 500.0, ..Default::default() }),
                players: vec![player(1, 1.0), player(2, 2.0)],
            })),
        };
        assert_eq!(v.apply(&snap), Applied::Snapshot);
        let delta = pb::PlayUpdate {
            tick: 6,
            ack_seq: 0,
            body: Some(Body::Delta(pb::Delta { changed: vec![player(1, 9.0), player(3, 3.0)], removed: vec![2] })),
        };
        assert_eq!(v.apply(&delta), Applied::Delta);
        assert_eq!(v.position(1), Some((9.0, 0.0)));
        assert_eq!(v.players.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!((v.tick, v.arena_radius()), (6, Some(500.0)));
    }
}
