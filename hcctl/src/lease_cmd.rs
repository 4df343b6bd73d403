//! `hcctl lease`: grant, revoke, keepalive, ttl.

use std::time::Duration;

use clap::Subcommand;
use hypercache_client::{Client, LeaseId, LeaseKeeper, LeaseState, LostReason, Reason};
use serde_json::json;
use tokio::time::Instant;

use crate::exit;
use crate::failure::Failure;
use crate::output::{not_found, note, Out};
use crate::terminal::Interrupt;

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease of TTL_MS milliseconds; prints its id.
    Grant {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        ttl_ms: u64,
    },
    /// Revoke a lease, deleting every key attached to it.
    Revoke { id: u64 },
    /// Keep a lease alive, printing each renewal, until Ctrl-C (the lease then expires on its
    /// own). Exit 7 if the lease is lost.
    Keepalive {
        id: u64,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Print a lease's granted TTL and time left. Exit 7 if it does not exist.
    Ttl {
        id: u64,
        /// Also list the attached keys.
        #[arg(long)]
        keys: bool,
    },
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool, command: LeaseCommand) -> Result<u8, Failure> {
    match command {
        LeaseCommand::Grant { ttl_ms } => {
            let lease = client.grant(Duration::from_millis(ttl_ms)).await?;
            let ttl_ms = lease.ttl.as_millis() as u64;
            out.update(json, &lease.id.to_string(), &json!({"id": lease.id.0, "ttl_ms": ttl_ms}))?;
            Ok(exit::OK)
        }
        LeaseCommand::Revoke { id } => {
            let deleted = client.revoke(LeaseId(id)).await?;
            let text = format!("revoked lease {id} ({deleted} keys deleted in its home shard; keys of other shards follow within about 0.2 s)");
            out.update(json, &text, &json!({"id": id, "revoked": true, "deleted_keys": deleted}))?;
            Ok(exit::OK)
        }
        LeaseCommand::Keepalive { id, once: true } => match client.keep_alive_once(LeaseId(id)).await? {
            Some(lease) => {
                let ttl_ms = lease.ttl.as_millis() as u64;
                out.update(json, &format!("lease {id} ttl_ms={ttl_ms}"), &json!({"id": id, "ttl_ms": ttl_ms}))?;
                Ok(exit::OK)
            }
            None => lease_not_found(out, json, id),
        },
        LeaseCommand::Keepalive { id, once: false } => {
            let keeper = LeaseKeeper::start(client.clone(), LeaseId(id)).await?;
            keep(out, json, &keeper).await
        }
        LeaseCommand::Ttl { id, keys } => match client.time_to_live(LeaseId(id), keys).await? {
            Some(ttl) => {
                let (granted, remaining) = (ttl.granted_ttl.as_millis() as u64, ttl.remaining.as_millis() as u64);
                if json {
                    let keys: Vec<String> = ttl.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
                    let value = json!({"id": id, "granted_ttl_ms": granted, "remaining_ms": remaining, "keys": keys});
                    out.update(true, "", &value)?;
                } else {
                    out.line(&format!("lease {id} granted_ttl_ms={granted} remaining_ms={remaining}"))?;
                    for key in &ttl.keys {
                        out.bytes(key)?;
                        out.bytes(b"\n")?;
                    }
                    out.flush()?;
                }
                Ok(exit::OK)
            }
            None => lease_not_found(out, json, id),
        },
    }
}

/// The report of a lease a successful call found missing.
fn lease_not_found(out: &mut Out, json: bool, id: u64) -> Result<u8, Failure> {
    let message = format!("lease {id} does not exist (expired or revoked)");
    not_found(out, json, Reason::LeaseNotFound, &message, exit::LEASE_NOT_FOUND)
}

/// Prints every renewal of `keeper` until Ctrl-C (exit 0, the keeper stops and the lease then
/// expires by itself) or the loss of the lease (exit 7).
pub(super) async fn keep(out: &mut Out, json: bool, keeper: &LeaseKeeper) -> Result<u8, Failure> {
    let id = keeper.id();
    let mut states = keeper.subscribe();
    let mut interrupt = Interrupt::listen();
    loop {
        let state = states.borrow_and_update().clone();
        match state {
            LeaseState::Alive { deadline } => {
                let left = deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
                let text = format!("lease {id} alive for at least {left} ms");
                out.update(json, &text, &json!({"id": id.0, "alive": true, "remaining_ms": left}))?;
            }
            LeaseState::Lost { reason, .. } => {
                let why = lost_text(&reason);
                if json {
                    out.update(true, "", &json!({"id": id.0, "alive": false, "reason": why}))?;
                }
                note(&format!("lease {id} lost: {why}"));
                return Ok(exit::LEASE_NOT_FOUND);
            }
        }
        let Some(changed) = interrupt.or(states.changed()).await else { return Ok(exit::OK) };
        if changed.is_err() {
            note(&format!("lease {id} lost: keeper stopped"));
            return Ok(exit::LEASE_NOT_FOUND);
        }
    }
}

pub(super) fn lost_text(reason: &LostReason) -> String {
    match reason {
        LostReason::Gone => "the lease no longer exists (expired or revoked)".to_string(),
        LostReason::DeadlinePassed => "no renewal succeeded before the deadline".to_string(),
        LostReason::Failed(err) => crate::failure::error_text(err),
        LostReason::Stopped => "stopped".to_string(),
    }
}
