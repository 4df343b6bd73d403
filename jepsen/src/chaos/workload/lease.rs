//! The lease workload: every worker is a lease **holder**. It grants itself a lease with a
//! short TTL ([`TTLS_MS`]), puts its own keys attached to it, keeps it alive now and then with
//! one keepalive at a time, reads keys (its own and other holders'), and sometimes revokes the
//! lease or walks away from it and lets it expire. The property (issue 17): **no key attached
//! to a lease disappears before the deadline its holder can vouch for** (`docs/api.md`, "Lease
//! safety": a lease granted or renewed by a request sent at `s` lives at least until
//! `s + ttl`), and a revoked lease's keys do go.
//!
//! - **Keys** are `lease/<worker>.<gen>/<slot>` ([`SLOTS`] per holder), no hash tag, so they
//!   spread over the shards: some live in the lease's home shard, some in another one (ADR 31:
//!   deleted by their own shard shortly after the home shard commits the lease's end). Only the
//!   holder writes its keys, so a key's puts are sequential and its state at a read is known.
//!   After an `info` operation the worker continues as a new process and a new *generation*
//!   (`gen`) of keys: an uncertain put may still land later, so the checker stops judging a key
//!   once a put of it was uncertain, and the next generation starts clean.
//! - **`lease-grant`**: half the time in the home shard ([`Client::grant`]), half in the shard
//!   of the holder's slot-0 key ([`Client::grant_for_key`]). `ok` carries the id (its home shard
//!   is `id >> 48`) and the TTL the server granted.
//! - **`lease-put`**: a fresh unique value to one slot, attached to the current lease; `ok`
//!   carries the key's shard (routing table, looked up before the put). `LEASE_NOT_FOUND` (the
//!   lease has ended) is `fail`: nothing written; the holder then grants a new lease.
//! - **`lease-keepalive`**: [`Client::keep_alive_once`]; `ok` carries the TTL the server granted,
//!   `0` when the lease no longer exists (the holder then grants a new one). The holder renews
//!   whenever less than half the TTL is left by its own reckoning, and otherwise at random.
//! - **`lease-revoke`**: `LEASE_NOT_FOUND` (already gone) is `fail`.
//! - **`lease-read`**: a linearizable get of one key, recording its value and lease (absent:
//!   `None`).
//!
//! No final reads: the reads during the run are the evidence (the checker's `unknown` when none
//! of them could be judged).

use std::sync::atomic::Ordering;
use std::time::Duration;

use hypercache_client::{Client, Error, LeaseId, PutOptions, Reason};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;

use super::Context;
use crate::chaos::history::{EventType, Op};

/// TTLs asked for, in milliseconds: short, so leases end often during a run.
pub const TTLS_MS: [u64; 2] = [2_000, 3_000];
/// Keys per holder (per generation).
pub const SLOTS: usize = 3;

pub fn key(worker: u64, generation: u64, slot: usize) -> String {
    format!("lease/{worker}.{generation}/{slot}")
}

/// The lease a holder holds: its id, TTL, the instant until which it vouches for it (its own
/// reckoning, only to decide when to renew) and which slots it has put under it.
#[derive(Debug, Clone)]
struct Held {
    id: u64,
    ttl: Duration,
    renew_by: Instant,
    put: [bool; SLOTS],
}

/// One holder's choices.
#[derive(Debug)]
pub struct Generator {
    worker: u64,
    workers: u64,
    generation: u64,
    held: Option<Held>,
    /// When the last lease-changing op was invoked (a grant or keepalive's vouched deadline is
    /// measured from its invocation).
    invoked: Instant,
}

impl Generator {
    pub fn new(worker: u64, workers: u64) -> Generator {
        Generator { worker, workers: workers.max(1), generation: 0, held: None, invoked: Instant::now() }
    }

    pub fn next(&mut self, ctx: &Context, rng: &mut StdRng) -> Op {
        self.invoked = Instant::now();
        let Some(held) = self.held.clone() else {
            let ttl_ms = TTLS_MS[rng.gen_range(0..TTLS_MS.len())];
            let for_key = rng.gen_bool(0.5).then(|| key(self.worker, self.generation, 0));
            return Op::LeaseGrant { ttl_ms, for_key, lease: None, granted_ttl_ms: None };
        };
        if Instant::now() >= held.renew_by {
            return Op::LeaseKeepAlive { lease: held.id, ttl_ms: None };
        }
        if let Some(slot) = held.put.iter().position(|p| !p) {
            let value = ctx.next_value.fetch_add(1, Ordering::Relaxed);
            return Op::LeasePut { key: key(self.worker, self.generation, slot), value, lease: held.id, shard: None };
        }
        let roll: f64 = rng.gen();
        if roll < 0.25 {
            return Op::LeaseKeepAlive { lease: held.id, ttl_ms: None };
        }
        if roll < 0.85 {
            let slot = rng.gen_range(0..SLOTS);
            let key = if rng.gen_bool(0.5) {
                key(self.worker, self.generation, slot)
            } else {
                // Another holder's key (its first generation: others' later ones are not known
                // here); absent or stale keys are for the checker to sort out.
                key(rng.gen_range(0..self.workers), 0, slot)
            };
            return Op::LeaseRead { key, value: None, lease: None };
        }
        self.held = None;
        if roll < 0.93 {
            return Op::LeaseRevoke { lease: held.id };
        }
        // Walk away: no more keepalives; the lease and its keys end within the TTL.
        let ttl_ms = TTLS_MS[rng.gen_range(0..TTLS_MS.len())];
        Op::LeaseGrant { ttl_ms, for_key: None, lease: None, granted_ttl_ms: None }
    }

    /// `done`: the completion's op.
    pub fn observe(&mut self, done: &Op, kind: EventType) {
        if kind == EventType::Info {
            // A new process: fresh keys, no lease.
            self.generation += 1;
            self.held = None;
            return;
        }
        match (done, kind) {
            (Op::LeaseGrant { lease: Some(id), granted_ttl_ms: Some(ttl), .. }, EventType::Ok) => {
                let ttl = Duration::from_millis(*ttl);
                self.held = Some(Held { id: *id, ttl, renew_by: self.invoked + ttl / 2, put: [false; SLOTS] });
            }
            (Op::LeaseKeepAlive { ttl_ms: Some(ttl), .. }, EventType::Ok) if *ttl > 0 => {
                if let Some(held) = &mut self.held {
                    held.ttl = Duration::from_millis(*ttl);
                    held.renew_by = self.invoked + held.ttl / 2;
                }
            }
            (Op::LeaseKeepAlive { .. }, EventType::Ok) => self.held = None,
            (Op::LeasePut { key, .. }, EventType::Ok) => {
                if let Some(held) = &mut self.held {
                    if let Some(slot) = key.rsplit('/').next().and_then(|s| s.parse::<usize>().ok()) {
                        if slot < SLOTS {
                            held.put[slot] = true;
                        }
                    }
                }
            }
            // Most likely the lease ended (`LEASE_NOT_FOUND`): start over with a new one.
            (Op::LeasePut { .. }, EventType::Fail) => self.held = None,
            _ => {}
        }
    }
}

/// Runs a lease op: `Ok` with what was granted, written or read; `Fail` for a refusal because
/// the lease is gone.
pub async fn apply(client: &Client, op: &Op) -> Result<(EventType, Op), Error> {
    match op {
        Op::LeaseGrant { ttl_ms, for_key, .. } => {
            let ttl = Duration::from_millis(*ttl_ms);
            let lease = match for_key {
                Some(key) => client.grant_for_key(key.clone(), ttl).await?,
                None => client.grant(ttl).await?,
            };
            let granted = u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX);
            Ok((
                EventType::Ok,
                Op::LeaseGrant {
                    ttl_ms: *ttl_ms,
                    for_key: for_key.clone(),
                    lease: Some(lease.id.0),
                    granted_ttl_ms: Some(granted),
                },
            ))
        }
        Op::LeasePut { key, value, lease, .. } => {
            let shard = client.routing().await?.shard_of(key.as_bytes());
            match client.put_with(key.clone(), value.to_string(), PutOptions::lease(LeaseId(*lease))).await {
                Ok(_) => Ok((
                    EventType::Ok,
                    Op::LeasePut { key: key.clone(), value: *value, lease: *lease, shard: Some(shard.0) },
                )),
                Err(e) if e.is_reason(Reason::LeaseNotFound) => Ok((EventType::Fail, op.clone())),
                Err(e) => Err(e),
            }
        }
        Op::LeaseKeepAlive { lease, .. } => {
            let renewed = client.keep_alive_once(LeaseId(*lease)).await?;
            let ttl = renewed.map_or(0, |l| u64::try_from(l.ttl.as_millis()).unwrap_or(u64::MAX));
            Ok((EventType::Ok, Op::LeaseKeepAlive { lease: *lease, ttl_ms: Some(ttl) }))
        }
        Op::LeaseRevoke { lease } => match client.revoke(LeaseId(*lease)).await {
            Ok(_) => Ok((EventType::Ok, op.clone())),
            Err(e) if e.is_reason(Reason::LeaseNotFound) => Ok((EventType::Fail, op.clone())),
            Err(e) => Err(e),
        },
        Op::LeaseRead { key, .. } => {
            let kv = client.get(key.clone()).await?;
            let value = kv.as_ref().map(|kv| super::watch::parse(&kv.value));
            let lease = kv.as_ref().map(|kv| kv.lease).filter(|l| *l != 0);
            Ok((EventType::Ok, Op::LeaseRead { key: key.clone(), value, lease }))
        }
        other => Err(super::wrong_workload("lease", other)),
    }
}
