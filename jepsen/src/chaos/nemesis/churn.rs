//! The churn nemesis: membership changes while the cluster serves, as when an operator scales the
//! StatefulSet up and then down, or Kubernetes moves a pod to a node with a new, empty volume.
//!
//! One churn fault: the cluster's spare slot (`target/cluster.rs`; `--nodes` members plus one) is
//! started as a new node (empty data directory, a fresh incarnation); it joins through
//! `Cluster.Join` as a learner and is promoted. Once the meta group lists it as a voter (waited for
//! up to the fault's length; the scale-up comes first, as an operator would do it), one member is
//! decommissioned: a planned random one, or (a third of the time) the node that leads the most
//! shards. The placement driver then moves that node's replicas to the others (the new node among
//! them) and removes it.
//!
//! The removal is not waited for: the schedule goes on with its next faults while the replicas
//! move, so kills, pauses, partitions and clock jumps land on membership changes in flight. A
//! watcher polls the meta leader until the node has left; the schedule then retires it (SIGKILL,
//! data directory deleted: the spare slot again) and logs `left` (start: when it was seen gone,
//! end: retired; from the `decommission` to it is the move, which the availability figures
//! treat as the fault's period). A churn fault that finds the previous
//! decommission unfinished waits for it up to its own length, then logs `skip`. A heal undoes
//! nothing (a membership change is not a fault to revert). A node that comes back as a new
//! incarnation before it is seen gone (the schedule avoids it: churn and wipe never pick the
//! same node) replaces the drained one: that is logged as `replaced`, and the node stays a
//! member (ADR 40). After the run's final heal the schedule waits up to 60 s for a pending
//! removal; a node that never leaves is an error in `left` (a stuck decommission).

use std::time::Duration;

use hypercache_client::{Client, Role, StatusResponse};
use tokio::task::JoinHandle;

use super::{Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::{Cluster, NodeState};

/// How often the meta leader is asked about the membership.
const POLL: Duration = Duration::from_millis(200);

/// A decommissioned node not retired yet, and the task watching it leave.
pub struct Leaving {
    /// Its slot (0-based) and Raft id.
    pub slot: usize,
    pub id: u64,
    /// When it was decommissioned (ns on the run's clock).
    pub since: u64,
    watcher: JoinHandle<(u64, Gone)>,
}

/// How a decommissioned incarnation left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its id is no longer a member: retire the node into the spare slot.
    Removed,
    /// Its id is a member under another incarnation: the node was wiped and came back (a wipe
    /// during its decommission), replacing the drained incarnation; the new one is a member of
    /// its own (ADR 40) and stays.
    Replaced,
}

/// A decommissioned node seen gone: its line in the log and how it went.
pub struct Left {
    pub event: NemesisEvent,
    pub gone: Gone,
}

impl Leaving {
    /// Whether it has been seen gone (without waiting).
    pub fn left(&self) -> bool {
        self.watcher.is_finished()
    }

    /// Waits up to `within` for the node to have left: `Ok` with how (the caller then
    /// [`retire`]s it), or `Err(self)`.
    pub async fn wait(mut self, within: Duration) -> Result<Left, Leaving> {
        match tokio::time::timeout(within, &mut self.watcher).await {
            Ok(Ok((at, gone))) => {
                let action = if gone == Gone::Replaced { Action::Replaced } else { Action::Left };
                Ok(Left { event: left(action, self.id, at, None), gone })
            }
            Ok(Err(e)) => {
                let error = Some(format!("the watcher failed: {e}"));
                Ok(Left { event: left(Action::Left, self.id, self.since, error), gone: Gone::Removed })
            }
            Err(_) => Err(self),
        }
    }

    /// The `left` line of a node that never left: its error says since when.
    pub fn never(&self, clock: &Clock) -> NemesisEvent {
        let error = format!("node {} was decommissioned but never left the membership", self.id);
        left(Action::Left, self.id, clock.now(), Some(error))
    }
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

fn left(action: Action, id: u64, at: u64, error: Option<String>) -> NemesisEvent {
    NemesisEvent::new(action, vec![id], at, at, error)
}

fn note(action: Action, nodes: Vec<u64>, start: u64, clock: &Clock, error: Option<String>) -> NemesisEvent {
    NemesisEvent::new(action, nodes, start, clock.now(), error)
}

/// One churn fault: start the spare, wait until it is a voter, decommission `target` (a member
/// slot). Returns what was done, and the decommissioned node to watch (none if nothing was
/// decommissioned).
pub async fn churn(
    cluster: &mut Cluster,
    target: usize,
    within: Duration,
    clock: &Clock,
) -> (Vec<NemesisEvent>, Option<Leaving>) {
    let mut log = Vec::new();
    let client = match cluster.client() {
        Ok(c) => c,
        Err(e) => return (vec![note(Action::Skip, Vec::new(), clock.now(), clock, Some(e.to_string()))], None),
    };
    let meta = Meta { client: client.clone(), endpoints: cluster.endpoints() };
    let started = clock.now();
    if let Some(spare) = cluster.nodes.iter().position(|n| n.state == NodeState::Spare) {
        let id = cluster.nodes[spare].id;
        let error = cluster.restart(spare).await.err().map(|e| e.to_string());
        let ok = error.is_none();
        log.push(note(Action::Join, vec![id], started, clock, error));
        if ok {
            let promoted = clock.now();
            if tokio::time::timeout(within, meta.until_member(id)).await.is_err() {
                let error = format!("node {id} not a voter {} ms after it started", within.as_millis());
                log.push(note(Action::Promoted, vec![id], promoted, clock, Some(error)));
                return (log, None);
            }
            log.push(note(Action::Promoted, vec![id], started, clock, None));
        }
    }
    // Scale down only back to the planned size: a failed start above leaves nothing to remove.
    if cluster.members().len() <= cluster.size() {
        return (log, None);
    }
    let (id, name) = (cluster.nodes[target].id, cluster.nodes[target].name.clone());
    // The incarnation being drained: if the node is wiped and comes back meanwhile, that one is
    // gone as surely as if it had been removed (`Gone::Replaced`).
    let leader = meta.leader_status().await;
    let drained = leader.and_then(|s| s.members.iter().find(|m| m.node_id == id).map(|m| m.incarnation));
    let asked = clock.now();
    let answer = client.decommission(&name).await;
    let error = answer.as_ref().err().map(|e| format!("decommission {name}: {e}"));
    log.push(note(Action::Decommission, vec![id], asked, clock, error));
    if answer.is_err() {
        return (log, None);
    }
    let watch_clock = *clock;
    let watcher = tokio::spawn(async move {
        let gone = meta.until_gone(id, drained).await;
        (watch_clock.now(), gone)
    });
    (log, Some(Leaving { slot: target, id, since: asked, watcher }))
}

/// Retires a node that left (SIGKILL, data deleted: a spare again); the `left` event gets the
/// error if that failed. A node that came back as another incarnation stays as it is.
pub async fn retire(cluster: &mut Cluster, slot: usize, left: Left, clock: &Clock) -> NemesisEvent {
    let Left { event: mut left, gone } = left;
    if gone == Gone::Replaced {
        return left;
    }
    // It may have joined again since (a wipe's restart after its removal: a new member).
    if let Ok(client) = cluster.client() {
        let meta = Meta { client, endpoints: cluster.endpoints() };
        let id = cluster.nodes[slot].id;
        if meta.leader_status().await.is_some_and(|s| s.members.iter().any(|m| m.node_id == id)) {
            left.action = Action::Replaced;
            return left;
        }
    }
    if let Err(e) = cluster.retire(slot).await {
        let error = format!("retiring it: {e}");
        left.error = Some(left.error.map_or(error.clone(), |before| format!("{before}; {error}")));
    }
    left.end = clock.now();
    left
}

/// Asks the nodes who the members are.
struct Meta {
    client: Client,
    endpoints: Vec<String>,
}

impl Meta {
    /// Returns once the meta leader lists node `id` as a voter. Polls until then; callers bound
    /// it with a timeout.
    async fn until_member(&self, id: u64) {
        loop {
            if let Some(leader) = self.leader_status().await {
                if leader.members.iter().any(|m| m.node_id == id && m.voter) {
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Returns once the meta leader no longer lists node `id` under the `drained` incarnation
    /// (any, if unknown): not at all, or under another one. Polls until then; callers abort it.
    async fn until_gone(&self, id: u64, drained: Option<u64>) -> Gone {
        loop {
            if let Some(leader) = self.leader_status().await {
                match leader.members.iter().find(|m| m.node_id == id) {
                    None => return Gone::Removed,
                    Some(m) if drained.is_some_and(|d| d != m.incarnation) => return Gone::Replaced,
                    Some(_) => {}
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The meta leader's status, with the membership (`None` if no answering node leads). One
    /// node at a time, each bounded: a paused node would hold a call until the client's deadline.
    async fn leader_status(&self) -> Option<StatusResponse> {
        for endpoint in &self.endpoints {
            let asked = tokio::time::timeout(Duration::from_millis(500), self.client.status(endpoint)).await;
            if let Ok(Ok(status)) = asked {
                if Role::is_leader(&status.role) {
                    return Some(status);
                }
            }
        }
        None
    }
}
