//! The game-state records and where they are stored: the reserved keys of the table in
//! `machine/game/mod.rs` and the postcard records kept under them. Plain data, and a leaf beside
//! `game/` rather than inside it: the command language carries boards and leaders in its replies
//! and refusals, so these sit beneath it, and the game logic, the state machine and the services
//! that decode watch events all read one definition.
//!
//! Changing a record changes the storage format (postcard, in rows and snapshots).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::game_ids::{Epoch, Seq, ServerIncarnation, Term};
use crate::types::LeaseId;

pub const SERVER_PREFIX: &[u8] = b"\xffhc/server/";
pub const INCARNATION_PREFIX: &[u8] = b"\xffhc/incarnation/";
pub const BOARD_PREFIX: &[u8] = b"\xffhc/board/";
pub const CKPT_PREFIX: &[u8] = b"\xffhc/ckpt/";
pub const BOARD_EPOCH_PREFIX: &[u8] = b"\xffhc/bepoch/";
pub const LEADER_PREFIX: &[u8] = b"\xffhc/election/";
pub const TERM_PREFIX: &[u8] = b"\xffhc/eterm/";

pub fn key(prefix: &[u8], id: &str) -> Bytes {
    let mut k = Vec::with_capacity(prefix.len() + id.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(id.as_bytes());
    Bytes::from(k)
}

/// A registration as stored (the lease is the row's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub server_id: String,
    pub address: String,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    pub incarnation: ServerIncarnation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub server_id: String,
    pub incarnation: ServerIncarnation,
}

/// A board's owner record as stored (the lifetime lease is the row's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardRecord {
    pub params: Bytes,
    pub owner: Option<Owner>,
    pub epoch: Epoch,
    /// The last assignment: its request id and the epoch it produced (idempotent retries).
    pub last_assign: Option<(String, Epoch)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub seq: Seq,
    pub epoch: Epoch,
    pub data: Bytes,
}

/// A board as replies and streams show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardView {
    pub board_id: String,
    pub record: BoardRecord,
    pub lease: LeaseId,
    /// Revision of the last change of the owner record.
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub candidate: String,
    pub term: Term,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub candidate: String,
    pub lease: LeaseId,
    pub term: Term,
}
