//! Leases across shards: how a shard learns that a lease of another shard, which some of its keys
//! hang on, has ended.
//!
//! A lease lives in its *home* shard (`id >> 48`): that shard grants it, renews it (one keepalive
//! stream, to its leader) and alone decides that it ends (expiry or revoke, a committed entry of
//! its log). A key of another shard S attached to it is recorded in S (the key's row carries the
//! lease id; S keeps a follower record listing its keys on the lease, `machine/lease.rs`). S's
//! leader *pulls* the ends: every [`POLL`] it asks the home shards' leaders which of the leases
//! it follows have ended ([`LeaseHomes::ended`], one call per home shard for all its leases),
//! and proposes [`LeaseOp::HomeEnded`] for those, which deletes S's keys on them in one command
//! (atomic in S, one revision).
//!
//! Invariants and why they hold:
//! - *No key goes before the home shard committed the end.* The home leader answers after a read
//!   barrier (leadership confirmed by a quorum after the question arrived, everything committed
//!   before applied), so a lease it reports gone has a committed end (lease ids are never
//!   reused, and S only follows leases the home confirmed to exist). Revoke and expiry in S skip
//!   leases of other shards.
//! - *Every key goes, within a bounded lag.* S's follower records are replicated state: any leader
//!   of S polls them all, so a leader change, a restart or a lost answer only delays the delete
//!   by one more poll. The lag after the home's commit is at most one poll period plus a
//!   barrier on the home leader and a commit in S (measured: `docs/architecture.md`).
//! - *A put never leaves a key that is never deleted.* The put's service checks with the home
//!   shard first (`LEASE_NOT_FOUND` if the lease is gone, as in one shard). A lease that ends
//!   between that check and the put's commit is found gone by S's next poll, which deletes the
//!   late key like any other: the fan-out is a replayable question, not a one-shot message.
//!
//! Rejected alternatives: the home leader pushing "lease ended" to every shard (it would have to
//! learn each attachment before the put commits, one more replicated write per first
//! attachment, and late attachments need tombstones in S that are never safe to drop); S
//! watching the home shard (a stream per shard pair that must be resumed across leader changes
//! on both sides, for the same answer). Polling costs one small call per (follower shard, home
//! shard) pair with followed leases every [`POLL`], and nothing when no key hangs on a lease of
//! another shard; keys that share the lease's shard (`grant_for_key`, hash tags) need no poll.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hypercache_proto::raft::v1::lease_home_client::LeaseHomeClient;
use hypercache_proto::raft::v1::raft_client::RaftClient;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;
use crate::lease_clock::{LeaseClock, EXPIRE_BATCH};
use crate::machine::command::{LeaseOp, Request, Tracked};
use crate::network::peer_call::{self, PeerCallError};
use crate::network::PeerPool;
use crate::placement::store;
use crate::proposer::Proposer;
use crate::raft_handle::ShardRaft;
use crate::shard::{Shard, Shards};
use crate::types::{home_of, LeaseId, ShardId};

/// How often a shard's leader asks the home shards of the leases it follows whether they ended.
pub const POLL: Duration = Duration::from_millis(100);
/// Lease ids per question (8 bytes each on the wire: well under the peer message limit).
const ASK_BATCH: usize = 8192;
/// How long one question to one node may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks home shards about their leases, wherever their leaders are.
#[derive(Clone)]
pub struct LeaseHomes {
    /// Weak: every shard's poll task holds one, and the shards must not keep themselves alive.
    shards: Weak<Shards>,
    pool: PeerPool,
}

impl LeaseHomes {
    pub fn new(shards: &Arc<Shards>, pool: PeerPool) -> Self {
        LeaseHomes { shards: Arc::downgrade(shards), pool }
    }

    /// Which of `ids` (leases of shard `home`) have ended, as `home`'s leader answers after a
    /// read barrier. Fails with NO_LEADER for `home` (nothing known, nothing done) if no replica
    /// of `home` answers as its leader. Never with NOT_LEADER: a client would take that for the
    /// put's own shard and follow the home's leader.
    pub async fn ended(&self, home: ShardId, ids: &[LeaseId]) -> Result<Vec<LeaseId>, ServiceError> {
        let Some(shards) = self.shards.upgrade() else { return Err(ServiceError::NoLeader { shard: home }) };
        let mut errors = Vec::new();
        if let Some(local) = shards.get(home) {
            if local.leader_term().is_ok() {
                match ended_here(&local, ids).await {
                    Ok(ended) => return Ok(ended),
                    Err(e) => errors.push(format!("this node: {e}")),
                }
            }
        }
        let (candidates, shard_count) = candidates(&shards, home);
        if shard_count.is_some_and(|n| home.0 >= n) {
            // No such shard: the id was never granted by this cluster.
            return Ok(ids.to_vec());
        }
        for addr in candidates {
            match ask(&self.pool, &addr, home, ids).await {
                Ok(ended) => return Ok(ended),
                Err(e) => errors.push(e.to_string()),
            }
        }
        tracing::debug!(shard = %home, errors = ?errors, "no replica answered as the lease home's leader");
        Err(ServiceError::NoLeader { shard: home })
    }
}

/// Where to ask shard `home`: the leader a local replica knows, then every replica the
/// placement lists; and the cluster's shard count if the placement is known.
fn candidates(shards: &Shards, home: ShardId) -> (Vec<String>, Option<u32>) {
    let mut out: Vec<String> = Vec::new();
    if let Some(local) = shards.get(home) {
        if let Some(ep) = local.metrics().current_leader.and_then(|l| local.endpoint_of(l)) {
            out.push(ep);
        }
    }
    let Some(meta) = shards.meta() else { return (out, None) };
    let Ok(Some(stored)) = store::load_local(&meta) else { return (out, None) };
    let placement = stored.placement;
    for node in placement.shards.get(home.0 as usize).map(|p| p.replicas.as_slice()).unwrap_or_default() {
        if let Some(ep) = meta.endpoint_of(*node) {
            if !out.contains(&ep) {
                out.push(ep);
            }
        }
    }
    (out, Some(placement.shard_count))
}

/// Why one node could not answer which leases ended; the poll only logs it and asks the next.
#[derive(Debug, thiserror::Error)]
enum AskError {
    /// The question did not reach the node, or its answer did not come back.
    #[error(transparent)]
    Call(#[from] PeerCallError),
    /// The node answered with a failure: its message, as it sent it.
    #[error("{addr}: {message}")]
    Remote { addr: String, message: String },
}

/// A node's answer to "which of these leases ended", as it travels. Postcard encodes this
/// exactly as the `Result<Vec<LeaseId>, String>` nodes have always exchanged (variant 0 with the
/// ids, variant 1 with the text), so nodes of either version understand each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseEndsReply {
    Ended(Vec<LeaseId>),
    Failed(String),
}

async fn ask(pool: &PeerPool, addr: &str, home: ShardId, ids: &[LeaseId]) -> Result<Vec<LeaseId>, AskError> {
    let reply = peer_call::call(
        pool,
        addr,
        home,
        &ids,
        ASK_TIMEOUT,
        |ch, msg| async move { LeaseHomeClient::new(ch).lease_ends(msg).await },
        |ch, msg| async move { RaftClient::new(ch).lease_ends(msg).await },
    )
    .await?;
    match reply {
        LeaseEndsReply::Ended(ended) => Ok(ended),
        LeaseEndsReply::Failed(message) => Err(AskError::Remote { addr: addr.to_string(), message }),
    }
}

/// On the leader of `shard`: which of `ids` no longer exist, after a read barrier (paced like
/// keepalives). Ids of other shards are not this shard's to answer for and are left out.
pub async fn ended_here(shard: &Shard, ids: &[LeaseId]) -> Result<Vec<LeaseId>, ServiceError> {
    shard.lease_barrier().await?;
    let mut ended = Vec::new();
    for &id in ids.iter().filter(|id| home_of(**id) == shard.id) {
        let record =
            shard.reader.lease(id).map_err(|e| ServiceError::Internal { shard: shard.id, detail: e.to_string() })?;
        if record.is_none() {
            ended.push(id);
        }
    }
    Ok(ended)
}

/// On this shard's leader, every [`POLL`]: asks the home shards of the leases this shard follows
/// which ended, and proposes [`LeaseOp::HomeEnded`] for them. Elsewhere, or while it follows no
/// lease, waits for that to change.
pub async fn follow_homes(
    shard: ShardId,
    raft: ShardRaft,
    clock: Arc<LeaseClock>,
    proposer: Proposer,
    homes: LeaseHomes,
) {
    let mut metrics = raft.metrics();
    loop {
        let leading = metrics.borrow_and_update().state == ServerState::Leader;
        if !leading {
            if metrics.changed().await.is_err() {
                return;
            }
            continue;
        }
        let followed = clock.followed();
        if followed.is_empty() {
            // Nothing to ask: wait for a followed lease or a change of role, not a poll.
            tokio::select! {
                _ = clock.followed_changed() => {}
                changed = metrics.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let mut by_home: BTreeMap<ShardId, Vec<LeaseId>> = BTreeMap::new();
        for id in followed {
            by_home.entry(home_of(id)).or_default().push(id);
        }
        let asks = by_home.iter().flat_map(|(home, ids)| ids.chunks(ASK_BATCH).map(move |ids| (*home, ids))).map(
            |(home, ids)| {
                let homes = homes.clone();
                async move { (home, homes.ended(home, ids).await) }
            },
        );
        let mut ended = Vec::new();
        for (home, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(ids) => ended.extend(ids),
                Err(e) => tracing::debug!(shard = %shard, home = %home, error = %e, "lease home not reached"),
            }
        }
        for ids in ended.chunks(EXPIRE_BATCH) {
            let n = ids.len();
            let request = Request::Lease(LeaseOp::HomeEnded { ids: ids.to_vec() });
            match proposer.propose(Tracked { write: None, request }).await {
                Ok(_) => tracing::debug!(shard = %shard, leases = n, "deleted the keys of leases ended at home"),
                // Not leader any more: the next leader polls again.
                Err(e) => tracing::info!(shard = %shard, leases = n, error = ?e, "lease ends not committed"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::codec;

    /// Nodes before `LeaseEndsReply` send and expect `Result<Vec<LeaseId>, String>`; the bytes
    /// must not change.
    #[test]
    fn a_reply_is_encoded_as_the_result_older_nodes_exchange() {
        let ids: Vec<LeaseId> = vec![LeaseId(7), LeaseId(1 << 48 | 3)];
        let old_ended: Result<Vec<LeaseId>, String> = Ok(ids.clone());
        let old_failed: Result<Vec<LeaseId>, String> = Err("this node hosts no replica of shard 3".into());
        let encode = |r: &LeaseEndsReply| codec::encode(r).expect("encodes");
        assert_eq!(encode(&LeaseEndsReply::Ended(ids.clone())), codec::encode(&old_ended).expect("encodes"));
        assert_eq!(
            encode(&LeaseEndsReply::Failed("this node hosts no replica of shard 3".into())),
            codec::encode(&old_failed).expect("encodes")
        );
        let back: Result<Vec<LeaseId>, String> =
            codec::decode(&encode(&LeaseEndsReply::Ended(ids.clone()))).expect("decodes");
        assert_eq!(back, Ok(ids));
        let reply: LeaseEndsReply = codec::decode(&codec::encode(&old_failed).expect("encodes")).expect("decodes");
        assert_eq!(reply, LeaseEndsReply::Failed("this node hosts no replica of shard 3".into()));
    }

    /// A node of an earlier version has no LeaseHome service: the question goes by the Raft
    /// service's old path, and its answer is read as before.
    #[tokio::test]
    async fn a_question_reaches_a_node_that_serves_only_the_old_path() {
        let ended: Vec<LeaseId> = vec![LeaseId(1 << 48 | 5)];
        let answer = codec::encode(&LeaseEndsReply::Ended(ended.clone())).unwrap();
        let addr = crate::network::old_peer::serve(Default::default(), answer.into()).await;
        let pool = PeerPool::new(Duration::from_secs(1), 4 << 20);
        let got = ask(&pool, &addr, ShardId(1), &[LeaseId(1 << 48 | 5), LeaseId(1 << 48 | 6)]).await.unwrap();
        assert_eq!(got, ended);
    }
}
