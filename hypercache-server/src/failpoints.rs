//! Failpoints: switches that re-create classic consensus bugs on purpose, so the chaos suite
//! (`jepsen/`, `hcjepsen`) can show that its checkers catch them. A checker that has never failed
//! proves nothing.
//!
//! Compiled in only with the `failpoints` cargo feature (off by default; release images are never
//! built with it): without it [`on`] is a constant `false` and every guarded branch is dead code.
//! With it, `HYPERCACHE_FAILPOINTS` names the switches that are on (comma-separated), read once:
//! - `stale-read`: linearizable reads skip the read index and are served from the local state
//!   machine, whatever this replica's role (an isolated old leader answers from the past).
//! - `accept-stale-epoch`: a board sync whose epoch is older than the board's current one (a
//!   deposed owner's) is written and acknowledged instead of refused with `STALE_EPOCH`.
//! - `double-apply`: a write whose write id the client's session already lists (a retry of a
//!   write that was applied) is applied again instead of answered with its stored reply: the
//!   bug exactly-once sessions exist for (ADR 33).
//! - `ack-before-flush`: Raft log appends are reported persisted as soon as they are inserted,
//!   without waiting for (or asking for) the group-commit fsync (`storage/flusher.rs`); they reach
//!   the disk only when something else flushes the node's `Db` (a vote, a purge, a snapshot). A
//!   write can then be acknowledged by a majority that all hold it only in the page cache, and a
//!   power cut of every node (the chaos suite's `power` nemesis) loses it.
//! - `lose-reply`: not a bug but a fault, the network losing a reply: every third write that
//!   carries a write id is applied and then answered `OUTCOME_UNKNOWN`, so the client repeats it
//!   with the same id. With sessions working the repeat gets the first outcome and the history
//!   stays valid; together with `double-apply` every such repeat is applied again, which the
//!   `list-append` checker must catch. Kills and pauses produce such repeats only when a fault
//!   lands between a write's commit and its reply, too rarely to rely on.

/// One switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    StaleRead,
    AcceptStaleEpoch,
    DoubleApply,
    AckBeforeFlush,
    LoseReply,
}

impl Failpoint {
    /// Every switch, for checking the names in `HYPERCACHE_FAILPOINTS`.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    const ALL: [Failpoint; 5] = [
        Failpoint::StaleRead,
        Failpoint::AcceptStaleEpoch,
        Failpoint::DoubleApply,
        Failpoint::AckBeforeFlush,
        Failpoint::LoseReply,
    ];

    /// Its name in `HYPERCACHE_FAILPOINTS`.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::StaleRead => "stale-read",
            Failpoint::AcceptStaleEpoch => "accept-stale-epoch",
            Failpoint::DoubleApply => "double-apply",
            Failpoint::AckBeforeFlush => "ack-before-flush",
            Failpoint::LoseReply => "lose-reply",
        }
    }
}

/// Whether `fp` is on.
#[cfg(feature = "failpoints")]
pub fn on(fp: Failpoint) -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<Vec<String>> = OnceLock::new();
    ON.get_or_init(|| {
        let list = std::env::var("HYPERCACHE_FAILPOINTS").unwrap_or_default();
        let names: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        for name in &names {
            if !Failpoint::ALL.iter().any(|fp| fp.name() == name) {
                tracing::error!(failpoint = %name, "HYPERCACHE_FAILPOINTS names an unknown failpoint; ignored");
            }
        }
        if !names.is_empty() {
            tracing::warn!(failpoints = ?names, "failpoints are ON: this node has bugs on purpose");
        }
        names
    })
    .iter()
    .any(|n| n == fp.name())
}

/// Whether `fp` is on: never, in a build without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn on(_fp: Failpoint) -> bool {
    false
}

/// Whether the reply to this tracked write is to be lost (`lose-reply`): true for every third
/// call while the switch is on. A counter rather than chance, so a run's repeats do not depend
/// on luck.
pub fn lose_this_reply() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    on(Failpoint::LoseReply) && CALLS.fetch_add(1, Ordering::Relaxed) % 3 == 2
}
