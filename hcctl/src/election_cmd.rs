//! `hcctl election`: campaign (optionally holding leadership), resign, leader, observe.

use std::time::Duration;

use clap::{ArgGroup, Subcommand};
use hypercache_client::{Client, ElectionState, Error, Leadership, LeaseId, LeaseKeeper, LeaseState, Term};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::exit;
use crate::failure::Failure;
use crate::lease_cmd::lost_text;
use crate::output::{note, Out};
use crate::terminal::{ctrl_c, Interrupt};

/// One campaign long poll; the loop campaigns again (idempotently) until elected.
const CAMPAIGN_POLL: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub enum ElectionCommand {
    /// Wait until CANDIDATE leads election NAME; prints the (fencing) term. With --ttl-ms a lease
    /// is granted and kept alive while waiting; without --hold, leadership then lasts until that
    /// lease expires. Exit 7 if the lease is lost, 5 if not elected within --wait-ms or on Ctrl-C.
    #[command(group(ArgGroup::new("lease_source").required(true).args(["lease", "ttl_ms"])))]
    Campaign {
        name: String,
        candidate: String,
        /// Campaign with this existing lease (keep it alive yourself).
        #[arg(long)]
        lease: Option<u64>,
        /// Grant a lease of this many milliseconds and keep it alive.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_ms: Option<u64>,
        /// Once elected, keep leadership (and the lease) until Ctrl-C, then resign.
        #[arg(long)]
        hold: bool,
        /// Give up if not elected within this many milliseconds (default: wait forever).
        #[arg(long)]
        wait_ms: Option<u64>,
    },
    /// Give up leadership; TERM must be the current term. Exit 2 if it is not.
    Resign { name: String, term: u64 },
    /// Print who leads NAME. Exit 10 if nobody does.
    Leader { name: String },
    /// Print the leader of NAME, then every change, until Ctrl-C.
    Observe { name: String },
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool, command: ElectionCommand) -> Result<u8, Failure> {
    match command {
        ElectionCommand::Campaign { name, candidate, lease, ttl_ms, hold, wait_ms } => {
            let (lease, keeper) = match (lease, ttl_ms) {
                (Some(id), _) => (LeaseId(id), None),
                (None, ttl_ms) => {
                    let granted = client.grant(Duration::from_millis(ttl_ms.unwrap_or(1))).await?;
                    note(&format!("granted lease {} ttl_ms={}", granted.id, granted.ttl.as_millis()));
                    (granted.id, Some(LeaseKeeper::spawn(client.clone(), granted)?))
                }
            };
            let give_up_at = wait_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
            let leadership = match campaign(client, &name, &candidate, lease, keeper.as_ref(), give_up_at).await? {
                Ok(leadership) => leadership,
                Err(code) => {
                    release(keeper).await;
                    return Ok(code);
                }
            };
            let text = format!("elected {name} term={} candidate={candidate} lease={lease}", leadership.term);
            out.update(json, &text, &leadership_json(Some(&name), Some(&leadership)))?;
            if !hold {
                return Ok(exit::OK);
            }
            hold_until_ctrl_c(client, out, json, &name, leadership.term, keeper).await
        }
        ElectionCommand::Resign { name, term } => {
            client.resign(&name, Term(term)).await?;
            out.update(json, &format!("resigned {name} term={term}"), &json!({"name": name, "resigned": true}))?;
            Ok(exit::OK)
        }
        ElectionCommand::Leader { name } => {
            let state = client.election_leader(&name).await?;
            let mut value = leadership_json(Some(&name), state.leader.as_ref());
            value["last_term"] = state.last_term.0.into();
            match &state.leader {
                Some(leader) => out.update(json, &leader_line(leader), &value)?,
                None if json => out.update(true, "", &value)?,
                None => note(&format!("nobody leads {name} (last term {})", state.last_term)),
            }
            Ok(if state.leader.is_some() { exit::OK } else { exit::NO_ELECTION_LEADER })
        }
        ElectionCommand::Observe { name } => observe(client, out, json, &name).await,
    }
}

/// Campaigns until elected (`Ok(Ok)`), or returns the exit code for giving up.
async fn campaign(
    client: &Client,
    name: &str,
    candidate: &str,
    lease: LeaseId,
    keeper: Option<&LeaseKeeper>,
    give_up_at: Option<Instant>,
) -> Result<Result<Leadership, u8>, Failure> {
    // One listener for the whole loop, so a Ctrl-C between two polls is not missed.
    let mut interrupted = std::pin::pin!(ctrl_c());
    loop {
        let poll = match give_up_at {
            Some(at) => CAMPAIGN_POLL.min(at.saturating_duration_since(Instant::now())),
            None => CAMPAIGN_POLL,
        };
        if poll.is_zero() {
            note(&format!("not elected leader of {name} within --wait-ms"));
            return Ok(Err(exit::UNAVAILABLE));
        }
        let result = tokio::select! {
            result = client.campaign(name, candidate, lease, poll) => result,
            state = lease_lost(keeper) => {
                note(&format!("lease {lease} lost while campaigning: {}", state_text(&state)));
                return Ok(Err(exit::LEASE_NOT_FOUND));
            }
            _ = &mut interrupted => {
                note("interrupted before being elected");
                return Ok(Err(exit::UNAVAILABLE));
            }
        };
        match result {
            Ok(leadership) => return Ok(Ok(leadership)),
            // Not elected yet, as far as we know; campaigning again is idempotent.
            Err(Error::DeadlineExceeded { .. } | Error::OutcomeUnknown { .. } | Error::Unavailable { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Holds leadership until Ctrl-C (resign, exit 0) or the loss of the lease (exit 7).
async fn hold_until_ctrl_c(
    client: &Client,
    out: &mut Out,
    json: bool,
    name: &str,
    term: Term,
    keeper: Option<LeaseKeeper>,
) -> Result<u8, Failure> {
    tokio::select! {
        state = lease_lost(keeper.as_ref()) => {
            note(&format!("lease lost, leadership of {name} is over: {}", state_text(&state)));
            return Ok(exit::LEASE_NOT_FOUND);
        }
        _ = ctrl_c() => {}
    }
    client.resign(name, term).await?;
    out.update(json, &format!("resigned {name} term={term}"), &json!({"name": name, "resigned": true}))?;
    release(keeper).await;
    Ok(exit::OK)
}

/// Stops a keeper this command started and revokes its lease (best effort).
async fn release(keeper: Option<LeaseKeeper>) {
    if let Some(keeper) = keeper {
        let id = keeper.id();
        if let Err(err) = keeper.stop_and_revoke().await {
            note(&format!("could not revoke lease {id}: {err}"));
        }
    }
}

async fn lease_lost(keeper: Option<&LeaseKeeper>) -> LeaseState {
    match keeper {
        Some(keeper) => keeper.lost().await,
        None => std::future::pending().await,
    }
}

fn state_text(state: &LeaseState) -> String {
    match state {
        LeaseState::Lost { reason, .. } => lost_text(reason),
        LeaseState::Alive { .. } => "alive".to_string(),
    }
}

async fn observe(client: &Client, out: &mut Out, json: bool, name: &str) -> Result<u8, Failure> {
    let mut observer = client.observe(name);
    let mut interrupt = Interrupt::listen();
    loop {
        let Some(update) = interrupt.or(observer.next()).await else { return Ok(exit::OK) };
        match update {
            Ok(ElectionState { leader, revision, .. }) => {
                let text = match &leader {
                    Some(l) => format!("LEADER {} (rev {revision})", leader_line(l)),
                    None => format!("NO LEADER (rev {revision})"),
                };
                let mut value = leadership_json(Some(name), leader.as_ref());
                value["revision"] = revision.into();
                out.update(json, &text, &value)?;
            }
            Err(err) if err.is_retryable() => note(&format!("observe: {err}; retrying")),
            Err(err) => return Err(err.into()),
        }
    }
}

fn leader_line(l: &Leadership) -> String {
    format!("{} term={} lease={}", l.candidate, l.term, l.lease)
}

fn leadership_json(name: Option<&str>, leader: Option<&Leadership>) -> Value {
    let leader =
        leader.map_or(Value::Null, |l| json!({"candidate": l.candidate, "term": l.term.0, "lease": l.lease.0}));
    json!({"name": name, "leader": leader})
}
