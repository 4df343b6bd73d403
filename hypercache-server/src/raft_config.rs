//! The openraft configuration every shard's Raft runs with, built from the node's `[raft]`
//! settings.
//!
//! It sits below both the node wiring (which validates it once at startup, so a bad setting
//! stops the node before any Raft starts) and the replica host (which hands the validated
//! config to every replica it opens), so neither has to reach into the other for it.

use openraft::SnapshotPolicy;

use crate::config::RaftSettings;

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
        // A node back from a partition or a pause asks whether it could win before it bumps its
        // term, so it cannot depose a live leader (before: one lagging node drove a shard's term
        // past 500). A follower that cannot win keeps naming its old leader; readiness therefore
        // also asks when the leader was last heard from (`contact.rs`).
        enable_pre_vote: Some(true),
        // A restarted leader must win an election again (ADR 41): the committed index is stored
        // without a sync, so after a power cut it can lag what this leader had acknowledged, and
        // a leader restored on it could serve a read from before those writes.
        enable_leader_restore: Some(false),
        // A voter restarted on a wiped volume comes back with an empty log; the leader must
        // start its replication over instead of treating the reversion as a bug (a debug
        // assertion, and a wrong matching index, without this).
        allow_log_reversion: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(Box::new)
}
