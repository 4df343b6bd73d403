//! Async client for HyperCache, and the `hcctl` command line built on it.
//!
//! # Model
//!
//! A HyperCache shard is a Raft group: one leader serves writes and linearizable reads, the
//! followers redirect. The client is configured with a few *seed* endpoints (`host:port`, DNS
//! names welcome; they are resolved by tonic at every (re)connect, never frozen here) and finds
//! the leader itself:
//!
//! - **Leader discovery.** Writes and linearizable reads go to the cached leader, else to the
//!   first seed. A follower answers `NOT_LEADER` with the leader's endpoint in the `ErrorInfo`;
//!   the client switches to it at once (creating a channel if the leader is not a seed) and
//!   remembers it. Every success confirms the cache.
//! - **Retries.** `NO_LEADER` (election in progress), `SHUTTING_DOWN` and connection failures
//!   move to the next endpoint after a bounded, jittered exponential backoff, up to
//!   `max_attempts` attempts and never past the request deadline (`request_timeout`, enforced
//!   around the whole loop and also sent to the server as the gRPC timeout).
//! - **Outcome unknown.** A write is retried *only* when it provably had no effect: the server
//!   set `ErrorInfo.not_applied = true`, or the connection was never established. If a write
//!   may have reached a leader and no answer came back (deadline, connection reset,
//!   `OUTCOME_UNKNOWN`, `UNAVAILABLE` without the promise), the client returns
//!   [`Error::OutcomeUnknown`] and does not retry: a blind retry could apply a put twice or make a
//!   compare-and-swap fail against its own earlier success. The caller decides (usually: read
//!   the key back). Reads have no effect and are retried on any transient failure.
//! - **Permanent errors** (`INVALID_ARGUMENT` and friends, `UNKNOWN_SHARD`, `INTERNAL`) are
//!   returned at once with the server's message intact; it names the violated limit.
//!
//! Serializable reads ([`Client::get_serializable`], [`RangeOptions::serializable`]) go to the
//! first seed (then the others) and may be stale; [`Client::get_from`] and [`Client::status`]
//! ask exactly one node, which is how operators inspect a particular replica.
//!
//! # Not done (deliberately)
//!
//! - A connection attempt still in progress when the deadline fires counts as "maybe sent"
//!   (conservative: reported as outcome unknown for writes).
//! - No hedged or parallel requests; no client-side validation of key/value limits (the server
//!   owns the limits and its message is the one users see).
//! - Every request goes to one shard (`ClientConfig::shard_id`); key-to-shard routing comes with
//!   sharding.

mod client;
mod config;
mod error;
mod ops;
mod retry;
mod types;

pub mod cli;

pub use client::Client;
pub use config::{parse_endpoint_list, validate_endpoint, ClientConfig, DEFAULT_MAX_MESSAGE_BYTES};
pub use error::Error;
pub use hypercache_proto::v1::StatusResponse;
pub use types::{CasResult, DeleteResult, KeyValue, PutResult, RangeOptions, RangePage};
