//! The placement decisions: given the placement and what every node reported this round, the
//! steps to send, which nodes are down, and whether a draining node may leave. Pure functions of
//! their inputs (the time comes in as an argument), so they are tested without a cluster; the
//! driver (`driver.rs`) does the I/O around them.
//!
//! Down nodes: a voter that has not answered the poll for `replace_down_node_after_ms` is marked
//! down in the placement (only if the other nodes can still hold R replicas of every shard), so
//! its replicas are re-created elsewhere through the same learner -> voter -> remove steps and a
//! second failure cannot take a shard's quorum. It returns to the placement once it answers and
//! hosts no replica outside its shards' memberships: its stale replicas are closed first, so a
//! replica that missed its own removal never campaigns against the group it left.
//!
//! Committed membership only: a shard leader reports its *effective* membership, which may hold
//! a change it has not committed yet (`membership_pending`); a new leader may not have that
//! change. So a shard whose leader reports a pending change gets no membership step and no
//! Close this round, its replicas do not count as settled for a returning down node, and no
//! draining node leaves the cluster on it: closing a replica that an uncommitted removal left
//! out would delete a voter's data if the removal is then lost. Likewise a shard leader that
//! another replica already knows to be deposed (a later term with a known leader) is not acted
//! on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::ops::ShardOp;
use crate::placement::{Placement, ShardPlan};
use crate::replica_status::{ReplicaStatus, Role};
use crate::types::{NodeId, NodeInfo, ShardId};

/// A replica whose matched log index is within this many entries of the leader's is caught up.
const CAUGHT_UP_WITHIN: u64 = 64;
/// Least time between two leadership transfers the driver asks for in one shard.
const ELECT_GAP: Duration = Duration::from_secs(3);
/// Transfers the driver asks for in one shard while the same node keeps leading it, before it
/// gives up on moving leadership that way (see [`ElectGate`]).
const ELECT_TRIES: u32 = 3;
/// After giving up, how long until the driver tries transfers for that shard again.
const ELECT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The leadership transfers the driver asked for, per shard: what [`Elections::gate`] decides from.
#[derive(Default)]
pub struct Elections {
    last_elect: BTreeMap<ShardId, Instant>,
    /// Per shard: the leader when the driver first asked for an election that did not move
    /// leadership, since when, and how many it asked for while that node kept leading.
    elect_tries: BTreeMap<ShardId, ElectTries>,
}

struct ElectTries {
    leader: NodeId,
    first: Instant,
    count: u32,
}

/// Whether the driver may move a shard's leadership now: by asking its leader to transfer it to
/// another voter (openraft 0.10; the target campaigns at once and the others vote for it despite
/// their leader lease, with any number of voters). At most one transfer per shard per
/// [`ELECT_GAP`]; after [`ELECT_TRIES`] that left the same node leading (the target kept failing
/// to catch up or to win), the driver stops trying for [`ELECT_RETRY_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectGate {
    /// Start one now.
    Now,
    /// One was started recently: wait for its outcome.
    Wait,
    /// Transfers did not move leadership: a leader that must leave is removed by a membership
    /// change instead (it steps down once that commits, and the others elect), and leaders are
    /// not balanced for a while.
    GaveUp,
}

impl Elections {
    /// Whether an election may be started in `shard` now, while `leader` leads it.
    pub fn gate(&self, shard: ShardId, leader: Option<NodeId>, now: Instant) -> ElectGate {
        if self.last_elect.get(&shard).is_some_and(|at| now.duration_since(*at) < ELECT_GAP) {
            return ElectGate::Wait;
        }
        match self.elect_tries.get(&shard) {
            Some(t)
                if Some(t.leader) == leader
                    && t.count >= ELECT_TRIES
                    && now.duration_since(t.first) < ELECT_RETRY_AFTER =>
            {
                ElectGate::GaveUp
            }
            _ => ElectGate::Now,
        }
    }

    /// Records an election started in `shard` while `leader` led it.
    pub fn started(&mut self, shard: ShardId, leader: NodeId, now: Instant) {
        self.last_elect.insert(shard, now);
        let tries = self.elect_tries.entry(shard).or_insert(ElectTries { leader, first: now, count: 0 });
        if tries.leader != leader || now.duration_since(tries.first) >= ELECT_RETRY_AFTER {
            *tries = ElectTries { leader, first: now, count: 0 };
        }
        tries.count += 1;
    }
}

/// Each node's answer to the poll (None: it did not answer).
pub type Reports = BTreeMap<NodeId, Option<Vec<ReplicaStatus>>>;

/// A step for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: NodeId,
    pub shard: ShardId,
    pub op: ShardOp,
}

/// Starts the silence clock of nodes that did not answer; stops it for those that did.
pub fn note_silence(silent_since: &mut BTreeMap<NodeId, Instant>, reports: &Reports, now: Instant) {
    silent_since.retain(|id, _| matches!(reports.get(id), Some(None)));
    for (id, report) in reports {
        if report.is_none() {
            silent_since.entry(*id).or_insert(now);
        }
    }
}

/// Whether draining node `d` may leave the cluster: it is in no target and in no shard's initial
/// voters, it hosts nothing as far as its own report goes, no leader reports it as a member or a
/// membership change in flight, and, positively, every created shard has a leader that reports a
/// settled membership without it. The last is what keeps a shard's voter from leaving while
/// that shard has no leader to ask (its leader killed or cut off during the round): absence of a
/// report is not absence of membership. (Seen under combined faults: a node left while shard 1,
/// leaderless at that round, still counted it as a voter; it then came back on an empty volume
/// and, with another voter wiped, shard 1 had lost its quorum for good.)
pub fn drained_everywhere(d: NodeId, placement: &Placement, reports: &Reports) -> bool {
    let leaders = || reports.values().flatten().flatten().filter(|r| r.role == Role::Leader);
    let still_member = leaders().any(|r| r.membership_pending || r.voters.contains(&d) || r.learners.contains(&d));
    let hosts_some = matches!(reports.get(&d), Some(Some(rs)) if !rs.is_empty());
    let unplaced = placement.shards.iter().any(|s| !s.created && s.initial.contains(&d));
    let every_shard_seen_without = placement.shards.iter().enumerate().filter(|(_, s)| s.created).all(|(i, _)| {
        leaders().any(|r| {
            r.shard.0 as usize == i && !r.membership_pending && !r.voters.contains(&d) && !r.learners.contains(&d)
        })
    });
    !still_member && !hosts_some && !unplaced && !placement.holders().contains(&d) && every_shard_seen_without
}

/// The down set after this round's poll. A down node stays down until it answers and every
/// replica it hosts is a member of its shard (its stale replicas are closed meanwhile, as it is
/// in no target). A voter silent for `down_after` goes down if the other eligible voters can
/// still hold `replication` replicas of every shard; otherwise there is nowhere to move them.
pub fn down_nodes(
    placement: &Placement,
    voters: &BTreeMap<NodeId, String>,
    reports: &Reports,
    silent_since: &BTreeMap<NodeId, Instant>,
    down_after: Option<Duration>,
    now: Instant,
) -> BTreeSet<NodeId> {
    let settled = |id: NodeId| match reports.get(&id) {
        Some(Some(hosted)) => hosted.iter().all(|r| {
            leader_of(reports, r.shard)
                .is_some_and(|(_, l)| !l.membership_pending && (l.voters.contains(&id) || l.learners.contains(&id)))
        }),
        _ => false,
    };
    let mut down: BTreeSet<NodeId> =
        placement.down.iter().copied().filter(|id| voters.contains_key(id) && !settled(*id)).collect();
    let Some(after) = down_after else { return down };
    for (id, since) in silent_since {
        if down.contains(id)
            || placement.draining.contains(id)
            || !voters.contains_key(id)
            || now.duration_since(*since) < after
        {
            continue;
        }
        let others = voters.keys().filter(|v| *v != id && !down.contains(v) && !placement.draining.contains(v)).count();
        if others >= placement.replication as usize {
            down.insert(*id);
        }
    }
    down
}

/// The report of shard `s`'s leader (the highest term wins if two claim it), and its node.
/// None when another replica already knows a leader of a later term: the reporting leader was
/// deposed, and its membership may lack changes its successor made (the successor did not
/// answer this poll). A candidate's later term deposes nobody yet, and a replica that missed
/// its removal campaigns with ever higher terms: letting it hide the leader would keep it open.
pub fn leader_of(reports: &Reports, s: ShardId) -> Option<(NodeId, &ReplicaStatus)> {
    let replicas = || reports.iter().filter_map(move |(id, r)| Some((*id, r.as_ref()?.iter().find(|x| x.shard == s)?)));
    let (id, leader) = replicas().filter(|(_, r)| r.role == Role::Leader).max_by_key(|(_, r)| r.term)?;
    let deposed = replicas().any(|(_, r)| r.term > leader.term && r.leader.is_some());
    (!deposed).then_some((id, leader))
}

fn hosts(reports: &Reports, node: NodeId, s: ShardId) -> bool {
    matches!(reports.get(&node), Some(Some(rs)) if rs.iter().any(|r| r.shard == s))
}

fn caught_up(leader: &ReplicaStatus, node: NodeId) -> bool {
    let matched = leader.matched.get(&node).copied().unwrap_or(0);
    matched > 0 && matched + CAUGHT_UP_WITHIN >= leader.last_log_index
}

/// For each created shard whose committed membership records a member under another incarnation
/// than the meta group now does (the node came back on an empty volume and the meta group
/// re-added it, `membership.rs`): the step that removes that entry. The node refuses every
/// message meant for its old self, so the entry only holds a quorum slot hostage; once it is
/// gone the usual steps re-create the replica (open, learner, voter) under the new incarnation.
pub fn stale_member_steps(placement: &Placement, reports: &Reports, members: &BTreeMap<NodeId, NodeInfo>) -> Vec<Step> {
    let mut steps = Vec::new();
    for (s, plan) in placement.shards.iter().enumerate() {
        let s = ShardId(s as u32);
        if !plan.created {
            continue;
        }
        let Some((leader, status)) = leader_of(reports, s) else { continue };
        if status.membership_pending {
            continue;
        }
        let stale = status.member_incarnations.iter().find(|(id, inc)| {
            **id != leader && members.get(id).is_some_and(|m| m.incarnation != **inc && m.incarnation.0 != 0)
        });
        let Some((id, _)) = stale else { continue };
        let op = if status.voters.contains(id) {
            ShardOp::SetVoters { voters: status.voters.iter().copied().filter(|v| v != id).collect() }
        } else {
            ShardOp::RemoveLearners { ids: BTreeSet::from([*id]) }
        };
        steps.push(Step { to: leader, shard: s, op });
    }
    steps
}

/// Shards not yet created, not at their target replicas, or not led by their preferred replica.
pub fn pending_shards(placement: &Placement, reports: &Reports) -> usize {
    placement
        .shards
        .iter()
        .enumerate()
        .filter(|(s, plan)| {
            let Some((leader, status)) = leader_of(reports, ShardId(*s as u32)) else { return true };
            let target: BTreeSet<NodeId> = plan.replicas.iter().copied().collect();
            let voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
            !plan.created
                || status.membership_pending
                || voters != target
                || !status.learners.is_empty()
                || plan.replicas.first() != Some(&leader)
        })
        .count()
}

/// The steps of one round: at most one membership step per shard, plus opens and closes.
/// `elect(shard)` says whether an election may be started to move leadership.
pub fn next_steps(placement: &Placement, reports: &Reports, elect: impl Fn(ShardId) -> ElectGate) -> Vec<Step> {
    let reachable = |n: NodeId| matches!(reports.get(&n), Some(Some(_)));
    let mut steps = Vec::new();
    for (s, plan) in placement.shards.iter().enumerate() {
        let s = ShardId(s as u32);
        if !plan.created {
            steps.extend(create_steps(s, plan, reports));
            continue;
        }
        let Some((leader, status)) = leader_of(reports, s) else { continue };
        let target: BTreeSet<NodeId> = plan.replicas.iter().copied().collect();
        let voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
        let learners: BTreeSet<NodeId> = status.learners.iter().copied().collect();

        // Replicas to open on target nodes.
        for t in &target {
            if !hosts(reports, *t, s) && reachable(*t) {
                steps.push(Step { to: *t, shard: s, op: ShardOp::Open });
            }
        }
        // Everything below reads the membership, which is only known once it is committed.
        if status.membership_pending {
            continue;
        }
        // Replicas that left the membership: close them.
        for (node, r) in reports {
            if r.as_ref().is_some_and(|rs| rs.iter().any(|x| x.shard == s))
                && !voters.contains(node)
                && !learners.contains(node)
                && !target.contains(node)
            {
                steps.push(Step { to: *node, shard: s, op: ShardOp::Close });
            }
        }
        let shard = ShardState { plan, status, leader, target, voters, learners };
        if let Some((to, op)) = shard.membership_step(reports, || elect(s)) {
            steps.push(Step { to, shard: s, op });
        }
    }
    steps
}

/// One created shard as this round sees it.
struct ShardState<'a> {
    plan: &'a ShardPlan,
    status: &'a ReplicaStatus,
    leader: NodeId,
    target: BTreeSet<NodeId>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl ShardState<'_> {
    /// The shard's one membership (or leadership) step this round, and the node it goes to.
    fn membership_step(&self, reports: &Reports, elect: impl Fn() -> ElectGate) -> Option<(NodeId, ShardOp)> {
        let (leader, status, target, voters, learners) =
            (self.leader, self.status, &self.target, &self.voters, &self.learners);
        let leaving = !target.contains(&leader);
        if leaving {
            // The leader is leaving: it hands leadership to a caught-up target voter first, while
            // transfers work; otherwise carry on and remove the leader like any voter.
            if let Some(v) = voters.iter().find(|v| target.contains(v) && caught_up(status, **v)) {
                match elect() {
                    ElectGate::Now => return Some((leader, ShardOp::TransferLeader { to: *v })),
                    ElectGate::Wait => return None,
                    ElectGate::GaveUp => {}
                }
            }
        }
        let s = status.shard;
        if let Some(t) = target.iter().find(|t| !voters.contains(t) && !learners.contains(t) && hosts(reports, **t, s))
        {
            return Some((leader, ShardOp::AddLearner { id: *t, node: NodeInfo::default() }));
        }
        if let Some(l) = learners.iter().find(|l| target.contains(l) && caught_up(status, **l)) {
            let mut next = voters.clone();
            next.insert(*l);
            return Some((leader, ShardOp::SetVoters { voters: next }));
        }
        if target.is_subset(voters) && voters.len() > target.len() {
            // Followers leave before the leader; the leader is removed last (it steps down once
            // the membership without it commits, and the remaining voters elect a new one).
            let extra = voters.iter().find(|v| !target.contains(v) && **v != leader).or(leaving.then_some(&leader))?;
            let mut next = voters.clone();
            next.remove(extra);
            return Some((leader, ShardOp::SetVoters { voters: next }));
        }
        if learners.iter().any(|l| !target.contains(l)) {
            let ids = learners.iter().filter(|l| !target.contains(l)).copied().collect();
            return Some((leader, ShardOp::RemoveLearners { ids }));
        }
        if *voters == *target && learners.is_empty() {
            // Settled: move leadership to the preferred replica once it has caught up.
            let preferred = self.plan.replicas.first().copied()?;
            if preferred != leader && caught_up(status, preferred) && elect() == ElectGate::Now {
                return Some((leader, ShardOp::TransferLeader { to: preferred }));
            }
        }
        None
    }
}

/// A shard not created yet: open it on its initial replicas, then initialize it on the first.
fn create_steps(s: ShardId, plan: &ShardPlan, reports: &Reports) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut open = 0;
    for n in &plan.initial {
        if hosts(reports, *n, s) {
            open += 1;
        } else if matches!(reports.get(n), Some(Some(_))) {
            steps.push(Step { to: *n, shard: s, op: ShardOp::Open });
        }
    }
    // A majority of the initial voters is enough to elect a leader; the rest open later.
    if open * 2 > plan.initial.len() {
        // `initial[0]` initializes when it can. When it does not host the shard (it stopped, or is
        // being decommissioned, before the shard was created), another initial voter initializes
        // it with the same voters: openraft allows initializing several nodes with one identical
        // membership (only different ones split the group), and waiting for `initial[0]` would
        // leave the shard uncreated, and its node undrainable, for as long as that node is gone.
        if let Some(by) = plan.initial.iter().find(|n| hosts(reports, **n, s)) {
            let voters = plan.initial.iter().map(|id| (*id, NodeInfo::default())).collect();
            steps.push(Step { to: *by, shard: s, op: ShardOp::Initialize { voters } });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Incarnation;

    fn status(
        s: u32,
        role: Role,
        term: u64,
        voters: &[u64],
        learners: &[u64],
        matched: &[(u64, u64)],
    ) -> ReplicaStatus {
        ReplicaStatus {
            shard: ShardId(s),
            role,
            term,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_log_index: 1000,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            keys: 0,
            size_bytes: 0,
            matched: matched.iter().copied().collect(),
            ready: false,
            membership_pending: false,
            member_incarnations: BTreeMap::new(),
        }
    }

    fn incarnations(of: &[(NodeId, u64)]) -> BTreeMap<NodeId, Incarnation> {
        of.iter().map(|(id, inc)| (*id, Incarnation(*inc))).collect()
    }

    fn one_shard(replicas: &[u64], created: bool) -> Placement {
        Placement {
            version: 1,
            shard_count: 1,
            replication: 3,
            draining: BTreeSet::new(),
            draining_incarnations: BTreeMap::new(),
            down: BTreeSet::new(),
            shards: vec![ShardPlan { replicas: replicas.to_vec(), initial: replicas.to_vec(), created }],
        }
    }

    #[test]
    fn a_member_recorded_under_an_old_incarnation_is_removed_before_anything_else() {
        let mut p = one_shard(&[1, 2, 3], true);
        p.shards[0].created = true;
        let mut leader = status(0, Role::Leader, 2, &[1, 2, 3], &[], &[(1, 10), (2, 10), (3, 10)]);
        leader.member_incarnations = incarnations(&[(1, 11), (2, 12), (3, 13)]);
        let follower = status(0, Role::Follower, 2, &[1, 2, 3], &[], &[]);
        let reports: Reports =
            [(1, Some(vec![leader.clone()])), (2, Some(vec![follower])), (3, Some(vec![]))].into_iter().collect();
        let node = |inc: u64| NodeInfo { incarnation: Incarnation(inc), ..NodeInfo::default() };
        let same: BTreeMap<NodeId, NodeInfo> = [(1, node(11)), (2, node(12)), (3, node(13))].into();
        assert!(stale_member_steps(&p, &reports, &same).is_empty());
        // Node 3 came back on an empty volume: the meta group knows it as incarnation 99 now.
        let reborn: BTreeMap<NodeId, NodeInfo> = [(1, node(11)), (2, node(12)), (3, node(99))].into();
        assert_eq!(
            stale_member_steps(&p, &reports, &reborn),
            vec![Step { to: 1, shard: ShardId(0), op: ShardOp::SetVoters { voters: BTreeSet::from([1, 2]) } }]
        );
        // Not while a membership change is uncommitted.
        let mut pending = leader.clone();
        pending.membership_pending = true;
        let reports_pending: Reports = [(1, Some(vec![pending]))].into_iter().collect();
        assert!(stale_member_steps(&p, &reports_pending, &reborn).is_empty());
        // A learner entry is removed as a learner.
        let mut with_learner = status(0, Role::Leader, 2, &[1, 2], &[3], &[]);
        with_learner.member_incarnations = incarnations(&[(1, 11), (2, 12), (3, 13)]);
        let reports: Reports = [(1, Some(vec![with_learner]))].into_iter().collect();
        assert_eq!(
            stale_member_steps(&p, &reports, &reborn),
            vec![Step { to: 1, shard: ShardId(0), op: ShardOp::RemoveLearners { ids: BTreeSet::from([3]) } }]
        );
    }

    #[test]
    fn a_draining_node_leaves_only_once_every_shard_has_a_leader_that_shows_it_gone() {
        let mut p = Placement { shard_count: 2, ..one_shard(&[1, 2, 3], true) };
        p.shards.push(ShardPlan { replicas: vec![1, 2, 3], initial: vec![1, 2, 4], created: true });
        p.draining.insert(4);
        let shard0 = status(0, Role::Leader, 2, &[1, 2, 3], &[], &[]);
        let shard1 = status(1, Role::Leader, 3, &[1, 2, 3], &[], &[]);
        // Both shards led and without node 4, which answered and hosts nothing: it may leave.
        let settled: Reports =
            [(1, Some(vec![shard0.clone(), shard1.clone()])), (2, Some(vec![])), (3, Some(vec![])), (4, Some(vec![]))]
                .into_iter()
                .collect();
        assert!(drained_everywhere(4, &p, &settled));
        // Shard 1 has no leader this round (its leader, node 2, did not answer) and node 4 is
        // unreachable too: nothing says shard 1 no longer counts node 4 as a voter.
        let leaderless: Reports =
            [(1, Some(vec![shard0.clone()])), (2, None), (3, Some(vec![])), (4, None)].into_iter().collect();
        assert!(!drained_everywhere(4, &p, &leaderless));
        // Shard 1's leader still has node 4, or its membership change is in flight.
        let member = status(1, Role::Leader, 3, &[1, 2, 4], &[], &[]);
        let reports: Reports = [(1, Some(vec![shard0.clone(), member])), (4, Some(vec![]))].into_iter().collect();
        assert!(!drained_everywhere(4, &p, &reports));
        let mut pending = shard1.clone();
        pending.membership_pending = true;
        let reports: Reports = [(1, Some(vec![shard0.clone(), pending])), (4, Some(vec![]))].into_iter().collect();
        assert!(!drained_everywhere(4, &p, &reports));
        // Node 4 still hosts a replica.
        let reports: Reports =
            [(1, Some(vec![shard0, shard1.clone()])), (4, Some(vec![status(1, Role::Learner, 3, &[], &[], &[])]))]
                .into_iter()
                .collect();
        assert!(!drained_everywhere(4, &p, &reports));
    }

    #[test]
    fn a_new_shard_is_opened_then_initialized_once_a_majority_hosts_it() {
        let p = one_shard(&[1, 2, 3], false);
        let empty: Reports = [(1, Some(vec![])), (2, Some(vec![])), (3, None)].into_iter().collect();
        let steps = next_steps(&p, &empty, |_| ElectGate::Now);
        assert_eq!(steps.iter().filter(|s| s.op == ShardOp::Open).count(), 2, "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s.op, ShardOp::Initialize { .. })));
        let open: Reports = [
            (1, Some(vec![status(0, Role::Learner, 0, &[], &[], &[])])),
            (2, Some(vec![status(0, Role::Learner, 0, &[], &[], &[])])),
            (3, None),
        ]
        .into_iter()
        .collect();
        let steps = next_steps(&p, &open, |_| ElectGate::Now);
        assert!(steps.iter().any(|s| s.to == 1 && matches!(s.op, ShardOp::Initialize { .. })), "{steps:?}");
    }

    #[test]
    fn a_new_shard_whose_first_voter_is_gone_is_initialized_by_another_with_the_same_voters() {
        // initial[0] (node 4) stopped before the shard was created; 1 and 2 opened it.
        let p = one_shard(&[4, 1, 2], false);
        let r: Reports = [
            (1, Some(vec![status(0, Role::Learner, 0, &[], &[], &[])])),
            (2, Some(vec![status(0, Role::Learner, 0, &[], &[], &[])])),
            (3, Some(vec![])),
            (4, None),
        ]
        .into_iter()
        .collect();
        let steps = next_steps(&p, &r, |_| ElectGate::Now);
        let voters: BTreeMap<NodeId, NodeInfo> = [4, 1, 2].iter().map(|id| (*id, NodeInfo::default())).collect();
        assert_eq!(steps, vec![Step { to: 1, shard: ShardId(0), op: ShardOp::Initialize { voters } }]);
        // Only one of three opened: no majority, nobody initializes.
        let r: Reports =
            [(1, Some(vec![status(0, Role::Learner, 0, &[], &[], &[])])), (2, None), (4, None)].into_iter().collect();
        assert!(!next_steps(&p, &r, |_| ElectGate::Now).iter().any(|s| matches!(s.op, ShardOp::Initialize { .. })));
    }

    #[test]
    fn a_move_goes_learner_then_voter_then_removal_then_close() {
        // Target {1,2,4}; the shard is on {1,2,3}, 1 leads.
        let p = one_shard(&[1, 2, 4], true);
        let lead = |voters: &[u64], learners: &[u64], matched: &[(u64, u64)]| {
            status(0, Role::Leader, 2, voters, learners, matched)
        };
        let f = || status(0, Role::Follower, 2, &[], &[], &[]);
        // 4 does not host it yet: open it there, nothing else.
        let r: Reports = [
            (1, Some(vec![lead(&[1, 2, 3], &[], &[])])),
            (2, Some(vec![f()])),
            (3, Some(vec![f()])),
            (4, Some(vec![])),
        ]
        .into_iter()
        .collect();
        let steps = next_steps(&p, &r, |_| ElectGate::Now);
        assert_eq!(steps, vec![Step { to: 4, shard: ShardId(0), op: ShardOp::Open }]);
        // Hosted: add it as a learner on the leader.
        let r: Reports = [
            (1, Some(vec![lead(&[1, 2, 3], &[], &[])])),
            (2, Some(vec![f()])),
            (3, Some(vec![f()])),
            (4, Some(vec![f()])),
        ]
        .into_iter()
        .collect();
        let steps = next_steps(&p, &r, |_| ElectGate::Now);
        assert!(matches!(steps[..], [Step { to: 1, op: ShardOp::AddLearner { id: 4, .. }, .. }]), "{steps:?}");
        // A learner not caught up: wait. Caught up: voter.
        let r: Reports =
            [(1, Some(vec![lead(&[1, 2, 3], &[4], &[(4, 1)])])), (4, Some(vec![f()]))].into_iter().collect();
        assert!(next_steps(&p, &r, |_| ElectGate::Now).is_empty());
        let r: Reports =
            [(1, Some(vec![lead(&[1, 2, 3], &[4], &[(4, 1000)])])), (4, Some(vec![f()]))].into_iter().collect();
        assert_eq!(
            next_steps(&p, &r, |_| ElectGate::Now),
            vec![Step { to: 1, shard: ShardId(0), op: ShardOp::SetVoters { voters: [1, 2, 3, 4].into() } }]
        );
        // Then the old voter is removed, and once out of the membership its replica is closed.
        let r: Reports = [(1, Some(vec![lead(&[1, 2, 3, 4], &[], &[])])), (3, Some(vec![f()]))].into_iter().collect();
        assert_eq!(
            next_steps(&p, &r, |_| ElectGate::Now),
            vec![Step { to: 1, shard: ShardId(0), op: ShardOp::SetVoters { voters: [1, 2, 4].into() } }]
        );
        let r: Reports = [(1, Some(vec![lead(&[1, 2, 4], &[], &[])])), (3, Some(vec![f()]))].into_iter().collect();
        assert_eq!(next_steps(&p, &r, |_| ElectGate::Now), vec![Step { to: 3, shard: ShardId(0), op: ShardOp::Close }]);
    }

    #[test]
    fn leadership_moves_to_the_preferred_replica_and_off_a_leaving_node() {
        let p = one_shard(&[2, 1, 3], true);
        let r: Reports = [(1, Some(vec![status(0, Role::Leader, 2, &[1, 2, 3], &[], &[(2, 1000), (3, 1000)])]))]
            .into_iter()
            .collect();
        assert_eq!(
            next_steps(&p, &r, |_| ElectGate::Now),
            vec![Step { to: 1, shard: ShardId(0), op: ShardOp::TransferLeader { to: 2 } }],
            "the leader is asked to hand over"
        );
        assert!(next_steps(&p, &r, |_| ElectGate::Wait).is_empty(), "rate-limited");
        // A preferred replica that lags is not elected.
        let r: Reports =
            [(1, Some(vec![status(0, Role::Leader, 2, &[1, 2, 3], &[], &[(2, 1), (3, 1000)])]))].into_iter().collect();
        assert!(next_steps(&p, &r, |_| ElectGate::Now).is_empty());
        // The leader (1) is not in the target {2,3,4}: leadership goes first.
        let p = one_shard(&[2, 3, 4], true);
        let r: Reports = [(1, Some(vec![status(0, Role::Leader, 2, &[1, 2, 3], &[], &[(2, 1000), (3, 1000)])]))]
            .into_iter()
            .collect();
        assert!(matches!(
            next_steps(&p, &r, |_| ElectGate::Now)[..],
            [Step { to: 1, op: ShardOp::TransferLeader { to: 2 | 3 }, .. }]
        ));
    }

    #[test]
    fn a_leader_that_transfers_cannot_move_is_removed_last_like_any_voter() {
        // A move was under way ({1,2,3,4}, leader 3) when the target changed to {5,2,4}.
        let p = one_shard(&[5, 2, 4], true);
        let all = |voters: &[u64], learners: &[u64]| {
            let matched: Vec<(u64, u64)> = voters.iter().chain(learners).map(|id| (*id, 1000)).collect();
            let lead = status(0, Role::Leader, 9, voters, learners, &matched);
            let f = || status(0, Role::Follower, 9, &[], &[], &[]);
            let r: Reports = [
                (1, Some(vec![f()])),
                (2, Some(vec![f()])),
                (3, Some(vec![lead])),
                (4, Some(vec![f()])),
                (5, Some(vec![f()])),
            ]
            .into_iter()
            .collect();
            r
        };
        let membership = |r: &Reports, gate: ElectGate| {
            next_steps(&p, r, |_| gate).into_iter().filter(|s| s.op != ShardOp::Close).collect::<Vec<_>>()
        };
        // While transfers may move it: the leader hands over to a caught-up target voter (with
        // any number of voters), or the driver waits for the outcome of the last transfer.
        let r = all(&[2, 3, 4], &[]);
        let transfer = vec![Step { to: 3, shard: ShardId(0), op: ShardOp::TransferLeader { to: 2 } }];
        assert_eq!(membership(&r, ElectGate::Now), transfer);
        assert!(membership(&r, ElectGate::Wait).is_empty());
        let r = all(&[1, 2, 3, 4], &[]);
        assert_eq!(membership(&r, ElectGate::Now), transfer, "four voters");
        // Given up: the new replica comes in, then the other leaving voter goes, then the leader.
        let set = |voters: &[u64]| ShardOp::SetVoters { voters: voters.iter().copied().collect() };
        let steps = membership(&r, ElectGate::GaveUp);
        assert!(matches!(steps[..], [Step { to: 3, op: ShardOp::AddLearner { id: 5, .. }, .. }]), "{steps:?}");
        assert_eq!(
            membership(&all(&[1, 2, 3, 4], &[5]), ElectGate::GaveUp),
            vec![Step { to: 3, shard: ShardId(0), op: set(&[1, 2, 3, 4, 5]) }]
        );
        assert_eq!(
            membership(&all(&[1, 2, 3, 4, 5], &[]), ElectGate::GaveUp),
            vec![Step { to: 3, shard: ShardId(0), op: set(&[2, 3, 4, 5]) }]
        );
        assert_eq!(
            membership(&all(&[2, 3, 4, 5], &[]), ElectGate::GaveUp),
            vec![Step { to: 3, shard: ShardId(0), op: set(&[2, 4, 5]) }]
        );
        // Three voters again, the leader among them, transfers given up: it is replaced too.
        let steps = membership(&all(&[2, 3, 4], &[]), ElectGate::GaveUp);
        assert!(matches!(steps[..], [Step { to: 3, op: ShardOp::AddLearner { id: 5, .. }, .. }]), "{steps:?}");
    }

    #[test]
    fn a_leader_leaving_with_no_target_voter_to_elect_still_moves_the_shard() {
        // Every replica moves ({1,2,3} -> {4,5,6}): nobody to elect, so the move goes ahead.
        let p = one_shard(&[4, 5, 6], true);
        let r: Reports = [
            (1, Some(vec![status(0, Role::Leader, 2, &[1, 2, 3], &[], &[(2, 1000), (3, 1000)])])),
            (4, Some(vec![status(0, Role::Learner, 0, &[], &[], &[])])),
        ]
        .into_iter()
        .collect();
        let steps = next_steps(&p, &r, |_| ElectGate::Now);
        assert!(steps.iter().any(|s| matches!(s.op, ShardOp::AddLearner { id: 4, .. }) && s.to == 1), "{steps:?}");
    }

    #[test]
    fn elections_that_do_not_move_leadership_are_given_up_for_a_while() {
        let mut st = Elections::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(st.gate(ShardId(0), Some(3), t0), ElectGate::Now);
        st.started(ShardId(0), 3, t0);
        assert_eq!(st.gate(ShardId(0), Some(3), at(1)), ElectGate::Wait, "within the gap");
        assert_eq!(st.gate(ShardId(1), Some(3), at(1)), ElectGate::Now, "per shard");
        st.started(ShardId(0), 3, at(3));
        st.started(ShardId(0), 3, at(6));
        assert_eq!(st.gate(ShardId(0), Some(3), at(9)), ElectGate::GaveUp, "3 tries, still the same leader");
        assert_eq!(st.gate(ShardId(0), Some(2), at(9)), ElectGate::Now, "leadership moved after all");
        assert_eq!(st.gate(ShardId(0), Some(3), at(60)), ElectGate::Now, "tried again after a while");
        // A new leader starts a new count.
        st.started(ShardId(0), 2, at(10));
        assert_eq!(st.gate(ShardId(0), Some(2), at(13)), ElectGate::Now);
    }

    fn named(ids: &[u64]) -> BTreeMap<NodeId, String> {
        ids.iter().map(|id| (*id, format!("node-{id}"))).collect()
    }

    #[test]
    fn a_silent_node_goes_down_only_after_the_delay_and_only_with_somewhere_to_move() {
        let p = one_shard(&[1, 2, 3], true);
        let t0 = Instant::now();
        let after = Some(Duration::from_secs(10));
        let r: Reports =
            [(1, Some(vec![status(0, Role::Leader, 2, &[1, 2, 3], &[], &[])])), (2, Some(vec![])), (3, None)]
                .into_iter()
                .chain([(4, Some(vec![]))])
                .collect();
        let mut silent = BTreeMap::new();
        note_silence(&mut silent, &r, t0);
        assert_eq!(silent.keys().copied().collect::<Vec<_>>(), vec![3]);
        let four = named(&[1, 2, 3, 4]);
        assert!(down_nodes(&p, &four, &r, &silent, after, t0 + Duration::from_secs(9)).is_empty());
        let down = down_nodes(&p, &four, &r, &silent, after, t0 + Duration::from_secs(10));
        assert_eq!(down, BTreeSet::from([3]));
        // Disabled: never.
        assert!(down_nodes(&p, &four, &r, &silent, None, t0 + Duration::from_secs(99)).is_empty());
        // Three voters and R = 3: the other two cannot hold three replicas, so 3 stays.
        let three = named(&[1, 2, 3]);
        assert!(down_nodes(&p, &three, &r, &silent, after, t0 + Duration::from_secs(99)).is_empty());
        // Answering again stops the clock.
        let answered: Reports = r.iter().map(|(id, x)| (*id, x.clone().or(Some(vec![])))).collect();
        note_silence(&mut silent, &answered, t0 + Duration::from_secs(1));
        assert!(silent.is_empty());
    }

    #[test]
    fn a_down_node_comes_back_once_its_stale_replicas_are_closed() {
        let mut p = one_shard(&[1, 2, 4], true);
        p.down.insert(3);
        let four = named(&[1, 2, 3, 4]);
        let lead = status(0, Role::Leader, 5, &[1, 2, 4], &[], &[]);
        let stale = status(0, Role::Follower, 2, &[1, 2, 3], &[], &[]);
        let r: Reports = [(1, Some(vec![lead.clone()])), (2, Some(vec![])), (3, Some(vec![stale])), (4, Some(vec![]))]
            .into_iter()
            .collect();
        let now = Instant::now();
        let silent = BTreeMap::new();
        // It answers but hosts a replica its shard removed: still down, and the replica is closed.
        assert_eq!(down_nodes(&p, &four, &r, &silent, None, now), BTreeSet::from([3]));
        assert!(next_steps(&p, &r, |_| ElectGate::Now).contains(&Step {
            to: 3,
            shard: ShardId(0),
            op: ShardOp::Close
        }));
        // Closed: back.
        let r: Reports =
            [(1, Some(vec![lead])), (2, Some(vec![])), (3, Some(vec![])), (4, Some(vec![]))].into_iter().collect();
        assert!(down_nodes(&p, &four, &r, &silent, None, now).is_empty());
        // A node that left the cluster is no longer down either.
        assert!(down_nodes(&p, &named(&[1, 2, 4]), &r, &silent, None, now).is_empty());
    }

    #[test]
    fn an_uncommitted_membership_closes_nothing_and_takes_no_step() {
        // The leader appended "voters {1,2,4}" (removing 3) but has not committed it: a new leader
        // may still have 3 as a voter, so 3's replica must not be deleted, and nothing else moves.
        let p = one_shard(&[1, 2, 4], true);
        let mut lead = status(0, Role::Leader, 2, &[1, 2, 4], &[], &[(2, 1000), (4, 1000)]);
        lead.membership_pending = true;
        let f = || status(0, Role::Follower, 2, &[], &[], &[]);
        let r: Reports =
            [(1, Some(vec![lead.clone()])), (2, Some(vec![f()])), (3, Some(vec![f()])), (4, Some(vec![f()]))]
                .into_iter()
                .collect();
        assert_eq!(next_steps(&p, &r, |_| ElectGate::Now), vec![]);
        // Nor does a down node count as settled on that view.
        let mut down = p.clone();
        down.down.insert(3);
        let four = named(&[1, 2, 3, 4]);
        let mut listing3 = lead.clone();
        listing3.voters = vec![1, 2, 3, 4];
        let r: Reports = [(1, Some(vec![listing3])), (3, Some(vec![f()]))].into_iter().collect();
        assert_eq!(down_nodes(&down, &four, &r, &BTreeMap::new(), None, Instant::now()), BTreeSet::from([3]));
        // Once committed, 3 is closed.
        lead.membership_pending = false;
        let r: Reports = [(1, Some(vec![lead])), (3, Some(vec![f()]))].into_iter().collect();
        assert_eq!(next_steps(&p, &r, |_| ElectGate::Now), vec![Step { to: 3, shard: ShardId(0), op: ShardOp::Close }]);
    }

    #[test]
    fn a_deposed_leader_whose_successor_did_not_answer_is_not_acted_on() {
        // 1 still reports itself leader at term 2 with voters {1,2,4}; 2 already follows a leader
        // of term 5 (node 4, which did not answer the poll), whose membership 1 has not seen.
        let p = one_shard(&[1, 2, 4], true);
        let old = status(0, Role::Leader, 2, &[1, 2, 4], &[], &[(2, 1000), (4, 1000)]);
        let mut newer = status(0, Role::Follower, 5, &[], &[], &[]);
        newer.leader = Some(4);
        let r: Reports = [
            (1, Some(vec![old.clone()])),
            (2, Some(vec![newer])),
            (3, Some(vec![status(0, Role::Follower, 2, &[], &[], &[])])),
            (4, None),
        ]
        .into_iter()
        .collect();
        assert_eq!(next_steps(&p, &r, |_| ElectGate::Now), vec![]);
        // A candidate's higher term (no leader known) does not depose anyone: a replica that
        // missed its removal and campaigns must not stop the driver from closing it.
        let campaigning = status(0, Role::Candidate, 40, &[], &[], &[]);
        let r: Reports = [(1, Some(vec![old])), (3, Some(vec![campaigning]))].into_iter().collect();
        assert_eq!(next_steps(&p, &r, |_| ElectGate::Now), vec![Step { to: 3, shard: ShardId(0), op: ShardOp::Close }]);
    }
}
