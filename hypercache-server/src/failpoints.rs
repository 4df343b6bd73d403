//! Failpoints: switches that re-create classic consensus bugs on purpose, so the chaos suite
//! (`jepsen/`, `hcjepsen`) can show that its checkers catch them. A checker that has never failed
//! proves nothing.
//!
//! Compiled in only with the `failpoints` cargo feature (off by default; release images are never
//! built with it): without it [`on`] is a constant `false` and every guarded branch is dead code.
//! With it, `HYPERCACHE_FAILPOINTS` names the switches that are on (comma-separated), read once:
//! - `stale-read`: linearizable reads skip the read index and are served from the local state
//!   machine, whatever this replica's role (an isolated old leader answers from the past).

/// One switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    StaleRead,
}

impl Failpoint {
    /// Its name in `HYPERCACHE_FAILPOINTS`.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::StaleRead => "stale-read",
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
            if name != Failpoint::StaleRead.name() {
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
