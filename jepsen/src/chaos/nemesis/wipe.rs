//! The wipe nemesis: a lost volume. SIGKILL one node, delete its data directory, and (at the
//! fault's end) restart it with its original command line: same node id, same addresses, no
//! Raft state, a new data-dir incarnation. This is issue 16's defect 1 as a fault: the node's
//! groups still count its old incarnation as a voter, so it must refuse every message meant for
//! it (the server's `network/admit.rs`) until the cluster has replaced it, and no acknowledged
//! write may be lost.
//!
//! The one-wipe-at-a-time rule: a node is never wiped while a node wiped before has not caught
//! up again ([`Probe::caught_up`]). Three voters that lose two disks before either copied the
//! log back can lose acknowledged writes legitimately (only one copy of the committed tail is
//! left, and a crash of its holder ends it); that is a double fault beyond what replication 3
//! promises, not a bug the suite should report. After each restart a watcher polls the wiped
//! node until it has caught up and logs `caught-up` (start: the restart, end: when it was seen
//! caught up, 100 ms polls), which also measures the catch-up time.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::{Cluster, Probe};

pub async fn wipe(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    super::kill::down(cluster, nodes, clock, true).await
}

/// A wiped node restarted at `since` and the task watching it catch up.
pub struct CatchUp {
    /// Raft id of the wiped node.
    pub id: u64,
    /// When it was restarted (ns on the run's clock).
    pub since: u64,
    watcher: JoinHandle<NemesisEvent>,
}

/// Starts watching node `i` (restarted at `since` on the run's clock) until it has caught up.
pub fn watch(probe: Probe, id: u64, i: usize, since: u64, clock: Clock) -> CatchUp {
    let watcher = tokio::spawn(async move {
        while !probe.caught_up(i).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        NemesisEvent {
            action: Action::CaughtUp,
            nodes: vec![id],
            start: since,
            end: clock.now(),
            error: None,
            offset_ms: None,
            shape: None,
            cut: Vec::new(),
        }
    });
    CatchUp { id, since, watcher }
}

impl CatchUp {
    /// Waits up to `within` for the node to have caught up: `Ok` with the `caught-up` event, or
    /// `Err(self)` to wait again later.
    pub async fn wait(mut self, within: Duration) -> Result<NemesisEvent, CatchUp> {
        match tokio::time::timeout(within, &mut self.watcher).await {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(e)) => Ok(NemesisEvent {
                action: Action::CaughtUp,
                nodes: vec![self.id],
                start: self.since,
                end: self.since,
                error: Some(format!("the catch-up watcher failed: {e}")),
                offset_ms: None,
                shape: None,
                cut: Vec::new(),
            }),
            Err(_) => Err(self),
        }
    }
}

impl CatchUp {
    /// The `caught-up` line of a node that never caught up: its error says since when.
    pub fn never(&self, clock: &Clock) -> NemesisEvent {
        NemesisEvent {
            action: Action::CaughtUp,
            nodes: vec![self.id],
            start: self.since,
            end: clock.now(),
            error: Some(format!("node {} had not caught up since its wipe", self.id)),
            offset_ms: None,
            shape: None,
            cut: Vec::new(),
        }
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
