//! The vote fence of a replica that opened with no Raft state.
//!
//! A node whose volume was lost comes back under its old node id (the StatefulSet ordinal) with
//! an empty log and no vote record, while its groups still count it as a voter. openraft would
//! grant any candidate its vote (an empty log is behind every candidate's) and so let a
//! candidate that misses committed entries win: with three voters, a stale follower plus the
//! wiped node are a majority that does not hold the committed tail (issue 16, defect 1).
//!
//! So a replica that opened empty answers a vote request (before openraft sees it) only when
//! the candidate provably holds everything committed:
//! - a brand-new group: the candidate's last log index is 0 (only the initial membership entry),
//!   so bootstrap is unaffected;
//! - the candidate's last log id is at least the highest commit log id a leader sent this
//!   replica since it opened (Raft's log matching and leader completeness: a log whose last
//!   entry is not older than a committed entry contains it). A leader's commit covers every
//!   entry committed in earlier terms, including any this replica acknowledged before its data
//!   was lost, and later commits needed this replica's real, persisted acknowledgements;
//! - or this replica has itself caught up: its committed index is above 0 and reached that
//!   commit (a replica that initialized a new group and led it never receives an AppendEntries:
//!   its own commits open it). From then on it votes like any replica.
//!
//! Otherwise the vote is refused with `REPLICA_FENCED`: a replica that never heard from a leader
//! since it opened cannot tell a stale candidate from a current one. AppendEntries are always
//! accepted: that is how it catches up, and an entry it acknowledges is one it persisted.
//!
//! Not done here (issue 16 asks for it): stamping the data dir with a cluster id and an
//! incarnation, carrying the expected incarnation in every Raft RPC, and replacing the old
//! voter entry by a learner. Until then a wiped voter that caught up votes again as itself.

use std::sync::{Mutex, PoisonError};

use openraft::LogId;

use crate::types::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The replica had Raft state when it opened, or has caught up since: it votes.
    Open,
    /// Opened with no Raft state; `target` is the highest commit a leader sent it since.
    Fenced { target: Option<LogId<NodeId>> },
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    #[error(
        "REPLICA_FENCED: this replica started with no data (was its volume lost?) and has not heard from a \
         leader yet; it votes in no election of a group with history until it has caught up"
    )]
    NoData,
    #[error(
        "REPLICA_FENCED: this replica started with no data and is catching up (committed {have}, the leader \
         committed {need}); it votes only for a candidate that holds the leader's commit until then"
    )]
    Behind { have: u64, need: LogId<NodeId> },
}

pub struct Fence {
    state: Mutex<State>,
}

impl Fence {
    /// `empty`: the replica opened with no vote, no log and no snapshot.
    pub fn new(empty: bool) -> Fence {
        Fence { state: Mutex::new(if empty { State::Fenced { target: None } } else { State::Open }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is one assignment: a panic cannot leave the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An AppendEntries arrived from a leader that committed `leader_commit`.
    pub fn saw_append(&self, leader_commit: Option<LogId<NodeId>>) {
        let mut state = self.lock();
        if let State::Fenced { target } = *state {
            *state = State::Fenced { target: target.max(leader_commit) };
        }
    }

    /// Why the replica is still catching up after opening empty (None once it has caught up,
    /// or if it opened with data); `committed` is its committed index. For `/readyz`. Caught up
    /// opens the fence for good: under steady writes every append raises the target a moment
    /// before the replica commits it, and readiness must not flap with that.
    pub fn catching_up(&self, committed: u64) -> Option<Fenced> {
        let mut state = self.lock();
        match *state {
            State::Open => None,
            State::Fenced { target } if committed > 0 && committed >= target.map_or(0, |t| t.index) => {
                *state = State::Open;
                None
            }
            State::Fenced { target: Some(need) } => Some(Fenced::Behind { have: committed, need }),
            State::Fenced { target: None } => Some(Fenced::NoData),
        }
    }

    /// Whether the replica may answer a vote request from a candidate whose last log id is
    /// `candidate_last`; `committed` is the replica's own committed index (0: none).
    pub fn may_vote(&self, candidate_last: Option<LogId<NodeId>>, committed: u64) -> Result<(), Fenced> {
        let mut state = self.lock();
        let State::Fenced { target } = *state else { return Ok(()) };
        if candidate_last.map_or(0, |l| l.index) == 0 {
            return Ok(());
        }
        if committed > 0 && committed >= target.map_or(0, |t| t.index) {
            *state = State::Open;
            return Ok(());
        }
        match target {
            Some(t) if candidate_last >= Some(t) => Ok(()),
            Some(t) => Err(Fenced::Behind { have: committed, need: t }),
            None => Err(Fenced::NoData),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn id(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn a_replica_with_data_votes_at_once() {
        assert_eq!(Fence::new(false).may_vote(id(3, 90), 0), Ok(()));
    }

    #[test]
    fn an_empty_replica_votes_in_a_new_group_only() {
        let f = Fence::new(true);
        // Bootstrap: the candidates hold only the initial membership entry.
        assert_eq!(f.may_vote(id(0, 0), 0), Ok(()));
        assert_eq!(f.may_vote(None, 0), Ok(()));
        assert_eq!(f.may_vote(id(2, 7), 0), Err(Fenced::NoData));
    }

    #[test]
    fn a_wiped_replica_votes_only_for_a_candidate_that_holds_the_leaders_commit() {
        let f = Fence::new(true);
        f.saw_append(id(2, 480));
        f.saw_append(id(2, 490));
        f.saw_append(id(1, 20));
        let need = id(2, 490).unwrap();
        // A candidate that missed the committed tail (sequence (a) of issue 16).
        assert_eq!(f.may_vote(id(2, 300), 0), Err(Fenced::Behind { have: 0, need }));
        assert_eq!(f.may_vote(id(1, 900), 0), Err(Fenced::Behind { have: 0, need }));
        // One that holds it (the leader died while this replica caught up).
        assert_eq!(f.may_vote(id(2, 490), 0), Ok(()));
        assert_eq!(f.may_vote(id(3, 10), 0), Ok(()));
        assert_eq!(f.may_vote(id(2, 300), 485), Err(Fenced::Behind { have: 485, need }));
        // Caught up itself: open for good.
        assert_eq!(f.may_vote(id(2, 300), 490), Ok(()));
        assert_eq!(f.may_vote(id(1, 1), 0), Ok(()));
    }

    #[test]
    fn catching_up_is_reported_until_the_leaders_commit_is_reached() {
        let f = Fence::new(true);
        assert_eq!(f.catching_up(0), Some(Fenced::NoData));
        f.saw_append(id(2, 50));
        assert_eq!(f.catching_up(10), Some(Fenced::Behind { have: 10, need: id(2, 50).unwrap() }));
        assert_eq!(f.catching_up(50), None);
        f.saw_append(id(2, 60));
        assert_eq!(f.catching_up(50), None, "caught up once: open for good");
        assert_eq!(Fence::new(false).catching_up(0), None);
    }

    #[test]
    fn a_replica_that_initialized_and_led_its_group_is_open_once_it_committed() {
        // It never receives an AppendEntries: its own commits open it.
        let f = Fence::new(true);
        assert_eq!(f.may_vote(id(1, 5), 3), Ok(()));
    }
}
