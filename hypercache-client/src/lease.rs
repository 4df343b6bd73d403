//! Lease operations: grant, revoke, one keepalive, time to live.
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
use pb::lease_client::LeaseClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client::{Client, Route};
use crate::error::{reason, Error};
use crate::ops::request;
use crate::retry::OpKind;
use crate::types::{duration_ms, millis_ceil};

/// A lease id as the server hands it out (never 0; 0 on the wire means "no lease").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for LeaseId {
    fn from(id: u64) -> Self {
        LeaseId(id)
    }
}

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

    /// Grants a lease of (at least) `ttl`, rounded up to whole milliseconds; the server rejects
    /// TTLs outside its bounds with `INVALID_TTL`. Not retried once it may have reached the
    /// leader (a retry could grant a second lease): a lost answer is [`Error::OutcomeUnknown`].
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, Error> {
        let msg = pb::LeaseGrantRequest { shard_id: self.shard(), ttl_ms: millis_ceil(ttl) };
        let sent = Instant::now();
        let response = self
            .execute("lease_grant", OpKind::Write, Route::Leader, |ch, t| {
                let mut leases = self.leases(ch);
                let req = request(msg, t);
                async move { leases.grant(req).await }
            })
            .await?;
        let ttl = duration_ms(response.ttl_ms);
        Ok(Lease { id: LeaseId(response.id), ttl, deadline: sent + ttl })
    }

    /// Revokes the lease: it ends at once and everything attached to it is deleted atomically.
    /// Returns the number of keys deleted. A lease that is already gone is `LEASE_NOT_FOUND`.
    pub async fn revoke(&self, id: LeaseId) -> Result<u64, Error> {
        let msg = pb::LeaseRevokeRequest { shard_id: self.shard(), id: id.0 };
        let response = self
            .execute("lease_revoke", OpKind::Write, Route::Leader, |ch, t| {
                let mut leases = self.leases(ch);
                let req = request(msg, t);
                async move { leases.revoke(req).await }
            })
            .await?;
        Ok(response.deleted_keys)
    }

    /// Renews the lease once; `None` when it no longer exists (expired or revoked). Renewing
    /// twice is harmless, so a keepalive is retried on any transient failure. The deadline is
    /// measured from the start of the call (before the first attempt), which is conservative.
    pub async fn keep_alive_once(&self, id: LeaseId) -> Result<Option<Lease>, Error> {
        let msg = pb::LeaseKeepAliveRequest { shard_id: self.shard(), id: id.0 };
        let sent = Instant::now();
        let result = self
            .execute("lease_keep_alive_once", OpKind::Idempotent, Route::Leader, |ch, t| {
                let mut leases = self.leases(ch);
                let req = request(msg, t);
                async move { leases.keep_alive_once(req).await }
            })
            .await;
        match result {
            Ok(response) if response.ttl_ms > 0 => {
                let ttl = duration_ms(response.ttl_ms);
                Ok(Some(Lease { id, ttl, deadline: sent + ttl }))
            }
            Ok(_) => Ok(None),
            Err(err) if err.is_reason(reason::LEASE_NOT_FOUND) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The lease's granted TTL and the time it has left (linearizable, through the leader), and
    /// with `keys` the keys attached to it; `None` when the lease does not exist.
    pub async fn time_to_live(&self, id: LeaseId, keys: bool) -> Result<Option<LeaseTtl>, Error> {
        let msg = pb::LeaseTimeToLiveRequest { shard_id: self.shard(), id: id.0, keys };
        let result = self
            .execute("lease_time_to_live", OpKind::Read, Route::Leader, |ch, t| {
                let mut leases = self.leases(ch);
                let req = request(msg, t);
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
            Err(err) if err.is_reason(reason::LEASE_NOT_FOUND) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
