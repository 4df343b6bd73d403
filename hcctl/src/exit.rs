//! Exit codes (also listed in `hcctl --help` and docs/operations.md). Only
//! [`OUTCOME_UNKNOWN`] means "may have taken effect"; every other failure is definite.
//!
//! A module of its own so every command (and the error mapping in `failure`) takes the codes
//! from one leaf, not from the crate root that dispatches to them.

pub const OK: u8 = 0;
/// `get`: the key does not exist.
pub const KEY_NOT_FOUND: u8 = 1;
/// `cas`/`txn`: the comparison failed; a precondition (epoch, seq, term, incarnation) failed.
pub const CAS_FAILED: u8 = 2;
/// A write may or may not have been applied; read the key back. The only "maybe" code.
pub const OUTCOME_UNKNOWN: u8 = 3;
/// The server rejected the request (empty key, key or value too large, bad range...).
pub const INVALID_ARGUMENT: u8 = 4;
/// No node could serve the request in time (no leader, nodes down, deadline); no effect.
pub const UNAVAILABLE: u8 = 5;
/// Any other definite failure (nothing was applied): unknown shard, bad configuration, an
/// internal error of a read, I/O error.
pub const OTHER: u8 = 6;
/// The lease does not exist (expired or revoked), or a kept lease was lost.
pub const LEASE_NOT_FOUND: u8 = 7;
/// The game server is not registered (`SERVER_NOT_FOUND`).
pub const SERVER_NOT_FOUND: u8 = 8;
/// The board does not exist.
pub const BOARD_NOT_FOUND: u8 = 9;
/// `election leader`: nobody leads the election.
pub const NO_ELECTION_LEADER: u8 = 10;
/// Command-line usage error.
pub const USAGE: u8 = 64;
