//! Renewing a quiet leader's lease before it changes its log.
//!
//! A quiet shard (`quiet/`) sends no heartbeats, so openraft 0.10's leader lease (a quorum ack
//! within `election_timeout_max`) runs out while it is quiet, and the leader then refuses every
//! new entry, a proposal or a membership change alike (`ForwardToLeader`, reason
//! `LeaseExpired`, naming no leader). Whoever changes the log therefore wakes the shard, lets
//! one heartbeat round renew the lease, and asks once more: client writes, lease expiry and
//! lease-home ends through the proposer, membership changes through the placement driver and
//! node membership. A refused change that nobody asks again for stays undone: a lease that
//! never expired, a crashed node's replica never replaced.

use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, RaftError};
use openraft::ServerState;

use crate::raft_handle::ShardRaft;
use crate::raft_types::TypeConfig;

/// How long a change waits for the lease to be renewed before it is asked again: a few
/// heartbeat round trips, far below any election timeout.
const RENEWAL_WAIT: Duration = Duration::from_millis(500);

/// True for the refusal of a leader whose lease ran out.
pub fn lease_expired(e: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> bool {
    matches!(e, RaftError::APIError(ClientWriteError::ForwardToLeader(f)) if f.reason == ForwardReason::LeaseExpired)
}

/// Ticks and heartbeats now, and waits (up to [`RENEWAL_WAIT`]) until a quorum has
/// acknowledged this leader again.
pub async fn renew(raft: &ShardRaft) {
    let before = raft.metrics().borrow_watched().last_quorum_acked;
    raft.runtime_config().tick(true);
    if let Err(e) = raft.trigger().heartbeat().await {
        tracing::debug!(error = %e, "lease renewal: heartbeat not sent");
        return;
    }
    let deadline = tokio::time::Instant::now() + RENEWAL_WAIT;
    while tokio::time::Instant::now() < deadline {
        let m = raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader || m.last_quorum_acked != before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs `change`; refused for a lease that ran out, renews the lease and runs it once more.
pub async fn renewing<T, F, Fut>(
    raft: &ShardRaft,
    change: F,
) -> Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>>,
{
    match change().await {
        Err(e) if lease_expired(&e) => {
            renew(raft).await;
            change().await
        }
        other => other,
    }
}
