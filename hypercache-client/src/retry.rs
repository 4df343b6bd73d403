//! What to do after a failed attempt: pure decisions, no I/O.
//!
//! [`classify`] maps one failed attempt (its gRPC status, whether the operation is a read or a
//! write, and whether the request can have reached a server) to a [`Decision`]. The rule that
//! keeps writes exactly-once-or-reported is: **a write is retried only when it provably had no
//! effect**, i.e. the server said `ErrorInfo.not_applied = true`, or the connection was never
//! established so the request was never sent. Every other write failure after sending is
//! [`Decision::OutcomeUnknown`]. Reads have no effect, so any transient failure is retried.
//! Writes the server applies at most once however often they are repeated
//! ([`OpKind::Idempotent`]) are retried like reads.
//!
//! Only `NOT_LEADER`, `NO_LEADER`, `SHUTTING_DOWN`, the other UNAVAILABLE reasons (and, for
//! reads, `OUTCOME_UNKNOWN`) and transport failures are transient; the match names every
//! [`Reason`], so a new one needs a decision here. `UNKNOWN_SHARD` and `WRONG_SHARD` are
//! [`Decision::Reroute`]: the client's routing table was wrong, the server promises no effect,
//! so the request goes again (writes too) after a refresh. Every other status with an `ErrorInfo` is a deterministic
//! refusal and fails at once, even though the server marks it `not_applied`: `INVALID_ARGUMENT`
//! as [`Error::InvalidArgument`], `FAILED_PRECONDITION` / `NOT_FOUND` / `ALREADY_EXISTS` /
//! `OUT_OF_RANGE` / `RESOURCE_EXHAUSTED` as [`Error::Rejected`].
//!
//! [`backoff_delay`] is the bounded exponential backoff with "equal jitter": the n-th retry waits
//! a uniformly random time in `[cap/2, cap]` where `cap = min(base * 2^(n-1), max)`. The lower
//! half keeps retries from hammering an electing cluster; the jitter spreads many clients apart.

use std::error::Error as StdError;
use std::time::Duration;

use hypercache_proto::error_info::info_of;
use hypercache_proto::Reason;
use tonic::{Code, Status};

use crate::error::Error;

/// Whether an operation changes state, and whether repeating it is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Read,
    Write,
    /// A write the server applies at most once however often it is repeated: `Boards.Sync` with
    /// the same (epoch, seq), `Boards.Assign` with the same request id, `Election.Campaign` by
    /// the same candidate and lease, a lease keepalive. Retried like a read; a deadline that
    /// passes with an attempt in flight is still reported as outcome unknown, because the
    /// caller cannot tell whether it took effect (it may simply repeat it).
    Idempotent,
    /// A write carrying a write id (`writes.rs`): the shard applies it at most once however
    /// often it is repeated and answers a repeat with the first outcome, so any failure is
    /// retried within the deadline, like a read. Only a deadline that passes with an attempt in
    /// flight (or `WRITE_SEQ_TOO_OLD`) leaves the outcome unknown.
    Tracked,
}

impl OpKind {
    /// True when a failed attempt may be repeated whatever happened to it.
    pub(crate) fn retry_safe(self) -> bool {
        !matches!(self, OpKind::Write)
    }
}

/// Whether a failed request can have reached a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The connection could not be established: nothing was sent.
    NotSent,
    /// The request may have been sent (and processed).
    MaybeSent,
}

/// The next step after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Ask this endpoint (the leader named by the server) right away.
    Redirect(String),
    /// Try the next endpoint after a backoff.
    Retry,
    /// The node does not host the shard, or the key maps to another shard: refresh the routing
    /// table and try again (the server promises no effect, so even a write is retried).
    Reroute,
    /// Give up with this error.
    Fail(Error),
    /// A write may have been applied: report it, never retry it.
    OutcomeUnknown,
}

/// Tells a connect failure (request never sent) from any later failure, by looking for tonic's
/// [`tonic::ConnectError`] in the status' source chain. tonic attaches it when the lazy channel
/// fails to establish its connection (refused, unreachable, DNS failure, connect timeout).
pub(crate) fn delivery_of(status: &Status) -> Delivery {
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return Delivery::NotSent;
        }
        source = err.source();
    }
    Delivery::MaybeSent
}

/// Decides what to do after `status` for an operation of `kind`.
pub(crate) fn classify(status: &Status, kind: OpKind, delivery: Delivery) -> Decision {
    if delivery == Delivery::NotSent {
        return Decision::Retry;
    }
    let message = status.message().to_string();
    let Some(info) = info_of(status) else {
        return classify_foreign(status.code(), message, kind);
    };
    // Retrying is safe for reads always, for writes only on the server's promise.
    let transient = || {
        if kind.retry_safe() || info.not_applied {
            Decision::Retry
        } else {
            Decision::OutcomeUnknown
        }
    };
    let Some(reason) = info.known_reason() else {
        // A reason this build does not know (a newer server's): its gRPC code decides, as for
        // the reasons below that the code decides, and UNAVAILABLE keeps the server's
        // `not_applied` promise; anything else is outside this client's model.
        return match status.code() {
            Code::Unavailable => transient(),
            code => classify_foreign(code, message, kind),
        };
    };
    // Every reason is named, so a new one cannot slip into a default without a decision here.
    match reason {
        Reason::NotLeader if !info.leader_endpoint.is_empty() => {
            if kind.retry_safe() || info.not_applied {
                Decision::Redirect(info.leader_endpoint)
            } else {
                Decision::OutcomeUnknown
            }
        }
        Reason::NotLeader | Reason::NoLeader | Reason::ShuttingDown => transient(),
        Reason::OutcomeUnknown => unknown_unless_safe(kind),
        // A late repeat of a write whose reply the shard no longer keeps: this copy did nothing,
        // an earlier one may have been applied.
        Reason::WriteSeqTooOld => Decision::OutcomeUnknown,
        Reason::UnknownShard | Reason::WrongShard => Decision::Reroute,
        Reason::Internal => Decision::Fail(Error::Internal { message }),
        Reason::EmptyKey
        | Reason::KeyTooLong
        | Reason::ValueTooLarge
        | Reason::InvalidRange
        | Reason::InvalidArgument => Decision::Fail(Error::InvalidArgument { reason, message }),
        // Every other reason is decided by the gRPC code it comes with, which is stable.
        Reason::ReservedKey
        | Reason::InvalidTtl
        | Reason::InvalidId
        | Reason::CheckpointTooLarge
        | Reason::ParamsTooLarge
        | Reason::NodeUnreachable
        | Reason::CrossShard
        | Reason::ReplicaNotServing
        | Reason::StaleReplica
        | Reason::WatchReset
        | Reason::MembershipBusy
        | Reason::TooManyClients
        | Reason::Compacted
        | Reason::WatcherTooSlow
        | Reason::LeaseNotFound
        | Reason::ServerNotFound
        | Reason::StaleIncarnation
        | Reason::BoardExists
        | Reason::BoardNotFound
        | Reason::StaleEpoch
        | Reason::StaleSeq
        | Reason::ServerNotLive
        | Reason::NotOwner
        | Reason::StaleTerm
        | Reason::NotElectionLeader
        | Reason::MemberConflict
        | Reason::LastVoter
        | Reason::LastReplicaHolder
        | Reason::UnknownNode
        | Reason::UnidentifiedNode
        | Reason::IncarnationMismatch => match status.code() {
            Code::InvalidArgument => Decision::Fail(Error::InvalidArgument { reason, message }),
            // Deterministic refusals: the same request would be refused again, so `not_applied`
            // does not make them worth retrying.
            code @ (Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::ResourceExhausted) => {
                Decision::Fail(Error::Rejected { code, reason, message, info: Box::new(info) })
            }
            Code::Unavailable => transient(),
            code => classify_foreign(code, message, kind),
        },
        // The client's own reasons, never sent by a server: whoever sent one is outside the model.
        Reason::Unavailable | Reason::DeadlineExceeded | Reason::Rpc | Reason::Config | Reason::Io => {
            classify_foreign(status.code(), message, kind)
        }
    }
}

/// True when `status` says the routing table's leader hints are out of date: `NO_LEADER`, or a
/// `NOT_LEADER` that names no leader.
pub(crate) fn wants_refresh(status: &Status) -> bool {
    info_of(status).is_some_and(|i| match i.known_reason() {
        Some(Reason::NoLeader) => true,
        Some(Reason::NotLeader) => i.leader_endpoint.is_empty(),
        _ => false,
    })
}

/// A status without HyperCache's `ErrorInfo`: produced by the transport, tonic itself, or
/// something between us and the server.
fn classify_foreign(code: Code, message: String, kind: OpKind) -> Decision {
    match code {
        // Transport trouble: the connection broke, the stream was reset, the deadline ran out.
        // The request may have been processed.
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Unknown
        | Code::Internal
        | Code::Aborted
        | Code::DataLoss => unknown_unless_safe(kind),
        Code::InvalidArgument | Code::OutOfRange => {
            // The transport's own refusal (an oversized message, say): the message says which.
            Decision::Fail(Error::InvalidArgument { reason: Reason::InvalidArgument, message })
        }
        _ => Decision::Fail(Error::Rpc { code, message }),
    }
}

/// The error a tracked write gives up with when an attempt fails for good (`fail` is what that
/// attempt alone says). An earlier attempt may have been applied (`maybe_applied`): a refusal
/// by the shard itself (`answered_by_shard`: a status with HyperCache's `ErrorInfo`) still
/// stands, since the shard answers a repeat of an applied write with its first outcome and
/// refuses the same request the same way every time; any other failure (a proxy's or a node's
/// HTTP error, a method the answering server does not have) says nothing about that earlier
/// attempt, so the outcome is unknown. Seen: a chaos run under membership churn reported an
/// add as failed (`Unimplemented`, "HTTP status code 404") whose first attempt had been applied.
pub(crate) fn give_up(fail: Error, kind: OpKind, maybe_applied: bool, answered_by_shard: bool) -> Error {
    if kind == OpKind::Tracked && maybe_applied && !answered_by_shard {
        return Error::OutcomeUnknown {
            message: format!("{fail}; an earlier attempt may have been applied, so it may or may not have been"),
        };
    }
    fail
}

fn unknown_unless_safe(kind: OpKind) -> Decision {
    if kind.retry_safe() {
        Decision::Retry
    } else {
        Decision::OutcomeUnknown
    }
}

/// Delay before retry number `retry` (1-based); `jitter` in `[0, 1]` picks the point in
/// `[cap/2, cap]`.
pub(crate) fn backoff_delay(retry: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = retry.saturating_sub(1).min(30);
    let cap = base.saturating_mul(1u32 << doublings).min(max);
    let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 1.0 };
    cap / 2 + (cap / 2).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercache_proto::error_info::status_with_info;
    use hypercache_proto::v1::ErrorInfo;

    fn st(code: Code, reason: &str, not_applied: bool, leader: &str) -> Status {
        let info =
            ErrorInfo { reason: reason.into(), not_applied, leader_endpoint: leader.into(), ..Default::default() };
        status_with_info(code, format!("{reason} message"), &info)
    }

    use Decision::*;
    use Delivery::*;
    use OpKind::*;

    #[test]
    fn a_tracked_write_that_may_have_been_applied_is_not_reported_failed_by_a_foreign_error() {
        let foreign = || Error::Rpc { code: Code::Unimplemented, message: "HTTP status code 404".into() };
        let refused = || Error::InvalidArgument { reason: Reason::KeyTooLong, message: "too long".into() };
        assert!(give_up(foreign(), Tracked, true, false).may_have_been_applied());
        // The shard's own refusal stands; so does any failure when no attempt may have applied.
        assert!(!give_up(refused(), Tracked, true, true).may_have_been_applied());
        assert!(!give_up(foreign(), Tracked, false, false).may_have_been_applied());
        // Untracked writes are never retried after an attempt that may have applied.
        assert!(!give_up(foreign(), Write, true, false).may_have_been_applied());
    }

    #[test]
    fn not_leader_redirects_reads_and_writes() {
        let s = st(Code::FailedPrecondition, "NOT_LEADER", true, "n2:7001");
        assert_eq!(classify(&s, Write, MaybeSent), Redirect("n2:7001".into()));
        assert_eq!(classify(&s, Read, MaybeSent), Redirect("n2:7001".into()));
        let unknown_leader = st(Code::FailedPrecondition, "NOT_LEADER", true, "");
        assert_eq!(classify(&unknown_leader, Write, MaybeSent), Retry);
    }

    #[test]
    fn writes_retry_only_on_the_servers_promise() {
        for reason in ["NO_LEADER", "SHUTTING_DOWN"] {
            assert_eq!(classify(&st(Code::Unavailable, reason, true, ""), Write, MaybeSent), Retry);
            assert_eq!(classify(&st(Code::Unavailable, reason, false, ""), Write, MaybeSent), OutcomeUnknown);
            assert_eq!(classify(&st(Code::Unavailable, reason, false, ""), Read, MaybeSent), Retry);
        }
        // A NOT_LEADER that does not promise "no effect" is not followed for a write.
        let s = st(Code::FailedPrecondition, "NOT_LEADER", false, "n2:7001");
        assert_eq!(classify(&s, Write, MaybeSent), OutcomeUnknown);
    }

    #[test]
    fn outcome_unknown_is_never_retried_for_writes() {
        let s = st(Code::Unavailable, "OUTCOME_UNKNOWN", false, "");
        assert_eq!(classify(&s, Write, MaybeSent), OutcomeUnknown);
        assert_eq!(classify(&s, Read, MaybeSent), Retry);
    }

    #[test]
    fn transport_failures_after_sending_are_unknown_for_writes() {
        for code in [Code::Unavailable, Code::Cancelled, Code::DeadlineExceeded, Code::Unknown, Code::Internal] {
            let s = Status::new(code, "connection reset");
            assert_eq!(classify(&s, Write, MaybeSent), OutcomeUnknown, "{code:?}");
            assert_eq!(classify(&s, Read, MaybeSent), Retry, "{code:?}");
            // Never sent: safe for both.
            assert_eq!(classify(&s, Write, NotSent), Retry, "{code:?}");
        }
    }

    #[test]
    fn argument_errors_fail_with_the_server_message_intact() {
        let msg = "key is empty; keys must be 1..=4096 bytes";
        let info = ErrorInfo { reason: "EMPTY_KEY".into(), not_applied: true, ..Default::default() };
        let s = status_with_info(Code::InvalidArgument, msg, &info);
        let expected = Error::InvalidArgument { reason: Reason::EmptyKey, message: msg.into() };
        assert_eq!(classify(&s, Write, MaybeSent), Fail(expected.clone()));
        assert_eq!(classify(&s, Read, MaybeSent), Fail(expected));
        for reason in ["KEY_TOO_LONG", "VALUE_TOO_LARGE", "INVALID_RANGE", "INVALID_ARGUMENT"] {
            let s = st(Code::InvalidArgument, reason, true, "");
            assert!(matches!(classify(&s, Read, MaybeSent), Fail(Error::InvalidArgument { .. })), "{reason}");
        }
        let s = st(Code::Internal, "INTERNAL", false, "");
        assert!(matches!(classify(&s, Read, MaybeSent), Fail(Error::Internal { .. })));
        assert!(matches!(classify(&s, Write, MaybeSent), Fail(Error::Internal { .. })));
    }

    #[test]
    fn typed_rejections_fail_at_once_despite_not_applied() {
        let cases = [
            (Code::FailedPrecondition, "STALE_EPOCH"),
            (Code::FailedPrecondition, "NOT_ELECTION_LEADER"),
            (Code::NotFound, "LEASE_NOT_FOUND"),
            (Code::NotFound, "BOARD_NOT_FOUND"),
            (Code::AlreadyExists, "BOARD_EXISTS"),
            (Code::OutOfRange, "COMPACTED"),
            (Code::ResourceExhausted, "WATCHER_TOO_SLOW"),
        ];
        for (code, reason) in cases {
            let s = st(code, reason, true, "");
            for kind in [Read, Write, Idempotent] {
                match classify(&s, kind, MaybeSent) {
                    Fail(Error::Rejected { code: c, reason: r, message, info }) => {
                        assert_eq!((c, r.as_str()), (code, reason));
                        assert_eq!(message, format!("{reason} message"), "message kept intact");
                        assert!(info.not_applied);
                    }
                    other => panic!("{reason} {kind:?}: {other:?}"),
                }
            }
        }
        // NOT_LEADER keeps its meaning although it is also FAILED_PRECONDITION, and so do
        // UNKNOWN_SHARD (NOT_FOUND) and WRONG_SHARD (FAILED_PRECONDITION).
        let s = st(Code::FailedPrecondition, "NOT_LEADER", true, "n2:7001");
        assert_eq!(classify(&s, Write, MaybeSent), Redirect("n2:7001".into()));
        for reason in ["INVALID_TTL", "INVALID_ID", "RESERVED_KEY", "CHECKPOINT_TOO_LARGE"] {
            let s = st(Code::InvalidArgument, reason, true, "");
            assert!(matches!(classify(&s, Write, MaybeSent), Fail(Error::InvalidArgument { .. })), "{reason}");
        }
    }

    #[test]
    fn a_reason_this_build_does_not_know_is_outside_its_model() {
        let s = st(Code::FailedPrecondition, "SOMETHING_NEW", true, "");
        assert_eq!(
            classify(&s, Read, MaybeSent),
            Fail(Error::Rpc { code: Code::FailedPrecondition, message: "SOMETHING_NEW message".into() })
        );
        // Its gRPC code still decides, with the server's promise: UNAVAILABLE that was not
        // applied is retried, even for a plain write; without the promise, a write's outcome is
        // unknown (proto/src/reason.rs: an unknown reason falls back on the code).
        let busy = st(Code::Unavailable, "SOMETHING_NEW", true, "");
        assert_eq!(classify(&busy, Write, MaybeSent), Retry);
        let lost = st(Code::Unavailable, "SOMETHING_NEW", false, "");
        assert_eq!(classify(&lost, Write, MaybeSent), OutcomeUnknown);
        assert_eq!(classify(&lost, Read, MaybeSent), Retry);
    }

    #[test]
    fn routing_errors_reroute_even_writes() {
        for (code, reason) in [(Code::NotFound, "UNKNOWN_SHARD"), (Code::FailedPrecondition, "WRONG_SHARD")] {
            let s = st(code, reason, true, "");
            for kind in [Read, Write, Idempotent] {
                assert_eq!(classify(&s, kind, MaybeSent), Reroute, "{reason} {kind:?}");
            }
            assert!(!wants_refresh(&s), "rerouting refreshes by itself");
        }
        let s = st(Code::FailedPrecondition, "CROSS_SHARD", true, "");
        assert!(matches!(classify(&s, Write, MaybeSent), Fail(Error::Rejected { .. })), "final");
        assert!(wants_refresh(&st(Code::Unavailable, "NO_LEADER", true, "")));
        assert!(wants_refresh(&st(Code::FailedPrecondition, "NOT_LEADER", true, "")));
        assert!(!wants_refresh(&st(Code::FailedPrecondition, "NOT_LEADER", true, "n2:7001")));
        assert!(!wants_refresh(&Status::unavailable("connection reset")));
    }

    #[test]
    fn idempotent_writes_are_retried_like_reads() {
        let s = st(Code::Unavailable, "OUTCOME_UNKNOWN", false, "");
        assert_eq!(classify(&s, Idempotent, MaybeSent), Retry);
        let s = st(Code::FailedPrecondition, "NOT_LEADER", false, "n2:7001");
        assert_eq!(classify(&s, Idempotent, MaybeSent), Redirect("n2:7001".into()));
        let s = Status::new(Code::Unavailable, "connection reset");
        assert_eq!(classify(&s, Idempotent, MaybeSent), Retry);
    }

    #[test]
    fn tracked_writes_are_retried_whatever_happened_to_the_attempt() {
        let s = st(Code::FailedPrecondition, "NOT_LEADER", false, "n2:7001");
        assert_eq!(classify(&s, Tracked, MaybeSent), Redirect("n2:7001".into()));
        assert_eq!(classify(&s, Write, MaybeSent), OutcomeUnknown, "an untracked write may have applied");
        let s = st(Code::Unavailable, "OUTCOME_UNKNOWN", false, "");
        assert_eq!(classify(&s, Tracked, MaybeSent), Retry);
        assert_eq!(classify(&Status::new(Code::Unavailable, "connection reset"), Tracked, MaybeSent), Retry);
        let s = st(Code::FailedPrecondition, "WRITE_SEQ_TOO_OLD", false, "");
        assert_eq!(classify(&s, Tracked, MaybeSent), OutcomeUnknown);
        let s = st(Code::FailedPrecondition, "STALE_EPOCH", true, "");
        assert!(matches!(classify(&s, Tracked, MaybeSent), Fail(Error::Rejected { .. })));
    }

    #[test]
    fn foreign_rejections_are_not_retried() {
        let s = Status::new(Code::Unimplemented, "no such method");
        assert!(matches!(classify(&s, Write, MaybeSent), Fail(Error::Rpc { code: Code::Unimplemented, .. })));
        let s = Status::new(Code::OutOfRange, "message too large");
        assert!(matches!(classify(&s, Read, MaybeSent), Fail(Error::InvalidArgument { .. })));
    }

    #[test]
    fn statuses_built_by_hand_were_maybe_sent() {
        assert_eq!(delivery_of(&Status::unavailable("x")), MaybeSent);
    }

    #[tokio::test]
    async fn a_refused_connection_is_recognised_as_not_sent() {
        // Reserve a port, then free it so connecting is refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
        let mut kv = hypercache_proto::v1::kv_client::KvClient::new(channel);
        let status = kv.get(hypercache_proto::v1::GetRequest::default()).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(delivery_of(&status), NotSent, "{status:?}");
        assert_eq!(classify(&status, Write, delivery_of(&status)), Retry);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let (base, max) = (Duration::from_millis(20), Duration::from_secs(1));
        assert_eq!(backoff_delay(1, base, max, 0.0), Duration::from_millis(10));
        assert_eq!(backoff_delay(1, base, max, 1.0), Duration::from_millis(20));
        assert_eq!(backoff_delay(3, base, max, 1.0), Duration::from_millis(80));
        for retry in [1, 2, 5, 10, 31, 32, 1000, u32::MAX] {
            for jitter in [0.0, 0.3, 1.0, 7.0, -1.0, f64::NAN] {
                let d = backoff_delay(retry, base, max, jitter);
                assert!(d <= max, "{retry} {jitter} {d:?}");
                assert!(d >= base.min(max) / 4, "{retry} {jitter} {d:?}");
            }
        }
        assert_eq!(backoff_delay(50, base, max, 0.0), max / 2);
    }
}
