//! The beats this node has received: which node last said it leads which quiet shards, and when.
//! Written by the Quiet service, read by this node's [`super::driver`] once a round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypercache_proto::poison::lock;

use super::Beat;
use crate::types::{NodeId, ShardId};

/// Shared by the Quiet service and the driver; clones share the table.
#[derive(Clone, Default)]
pub struct BeatBoard {
    inner: Arc<Mutex<HashMap<NodeId, Heard>>>,
}

/// The last beat from one node: when it came, and the (shard, term) pairs it named.
struct Heard {
    at: Instant,
    quiet: Vec<(ShardId, u64)>,
}

impl BeatBoard {
    /// Records `beat`, replacing what its sender said before.
    pub fn record(&self, beat: Beat) {
        lock(&self.inner).insert(beat.from, Heard { at: Instant::now(), quiet: beat.quiet });
    }

    /// For every shard named by a beat younger than `fresh`: the node that named it and the
    /// term. If two nodes name one shard (a leader deposed while its beats were in flight) the
    /// higher term wins.
    pub fn quiet_leaders(&self, fresh: Duration) -> HashMap<ShardId, (NodeId, u64)> {
        let now = Instant::now();
        let mut out: HashMap<ShardId, (NodeId, u64)> = HashMap::new();
        for (node, heard) in lock(&self.inner).iter() {
            if now.duration_since(heard.at) > fresh {
                continue;
            }
            for (shard, term) in &heard.quiet {
                let better = out.get(shard).is_none_or(|(_, t)| term > t);
                if better {
                    out.insert(*shard, (*node, *term));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_beats_name_their_shards_and_the_higher_term_wins() {
        let board = BeatBoard::default();
        board.record(Beat { from: 1, quiet: vec![(ShardId(3), 5), (ShardId(4), 2)] });
        board.record(Beat { from: 2, quiet: vec![(ShardId(3), 6)] });
        let seen = board.quiet_leaders(Duration::from_secs(5));
        assert_eq!(seen.get(&ShardId(3)), Some(&(2, 6)));
        assert_eq!(seen.get(&ShardId(4)), Some(&(1, 2)));
        // A newer beat replaces the sender's older one.
        board.record(Beat { from: 1, quiet: vec![] });
        assert_eq!(board.quiet_leaders(Duration::from_secs(5)).get(&ShardId(4)), None);
    }

    #[test]
    fn stale_beats_name_nothing() {
        let board = BeatBoard::default();
        board.record(Beat { from: 1, quiet: vec![(ShardId(3), 5)] });
        std::thread::sleep(Duration::from_millis(20));
        assert!(board.quiet_leaders(Duration::from_millis(5)).is_empty());
    }
}
