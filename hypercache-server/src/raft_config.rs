//! The openraft configuration every shard's Raft runs with, built from the node's `[raft]`
//! settings.
//!
//! It sits below both the node wiring (which validates it once at startup, so a bad setting
//! stops the node before any Raft starts) and the replica host (which hands the validated
//! config to every replica it opens), so neither has to reach into the other for it.

use openraft::SnapshotPolicy;

use crate::config::RaftSettings;

/// Snapshot chunks are at most this big on the wire.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// The validated openraft config for `r`.
pub fn raft_config(r: &RaftSettings) -> Result<openraft::Config, Box<openraft::ConfigError>> {
    openraft::Config {
        cluster_name: "hypercache".to_string(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        install_snapshot_timeout: r.install_snapshot_timeout_ms,
        max_payload_entries: r.max_entries_per_append,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_after_entries),
        max_in_snapshot_log_to_keep: r.logs_kept_after_snapshot,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
    .map_err(Box::new)
}
