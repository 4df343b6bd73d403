//! The replicated state machine's logic, free of I/O: given the rows (an [`Overlay`]) and a
//! [`Request`], compute the reply or a [`Rejection`] and the writes.
//!
//! Every request is atomic: [`apply`] takes a savepoint, runs the request, and rolls the overlay
//! back if the request is rejected, so a rejection changes nothing. Game-state operations
//! (registry, boards, elections) are requests of their own rather than read-modify-write in a
//! service: their checks and writes happen at one point of the log.

pub mod game;
pub mod kv;
pub mod lease;
pub mod overlay;
pub mod session;

use serde::{Deserialize, Serialize};

use crate::types::{Applied, LeaseId, Reply, Request};
use overlay::{ApplyError, Base, Overlay};

/// Why a request was refused. Deterministic (every replica refuses it alike) and effect-free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("lease {id} not found (it expired, was revoked or never existed)")]
    LeaseNotFound { id: LeaseId },
    #[error("ttl_ms {ttl_ms} is out of range: a TTL is {}..={} ms", lease::MIN_TTL_MS, lease::MAX_TTL_MS)]
    InvalidTtl { ttl_ms: i64 },
    #[error("server {server_id} is not registered")]
    ServerNotFound { server_id: String },
    #[error("server {server_id}: incarnation {given} is stale; the current registration is incarnation {current}")]
    StaleIncarnation { server_id: String, given: u64, current: u64 },
    #[error("board {board_id} already exists")]
    BoardExists { board_id: String },
    #[error("board {board_id} not found")]
    BoardNotFound { board_id: String },
    #[error("board {board_id}: epoch {given} is stale; the board is at epoch {epoch}, owned by {}", owner_text(.owner))]
    StaleEpoch { board_id: String, given: u64, epoch: u64, owner: Option<game::records::Owner> },
    #[error("board {board_id}: seq {given} is older than the stored checkpoint's seq {stored}")]
    StaleSeq { board_id: String, given: u64, stored: u64 },
    #[error("cannot assign board {board_id} to {server_id}: that server is not registered (no live lease)")]
    ServerNotLive { board_id: String, server_id: String },
    #[error("board {board_id}: {server_id} does not own it at epoch {given}; it is at epoch {epoch}, owned by {}", owner_text(.owner))]
    NotOwner { board_id: String, server_id: String, given: u64, epoch: u64, owner: Option<game::records::Owner> },
    #[error("election {name}: term {given} is stale; the current term is {}", term_text(.current))]
    StaleTerm { name: String, given: u64, current: Option<game::records::LeaderView> },
    #[error("election {name}: term {given} does not lead; the current term is {}", term_text(.current))]
    NotElectionLeader { name: String, given: u64, current: Option<game::records::LeaderView> },
    /// A late copy of a write the client no longer waits for (see `session.rs`): this copy was
    /// not applied, but an earlier one may have been.
    #[error("client {client}: write seq {seq} is below the shard's floor {floor} for this client and its reply is no longer kept; an earlier attempt may have been applied")]
    WriteSeqTooOld { client: String, seq: u64, floor: u64 },
    #[error("this shard already tracks {limit} client sessions, none idle long enough to evict; retry later")]
    TooManyClients { limit: u64 },
}

fn owner_text(owner: &Option<game::records::Owner>) -> String {
    match owner {
        Some(o) => format!("{} (incarnation {})", o.server_id, o.incarnation),
        None => "nobody (unassigned)".to_string(),
    }
}

fn term_text(current: &Option<game::records::LeaderView>) -> String {
    match current {
        Some(l) => format!("{} held by {}", l.term, l.candidate),
        None => "none (nobody leads)".to_string(),
    }
}

/// A request failed: refused (rolled back, reported to the caller) or the store is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    Reject(Rejection),
    Fatal(String),
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Self {
        Fail::Reject(r)
    }
}

impl From<ApplyError> for Fail {
    fn from(e: ApplyError) -> Self {
        Fail::Fatal(e.0)
    }
}

/// Applies one request at `revision + 1` (if it changes the key space) and returns its outcome
/// and the shard's revision after it.
pub fn apply<B: Base>(ov: &mut Overlay<B>, revision: u64, request: &Request) -> Result<Applied, ApplyError> {
    let sp = ov.savepoint();
    let next = revision + 1;
    let result = match request {
        Request::Txn(txn) => kv::execute(ov, next, txn).map(Reply::Txn),
        Request::Lease(op) => lease::apply(ov, next, op),
        Request::Game(op) => game::apply(ov, next, op),
    };
    match result {
        Ok(reply) => {
            ov.release();
            let changed = ov.events.len() > sp.events();
            Ok(Applied { revision: if changed { next } else { revision }, outcome: Ok(reply) })
        }
        Err(Fail::Reject(r)) => {
            ov.rollback(sp);
            Ok(Applied { revision, outcome: Err(r) })
        }
        Err(Fail::Fatal(e)) => Err(ApplyError(e)),
    }
}
