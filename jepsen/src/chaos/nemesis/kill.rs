//! The kill nemesis: SIGKILL (no shutdown path runs: no flush beyond what each write already
//! did, no leadership transfer), then a restart with the node's original command line, so it
//! comes back with the same identity and data directory.

use super::{event, Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::Cluster;

pub async fn kill(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    down(cluster, nodes, clock, false).await
}

/// SIGKILL `nodes`; with `wipe`, also delete their data directories (the wipe nemesis).
pub(super) async fn down(cluster: &mut Cluster, nodes: &[usize], clock: &Clock, wipe: bool) -> NemesisEvent {
    let start = clock.now();
    let mut errors = Vec::new();
    for &i in nodes {
        let done = if wipe { cluster.wipe(i).await } else { cluster.kill(i).await };
        if let Err(e) = done {
            errors.push(e.to_string());
        }
    }
    let action = if wipe { Action::Wipe } else { Action::Kill };
    event(cluster, action, nodes, start, clock, errors)
}

/// A power cut of `nodes` (`Cluster::power_cut`); healed by [`restart`].
pub async fn power(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let errors = cluster.power_cut(nodes).await.err().map(|e| e.to_string()).into_iter().collect();
    event(cluster, Action::PowerCut, nodes, start, clock, errors)
}

pub async fn restart(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let mut errors = Vec::new();
    for &i in nodes {
        if let Err(e) = cluster.restart(i).await {
            errors.push(e.to_string());
        }
    }
    event(cluster, Action::Restart, nodes, start, clock, errors)
}
