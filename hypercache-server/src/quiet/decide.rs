//! One replica's quiet state, one round at a time: what the driver saw of it and of the beats,
//! and what it must do. Pure, so every transition is tested without a cluster.

use crate::types::NodeId;

/// What the driver read of one replica this round (from its Raft metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub role: Role,
    /// Term of the replica's current vote.
    pub term: u64,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    /// Leader only: every follower and learner has matched the last entry, this node has
    /// applied it, the membership is not changing (no joint configuration), and no member said
    /// it knows no leader of the shard.
    pub settled: bool,
    /// Leader only: every other member answers beats (none is of a version before them).
    pub members_hold: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Follower or learner: follows a leader's appends.
    Follower,
    /// Candidate, shutting down: never quiet.
    Other,
}

/// A replica's quiet state between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Ticking. `idle_rounds` rounds in a row the leader's log ended at `last_index`, settled.
    Awake { idle_rounds: u32, last_index: u64 },
    /// Leader, not ticking, named in this node's beats.
    Quiet { term: u64, last_index: u64 },
    /// Leader that just woke: ticking again, still named in this round's beats so that the
    /// followers hear its heartbeat before they stop holding.
    Waking { term: u64 },
    /// Follower, not ticking: its quiet leader's beats name it.
    Held,
}

impl State {
    pub const NEW: State = State::Awake { idle_rounds: 0, last_index: 0 };

    /// The term to name this shard with in beats, if it is named.
    pub fn named(&self) -> Option<u64> {
        match self {
            State::Quiet { term, .. } | State::Waking { term } => Some(*term),
            _ => None,
        }
    }
}

/// What the driver does to the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Stop ticking (a leader going quiet, a follower held).
    StopTicking,
    /// Tick again (a follower released, a replica no longer leader or follower).
    Tick,
    /// Tick again and heartbeat now (a quiet leader with something to replicate).
    TickAndHeartbeat,
}

/// One round. `quiet_rounds`: idle rounds before a leader goes quiet; `beat`: the node whose
/// fresh beat names this shard and its term, if any.
pub fn step(state: State, seen: Seen, quiet_rounds: u32, beat: Option<(NodeId, u64)>) -> (State, Action) {
    let awake = State::Awake { idle_rounds: 0, last_index: seen.last_log_index };
    match (state, seen.role) {
        (State::Quiet { term, last_index }, Role::Leader) => {
            if seen.term == term && seen.last_log_index == last_index && seen.settled && seen.members_hold {
                (state, Action::Nothing)
            } else {
                (State::Waking { term }, Action::TickAndHeartbeat)
            }
        }
        (State::Waking { .. }, Role::Leader) => (awake, Action::Nothing),
        (State::Awake { idle_rounds, last_index }, Role::Leader) => {
            let idle = seen.last_log_index == last_index && seen.settled && seen.members_hold;
            if !idle {
                return (awake, Action::Nothing);
            }
            if idle_rounds + 1 >= quiet_rounds {
                (State::Quiet { term: seen.term, last_index }, Action::StopTicking)
            } else {
                (State::Awake { idle_rounds: idle_rounds + 1, last_index }, Action::Nothing)
            }
        }
        (_, Role::Follower) => {
            let hold = beat.is_some_and(|(node, term)| term >= seen.term && seen.leader.is_none_or(|l| l == node));
            match (state, hold) {
                (State::Held, true) => (State::Held, Action::Nothing),
                (State::Held, false) => (awake, Action::Tick),
                (_, true) => (State::Held, Action::StopTicking),
                // A leader that stepped down while quiet ticks again.
                (State::Quiet { .. }, false) => (awake, Action::Tick),
                (_, false) => (awake, Action::Nothing),
            }
        }
        (State::Held | State::Quiet { .. }, _) => (awake, Action::Tick),
        _ => (awake, Action::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(last: u64) -> Seen {
        Seen { role: Role::Leader, term: 4, leader: Some(1), last_log_index: last, settled: true, members_hold: true }
    }

    fn follower(leader: Option<NodeId>) -> Seen {
        Seen { role: Role::Follower, term: 4, leader, last_log_index: 9, settled: false, members_hold: false }
    }

    /// Runs `rounds` rounds of an unchanged leader from `state`.
    fn rounds(mut state: State, seen: Seen, rounds: u32) -> (State, Vec<Action>) {
        let mut actions = Vec::new();
        for _ in 0..rounds {
            let (s, a) = step(state, seen, 3, None);
            state = s;
            actions.push(a);
        }
        (state, actions)
    }

    #[test]
    fn an_idle_settled_leader_goes_quiet_after_its_rounds() {
        let (state, actions) = rounds(State::NEW, leader(9), 4);
        // Round 1 sees index 9 for the first time (NEW remembers 0); rounds 2-4 are idle.
        assert_eq!(actions, vec![Action::Nothing, Action::Nothing, Action::Nothing, Action::StopTicking]);
        assert_eq!(state, State::Quiet { term: 4, last_index: 9 });
        assert_eq!(state.named(), Some(4));
    }

    #[test]
    fn a_leader_with_traffic_or_lagging_members_stays_awake() {
        let mut state = State::NEW;
        for i in 0..10 {
            state = step(state, leader(i), 3, None).0;
        }
        assert!(matches!(state, State::Awake { .. }), "a new entry every round: {state:?}");
        let lagging = Seen { settled: false, ..leader(9) };
        assert!(matches!(rounds(State::NEW, lagging, 10).0, State::Awake { .. }));
        let old_member = Seen { members_hold: false, ..leader(9) };
        assert!(matches!(rounds(State::NEW, old_member, 10).0, State::Awake { .. }));
    }

    #[test]
    fn a_quiet_leader_wakes_on_a_new_entry_and_stays_named_one_round() {
        let quiet = State::Quiet { term: 4, last_index: 9 };
        assert_eq!(step(quiet, leader(9), 3, None), (quiet, Action::Nothing));
        let (state, action) = step(quiet, leader(10), 3, None);
        assert_eq!((state, action), (State::Waking { term: 4 }, Action::TickAndHeartbeat));
        assert_eq!(state.named(), Some(4), "named once more, after its heartbeat");
        let (state, action) = step(state, leader(10), 3, None);
        assert_eq!((state, action), (State::Awake { idle_rounds: 0, last_index: 10 }, Action::Nothing));
        assert_eq!(state.named(), None);
        // A member falling behind (a restarted follower the leader learned about) wakes it too.
        assert_eq!(step(quiet, Seen { settled: false, ..leader(9) }, 3, None).1, Action::TickAndHeartbeat);
    }

    #[test]
    fn a_leader_that_lost_its_leadership_while_quiet_ticks_again() {
        let quiet = State::Quiet { term: 4, last_index: 9 };
        assert_eq!(step(quiet, follower(Some(2)), 3, None).1, Action::Tick);
        let candidate = Seen { role: Role::Other, ..follower(None) };
        assert_eq!(step(quiet, candidate, 3, None).1, Action::Tick);
    }

    #[test]
    fn a_follower_is_held_while_its_leaders_fresh_beat_names_the_shard() {
        let (state, action) = step(State::NEW, follower(Some(1)), 3, Some((1, 4)));
        assert_eq!((state, action), (State::Held, Action::StopTicking));
        assert_eq!(step(state, follower(Some(1)), 3, Some((1, 4))), (State::Held, Action::Nothing));
        // Beats stop (the leader's node died, a link was cut): tick again, and elect.
        assert_eq!(step(state, follower(Some(1)), 3, None).1, Action::Tick);
    }

    #[test]
    fn a_follower_is_not_held_by_the_wrong_node_or_an_old_term() {
        // Another node names the shard: not the leader this follower knows.
        assert_eq!(step(State::NEW, follower(Some(1)), 3, Some((2, 4))).1, Action::Nothing);
        // An older term than this follower's vote: that leadership is over.
        assert_eq!(step(State::NEW, follower(Some(1)), 3, Some((1, 3))).1, Action::Nothing);
        assert_eq!(step(State::Held, follower(Some(1)), 3, Some((1, 3))).1, Action::Tick);
        // A follower that knows no leader yet (restarted) is held by whoever leads at its term.
        assert_eq!(step(State::NEW, follower(None), 3, Some((2, 4))).1, Action::StopTicking);
    }

    #[test]
    fn a_held_follower_that_becomes_candidate_or_leader_ticks() {
        let candidate = Seen { role: Role::Other, ..follower(None) };
        assert_eq!(step(State::Held, candidate, 3, Some((1, 4))).1, Action::Tick);
        assert_eq!(step(State::Held, leader(9), 3, None).1, Action::Tick, "elected by a trigger while held");
    }
}
