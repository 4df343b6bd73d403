//! Test control over this node's outbound Raft links: which peers it may send which Raft
//! messages to.
//!
//! In-process cluster tests need partitions that real sockets cannot give them (all nodes share
//! 127.0.0.1), and some faults need finer cuts than a whole link: the exactly-once test
//! (`tests/exactly_once.rs`) lets a group of nodes exchange votes but not appends, so that a
//! leader is elected whose entries reach no one. A blocked message fails at the sender as
//! `Unreachable`, as if the peer were down; a cut in both directions is a block on both nodes.
//!
//! Nothing blocks anything unless a test asks: the check on the send path is one relaxed atomic
//! load while no block is set. There is no config for it; only code holding the [`crate::node::Node`]
//! (tests) can reach it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hypercache_proto::poison::lock;

/// The kinds of Raft messages a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaftRpc {
    /// AppendEntries, heartbeats included.
    Append,
    Vote,
    Snapshot,
}

impl RaftRpc {
    pub const ALL: [RaftRpc; 3] = [RaftRpc::Append, RaftRpc::Vote, RaftRpc::Snapshot];
}

/// The blocked (peer address, message kind) pairs of one node. Clones share the set.
#[derive(Clone, Default)]
pub struct Links {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Fast path: false while nothing is blocked.
    any: AtomicBool,
    blocked: Mutex<HashSet<(String, RaftRpc)>>,
}

impl Links {
    /// Stops sending `kinds` to the peer at `addr` (its advertised `host:port`).
    pub fn block(&self, addr: &str, kinds: &[RaftRpc]) {
        let mut blocked = lock(&self.inner.blocked);
        blocked.extend(kinds.iter().map(|k| (addr.to_string(), *k)));
        self.inner.any.store(!blocked.is_empty(), Ordering::Release);
    }

    /// Replaces the blocked set in one step (no moment where the union or neither applies).
    pub fn set(&self, blocked: impl IntoIterator<Item = (String, RaftRpc)>) {
        let mut guard = lock(&self.inner.blocked);
        *guard = blocked.into_iter().collect();
        self.inner.any.store(!guard.is_empty(), Ordering::Release);
    }

    /// Sends everything to everyone again.
    pub fn heal(&self) {
        let mut blocked = lock(&self.inner.blocked);
        blocked.clear();
        self.inner.any.store(false, Ordering::Release);
    }

    /// True when a `kind` message may go to `addr`.
    pub(crate) fn allows(&self, addr: &str, kind: RaftRpc) -> bool {
        if !self.inner.any.load(Ordering::Acquire) {
            return true;
        }
        let blocked = lock(&self.inner.blocked);
        !blocked.contains(&(addr.to_string(), kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_per_peer_and_kind_until_healed() {
        let links = Links::default();
        assert!(links.allows("a:1", RaftRpc::Append));
        links.block("a:1", &[RaftRpc::Append]);
        assert!(!links.allows("a:1", RaftRpc::Append));
        assert!(links.allows("a:1", RaftRpc::Vote));
        assert!(links.allows("b:1", RaftRpc::Append));
        links.set([("b:1".to_string(), RaftRpc::Vote)]);
        assert!(links.allows("a:1", RaftRpc::Append), "set replaces");
        assert!(!links.allows("b:1", RaftRpc::Vote));
        links.clone().heal();
        assert!(links.allows("a:1", RaftRpc::Append), "clones share the set");
    }
}
