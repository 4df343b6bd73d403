//! Lease operations: grant, revoke, one keepalive, time to live.
//!
//! A lease lives in one shard, its home: [`Client::grant`] grants in the home shard (the game
//! services'), [`Client::grant_for_key`] in a key's shard, and keepalive, revoke and time-to-live
//! are routed by the shard encoded in the id ([`LeaseId::shard`]). Keys of any shard may hang on
//! it; a key of another shard is deleted shortly after the home shard commits the lease's end
//! (within about 0.2 s; never before).
//!
//! A lease is a TTL that keys, registrations and election leadership hang on; the shard leader
//! decides expiry and replicates it. The client never trusts its own clock against the server's:
//! what it can *vouch for* is that a lease granted or renewed by a request sent at instant `t`
//! lives at least until `t + ttl` (the server measures from the same send, so message delay only
//! shortens what the client assumes). Every [`Lease`] carries that deadline, measured from when
//! the request was first handed to the transport (an earlier instant than the real send, hence
//! conservative). Keeping a lease alive in the background is [`LeaseKeeper`](crate::LeaseKeeper).

use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::v1 as pb;
use hypercache_proto::Reason;
use pb::lease_client::LeaseClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::call::request;
use crate::client::Client;
use crate::error::Error;
use crate::retry::OpKind;
use crate::target::{Route, Target};
use crate::types::{duration_ms, millis_ceil, LeaseId};

/// A lease as granted or renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// The TTL the server applied (it may differ from the one asked for).
    pub ttl: Duration,
    /// The lease lives at least until this instant: the time the request was sent plus `ttl`.
    pub deadline: Instant,
}

/// What [`Client::time_to_live`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTtl {
    pub id: LeaseId,
    /// The TTL the lease was granted with.
    pub granted_ttl: Duration,
    /// Time left before the leader expires it, as the leader saw it when answering.
    pub remaining: Duration,
    /// The keys attached to the lease (only when asked for).
    pub keys: Vec<Bytes>,
}

impl Client {
    pub(crate) fn leases(&self, channel: Channel) -> LeaseClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        LeaseClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Grants a lease of (at least) `ttl` in the home shard (see
    /// [`ClientConfig::namespace`](crate::ClientConfig::namespace)), where the game services
    /// live: the lease for an election campaign or a registration. Keys of any shard may be
    /// attached to it; keys of other shards than the lease's are deleted shortly after it ends
    /// (a poll of the home shard, within about 0.2 s), and cost that poll while they hang on
    /// it. [`grant_for_key`](Self::grant_for_key) keeps a key and its lease in one shard. The
    /// TTL is rounded up to whole milliseconds; the server rejects TTLs outside its bounds with
    /// `INVALID_TTL`. Exactly once: a lost answer is retried with the same write id and returns
    /// the same lease, never a second one.
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, Error> {
        self.grant_in(Target::Home, ttl).await
    }

    /// Grants a lease in the shard of `key`, so that `key` (and every key sharing its hash tag)
    /// are deleted in the same command that ends the lease. Otherwise like [`grant`](Self::grant).
    pub async fn grant_for_key(&self, key: impl Into<Bytes>, ttl: Duration) -> Result<Lease, Error> {
        self.grant_in(Target::Key(key.into()), ttl).await
    }

    async fn grant_in(&self, target: Target, ttl: Duration) -> Result<Lease, Error> {
        let ttl_ms = millis_ceil(ttl);
        let sent = Instant::now();
        let pending = self.begin_write();
        let response = self
            .execute("lease_grant", OpKind::Tracked, target, Route::Leader, |ch, shard, t| {
                let mut leases = self.leases(ch);
                let req = request(pb::LeaseGrantRequest { shard_id: shard.0, ttl_ms, write: pending.id() }, t);
                async move { leases.grant(req).await }
            })
            .await?;
        let ttl = duration_ms(response.ttl_ms);
        Ok(Lease { id: LeaseId(response.id), ttl, deadline: sent + ttl })
    }

    /// Revokes the lease: it ends at once and everything attached to it in its home shard is
    /// deleted atomically; keys of other shards follow shortly (one command per shard). Returns
    /// the number of keys deleted in the home shard. A lease that is already gone is
    /// `LEASE_NOT_FOUND`.
    pub async fn revoke(&self, id: LeaseId) -> Result<u64, Error> {
        let pending = self.begin_write();
        let response = self
            .execute("lease_revoke", OpKind::Tracked, Target::Shard(id.shard()), Route::Leader, |ch, shard, t| {
                let mut leases = self.leases(ch);
                let req = request(pb::LeaseRevokeRequest { shard_id: shard.0, id: id.0, write: pending.id() }, t);
                async move { leases.revoke(req).await }
            })
            .await?;
        Ok(response.deleted_keys)
    }

    /// Renews the lease once; `None` when it no longer exists (expired or revoked). Renewing
    /// twice is harmless, so a keepalive is retried on any transient failure. The deadline is
    /// measured from the start of the call (before the first attempt), which is conservative.
    pub async fn keep_alive_once(&self, id: LeaseId) -> Result<Option<Lease>, Error> {
        let sent = Instant::now();
        let target = Target::Shard(id.shard());
        let result = self
            .execute("lease_keep_alive_once", OpKind::Idempotent, target, Route::Leader, |ch, shard, t| {
                let mut leases = self.leases(ch);
                let req = request(pb::LeaseKeepAliveRequest { shard_id: shard.0, id: id.0 }, t);
                async move { leases.keep_alive_once(req).await }
            })
            .await;
        match result {
            Ok(response) if response.ttl_ms > 0 => {
                let ttl = duration_ms(response.ttl_ms);
                Ok(Some(Lease { id, ttl, deadline: sent + ttl }))
            }
            Ok(_) => Ok(None),
            Err(err) if err.is_reason(Reason::LeaseNotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The lease's granted TTL and the time it has left (linearizable, through the leader), and
    /// with `keys` the keys attached to it; `None` when the lease does not exist.
    pub async fn time_to_live(&self, id: LeaseId, keys: bool) -> Result<Option<LeaseTtl>, Error> {
        let target = Target::Shard(id.shard());
        let result = self
            .execute("lease_time_to_live", OpKind::Read, target, Route::Leader, |ch, shard, t| {
                let mut leases = self.leases(ch);
                let req = request(pb::LeaseTimeToLiveRequest { shard_id: shard.0, id: id.0, keys }, t);
                async move { leases.time_to_live(req).await }
            })
            .await;
        match result {
            Ok(r) if r.granted_ttl_ms < 0 || r.remaining_ms < 0 => Ok(None),
            Ok(r) => Ok(Some(LeaseTtl {
                id,
                granted_ttl: duration_ms(r.granted_ttl_ms),
                remaining: duration_ms(r.remaining_ms),
                keys: r.keys,
            })),
            Err(err) if err.is_reason(Reason::LeaseNotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
