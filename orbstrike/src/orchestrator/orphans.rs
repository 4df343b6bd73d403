//! Orphaned boards, judged from board scans: which boards have no usable owner ([`classify`])
//! and since when ([`OrphanTracker`]), so that the failover master (`failover.rs`) moves each one
//! once it is due. Pure: no I/O, no clock of its own (the caller passes `now`).

use std::collections::HashMap;
use std::time::Duration;

use hypercache_client::{Board, Epoch, Incarnation};
use tokio::time::Instant;

use super::placement::Placement;

/// Why a board has no usable owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanKind {
    /// Released by its owner (epoch > 0).
    Released,
    /// Created but never assigned (epoch 0).
    Unassigned,
    /// The owner is not registered.
    OwnerGone,
    /// The owner is registered under another incarnation than the one it was assigned under.
    Reincarnated { registered: Incarnation, assigned: Incarnation },
}

/// A board the failover master should move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub board_id: String,
    pub epoch: Epoch,
    pub owner: Option<String>,
    pub kind: OrphanKind,
}

/// What is wrong with a board's owner, judged against the registry view.
pub fn classify(board: &Board, placement: &Placement) -> Option<OrphanKind> {
    match board.owner.as_ref().filter(|o| !o.server_id.is_empty()) {
        None if board.epoch == Epoch(0) => Some(OrphanKind::Unassigned),
        None => Some(OrphanKind::Released),
        Some(owner) => {
            let assigned = owner.incarnation;
            match placement.live(&owner.server_id) {
                None => Some(OrphanKind::OwnerGone),
                Some(s) if s.incarnation != assigned => {
                    Some(OrphanKind::Reincarnated { registered: s.incarnation, assigned })
                }
                Some(_) => None,
            }
        }
    }
}

/// Remembers since when each board has been an orphan (at its current epoch).
#[derive(Debug)]
pub struct OrphanTracker {
    margin: Duration,
    since: HashMap<String, (Epoch, Instant)>,
}

impl OrphanTracker {
    pub fn new(margin: Duration) -> OrphanTracker {
        OrphanTracker { margin, since: HashMap::new() }
    }

    /// Takes a scan (with a synced registry view) and returns the orphans due for a move at `now`.
    pub fn observe(&mut self, boards: &[Board], placement: &Placement, now: Instant) -> Vec<Orphan> {
        let mut since = HashMap::new();
        let mut due = Vec::new();
        for board in boards {
            let Some(kind) = classify(board, placement) else { continue };
            let epoch = board.epoch;
            let first = match self.since.get(&board.board_id) {
                Some((seen, at)) if *seen == epoch => *at,
                _ => now,
            };
            since.insert(board.board_id.clone(), (epoch, first));
            let wait = if kind == OrphanKind::Released { Duration::ZERO } else { self.margin };
            if now.saturating_duration_since(first) >= wait {
                due.push(Orphan {
                    board_id: board.board_id.clone(),
                    epoch,
                    owner: board.owner.as_ref().map(|o| o.server_id.clone()),
                    kind,
                });
            }
        }
        self.since = since;
        due
    }

    /// The earliest instant after `now` at which an orphan seen so far becomes due, if any.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.since.values().map(|(_, first)| *first + self.margin).filter(|at| *at > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::placement::LiveServer;
    use hypercache_client::BoardOwner;

    fn board(id: &str, owner: Option<(&str, u64)>, epoch: u64) -> Board {
        Board {
            board_id: id.into(),
            owner: owner.map(|(s, i)| BoardOwner { server_id: s.into(), incarnation: Incarnation(i) }),
            epoch: Epoch(epoch),
            ..Default::default()
        }
    }

    fn view() -> Placement {
        let mut p = Placement::new();
        let a = LiveServer { server_id: "a".into(), address: "a:1".into(), capacity: 9, incarnation: Incarnation(2) };
        p.replace_servers([a]);
        p
    }

    #[test]
    fn classification() {
        let p = view();
        assert_eq!(classify(&board("g", Some(("a", 2)), 1), &p), None);
        assert_eq!(classify(&board("g", None, 0), &p), Some(OrphanKind::Unassigned));
        assert_eq!(classify(&board("g", None, 4), &p), Some(OrphanKind::Released));
        assert_eq!(classify(&board("g", Some(("dead", 1)), 1), &p), Some(OrphanKind::OwnerGone));
        assert_eq!(
            classify(&board("g", Some(("a", 1)), 1), &p),
            Some(OrphanKind::Reincarnated { registered: Incarnation(2), assigned: Incarnation(1) })
        );
    }

    #[test]
    fn released_boards_move_at_once_and_dead_owners_after_the_margin() {
        let p = view();
        let margin = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut t = OrphanTracker::new(margin);
        let boards = vec![
            board("healthy", Some(("a", 2)), 1),
            board("released", None, 3),
            board("dead", Some(("gone", 1)), 1),
            board("new", None, 0),
        ];
        let due: Vec<String> = t.observe(&boards, &p, t0).into_iter().map(|o| o.board_id).collect();
        assert_eq!(due, vec!["released"]);
        let half = t.observe(&boards, &p, t0 + margin / 2);
        assert_eq!(half.len(), 1);
        // The scanner wakes exactly when the waiting orphans become due.
        assert_eq!(t.next_due(t0 + margin / 2), Some(t0 + margin));
        let due: Vec<String> = t.observe(&boards, &p, t0 + margin).into_iter().map(|o| o.board_id).collect();
        assert_eq!(due, vec!["released", "dead", "new"]);
        assert_eq!(t.next_due(t0 + margin), None);
        assert_eq!(OrphanTracker::new(margin).next_due(t0), None);
    }

    #[test]
    fn the_clock_restarts_when_the_epoch_changes_or_the_board_recovers() {
        let p = view();
        let margin = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut t = OrphanTracker::new(margin);
        t.observe(&[board("g", Some(("gone", 1)), 1)], &p, t0);
        // Moved (by someone) onto another dead server: a new epoch, a new wait.
        assert!(t.observe(&[board("g", Some(("gone2", 1)), 2)], &p, t0 + margin).is_empty());
        // Healthy for one scan, then orphaned again: the wait starts over.
        t.observe(&[board("g", Some(("a", 2)), 2)], &p, t0 + margin * 2);
        assert!(t.observe(&[board("g", Some(("gone", 1)), 2)], &p, t0 + margin * 3).is_empty());
        assert_eq!(t.observe(&[board("g", Some(("gone", 1)), 2)], &p, t0 + margin * 4).len(), 1);
    }
}
