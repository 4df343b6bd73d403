//! The replicated command language: what a Raft log entry asks of the state machine and what
//! applying it answers. Plain data with no logic beyond the words of a refusal; the logic that
//! applies it is the rest of `machine/`.
//!
//! The replicated state machine speaks one command, [`Command::Tracked`] (logs written before
//! exactly-once writes hold [`Command::Batch`]): a list of [`Request`]s applied in order, each
//! atomically on its own, each with the [`WriteId`] that makes a client's write exactly-once
//! (`machine/session.rs`). A request is a KV transaction (guards, then the ops of one branch), a
//! lease operation, or a game-state operation (registry, boards, elections; see `machine/game/`).
//! Put, Delete and CompareAndSwap are transactions, so the KV apply path is one. A log entry
//! carries a batch because openraft's cost is per entry: the leader packs concurrent proposals
//! into one entry (see `proposer.rs`).
//!
//! Revisions are a per-shard counter kept by the state machine: every request that changes the
//! key space takes the next revision, in log order, so revisions strictly increase and are the
//! same on every replica. A request that changes no key (a failed compare-and-swap, deleting a
//! missing key, granting a lease) takes none and reports the current one.
//!
//! Every type here is stored: commands in the Raft log, replies of exactly-once writes in the
//! session table, both in snapshots (postcard). Changing a variant or a field, or their order,
//! changes the storage format.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::game_ids::{Epoch, Seq, ServerIncarnation, Term};
use super::game_records::{BoardView, LeaderView, Owner};
use crate::types::{ClientId, KeyValue, LeaseId};

/// A replicated command: the payload of a normal Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Independent requests applied in order, each atomically. Written by nodes before
    /// exactly-once writes; still applied (as untracked requests that do not move the log clock).
    Batch(Vec<Request>),
    /// Independent requests applied in order, each atomically, each deduplicated by its
    /// [`WriteId`] when it has one (see `machine/session.rs`). `time_ms` is the proposing
    /// leader's wall clock (ms since the Unix epoch); the state machine's log clock is the
    /// largest such time applied so far, which is what idle client sessions expire by.
    Tracked { time_ms: u64, requests: Vec<Tracked> },
}

/// How a command shows in openraft's logs: its kind and size, never its keys or values.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Batch(requests) => write!(f, "batch of {} requests", requests.len()),
            Command::Tracked { time_ms, requests } => {
                write!(f, "tracked batch of {} requests at {time_ms} ms", requests.len())
            }
        }
    }
}

/// A request and the identity that makes it exactly-once (None: internal requests such as lease
/// expiry, and clients that send no write id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    pub write: Option<WriteId>,
    pub request: Request,
}

/// One write of one client: every attempt of the write carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteId {
    pub client: ClientId,
    /// 1, 2, 3, ... per client (across all shards; a shard sees a subsequence, in any order).
    pub seq: u64,
    /// The lowest seq the client still waits for (<= `seq`): replies below it may be forgotten.
    pub first_incomplete: u64,
}

/// One atomic state-machine operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Txn(Txn),
    Lease(LeaseOp),
    Game(GameOp),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOp {
    Grant {
        ttl_ms: u64,
    },
    /// Deletes the lease and everything attached to it.
    Revoke {
        id: LeaseId,
    },
    /// Proposed by the shard leader when the leases' deadlines passed (see `lease_clock.rs`).
    /// Ids that no longer exist are skipped.
    Expire {
        ids: Vec<LeaseId>,
    },
    /// Proposed by this shard's leader once the home shards of these leases (other shards) have
    /// committed their end (see `lease_home.rs`): deletes the follower records and their keys.
    /// Ids of this shard's own leases, and ids no longer followed here, are skipped.
    HomeEnded {
        ids: Vec<LeaseId>,
    },
}

/// Guards, then ops; applied atomically at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// An equality guard on one key's current state. A missing key has value "absent" and
/// `mod_revision`, `create_revision` and `version` 0, so `ModRevision(0)` means "must not exist".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Bytes,
    pub target: CompareTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Exists(bool),
    /// The key exists and holds exactly this value.
    Value(Bytes),
    ModRevision(u64),
    CreateRevision(u64),
    Version(u64),
    /// The key's lease (0: none or missing key).
    Lease(LeaseId),
}

/// One operation inside a transaction. Later ops see the effects of earlier ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Get { key: Bytes },
    Put { key: Bytes, value: Bytes, prev_kv: bool, attach: Attach },
    Delete { key: Bytes, prev_kv: bool },
}

/// What a put does with the key's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Attach {
    /// No lease (any previous attachment ends).
    #[default]
    None,
    /// Attach to an existing lease; the put fails with LEASE_NOT_FOUND if it does not exist.
    Lease(LeaseId),
    /// A per-key TTL: a lease of the key's own, removed with the key or when it is overwritten.
    Ttl(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Get {
        kv: Option<KeyValue>,
    },
    /// `prev` is filled only when the op asked for it.
    Put {
        prev: Option<KeyValue>,
        kv: KeyValue,
    },
    Delete {
        deleted: bool,
        prev: Option<KeyValue>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    pub succeeded: bool,
    /// One result per op of the branch that ran.
    pub results: Vec<OpResult>,
}

/// What a successful request produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Txn(TxnResult),
    LeaseGranted {
        id: LeaseId,
        ttl_ms: u64,
    },
    /// Revoke, expire or home-ended: how many keys of this shard went with the lease(s).
    LeasesEnded {
        deleted_keys: u64,
    },
    Game(GameReply),
}

/// One request's outcome: a reply, or a rejection that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The revision the request wrote at, or the current revision if it changed nothing.
    pub revision: u64,
    pub outcome: Result<Reply, Rejection>,
}

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries produce nothing.
    None,
    /// One result per request of a [`Command::Batch`] or [`Command::Tracked`], in order.
    Batch(Vec<Applied>),
}

/// TTL bounds, in milliseconds. Below 10 ms a lease cannot survive one keepalive round trip;
/// above 30 days it is a configuration mistake (a lease is not storage).
pub const MIN_TTL_MS: u64 = 10;
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// A game-state operation: registry, boards, elections (`machine/game/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameOp {
    Register { server_id: String, address: String, capacity: u32, labels: BTreeMap<String, String>, ttl_ms: u64 },
    Deregister { server_id: String, incarnation: ServerIncarnation },
    CreateBoard { board_id: String, params: Bytes, checkpoint: Bytes, lifetime_ms: Option<u64> },
    AssignBoard(Assign),
    SyncBoard { board_id: String, epoch: Epoch, seq: Seq, checkpoint: Bytes },
    ReleaseBoard { board_id: String, server_id: String, epoch: Epoch },
    DeleteBoard { board_id: String, expected_epoch: Option<Epoch> },
    Campaign { name: String, candidate: String, lease: LeaseId },
    Resign { name: String, term: Term },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameReply {
    Registered {
        lease: LeaseId,
        incarnation: ServerIncarnation,
        ttl_ms: u64,
    },
    Done,
    Board(BoardView),
    Synced {
        seq: Seq,
        written: bool,
    },
    /// `won`: the candidate leads (now or already); otherwise `leader` is who does.
    Campaign {
        won: bool,
        leader: Option<LeaderView>,
    },
}

/// Gives a board to a server: a compare-and-swap on the board's epoch (`machine/game/board.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assign {
    pub board_id: String,
    pub server_id: String,
    pub expected_epoch: Epoch,
    pub request_id: String,
    /// (election name, term): the caller's claim to lead that election.
    pub fence: Option<(String, Term)>,
}

/// Why a request was refused. Deterministic (every replica refuses it alike) and effect-free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("lease {id} not found (it expired, was revoked or never existed)")]
    LeaseNotFound { id: LeaseId },
    #[error("ttl_ms {ttl_ms} is out of range: a TTL is {}..={} ms", MIN_TTL_MS, MAX_TTL_MS)]
    InvalidTtl { ttl_ms: i64 },
    #[error("server {server_id} is not registered")]
    ServerNotFound { server_id: String },
    #[error("server {server_id}: incarnation {given} is stale; the current registration is incarnation {current}")]
    StaleIncarnation { server_id: String, given: ServerIncarnation, current: ServerIncarnation },
    #[error("board {board_id} already exists")]
    BoardExists { board_id: String },
    #[error("board {board_id} not found")]
    BoardNotFound { board_id: String },
    #[error("board {board_id}: epoch {given} is stale; the board is at epoch {epoch}, owned by {}", owner_text(.owner))]
    StaleEpoch { board_id: String, given: Epoch, epoch: Epoch, owner: Option<Owner> },
    #[error("board {board_id}: seq {given} is older than the stored checkpoint's seq {stored}")]
    StaleSeq { board_id: String, given: Seq, stored: Seq },
    #[error("cannot assign board {board_id} to {server_id}: that server is not registered (no live lease)")]
    ServerNotLive { board_id: String, server_id: String },
    #[error("board {board_id}: {server_id} does not own it at epoch {given}; it is at epoch {epoch}, owned by {}", owner_text(.owner))]
    NotOwner { board_id: String, server_id: String, given: Epoch, epoch: Epoch, owner: Option<Owner> },
    #[error("election {name}: term {given} is stale; the current term is {}", term_text(.current))]
    StaleTerm { name: String, given: Term, current: Option<LeaderView> },
    #[error("election {name}: term {given} does not lead; the current term is {}", term_text(.current))]
    NotElectionLeader { name: String, given: Term, current: Option<LeaderView> },
    /// A late copy of a write the client no longer waits for (see `session.rs`): this copy was
    /// not applied, but an earlier one may have been.
    #[error("client {client}: write seq {seq} is below the shard's floor {floor} for this client and its reply is no longer kept; an earlier attempt may have been applied")]
    WriteSeqTooOld { client: String, seq: u64, floor: u64 },
    #[error("this shard already tracks {limit} client sessions, none idle long enough to evict; retry later")]
    TooManyClients { limit: u64 },
}

fn owner_text(owner: &Option<Owner>) -> String {
    match owner {
        Some(o) => format!("{} (incarnation {})", o.server_id, o.incarnation),
        None => "nobody (unassigned)".to_string(),
    }
}

fn term_text(current: &Option<LeaderView>) -> String {
    match current {
        Some(l) => format!("{} held by {}", l.term, l.candidate),
        None => "none (nobody leads)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! The game commands, replies, refusals and records are stored (Raft log, session replies,
    //! rows, snapshots): their postcard bytes must stay those of the layout below, written down
    //! with bare integers, whatever types the code gives the fields.

    use super::*;
    use crate::machine::game_ids::{Epoch, Seq, ServerIncarnation, Term};
    use crate::machine::game_records::{BoardRecord, CheckpointRecord, LeaderRecord, ServerRecord};
    use serde::Serialize;

    // The whole layout is written down, though only some variants are encoded: a variant's
    // place is part of its bytes.
    #[allow(dead_code)]
    mod old {
        //! The stored layout, field for field and variant for variant, with bare integers.
        use bytes::Bytes;
        use serde::Serialize;
        use std::collections::BTreeMap;

        #[derive(Serialize)]
        pub enum GameOp {
            Register {
                server_id: String,
                address: String,
                capacity: u32,
                labels: BTreeMap<String, String>,
                ttl_ms: u64,
            },
            Deregister {
                server_id: String,
                incarnation: u64,
            },
            CreateBoard {
                board_id: String,
                params: Bytes,
                checkpoint: Bytes,
                lifetime_ms: Option<u64>,
            },
            AssignBoard(Assign),
            SyncBoard {
                board_id: String,
                epoch: u64,
                seq: u64,
                checkpoint: Bytes,
            },
            ReleaseBoard {
                board_id: String,
                server_id: String,
                epoch: u64,
            },
            DeleteBoard {
                board_id: String,
                expected_epoch: Option<u64>,
            },
            Campaign {
                name: String,
                candidate: String,
                lease: u64,
            },
            Resign {
                name: String,
                term: u64,
            },
        }

        #[derive(Serialize)]
        pub struct Assign {
            pub board_id: String,
            pub server_id: String,
            pub expected_epoch: u64,
            pub request_id: String,
            pub fence: Option<(String, u64)>,
        }

        #[derive(Serialize)]
        pub enum GameReply {
            Registered { lease: u64, incarnation: u64, ttl_ms: u64 },
            Done,
            Board(BoardView),
            Synced { seq: u64, written: bool },
            Campaign { won: bool, leader: Option<LeaderView> },
        }

        #[derive(Serialize, Clone)]
        pub struct Owner {
            pub server_id: String,
            pub incarnation: u64,
        }

        #[derive(Serialize)]
        pub struct BoardRecord {
            pub params: Bytes,
            pub owner: Option<Owner>,
            pub epoch: u64,
            pub last_assign: Option<(String, u64)>,
        }

        #[derive(Serialize)]
        pub struct CheckpointRecord {
            pub seq: u64,
            pub epoch: u64,
            pub data: Bytes,
        }

        #[derive(Serialize)]
        pub struct BoardView {
            pub board_id: String,
            pub record: BoardRecord,
            pub lease: u64,
            pub revision: u64,
        }

        #[derive(Serialize)]
        pub struct ServerRecord {
            pub server_id: String,
            pub address: String,
            pub capacity: u32,
            pub labels: BTreeMap<String, String>,
            pub incarnation: u64,
        }

        #[derive(Serialize)]
        pub struct LeaderRecord {
            pub candidate: String,
            pub term: u64,
        }

        #[derive(Serialize, Clone)]
        pub struct LeaderView {
            pub candidate: String,
            pub lease: u64,
            pub term: u64,
        }

        #[derive(Serialize)]
        pub enum Rejection {
            LeaseNotFound { id: u64 },
            InvalidTtl { ttl_ms: i64 },
            ServerNotFound { server_id: String },
            StaleIncarnation { server_id: String, given: u64, current: u64 },
            BoardExists { board_id: String },
            BoardNotFound { board_id: String },
            StaleEpoch { board_id: String, given: u64, epoch: u64, owner: Option<Owner> },
            StaleSeq { board_id: String, given: u64, stored: u64 },
            ServerNotLive { board_id: String, server_id: String },
            NotOwner { board_id: String, server_id: String, given: u64, epoch: u64, owner: Option<Owner> },
            StaleTerm { name: String, given: u64, current: Option<LeaderView> },
            NotElectionLeader { name: String, given: u64, current: Option<LeaderView> },
            WriteSeqTooOld { client: String, seq: u64, floor: u64 },
            TooManyClients { limit: u64 },
        }
    }

    /// `now` (the code's value) encodes to the bytes of `then` (the stored layout's), and those
    /// bytes decode back to `now`.
    #[track_caller]
    fn same_bytes<T, O>(now: &T, then: &O)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        O: Serialize,
    {
        let stored = postcard::to_allocvec(then).unwrap();
        assert_eq!(postcard::to_allocvec(now).unwrap(), stored, "{now:?} no longer encodes as it is stored");
        assert_eq!(&postcard::from_bytes::<T>(&stored).unwrap(), now, "stored bytes decode differently");
    }

    // Values above 127 take more than one varint byte, so a width change would show too.
    const EPOCH: u64 = 300;
    const SEQ: u64 = 70_000;
    const INC: u64 = 129;
    const TERM: u64 = 1 << 40;

    #[test]
    fn game_commands_and_replies_encode_as_stored() {
        let ckpt = Bytes::from_static(b"ckpt");
        same_bytes(
            &GameOp::SyncBoard { board_id: "b".into(), epoch: Epoch(EPOCH), seq: Seq(SEQ), checkpoint: ckpt.clone() },
            &old::GameOp::SyncBoard { board_id: "b".into(), epoch: EPOCH, seq: SEQ, checkpoint: ckpt },
        );
        same_bytes(
            &GameOp::Deregister { server_id: "gs".into(), incarnation: ServerIncarnation(INC) },
            &old::GameOp::Deregister { server_id: "gs".into(), incarnation: INC },
        );
        same_bytes(
            &GameOp::ReleaseBoard { board_id: "b".into(), server_id: "gs".into(), epoch: Epoch(EPOCH) },
            &old::GameOp::ReleaseBoard { board_id: "b".into(), server_id: "gs".into(), epoch: EPOCH },
        );
        same_bytes(
            &GameOp::DeleteBoard { board_id: "b".into(), expected_epoch: Some(Epoch(EPOCH)) },
            &old::GameOp::DeleteBoard { board_id: "b".into(), expected_epoch: Some(EPOCH) },
        );
        same_bytes(
            &GameOp::Resign { name: "e".into(), term: Term(TERM) },
            &old::GameOp::Resign { name: "e".into(), term: TERM },
        );
        same_bytes(
            &GameOp::AssignBoard(Assign {
                board_id: "b".into(),
                server_id: "gs".into(),
                expected_epoch: Epoch(EPOCH),
                request_id: "r".into(),
                fence: Some(("e".into(), Term(TERM))),
            }),
            &old::GameOp::AssignBoard(old::Assign {
                board_id: "b".into(),
                server_id: "gs".into(),
                expected_epoch: EPOCH,
                request_id: "r".into(),
                fence: Some(("e".into(), TERM)),
            }),
        );
        same_bytes(
            &GameReply::Registered { lease: LeaseId(5), incarnation: ServerIncarnation(INC), ttl_ms: 1000 },
            &old::GameReply::Registered { lease: 5, incarnation: INC, ttl_ms: 1000 },
        );
        same_bytes(
            &GameReply::Synced { seq: Seq(SEQ), written: true },
            &old::GameReply::Synced { seq: SEQ, written: true },
        );
        same_bytes(
            &GameReply::Campaign {
                won: true,
                leader: Some(LeaderView { candidate: "c".into(), lease: LeaseId(5), term: Term(TERM) }),
            },
            &old::GameReply::Campaign {
                won: true,
                leader: Some(old::LeaderView { candidate: "c".into(), lease: 5, term: TERM }),
            },
        );
        same_bytes(
            &GameReply::Board(BoardView { board_id: "b".into(), record: board(), lease: LeaseId(5), revision: 9 }),
            &old::GameReply::Board(old::BoardView { board_id: "b".into(), record: old_board(), lease: 5, revision: 9 }),
        );
    }

    fn board() -> BoardRecord {
        BoardRecord {
            params: Bytes::from_static(b"p"),
            owner: Some(Owner { server_id: "gs".into(), incarnation: ServerIncarnation(INC) }),
            epoch: Epoch(EPOCH),
            last_assign: Some(("r".into(), Epoch(EPOCH))),
        }
    }

    fn old_board() -> old::BoardRecord {
        old::BoardRecord {
            params: Bytes::from_static(b"p"),
            owner: Some(old::Owner { server_id: "gs".into(), incarnation: INC }),
            epoch: EPOCH,
            last_assign: Some(("r".into(), EPOCH)),
        }
    }

    #[test]
    fn game_records_encode_as_stored() {
        same_bytes(&board(), &old_board());
        let data = Bytes::from_static(b"d");
        same_bytes(
            &CheckpointRecord { seq: Seq(SEQ), epoch: Epoch(EPOCH), data: data.clone() },
            &old::CheckpointRecord { seq: SEQ, epoch: EPOCH, data },
        );
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        same_bytes(
            &ServerRecord {
                server_id: "gs".into(),
                address: "a:1".into(),
                capacity: 4,
                labels: labels.clone(),
                incarnation: ServerIncarnation(INC),
            },
            &old::ServerRecord { server_id: "gs".into(), address: "a:1".into(), capacity: 4, labels, incarnation: INC },
        );
        same_bytes(
            &LeaderRecord { candidate: "c".into(), term: Term(TERM) },
            &old::LeaderRecord { candidate: "c".into(), term: TERM },
        );
        // The three counter rows that never go backwards hold the bare number.
        same_bytes(&Epoch(EPOCH), &EPOCH);
        same_bytes(&ServerIncarnation(INC), &INC);
        same_bytes(&Term(TERM), &TERM);
    }

    #[test]
    fn game_refusals_encode_as_stored() {
        let owner = Some(Owner { server_id: "gs".into(), incarnation: ServerIncarnation(INC) });
        let old_owner = Some(old::Owner { server_id: "gs".into(), incarnation: INC });
        let leader = Some(LeaderView { candidate: "c".into(), lease: LeaseId(5), term: Term(TERM) });
        let old_leader = Some(old::LeaderView { candidate: "c".into(), lease: 5, term: TERM });
        same_bytes(
            &Rejection::StaleEpoch {
                board_id: "b".into(),
                given: Epoch(EPOCH - 1),
                epoch: Epoch(EPOCH),
                owner: owner.clone(),
            },
            &old::Rejection::StaleEpoch {
                board_id: "b".into(),
                given: EPOCH - 1,
                epoch: EPOCH,
                owner: old_owner.clone(),
            },
        );
        same_bytes(
            &Rejection::NotOwner {
                board_id: "b".into(),
                server_id: "x".into(),
                given: Epoch(EPOCH - 1),
                epoch: Epoch(EPOCH),
                owner,
            },
            &old::Rejection::NotOwner {
                board_id: "b".into(),
                server_id: "x".into(),
                given: EPOCH - 1,
                epoch: EPOCH,
                owner: old_owner,
            },
        );
        same_bytes(
            &Rejection::StaleSeq { board_id: "b".into(), given: Seq(SEQ - 1), stored: Seq(SEQ) },
            &old::Rejection::StaleSeq { board_id: "b".into(), given: SEQ - 1, stored: SEQ },
        );
        same_bytes(
            &Rejection::StaleIncarnation {
                server_id: "gs".into(),
                given: ServerIncarnation(INC - 1),
                current: ServerIncarnation(INC),
            },
            &old::Rejection::StaleIncarnation { server_id: "gs".into(), given: INC - 1, current: INC },
        );
        same_bytes(
            &Rejection::StaleTerm { name: "e".into(), given: Term(TERM - 1), current: leader.clone() },
            &old::Rejection::StaleTerm { name: "e".into(), given: TERM - 1, current: old_leader.clone() },
        );
        same_bytes(
            &Rejection::NotElectionLeader { name: "e".into(), given: Term(TERM - 1), current: leader },
            &old::Rejection::NotElectionLeader { name: "e".into(), given: TERM - 1, current: old_leader },
        );
    }
}
