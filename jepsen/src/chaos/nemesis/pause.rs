//! The pause nemesis: SIGSTOP freezes a node whole (its timers, its Raft role, its open
//! connections, which stay established), the closest a local process gets to a long GC pause or
//! a VM migration; SIGCONT resumes it. A paused leader that wakes up still believing it leads is
//! exactly what leader leases and read indexes must survive.

use super::{event, Action, NemesisEvent};
use crate::chaos::history::Clock;
use crate::chaos::target::local::LocalCluster;

pub fn pause(cluster: &mut LocalCluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let errors: Vec<String> = nodes.iter().filter_map(|&i| cluster.pause(i).err()).map(|e| e.to_string()).collect();
    event(cluster, Action::Pause, nodes, start, clock, errors)
}

pub fn resume(cluster: &mut LocalCluster, nodes: &[usize], clock: &Clock) -> NemesisEvent {
    let start = clock.now();
    let errors: Vec<String> = nodes.iter().filter_map(|&i| cluster.resume(i).err()).map(|e| e.to_string()).collect();
    event(cluster, Action::Resume, nodes, start, clock, errors)
}
