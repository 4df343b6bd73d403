//! What the node's Raft log holds for one shard, in memory: where each live entry is on disk, and
//! the shard's vote, committed mark and purge point. Built by replaying the segments at startup
//! and kept up to date by every write after.

use std::collections::BTreeMap;

use crate::raft_types::{LogId, Vote};

/// Where an entry's sealed bytes are: segment sequence number, byte offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub log_id: LogId,
    pub loc: Loc,
}

/// One shard's log state. Entries are contiguous by index, and their segments never decrease
/// with the index (appends go to the newest segment; a rewrite moves all of a shard's entries at
/// once), so the first entry names the oldest segment the shard still needs.
#[derive(Debug, Default, Clone)]
pub struct ShardLog {
    pub entries: BTreeMap<u64, Slot>,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

impl ShardLog {
    /// An entry at `log_id.index` replaces that index and everything after it (a follower's log
    /// overwritten by a new leader).
    pub fn append(&mut self, log_id: LogId, loc: Loc) {
        self.truncate(log_id.index);
        self.entries.insert(log_id.index, Slot { log_id, loc });
    }

    /// Re-records where an entry is after a rewrite moved it; the entry itself is unchanged.
    pub fn relocate(&mut self, index: u64, loc: Loc) {
        if let Some(slot) = self.entries.get_mut(&index) {
            slot.loc = loc;
        }
    }

    pub fn truncate(&mut self, from: u64) {
        self.entries.split_off(&from);
    }

    pub fn purge(&mut self, upto: LogId) {
        self.entries = self.entries.split_off(&(upto.index + 1));
        if self.last_purged.is_none_or(|p| p.index < upto.index) {
            self.last_purged = Some(upto);
        }
    }

    pub fn last_log_id(&self) -> Option<LogId> {
        self.entries.last_key_value().map(|(_, s)| s.log_id).or(self.last_purged)
    }

    /// The oldest segment holding one of this shard's live entries.
    pub fn first_segment(&self) -> Option<u64> {
        self.entries.first_key_value().map(|(_, s)| s.loc.segment)
    }

    /// The first index missing from an otherwise contiguous log (after the purge point), if any.
    pub fn gap(&self) -> Option<(u64, u64)> {
        let mut expect = self.last_purged.map(|p| p.index + 1);
        for &index in self.entries.keys() {
            if let Some(e) = expect {
                if index != e {
                    return Some((e, index));
                }
            }
            expect = Some(index + 1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_types::CommittedLeaderId;

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId { term, node_id: 1 }, index)
    }
    fn loc(segment: u64) -> Loc {
        Loc { segment, offset: 0, len: 1 }
    }

    #[test]
    fn appends_overwrite_purges_drop_and_gaps_are_found() {
        let mut s = ShardLog::default();
        for i in 1..=5 {
            s.append(id(1, i), loc(1));
        }
        s.append(id(2, 4), loc(2));
        assert_eq!(s.last_log_id(), Some(id(2, 4)));
        assert_eq!(s.entries.len(), 4);
        s.purge(id(1, 2));
        assert_eq!(s.first_segment(), Some(1));
        assert_eq!(s.entries.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(s.gap(), None);
        s.purge(id(2, 4));
        assert_eq!(s.last_log_id(), Some(id(2, 4)));
        assert_eq!(s.first_segment(), None);
        s.append(id(2, 7), loc(3));
        assert_eq!(s.gap(), Some((5, 7)));
    }
}
