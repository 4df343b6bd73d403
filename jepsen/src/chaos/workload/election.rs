//! The election workload: [`NAMES`] elections, each contended by every worker. A worker
//! campaigns for a random one, and once elected holds it for a few operations (leader reads),
//! then resigns, or now and then walks away and lets its lease expire. Terms are fencing
//! tokens (`docs/api.md`, Election service): per name they strictly increase, so no two
//! candidates may ever be handed one term, and a term handed out after another completed must
//! be larger.
//!
//! - **`campaign`**: grant a fresh lease of [`LEASE_TTL`] (no keepalive: a leader that stops
//!   resigning loses its election within the TTL), then campaign as a candidate name unique to
//!   this op (`c<n>`), waiting up to the op timeout. `ok` carries the term won. Every error
//!   after the lease was granted is `info`, but an invalid argument (refused before anything
//!   was proposed): a campaign is retried by the client as idempotent,
//!   so an attempt may have won and lost its answer before the lease expired and a retry was
//!   refused (`LEASE_NOT_FOUND`) or timed out. After such an error the lease is revoked in the
//!   background, so a winner nobody knows of does not block the election for a whole TTL.
//! - **`resign`**: give up the term just won. `NOT_ELECTION_LEADER` (the lease had expired) is
//!   `fail`: nothing changed.
//! - **`leader`**: who leads the election and under which term, and the last term handed out
//!   (linearizable, through the shard leader). After healing, one final read per name.
//!
//! Not done: lease keepalives during a hold (a [`LeaseKeeper`](hypercache_client::LeaseKeeper)
//! and its safety window); observers (`Observe`); fenced writes with the term (`Boards.Assign`,
//! the board workload's business).

use std::sync::atomic::Ordering;
use std::time::Duration;

use hypercache_client::{Client, Error, Reason, Term};
use rand::rngs::StdRng;
use rand::Rng;

use super::Context;
use crate::chaos::history::{EventType, Op};

/// How many elections the workers contend for.
pub const NAMES: usize = 2;
/// Each campaign's lease; also the longest a silent leader blocks its election.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

pub fn name(i: usize) -> String {
    format!("jepsen-election-{i}")
}

/// The final reads after healing: one `leader` read per election.
pub fn final_ops() -> Vec<Op> {
    (0..NAMES).map(|i| leader_read(name(i), true)).collect()
}

fn leader_read(name: String, final_read: bool) -> Op {
    Op::Leader { name, holder: None, term: None, last_term: None, final_read }
}

/// A term this worker won and has not resigned or abandoned yet.
#[derive(Debug, Clone)]
struct Held {
    name: String,
    candidate: String,
    term: u64,
}

/// One worker's choices: campaign or read while holding nothing; read, resign or walk away
/// while holding a term.
#[derive(Debug, Default)]
pub struct Generator {
    held: Option<Held>,
}

impl Generator {
    pub fn next(&mut self, ctx: &Context, rng: &mut StdRng) -> Op {
        if let Some(held) = self.held.clone() {
            let roll: f64 = rng.gen();
            if roll < 0.65 {
                self.held = None;
                return Op::Resign { name: held.name, candidate: held.candidate, term: held.term };
            }
            if roll < 0.95 {
                return leader_read(held.name, false);
            }
            // Walk away: the lease ends the leadership within LEASE_TTL.
            self.held = None;
        }
        let name = name(rng.gen_range(0..NAMES));
        if rng.gen_bool(0.35) {
            return leader_read(name, false);
        }
        let candidate = format!("c{}", ctx.next_value.fetch_add(1, Ordering::Relaxed));
        Op::Campaign { name, candidate, term: None }
    }

    /// `done`: the completion's op (an `ok` campaign carries the term won).
    pub fn observe(&mut self, done: &Op, kind: EventType) {
        if let (Op::Campaign { name, candidate, term: Some(term) }, EventType::Ok) = (done, kind) {
            self.held = Some(Held { name: name.clone(), candidate: candidate.clone(), term: *term });
        }
    }
}

/// Runs an election op: `Ok` with what was won or read, `Fail` for a refused resignation.
pub async fn apply(client: &Client, op: &Op, wait: Duration) -> Result<(EventType, Op), Error> {
    match op {
        Op::Campaign { name, candidate, .. } => {
            // A grant that failed campaigned for nothing: its own error decides the outcome.
            let lease = client.grant(LEASE_TTL).await?;
            match client.campaign(name, candidate, lease.id, wait).await {
                Ok(won) if won.candidate == *candidate => Ok((
                    EventType::Ok,
                    Op::Campaign { name: name.clone(), candidate: candidate.clone(), term: Some(won.term.0) },
                )),
                Ok(won) => Err(Error::Internal {
                    message: format!("campaign for {name:?} as {candidate:?} answered with leader {:?}", won.candidate),
                }),
                // Refused before anything was proposed: certainly not won.
                Err(e @ (Error::InvalidArgument { .. } | Error::Config { .. })) => Err(e),
                Err(e) => {
                    let revoker = client.clone();
                    tokio::spawn(async move {
                        // Best effort: the lease ends within its TTL anyway.
                        let _ = revoker.revoke(lease.id).await;
                    });
                    Err(Error::OutcomeUnknown { message: format!("campaign (may have won before failing): {e}") })
                }
            }
        }
        Op::Resign { name, term, .. } => match client.resign(name, Term(*term)).await {
            Ok(()) => Ok((EventType::Ok, op.clone())),
            Err(e) if e.is_reason(Reason::NotElectionLeader) => Ok((EventType::Fail, op.clone())),
            Err(e) => Err(e),
        },
        Op::Leader { name, final_read, .. } => {
            let state = client.election_leader(name).await?;
            Ok((
                EventType::Ok,
                Op::Leader {
                    name: name.clone(),
                    holder: state.leader.as_ref().map(|l| l.candidate.clone()),
                    term: state.leader.as_ref().map(|l| l.term.0),
                    last_term: Some(state.last_term.0),
                    final_read: *final_read,
                },
            ))
        }
        other => Err(super::wrong_workload("election", other)),
    }
}
