//! Game-state operations: the registry of game servers, boards with fenced ownership, and
//! elections with fencing terms.
//!
//! Their records are ordinary rows in a reserved part of the key space (keys beginning with byte
//! 0xff, which clients cannot write through the KV API), so they replicate, snapshot, attach to
//! leases and produce watch events like any key; the typed streams (registry watch, assignment
//! watch, election observe) are key watches decoded on the server. Values are postcard records.
//!
//! The records and their keys are `machine/game_records.rs`; they are read and written with the row
//! primitives of `machine/rows.rs`. This module only dispatches a [`GameOp`] to its part.
//!
//! | record | key | lease |
//! |---|---|---|
//! | registration | `\xffhc/server/<id>` | the registration's lease |
//! | incarnation counter | `\xffhc/incarnation/<id>` | none (never goes backwards) |
//! | board owner record | `\xffhc/board/<id>` | the board's lifetime lease, if any |
//! | board checkpoint | `\xffhc/ckpt/<id>` | same as the board |
//! | board epoch high-water mark | `\xffhc/bepoch/<id>` | none (never goes backwards) |
//! | election leader | `\xffhc/election/<name>` | the leader's lease |
//! | election term counter | `\xffhc/eterm/<name>` | none (never goes backwards) |
//!
//! The three "never goes backwards" rows are what makes incarnations, board epochs and election
//! terms fencing tokens: the record they count may be deleted (deregistration, board deletion, a
//! lease ending) and created again under the same id, and a holder of an old token paused across
//! that must still be refused. The price is one small row (the key plus ~30 bytes) per id ever
//! used, never reclaimed: ids are expected to be few per server and election, and per board one
//! per game (1 million distinct board ids cost roughly 60-100 MB of sled, an estimate, not
//! measured). ADR 34 in docs/architecture.md.

pub mod board;
pub mod election;
pub mod registry;

use super::command::{GameOp, Reply};
use super::overlay::{Base, Fail, Overlay};

pub fn apply<B: Base>(ov: &mut Overlay<B>, revision: u64, op: &GameOp) -> Result<Reply, Fail> {
    let reply = match op {
        GameOp::Register { server_id, address, capacity, labels, ttl_ms } => {
            registry::register(ov, revision, server_id, address, *capacity, labels, *ttl_ms)?
        }
        GameOp::Deregister { server_id, incarnation } => registry::deregister(ov, revision, server_id, *incarnation)?,
        GameOp::CreateBoard { board_id, params, checkpoint, lifetime_ms } => {
            board::create(ov, revision, board_id, params, checkpoint, *lifetime_ms)?
        }
        GameOp::AssignBoard(a) => board::assign(ov, revision, a)?,
        GameOp::SyncBoard { board_id, epoch, seq, checkpoint } => {
            board::sync(ov, revision, board_id, *epoch, *seq, checkpoint)?
        }
        GameOp::ReleaseBoard { board_id, server_id, epoch } => {
            board::release(ov, revision, board_id, server_id, *epoch)?
        }
        GameOp::DeleteBoard { board_id, expected_epoch } => board::delete(ov, revision, board_id, *expected_epoch)?,
        GameOp::Campaign { name, candidate, lease } => election::campaign(ov, revision, name, candidate, *lease)?,
        GameOp::Resign { name, term } => election::resign(ov, revision, name, *term)?,
    };
    Ok(Reply::Game(reply))
}
