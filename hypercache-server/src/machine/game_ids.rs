//! The fencing numbers of the game state, each its own type so that two of them cannot be swapped
//! at a call site (`sync(board, epoch, seq, ..)` with the arguments reversed does not compile). A
//! leaf: it imports nothing of the crate.
//!
//! Two look-alikes stay out on purpose: a game server's [`ServerIncarnation`] (bumped by every
//! register) is not a node's data-dir `Incarnation` of `types.rs` (one life of a node's disk), and
//! an election's [`Term`] is not a Raft term (openraft's, and the lease clock's, stay `u64`).
//! Likewise [`Seq`] orders a board's checkpoints, not a client's writes (`WriteId::seq`).
//!
//! These values are stored (in the command language, in game records, in snapshots; postcard):
//! `#[serde(transparent)]` keeps each one's bytes those of the bare `u64` it replaced, which the
//! tests of `command.rs` pin. The wire carries plain `u64`s; the services convert where protobuf
//! messages are built and read, and nowhere else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares each fencing number alike: a `u64` in a type of its own, stored as the bare number
/// (`transparent`), shown as the number.
macro_rules! fencing_numbers {
    ($($(#[$doc:meta])* $id:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $id(pub u64);

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

fencing_numbers! {
    /// A board's ownership epoch: bumped by every assignment and release, and never reused by a
    /// board id, it fences checkpoint writes of an owner that lost the board (`STALE_EPOCH`).
    Epoch;
    /// A board checkpoint's sequence number within one epoch: it fences a checkpoint older than the
    /// stored one (`STALE_SEQ`), and an equal one makes a repeated sync idempotent.
    Seq;
    /// A game server registration's incarnation: bumped by every register of a server id, never
    /// reused, it fences a stale instance of the same server id (`STALE_INCARNATION`).
    ServerIncarnation;
    /// An election's term: larger than every earlier term of that election name, it fences the
    /// writes of a deposed leader (`STALE_TERM`, `NOT_ELECTION_LEADER`).
    Term;
}

// The three counters the state machine hands out (a seq is chosen by the board's owner).
macro_rules! counted {
    ($($id:ident: $what:literal),*) => {$(
        impl $id {
            #[doc = concat!("The ", $what, " after this one: what the state machine hands out next.")]
            pub fn next(self) -> $id {
                $id(self.0 + 1)
            }
        }
    )*};
}

counted!(Epoch: "epoch", ServerIncarnation: "incarnation", Term: "term");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_their_number_and_counters_count_up() {
        let shown = format!("{} {} {} {}", Epoch(7), Seq(0), ServerIncarnation(3), Term(12));
        assert_eq!(shown, "7 0 3 12");
        assert_eq!(format!("{:>3}", Epoch(7)), "  7", "formatting flags reach the number");
        assert!(Seq(9) < Seq(10));
        assert_eq!(Epoch(3).next(), Epoch(4));
        assert_eq!((ServerIncarnation(0).next(), Term(1).next()), (ServerIncarnation(1), Term(2)));
    }
}
