//! How a failed `hcctl` command is reported: its exit code, its error line for people, and its
//! JSON object for scripts (`--json`).
//!
//! The exit code answers the question a script asks first: *did my command take effect?*
//! Exit 3 (`OUTCOME_UNKNOWN`) is the only code after which the answer is "maybe": a write that
//! was sent and whose answer never came back, or an internal server error during a write. Every
//! other non-zero code is a definite failure (nothing was applied). The "not found" codes are
//! one per kind of thing (a key, a lease, a registered server, a board, an election leader), so
//! a script can tell "the key is missing" from "the lease I attached it to is gone" without
//! parsing text.
//!
//! With `--json`, the error is one object on **stdout** (the stream a script parses), nothing on
//! stderr:
//! `{"error":{"code":"NOT_FOUND","reason":"LEASE_NOT_FOUND","message":"...","not_applied":true,
//! "kind":"rejected","exit_code":7, ...}}`. `code` is the gRPC status code name, `reason` the
//! stable HyperCache reason (the server's `ErrorInfo.reason`, or the client's own, e.g.
//! `OUTCOME_UNKNOWN`, `DEADLINE_EXCEEDED`), `not_applied` is true when the command provably had
//! no effect; the fields a typed refusal carries (`owner`, `epoch`, `term`, ...) follow.

use hypercache_client::{Error, Reason};
use serde_json::{json, Map, Value};
use tonic::Code;

use crate::exit;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Client(Error),
    Io(std::io::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

/// The exit code for a client error of a command that may change state (`mutating`) or not.
/// Only an error after which the command may have taken effect is [`exit::OUTCOME_UNKNOWN`].
pub fn exit_code(error: &Error, mutating: bool) -> u8 {
    if !not_applied(error, mutating) {
        return exit::OUTCOME_UNKNOWN;
    }
    match error {
        Error::OutcomeUnknown { .. } | Error::Internal { .. } => exit::OTHER,
        Error::InvalidArgument { .. } => exit::INVALID_ARGUMENT,
        Error::Rejected { code, reason, .. } => match code {
            Code::NotFound => not_found_code(*reason),
            Code::FailedPrecondition | Code::AlreadyExists => exit::CAS_FAILED,
            Code::OutOfRange => exit::INVALID_ARGUMENT,
            Code::ResourceExhausted => exit::UNAVAILABLE,
            _ => exit::OTHER,
        },
        Error::Unavailable { .. } | Error::DeadlineExceeded { .. } | Error::NotLeader { .. } => exit::UNAVAILABLE,
        Error::UnknownShard { .. } | Error::Rpc { .. } | Error::Config { .. } => exit::OTHER,
    }
}

/// The exit code of a `NOT_FOUND` refusal, by the kind of thing that was not found.
fn not_found_code(why: Reason) -> u8 {
    match why {
        Reason::LeaseNotFound => exit::LEASE_NOT_FOUND,
        Reason::ServerNotFound => exit::SERVER_NOT_FOUND,
        Reason::BoardNotFound => exit::BOARD_NOT_FOUND,
        // A reason this hcctl does not know (a newer server): still a definite failure.
        _ => exit::OTHER,
    }
}

/// True when the failed command provably had no effect: a read never has one; a write only
/// "maybe" after [`Error::may_have_been_applied`] errors.
pub fn not_applied(error: &Error, mutating: bool) -> bool {
    !mutating || !error.may_have_been_applied()
}

/// The error line for `error`: the server's message, plus the current state a typed refusal
/// carries when the message does not already name it (e.g. the board's current owner).
pub fn error_text(error: &Error) -> String {
    let message = error.to_string();
    let detail = if let Some(owner) = error.stale_epoch() {
        let who = owner.owner.unwrap_or_else(|| "nobody (unassigned)".to_string());
        (!message.contains(&who))
            .then(|| format!("current owner: {who}, incarnation {}, epoch {}", owner.incarnation, owner.epoch))
    } else if let Some(term) = error.current_term() {
        let who = term.leader.unwrap_or_else(|| "nobody".to_string());
        (!message.contains(&who)).then(|| format!("current term {}, leader {who}", term.term))
    } else if let Some(seq) = error.stale_seq() {
        Some(format!("stored seq {seq}"))
    } else if let Some(incarnation) = error.stale_incarnation() {
        Some(format!("current incarnation {incarnation}"))
    } else {
        error.compacted().map(|oldest| format!("oldest available revision {oldest}"))
    };
    match detail {
        Some(detail) if !message.contains(&detail) => format!("{message} ({detail})"),
        _ => message,
    }
}

/// The `{"error": {...}}` object for a client error (see the module essay).
pub fn error_json(error: &Error, mutating: bool) -> Value {
    let (code, why) = code_and_reason(error);
    let mut obj = Map::new();
    obj.insert("code".into(), code_name(code).into());
    obj.insert("reason".into(), why.as_str().into());
    obj.insert("message".into(), error_text(error).into());
    obj.insert("not_applied".into(), not_applied(error, mutating).into());
    obj.insert("kind".into(), error.kind().into());
    obj.insert("exit_code".into(), exit_code(error, mutating).into());
    if let Error::NotLeader { leader_endpoint: Some(leader), .. } = error {
        obj.insert("leader_endpoint".into(), leader.clone().into());
    }
    if let Some(info) = error.info() {
        let fields: [(&str, Value); 9] = [
            ("leader_endpoint", info.leader_endpoint.clone().into()),
            ("owner", info.owner.clone().into()),
            ("leader", info.leader.clone().into()),
            ("epoch", info.epoch.into()),
            ("incarnation", info.incarnation.into()),
            ("seq", info.seq.into()),
            ("term", info.term.into()),
            ("revision", info.revision.into()),
            ("oldest_revision", info.oldest_revision.into()),
        ];
        // Only the fields the reason sets: an absent owner and "owner: """ differ to a reader.
        for (name, value) in fields {
            if value != "" && value != 0u64 {
                obj.insert(name.into(), value);
            }
        }
    }
    json!({ "error": Value::Object(obj) })
}

/// The `{"error": {...}}` object for a condition hcctl reports itself (a missing lease, board
/// or leader found by a successful call).
pub(crate) fn own_error_json(code: Code, why: Reason, message: &str, exit_code: u8) -> Value {
    json!({"error": {
        "code": code_name(code),
        "reason": why.as_str(),
        "message": message,
        "not_applied": true,
        "kind": "not_found",
        "exit_code": exit_code,
    }})
}

/// The I/O failure object (`--json`). Reading stdin fails before anything is sent, but writing
/// stdout fails after the server answered, so only a read promises `not_applied`.
pub(crate) fn io_error_json(e: &std::io::Error, mutating: bool) -> Value {
    json!({"error": {
        "code": code_name(Code::Unknown),
        "reason": Reason::Io.as_str(),
        "message": format!("I/O: {e}"),
        "not_applied": !mutating,
        "kind": "io",
        "exit_code": exit::OTHER,
    }})
}

fn code_and_reason(error: &Error) -> (Code, Reason) {
    match error {
        Error::InvalidArgument { reason, .. } => (Code::InvalidArgument, *reason),
        Error::Rejected { code, reason, .. } => (*code, *reason),
        Error::UnknownShard { .. } => (Code::NotFound, Reason::UnknownShard),
        Error::NotLeader { .. } => (Code::FailedPrecondition, Reason::NotLeader),
        Error::Unavailable { .. } => (Code::Unavailable, Reason::Unavailable),
        Error::DeadlineExceeded { .. } => (Code::DeadlineExceeded, Reason::DeadlineExceeded),
        Error::OutcomeUnknown { .. } => (Code::Unknown, Reason::OutcomeUnknown),
        Error::Internal { .. } => (Code::Internal, Reason::Internal),
        Error::Rpc { code, .. } => (*code, Reason::Rpc),
        Error::Config { .. } => (Code::InvalidArgument, Reason::Config),
    }
}

/// The canonical gRPC name of `code` (`NOT_FOUND`, `FAILED_PRECONDITION`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercache_client::ErrorInfo;

    fn rejected(code: Code, info: ErrorInfo, message: &str) -> Error {
        let reason = info.known_reason().expect("a known reason");
        Error::Rejected { code, reason, message: message.into(), info: Box::new(info) }
    }

    #[test]
    fn only_a_maybe_applied_write_exits_outcome_unknown() {
        let m = || "m".to_string();
        let unknown = Error::OutcomeUnknown { message: m() };
        let internal = Error::Internal { message: m() };
        assert_eq!(exit_code(&unknown, true), exit::OUTCOME_UNKNOWN);
        assert_eq!(exit_code(&internal, true), exit::OUTCOME_UNKNOWN, "an internal error during a write");
        assert_eq!(exit_code(&internal, false), exit::OTHER, "a read had no effect: definite");
        for definite in [
            Error::Unavailable { message: m() },
            Error::DeadlineExceeded { message: m() },
            Error::UnknownShard { message: m() },
            Error::Config { message: m() },
            Error::Rpc { code: Code::Unimplemented, message: m() },
        ] {
            assert_ne!(exit_code(&definite, true), exit::OUTCOME_UNKNOWN, "{definite:?}");
            assert_eq!(error_json(&definite, true)["error"]["not_applied"], true, "{definite:?}");
        }
        assert_eq!(error_json(&internal, true)["error"]["not_applied"], false);
        assert_eq!(error_json(&internal, false)["error"]["not_applied"], true);
    }

    #[test]
    fn not_found_codes_name_the_kind_of_thing() {
        let code = |why: Reason| {
            exit_code(&rejected(Code::NotFound, ErrorInfo { reason: why.into(), ..Default::default() }, "x"), true)
        };
        assert_eq!(code(Reason::LeaseNotFound), exit::LEASE_NOT_FOUND);
        assert_eq!(code(Reason::ServerNotFound), exit::SERVER_NOT_FOUND);
        assert_eq!(code(Reason::BoardNotFound), exit::BOARD_NOT_FOUND);
        let codes = [
            exit::KEY_NOT_FOUND,
            exit::LEASE_NOT_FOUND,
            exit::SERVER_NOT_FOUND,
            exit::BOARD_NOT_FOUND,
            exit::NO_ELECTION_LEADER,
        ];
        for (i, a) in codes.iter().enumerate() {
            assert!(codes[i + 1..].iter().all(|b| a != b), "exit code {a} is used for two kinds");
        }
    }

    #[test]
    fn json_errors_carry_code_reason_message_and_the_reasons_fields() {
        let info = ErrorInfo {
            reason: Reason::StaleEpoch.into(),
            owner: "srv-b".into(),
            epoch: 4,
            incarnation: 2,
            not_applied: true,
            ..Default::default()
        };
        let stale = rejected(Code::FailedPrecondition, info, "epoch 3 is stale");
        let v = error_json(&stale, true);
        let e = &v["error"];
        assert_eq!(e["code"], "FAILED_PRECONDITION");
        assert_eq!(e["reason"], "STALE_EPOCH");
        assert_eq!(e["message"], "epoch 3 is stale (current owner: srv-b, incarnation 2, epoch 4)");
        assert_eq!((e["not_applied"].clone(), e["exit_code"].clone()), (true.into(), 2.into()));
        assert_eq!((e["owner"].clone(), e["epoch"].clone()), ("srv-b".into(), 4.into()));
        assert!(e.get("term").is_none(), "fields the reason does not set are left out: {e}");

        let v = error_json(&Error::OutcomeUnknown { message: "put sent to n1".into() }, true);
        assert_eq!(v["error"]["code"], "UNKNOWN");
        assert_eq!(v["error"]["reason"], "OUTCOME_UNKNOWN");
        assert_eq!(v["error"]["exit_code"], 3);
        let v = error_json(
            &Error::NotLeader { endpoint: "n1:1".into(), leader_endpoint: Some("n2:1".into()), message: "m".into() },
            false,
        );
        assert_eq!(v["error"]["leader_endpoint"], "n2:1");
    }
}
