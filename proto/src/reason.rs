//! The stable reason codes carried in [`ErrorInfo::reason`](crate::v1::ErrorInfo::reason): the one
//! vocabulary the server writes and the client (and the operator CLI) reads.
//!
//! Each reason is declared once, here, with its wire string. The wire strings are part of the
//! protocol: never change one, only add new reasons. A client meeting a reason it does not know
//! (a newer server) gets `None` from [`Reason::from_wire`] and falls back on the gRPC code.

use std::fmt;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)+) => {
        /// A stable `ErrorInfo.reason` code. The gRPC code that goes with each is given where it
        /// is fixed; the server's `error.rs` is the one place that pairs them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The string sent in `ErrorInfo.reason`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $wire,)+
                }
            }

            /// The reason a wire string names; `None` for one this build does not know.
            pub fn from_wire(wire: &str) -> Option<Reason> {
                match wire {
                    $($wire => Some(Reason::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    // Request contents (INVALID_ARGUMENT).
    /// The key is empty.
    EmptyKey = "EMPTY_KEY",
    /// The key is longer than the limit the message names.
    KeyTooLong = "KEY_TOO_LONG",
    /// The value is larger than the limit the message names.
    ValueTooLarge = "VALUE_TOO_LARGE",
    /// Writes to keys beginning with byte 0xff are refused: that prefix holds the game services'
    /// records.
    ReservedKey = "RESERVED_KEY",
    /// A range request that is not exactly one of key, prefix or start/end.
    InvalidRange = "INVALID_RANGE",
    /// A lease TTL outside the allowed range.
    InvalidTtl = "INVALID_TTL",
    /// A registry, board or election id that is empty, too long or has forbidden characters.
    InvalidId = "INVALID_ID",
    /// A board checkpoint larger than the limit.
    CheckpointTooLarge = "CHECKPOINT_TOO_LARGE",
    /// Board parameters larger than the limit.
    ParamsTooLarge = "PARAMS_TOO_LARGE",
    /// Any other malformed request; the message names the field.
    InvalidArgument = "INVALID_ARGUMENT",
    /// An operator's add-node named an endpoint that did not answer.
    NodeUnreachable = "NODE_UNREACHABLE",

    // Routing (the client refreshes its table and tries again).
    /// The addressed node hosts no replica of the shard (NOT_FOUND).
    UnknownShard = "UNKNOWN_SHARD",
    /// The key maps to another shard than the request named (FAILED_PRECONDITION).
    WrongShard = "WRONG_SHARD",
    /// A transaction's keys span several shards (INVALID_ARGUMENT); use hash tags. The client
    /// refuses such a request itself before sending it.
    CrossShard = "CROSS_SHARD",

    // Leadership and availability.
    /// This node does not lead the shard; `ErrorInfo.leader_endpoint` names the leader if known.
    NotLeader = "NOT_LEADER",
    /// The shard has no leader right now (UNAVAILABLE).
    NoLeader = "NO_LEADER",
    /// The node is stopping (UNAVAILABLE).
    ShuttingDown = "SHUTTING_DOWN",
    /// A learner or empty replica refused a local read (UNAVAILABLE); another replica can answer.
    ReplicaNotServing = "REPLICA_NOT_SERVING",
    /// Client-side only: a replica answered a serializable read from a revision older than one
    /// this client already saw of the shard, so the client asked another.
    StaleReplica = "STALE_REPLICA",
    /// The write may or may not have been applied (UNAVAILABLE, `not_applied = false`).
    OutcomeUnknown = "OUTCOME_UNKNOWN",
    /// An internal failure (INTERNAL); for a write, no promise of no effect.
    Internal = "INTERNAL",

    // Exactly-once writes.
    /// A repeat of a write whose reply the shard no longer keeps: this copy did nothing, an
    /// earlier one may have been applied.
    WriteSeqTooOld = "WRITE_SEQ_TOO_OLD",
    /// The shard tracks as many writing clients as it may (RESOURCE_EXHAUSTED).
    TooManyClients = "TOO_MANY_CLIENTS",

    // Watches.
    /// OUT_OF_RANGE; `ErrorInfo.oldest_revision` is the oldest revision still available.
    Compacted = "COMPACTED",
    /// RESOURCE_EXHAUSTED; `ErrorInfo.revision` is the revision to resume from.
    WatcherTooSlow = "WATCHER_TOO_SLOW",
    /// UNAVAILABLE (transient): the node restarted its history; resume on another node.
    WatchReset = "WATCH_RESET",

    // Leases.
    /// NOT_FOUND: the lease expired or was revoked.
    LeaseNotFound = "LEASE_NOT_FOUND",

    // Registry.
    /// NOT_FOUND: no game server is registered under that id.
    ServerNotFound = "SERVER_NOT_FOUND",
    /// `ErrorInfo.incarnation` is the current incarnation.
    StaleIncarnation = "STALE_INCARNATION",

    // Boards.
    /// ALREADY_EXISTS.
    BoardExists = "BOARD_EXISTS",
    /// NOT_FOUND.
    BoardNotFound = "BOARD_NOT_FOUND",
    /// `ErrorInfo.owner`, `.epoch` and `.incarnation` describe the current owner.
    StaleEpoch = "STALE_EPOCH",
    /// `ErrorInfo.seq` is the stored checkpoint seq.
    StaleSeq = "STALE_SEQ",
    /// The game server named as owner is not live.
    ServerNotLive = "SERVER_NOT_LIVE",
    /// The caller does not own the board; `ErrorInfo.owner` and `.epoch` describe who does.
    NotOwner = "NOT_OWNER",

    // Elections.
    /// `ErrorInfo.term` and `.leader` describe the election now.
    StaleTerm = "STALE_TERM",
    /// `ErrorInfo.term` and `.leader` describe the election now.
    NotElectionLeader = "NOT_ELECTION_LEADER",

    // Membership and placement (the cluster's membership is unchanged).
    /// The joining node's id, name or endpoint collides with another member's.
    MemberConflict = "MEMBER_CONFLICT",
    /// The change would remove a shard's last voter.
    LastVoter = "LAST_VOTER",
    /// The change would remove the last node that holds a shard's data.
    LastReplicaHolder = "LAST_REPLICA_HOLDER",
    /// NOT_FOUND: no member has that name.
    UnknownNode = "UNKNOWN_NODE",
    /// UNAVAILABLE: another membership change is in progress; retry shortly.
    MembershipBusy = "MEMBERSHIP_BUSY",
    /// The node asked to join did not report its node id or data-dir incarnation (an older
    /// version, or not started).
    UnidentifiedNode = "UNIDENTIFIED_NODE",
    /// A join would replace a member's entry with an incarnation the node itself does not report.
    IncarnationMismatch = "INCARNATION_MISMATCH",

    // Client-side only: the reasons `hcctl --json` reports for the client's own errors, which no
    // server sends.
    /// No node could serve the request within the attempt budget.
    Unavailable = "UNAVAILABLE",
    /// The request deadline passed with nothing in flight.
    DeadlineExceeded = "DEADLINE_EXCEEDED",
    /// A gRPC status outside HyperCache's error model.
    Rpc = "RPC",
    /// The client's configuration or an argument is invalid.
    Config = "CONFIG",
    /// Reading the command's input or writing its output failed.
    Io = "IO",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_reason_round_trips_through_its_wire_string() {
        for &r in Reason::ALL {
            assert_eq!(Reason::from_wire(r.as_str()), Some(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!(Reason::from_wire("NOT_A_REASON"), None);
    }

    /// The API reference's error table is where users look a reason up: it must name them all.
    #[test]
    fn the_api_reference_documents_every_reason() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
        let doc = std::fs::read_to_string(&path).expect("docs/api.md");
        let table: String = doc.lines().filter(|l| l.starts_with("| `")).collect();
        let missing: Vec<_> = Reason::ALL.iter().filter(|r| !table.contains(&format!("`{}`", r.as_str()))).collect();
        assert!(missing.is_empty(), "docs/api.md's error table lacks {missing:?}");
    }

    #[test]
    fn wire_strings_are_unique_and_shouted() {
        let mut seen = HashSet::new();
        for &r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} declared twice");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
        }
    }
}
