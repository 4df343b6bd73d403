//! The replicated state machine's logic, free of I/O: given the rows (an [`Overlay`]) and a
//! [`Request`], compute the reply or a [`Rejection`] and the writes.
//!
//! Every request is atomic: [`apply`] takes a savepoint, runs the request, and rolls the overlay
//! back if the request is rejected, so a rejection changes nothing. Game-state operations
//! (registry, boards, elections) are requests of their own rather than read-modify-write in a
//! service: their checks and writes happen at one point of the log.
//!
//! Layers, each importing only those beneath it, so no module here reaches back up:
//! `game_ids.rs` (the fencing numbers: epochs, seqs, incarnations, terms; a leaf),
//! `game_records.rs` (game records and their keys) and `command.rs` (the command language: what
//! an entry asks and what applying it answers); `overlay.rs` (sealed rows with undo, events and
//! the failure types); `rows.rs` (rows and the lease attachment kept in step with them);
//! `kv.rs`, `lease.rs` and `game/` (one kind of request each); [`apply`] here, and `session.rs`,
//! which wraps it for exactly-once writes.

pub mod command;
pub mod game;
pub mod game_ids;
pub mod game_records;
pub mod kv;
pub mod lease;
pub mod overlay;
pub mod rows;
pub mod session;

use command::{Applied, Reply, Request};
use overlay::{ApplyError, Base, Fail, Overlay};

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
