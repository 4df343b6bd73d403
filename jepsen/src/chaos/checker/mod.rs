//! Checkers: pure functions from a history (and, for some, the final reads it holds) to a
//! verdict with the anomalies found. They never talk to a cluster, so `hcjepsen check DIR`
//! re-runs them on a stored history and their unit tests feed them hand-written histories.
//!
//! - [`linearizable`]: per-key linearizability of a read/write/compare-and-swap register.
//! - [`set`]: every acknowledged add is in the final read; nothing that certainly failed or was
//!   never added is.
//! - [`bank`]: every read of all accounts shows each account, none negative, and the total
//!   the setup put in.
//! - [`election`]: no two campaigns won one term; terms never go back; leader reads agree with
//!   the campaigns that won.
//! - [`board`]: no checkpoint accepted from a deposed owner's epoch, seqs increasing within an
//!   epoch, no checkpoint going back.
//! - [`append`]: list-append transactions: no garbage, duplicated, aborted or lost element, no
//!   forked list, no dependency cycle (Elle).
//! - [`lease`]: no key attached to a lease gone before its holder's vouched deadline; a
//!   revoked lease's keys gone.
//! - [`watch`]: every committed change delivered to each watcher once, in revision order per
//!   shard, across resumes, and its last events agreeing with the final read.

pub mod append;
pub mod bank;
pub mod board;
pub mod election;
pub mod lease;
pub mod linearizable;
pub mod set;
pub mod watch;

use serde::{Deserialize, Serialize};

/// A checker's verdict, Jepsen's `:valid?`: `unknown` when the checker could not decide (its
/// search budget ran out, the final read never succeeded, or the history holds nothing to
/// check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    True,
    False,
    Unknown,
}

impl Validity {
    /// The verdict of several checks: false if any is false, else unknown if any is unknown.
    pub fn all(verdicts: impl IntoIterator<Item = Validity>) -> Validity {
        verdicts.into_iter().fold(Validity::True, |acc, v| match (acc, v) {
            (Validity::False, _) | (_, Validity::False) => Validity::False,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::True,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Validity::True => "true",
            Validity::False => "false",
            Validity::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_beats_unknown_beats_true() {
        assert_eq!(Validity::all([]), Validity::True);
        assert_eq!(Validity::all([Validity::True, Validity::Unknown]), Validity::Unknown);
        assert_eq!(Validity::all([Validity::Unknown, Validity::False, Validity::True]), Validity::False);
    }
}
