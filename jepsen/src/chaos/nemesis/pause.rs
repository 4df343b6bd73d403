//! The pause nemesis: SIGSTOP freezes a node whole (its timers, its Raft role, its open
//! connections, which stay established), the closest a local process gets to a long GC pause or
//! a VM migration; SIGCONT resumes it. A paused leader that wakes up still believing it leads is
//! exactly what leader leases and read indexes must survive.

use super::{event, Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::cluster::Cluster;

pub async fn pause(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let mut errors = Vec::new();
    for &i in nodes {
        if let Err(e) = cluster.pause(i).await {
            errors.push(e.to_string());
        }
    }
    event(cluster, Action::Pause, nodes, start, clock, errors)
}

pub async fn resume(cluster: &mut Cluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let mut errors = Vec::new();
    for &i in nodes {
        if let Err(e) = cluster.resume(i).await {
            errors.push(e.to_string());
        }
    }
    event(cluster, Action::Resume, nodes, start, clock, errors)
}
