//! Async client for HyperCache.
//!
//! # Model
//!
//! A HyperCache cluster is a fixed number of shards; each shard is a Raft group: one leader
//! serves writes and linearizable reads, the followers redirect. The client is configured with a
//! few *seed* endpoints (`host:port`, DNS names welcome; they are resolved by tonic at every
//! (re)connect, never frozen here) and finds the shards and their leaders itself:
//!
//! - **Routing.** On first use the client fetches the routing table ([`Client::routing`],
//!   [`RoutingTable`]) from any endpoint, sends each keyed request to the shard its key maps to
//!   (hash tags `{...}` honoured), and refreshes the table when a node says it was wrong
//!   (`UNKNOWN_SHARD`, `WRONG_SHARD`, `NO_LEADER`). A server that predates sharding is one shard.
//!   The game services and plain lease grants go to the *home shard*, the shard of
//!   [`ClientConfig::namespace`]; lease operations follow the shard in the lease id.
//! - **Leader discovery.** Writes and linearizable reads go to the shard's cached leader, else
//!   to the table's hint, else to a replica. A follower answers `NOT_LEADER` with the leader's
//!   endpoint in the `ErrorInfo`; the client switches to it at once (creating a channel if the
//!   leader is not known) and remembers it for that shard. Every success confirms the cache.
//! - **Retries.** `NO_LEADER` (election in progress), `SHUTTING_DOWN` and connection failures
//!   move to the next endpoint after a bounded, jittered exponential backoff, up to
//!   `max_attempts` attempts and never past the request deadline (`request_timeout`, enforced
//!   around the whole loop).
//! - **Frozen nodes.** Each attempt has its own timeout (`attempt_timeout`, also sent to the
//!   server as the gRPC timeout): a frozen node accepts connections and never answers. A read
//!   moves to the next replica when it fires, a write is retried with the same write id (below);
//!   the endpoint is then skipped for a while, even as a shard's leader, and redirects to it are
//!   not followed.
//! - **Exactly-once writes.** Every write (put, delete, compare-and-swap, txn, lease grant and
//!   revoke, and the registry, board and election writes) carries a write id: this client
//!   instance's random id and a per-client sequence number, the same on every attempt. The shard
//!   applies a given id at most once and answers a repeat with the original reply, so the client
//!   retries a write whose outcome it does not know (lost answer, `OUTCOME_UNKNOWN`, a
//!   `NOT_LEADER` after its entry was dropped) within the deadline, like a read. Only a deadline
//!   that passes with an attempt in flight, or `WRITE_SEQ_TOO_OLD` (a repeat whose reply the
//!   shard no longer keeps), is [`Error::OutcomeUnknown`]; the caller decides (usually: read the
//!   key back). Writes without an id (decommission) are retried only when they provably had no
//!   effect (`ErrorInfo.not_applied = true`, or never sent). `Election.Campaign` carries no id:
//!   it is idempotent by candidate and lease, and retried like a read.
//! - **Permanent errors** are returned at once with the server's message intact (it names the
//!   violated limit or the state that caused the refusal): `INVALID_ARGUMENT` as
//!   [`Error::InvalidArgument`]; the typed refusals of the lease, watch and game services
//!   (`FAILED_PRECONDITION` such as `STALE_EPOCH`, `NOT_FOUND`, `ALREADY_EXISTS`, `OUT_OF_RANGE`,
//!   `RESOURCE_EXHAUSTED`) as [`Error::Rejected`], decoded by helpers such as
//!   [`Error::stale_epoch`]; `INTERNAL`. They are never retried, although the server marks
//!   them `not_applied`: the same request would be refused the same way.
//!
//! Serializable reads ([`Client::get_serializable`], [`RangeOptions::serializable`]) go to a
//! replica of the key's shard (a seed if one is) and may be stale, but never come from a
//! learner or an empty replica (the server refuses) nor from one behind a revision this client
//! already saw of the shard (the client refuses and asks another replica; `freshness.rs`);
//! [`Client::get_from`] and [`Client::status`]
//! ask exactly one node, which is how operators inspect a particular replica.
//!
//! # Beyond single keys
//!
//! - **Transactions** ([`Client::txn`], built with [`Txn`], [`Compare`], [`Op`]): compares and
//!   two op lists, atomic at one revision, in one shard (the client refuses keys of several
//!   shards with reason `CROSS_SHARD` before sending; use hash tags).
//! - **Ranges** ([`Client::range`]) query every shard the range covers and merge the pages in
//!   key order, honouring `limit`; [`RangePage::revisions`] has each shard's revision.
//! - **Leases** ([`Client::grant`], [`Client::put_with`] with [`PutOptions`]): every [`Lease`]
//!   carries the deadline the client can vouch for, measured from when the request was *sent*.
//!   [`LeaseKeeper`] renews a lease in the background over the `Lease.KeepAlive` stream,
//!   following the leader, and publishes [`LeaseState`]: `Alive { deadline }` until the server
//!   says the lease is gone or the deadline passes without a renewal, then `Lost` (final).
//!   Holders self-fence at `deadline - margin` ([`LeaseKeeper::is_safe`]).
//! - **Watches** ([`Client::watch`]): a [`Watcher`] delivers every event exactly once and in
//!   revision order per shard across reconnects, resuming each shard from its last delivered
//!   revision + 1 on any replica; a prefix or range watch merges one stream per shard, and every
//!   update names its shard. `COMPACTED` is the one break it cannot repair and returns.
//! - **Game services**: the registry ([`Client::register`], [`Client::watch_servers`]), boards with
//!   epoch-fenced ownership ([`Client::assign_board`], [`Client::sync_board`]) and elections
//!   with fencing terms ([`Client::campaign`]), all methods of [`Client`]. Their watches
//!   reconnect by themselves and start every connection with a snapshot of the whole state.
//!   [`BoardSyncer`] is a board owner's checkpoint loop: same seq on retries, and a stop the
//!   moment the owner is fenced (`STALE_EPOCH`) or its lease is about to lapse.
//!
//! # Not done (deliberately)
//!
//! - A connection attempt still in progress when the deadline fires counts as "maybe sent"
//!   (conservative: reported as outcome unknown for writes).
//! - No hedged or parallel requests; no client-side validation of key/value limits (the server
//!   owns the limits and its message is the one users see).
//! - No periodic routing refresh: the table is replaced only when a node's answer shows it is
//!   wrong. No cross-shard snapshot: a merged range page reads each shard at its own moment.
//! - Snapshot-first watches (registry, assignments, observers) do not replay what changed
//!   between two connections: the new snapshot replaces it.

mod boards;
mod call;
mod client;
mod config;
mod election;
mod endpoints;
mod error;
mod freshness;
mod health;
mod ids;
mod keeper;
mod lease;
mod ops;
mod range;
mod refresh;
mod registry;
mod retry;
mod routing;
mod stream;
mod syncer;
mod target;
mod txn;
mod types;
mod watch;
mod watch_shard;
mod watch_types;
mod writes;

pub use boards::{
    AssignBoard, AssignmentChange, AssignmentUpdate, AssignmentWatch, Board, BoardOwner, BoardPage, BoardRecord,
    Checkpoint, CreateBoard, SyncResult,
};
pub use client::Client;
pub use config::{parse_endpoint_list, validate_endpoint, ClientConfig, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_NAMESPACE};
pub use election::{ElectionState, LeaderObserver, Leadership};
pub use error::{CurrentOwner, CurrentTerm, Error};
pub use hypercache_proto::v1::{ErrorInfo, StatusResponse};
pub use hypercache_proto::{Reason, Role};
pub use ids::{Epoch, Incarnation, Seq, ShardId, Term};
pub use keeper::{LeaseKeeper, LeaseState, LostReason};
pub use lease::{Lease, LeaseTtl};
pub use registry::{GameServer, RegisterOptions, Registration, ServerChange, ServerUpdate, ServerWatch};
pub use routing::{RoutingNode, RoutingTable, ShardPlacement};
pub use syncer::{BoardSyncer, SyncHandle, SyncStatus, SyncStopped, DEFAULT_SYNC_INTERVAL};
pub use txn::{Compare, Op, OpResult, Txn, TxnResult};
pub use types::{CasResult, DeleteResult, KeyValue, LeaseId, PutOptions, PutResult, RangeOptions, RangePage};
pub use watch::{Event, EventKind, WatchOptions, WatchTarget, WatchUpdate, Watcher};
