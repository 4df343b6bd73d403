//! The fencing numbers of the game services and the shard ids, each its own type so that two of
//! them cannot be swapped at a call site (`sync_board(board, epoch, seq, ..)` with the arguments
//! reversed does not compile, nor does a revision passed where a shard is expected). A leaf: it
//! imports nothing of the crate. The wire carries plain `u64`s and `u32`s; the conversion
//! happens where protobuf messages are built and read, and nowhere else.

use std::fmt;

/// A board's ownership epoch: bumped by every assignment and release, it fences checkpoint
/// writes of an owner that lost the board (`STALE_EPOCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// A board checkpoint's sequence number within one epoch: it fences a checkpoint older than the
/// stored one (`STALE_SEQ`), and an equal one makes a repeated sync idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

/// A game server registration's incarnation: bumped by every register, it fences a stale
/// instance of the same server id (`STALE_INCARNATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Incarnation(pub u64);

/// An election's term: larger than every earlier term of that election, it fences the writes of
/// a deposed leader (`STALE_TERM`, `NOT_ELECTION_LEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

/// A data shard of the cluster: one Raft group, `0..shard_count` of the routing table. The
/// client never addresses the meta group by id (membership requests go to `Group::Meta`, which
/// reads no shard id), so unlike the server's `ShardId` this one has no `META`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ShardId(pub u32);

impl Epoch {
    /// The epoch after this one: what the next assignment or release of the board sets.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl Seq {
    /// The seq after this one: what an owner writes after this checkpoint is confirmed.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

macro_rules! display_the_number {
    ($($id:ident),*) => {$(
        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

display_the_number!(Epoch, Seq, Incarnation, Term, ShardId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_their_number_and_order_by_it() {
        assert_eq!(format!("{} {} {} {}", Epoch(7), Seq(0), Incarnation(3), Term(12)), "7 0 3 12");
        assert_eq!(ShardId(3).to_string(), "3", "a shard prints as its number, as hcctl's JSON and messages show it");
        assert_eq!(format!("{:>3}", Epoch(7)), "  7", "formatting flags reach the number");
        assert!(Seq(9) < Seq(10));
        assert_eq!(Seq(9).next(), Seq(10));
        assert_eq!(Epoch(3).next(), Epoch(4));
    }
}
