//! `hcctl`, the HyperCache command line: argument parsing, one function per command, and the
//! mapping from client errors to exit codes. The binary in `src/main.rs` only calls [`main`];
//! the logic lives in this library so it is unit-tested without spawning a process.
//!
//! It is a crate of its own, built on the public API of `hypercache-client`, so the client
//! library that game servers link carries none of a command line's dependencies (clap,
//! serde_json). Everything it needs from the client is public there; nothing here reaches into
//! the client's internals.
//!
//! Output goes through `output::Out`, which turns a closed stdout (`hcctl range | head`) into
//! a quiet exit instead of a panic. Streaming commands (`watch`, `servers watch`, `boards watch`,
//! `election observe`, `lease keepalive`) print one line (one JSON object with `--json`) per
//! update, flushed at once, and end on Ctrl-C (exit 0) or an unrecoverable error.

mod boards_cmd;
mod election_cmd;
pub mod exit;
mod failure;
mod lease_cmd;
mod node_cmd;
mod output;
mod servers_cmd;
mod shards_cmd;
mod terminal;
pub mod txn_syntax;
mod watch_cmd;

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgGroup, Parser, Subcommand};
use hypercache_client::{parse_endpoint_list, Client, ClientConfig, LeaseId, PutOptions, RangeOptions, Txn};

use failure::Failure;
pub use failure::{error_json, error_text, exit_code, not_applied};
use output::Out;
use terminal::read_stdin;
use txn_syntax::{parse_condition, parse_op, TxnOp};

const EXIT_CODES: &str = "\
Exit codes (only 3 means \"may have taken effect\"; every other failure is definite):
  0   success (del: whether or not the key existed; status: at least one node answered;
      txn: the --then branch ran; streams: stopped with Ctrl-C)
  1   key not found: get of a missing key
  2   comparison or precondition failed: cas comparison failed (nothing written); txn ran its
      --else branch; a stale epoch, seq, term or incarnation, a board that already exists, a
      server that is not live (the server's message, with the current owner or term, is shown)
  3   outcome unknown: a write may or may not have been applied (no answer came back, or the
      server failed internally during the write); read the key back
  4   invalid argument: rejected by the server (empty key, key/value over the limit, bad range,
      bad TTL or id, reserved key); watch: the start revision was compacted
  5   unavailable: no leader / no node reachable / deadline passed; the request had no effect
  6   other definite failure: unknown shard, bad configuration, internal error of a read, I/O
  7   lease not found: the lease does not exist (expired or revoked); lease keepalive, servers
      register --keepalive, election campaign: the lease was lost
  8   server not found: the game server is not registered
  9   board not found
  10  election leader: nobody leads the election
  64  command-line usage error

Streams (watch, servers watch, boards watch, election observe) reconnect by themselves; watch
resumes after the last revision printed, so no event is printed twice or skipped.

JSON output (--json): one object per line (one per update for streams). Keys and values are
UTF-8 strings when they are valid UTF-8; otherwise the field is replaced by \"<field>_hex\"
(lowercase hex of the raw bytes), e.g. \"value_hex\":\"00ff\". `get` names the key's \"shard\".
Errors: without --json, one line on stderr: `error: <message>`. With --json, one object on
stdout and nothing on stderr:
  {\"error\":{\"code\":\"NOT_FOUND\",\"reason\":\"LEASE_NOT_FOUND\",\"message\":\"...\",
   \"not_applied\":true,\"kind\":\"rejected\",\"exit_code\":7}}
code is the gRPC status name, reason the stable HyperCache reason, not_applied is true when the
command provably had no effect (false only with exit 3); a refusal's state (owner, epoch, term,
leader, seq, incarnation, oldest_revision, leader_endpoint) follows when the reason sets it.";

/// HyperCache command line.
#[derive(Debug, Parser)]
#[command(name = "hcctl", version, about = "HyperCache command line", after_long_help = EXIT_CODES)]
pub struct Cli {
    /// Seed endpoints (host:port, comma-separated); any node will do, leaders are found.
    #[arg(
        long,
        env = "HYPERCACHE_ENDPOINTS",
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        global = true
    )]
    pub endpoints: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// The deployment's namespace: decides the home shard of the game services (servers,
    /// boards, elections) and of leases granted without a key. Use the game's own.
    #[arg(long, env = "HYPERCACHE_NAMESPACE", default_value = hypercache_client::DEFAULT_NAMESPACE, global = true)]
    pub namespace: String,
    /// Deadline per operation in milliseconds, retries and redirects included.
    #[arg(long, default_value_t = 5000, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a key's raw value (no newline added). Exit 1 if missing.
    Get {
        key: String,
        /// Read the first reachable endpoint's local state (may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Write a key. VALUE "-" reads the value (raw bytes) from stdin.
    Put {
        key: String,
        value: String,
        /// Attach the key to this lease (it is deleted when the lease ends).
        #[arg(long, conflicts_with = "ttl_ms")]
        lease: Option<u64>,
        /// Give the key a TTL of its own, in milliseconds.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_ms: Option<u64>,
    },
    /// Delete a key; prints "deleted" or "not found" and exits 0 either way.
    Del { key: String },
    /// Compare-and-swap: write NEW_VALUE only if the key matches the expectations. Exit 2 if not.
    #[command(group(ArgGroup::new("expectation").required(true).multiple(true).args(["expect_rev", "expect_value"])))]
    Cas {
        key: String,
        new_value: String,
        /// Expected mod_revision; 0 means "the key must not exist".
        #[arg(long)]
        expect_rev: Option<u64>,
        /// Expected current value.
        #[arg(long)]
        expect_value: Option<String>,
    },
    /// List keys under PREFIX, or in [--start, --end), as "key<TAB>value" lines.
    Range {
        prefix: Option<String>,
        #[arg(long, conflicts_with = "prefix")]
        start: Option<String>,
        /// Exclusive end; omitted means to the end of the keyspace.
        #[arg(long, conflicts_with = "prefix")]
        end: Option<String>,
        /// Keys per page (0 = server default 1000, at most 10000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Follow continuations until every matching key is listed.
        #[arg(long)]
        all: bool,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        #[arg(long)]
        serializable: bool,
    },
    /// One row per configured endpoint: identity, meta-group Raft role, term, leader, indexes,
    /// readiness.
    Status,
    /// One row per shard: replicas, leader, term, applied index, keys and size (every node is
    /// asked; unreachable ones are reported, not fatal).
    Shards,
    /// Compare, then run the --then ops if every --if holds, else the --else ops; atomically.
    /// Exit 0 if the --then branch ran, 2 if the --else branch ran.
    #[command(after_help = "Conditions: value(k) = v, version(k) = N, mod(k) = N, create(k) = N, lease(k) = ID, \
                            exists(k), missing(k).\nOps: put k v, del k, get k.\n\
                            Example: hcctl txn --if 'mod(k) = 5' --then 'put k v2' --else 'get k'")]
    Txn {
        /// A condition, e.g. 'value(k) = v' (repeatable; all must hold).
        #[arg(long = "if", value_name = "COND", value_parser = parse_condition)]
        conditions: Vec<hypercache_client::Compare>,
        /// An op run when every condition holds, e.g. 'put k v' (repeatable).
        #[arg(long = "then", value_name = "OP", value_parser = parse_op)]
        then_ops: Vec<TxnOp>,
        /// An op run otherwise, e.g. 'get k' (repeatable).
        #[arg(long = "else", value_name = "OP", value_parser = parse_op)]
        else_ops: Vec<TxnOp>,
    },
    /// Print changes to KEY (or under it with --prefix) as they happen, resuming across
    /// reconnects: "PUT key value (rev N)" / "DELETE key (rev N)". Runs until Ctrl-C.
    Watch {
        key: String,
        /// Watch every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// First revision to print (default: changes from now on).
        #[arg(long, value_name = "N")]
        rev: Option<u64>,
        /// Also print the previous value of each changed key.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Leases: grant, revoke, keep alive, inspect.
    #[command(subcommand)]
    Lease(lease_cmd::LeaseCommand),
    /// The game-server registry.
    #[command(subcommand)]
    Servers(servers_cmd::ServersCommand),
    /// Boards: creation, fenced assignment, checkpoints.
    #[command(subcommand)]
    Boards(boards_cmd::BoardsCommand),
    /// Leader elections with fencing terms.
    #[command(subcommand)]
    Election(election_cmd::ElectionCommand),
    /// Cluster membership: list members, add a node, decommission a node.
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
}

impl Command {
    /// True when the command may change state: its failures can leave an unknown outcome.
    /// Reads (and streams that only read) fail definitely, whatever the error.
    pub fn mutating(&self) -> bool {
        use boards_cmd::BoardsCommand as B;
        use election_cmd::ElectionCommand as E;
        use lease_cmd::LeaseCommand as L;
        use node_cmd::NodeCommand as N;
        use servers_cmd::ServersCommand as S;
        match self {
            Command::Get { .. }
            | Command::Range { .. }
            | Command::Status
            | Command::Shards
            | Command::Watch { .. }
            | Command::Lease(L::Ttl { .. })
            | Command::Servers(S::List | S::Watch)
            | Command::Boards(B::Get { .. } | B::List { .. } | B::Watch { .. })
            | Command::Election(E::Leader { .. } | E::Observe { .. })
            | Command::Node(N::List) => false,
            // A txn of gets only is a read, but the server runs it through the log like any txn.
            Command::Put { .. }
            | Command::Del { .. }
            | Command::Cas { .. }
            | Command::Txn { .. }
            | Command::Lease(_)
            | Command::Servers(_)
            | Command::Boards(_)
            | Command::Election(_)
            | Command::Node(_) => true,
        }
    }
}

/// Entry point of the `hcctl` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(run_to_exit(cli))
}

fn run_to_exit(cli: Cli) -> u8 {
    let mut out = Out::stdout();
    let (json, mutating) = (cli.json, cli.command.mutating());
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Io)
        .and_then(|rt| rt.block_on(run(cli, &mut out)));
    match result {
        Ok(code) => code,
        Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(Failure::Io(e)) if json => {
            let _ = out.json(&failure::io_error_json(&e, mutating)).and_then(|()| out.flush());
            exit::OTHER
        }
        Err(Failure::Io(e)) => {
            output::error_line(&format!("I/O: {e}"));
            exit::OTHER
        }
        Err(Failure::Client(e)) => {
            if json {
                // A closed stdout leaves nowhere to report to; the exit code still says it.
                let _ = out.json(&error_json(&e, mutating)).and_then(|()| out.flush());
            } else {
                output::error_line(&error_text(&e));
            }
            exit_code(&e, mutating)
        }
    }
}

async fn run(cli: Cli, out: &mut Out) -> Result<u8, Failure> {
    let endpoints = parse_endpoint_list(&cli.endpoints)?;
    let config =
        ClientConfig::new(endpoints).request_timeout(Duration::from_millis(cli.timeout_ms)).namespace(cli.namespace);
    let client = Client::new(config)?;
    let json = cli.json;
    match cli.command {
        Command::Get { key, serializable } => {
            let found = if serializable {
                client.get_serializable(key.clone()).await?
            } else {
                client.get(key.clone()).await?
            };
            // The table the get was routed with (cached by it): the shard that answered.
            let shard = client.routing().await?.shard_of(key.as_bytes());
            output::get(out, json, key.as_bytes(), shard, found.as_ref())
        }
        Command::Put { key, value, lease, ttl_ms } => {
            let value = if value == "-" { read_stdin()? } else { Bytes::from(value.into_bytes()) };
            let options =
                PutOptions { lease: lease.map(LeaseId), ttl: ttl_ms.map(Duration::from_millis), prev_kv: false };
            let result = client.put_with(key, value, options).await?;
            output::put(out, json, &result)
        }
        Command::Del { key } => {
            let result = client.delete(key).await?;
            output::delete(out, json, &result)
        }
        Command::Cas { key, new_value, expect_rev, expect_value } => {
            let expect_value = expect_value.map(|v| Bytes::from(v.into_bytes()));
            let result = client.compare_and_swap(key, expect_rev, expect_value, new_value).await?;
            output::cas(out, json, &result)
        }
        Command::Range { prefix, start, end, limit, all, keys_only, serializable } => {
            let options = RangeOptions {
                prefix: prefix.map(|p| Bytes::from(p.into_bytes())).unwrap_or_default(),
                start: start.map(|s| Bytes::from(s.into_bytes())).unwrap_or_default(),
                end: end.map(|e| Bytes::from(e.into_bytes())).unwrap_or_default(),
                limit,
                continuation: None,
                serializable,
                keys_only,
            };
            range(&client, out, json, options, all).await
        }
        Command::Status => {
            let rows = client.cluster_status().await;
            output::status(out, json, &rows)
        }
        Command::Shards => shards_cmd::run(&client, out, json).await,
        Command::Txn { conditions, then_ops, else_ops } => {
            let mut txn = conditions.into_iter().fold(Txn::new(), Txn::when);
            txn = then_ops.iter().fold(txn, |txn, op| txn.then(op.op.clone()));
            txn = else_ops.iter().fold(txn, |txn, op| txn.otherwise(op.op.clone()));
            let result = client.txn(txn).await?;
            let ran = if result.succeeded { &then_ops } else { &else_ops };
            output::txn(out, json, &result, ran)
        }
        Command::Watch { key, prefix, rev, prev_kv } => {
            watch_cmd::run(&client, out, json, key, prefix, rev.unwrap_or(0), prev_kv).await
        }
        Command::Lease(command) => lease_cmd::run(&client, out, json, command).await,
        Command::Servers(command) => servers_cmd::run(&client, out, json, command).await,
        Command::Boards(command) => boards_cmd::run(&client, out, json, command).await,
        Command::Election(command) => election_cmd::run(&client, out, json, command).await,
        Command::Node(command) => node_cmd::run(&client, out, json, command).await,
    }
}

async fn range(
    client: &Client,
    out: &mut Out,
    json: bool,
    mut options: RangeOptions,
    all: bool,
) -> Result<u8, Failure> {
    let keys_only = options.keys_only;
    let mut collected = Vec::new();
    loop {
        let page = client.range(options.clone()).await?;
        if !json {
            output::range_lines(out, &page.kvs, keys_only)?;
        }
        let more = page.continuation.is_some();
        let revision = page.revision;
        let revisions = page.revisions;
        collected.extend(if json { page.kvs } else { Vec::new() });
        match page.continuation {
            Some(next) if all => options.continuation = Some(next),
            _ => {
                if json {
                    output::range_json(out, &collected, revision, &revisions, more, keys_only)?;
                } else if more {
                    output::note("more keys remain; pass --all to list everything");
                }
                return Ok(exit::OK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercache_client::Error;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hcctl").chain(args.iter().copied()))
    }

    #[test]
    fn cas_requires_an_expectation() {
        let err = parse(&["cas", "k", "v"]).expect_err("no expectation");
        assert!(err.use_stderr());
        assert!(parse(&["cas", "k", "v", "--expect-rev", "0"]).is_ok());
        assert!(parse(&["cas", "k", "v", "--expect-value", "old", "--expect-rev", "3"]).is_ok());
    }

    #[test]
    fn range_prefix_conflicts_with_bounds() {
        assert!(parse(&["range", "p", "--start", "a"]).is_err());
        assert!(parse(&["range", "--start", "a", "--end", "b", "--all", "--keys-only"]).is_ok());
    }

    #[test]
    fn global_flags_and_defaults() {
        let cli = parse(&["get", "k", "--json", "--timeout-ms", "100"]).expect("valid");
        assert!(cli.json);
        assert_eq!(cli.timeout_ms, 100);
        assert!(parse(&["get", "k", "--timeout-ms", "0"]).is_err());
    }

    fn rejected(code: tonic::Code, info: hypercache_client::ErrorInfo, message: &str) -> Error {
        let reason = info.known_reason().expect("a known reason");
        Error::Rejected { code, reason, message: message.into(), info: Box::new(info) }
    }

    #[test]
    fn typed_rejections_map_to_their_exit_codes_with_the_state_on_stderr() {
        let info = hypercache_client::ErrorInfo {
            reason: "STALE_EPOCH".into(),
            owner: "srv-b".into(),
            epoch: 4,
            incarnation: 2,
            ..Default::default()
        };
        let stale = rejected(tonic::Code::FailedPrecondition, info.clone(), "epoch 3 is stale");
        assert_eq!(exit_code(&stale, true), 2);
        assert_eq!(error_text(&stale), "epoch 3 is stale (current owner: srv-b, incarnation 2, epoch 4)");
        // A message that already names the owner is left alone.
        let named = rejected(tonic::Code::FailedPrecondition, info, "board b1 is owned by srv-b at epoch 4");
        assert_eq!(error_text(&named), "board b1 is owned by srv-b at epoch 4");
        let gone = hypercache_client::ErrorInfo { reason: "LEASE_NOT_FOUND".into(), ..Default::default() };
        assert_eq!(exit_code(&rejected(tonic::Code::NotFound, gone, "no lease"), true), exit::LEASE_NOT_FOUND);
        let exists = hypercache_client::ErrorInfo { reason: "BOARD_EXISTS".into(), ..Default::default() };
        assert_eq!(exit_code(&rejected(tonic::Code::AlreadyExists, exists, "taken"), true), 2);
        let compacted =
            hypercache_client::ErrorInfo { reason: "COMPACTED".into(), oldest_revision: 9, ..Default::default() };
        let compacted = rejected(tonic::Code::OutOfRange, compacted, "revision 3 is compacted");
        assert_eq!(exit_code(&compacted, false), 4);
        assert!(error_text(&compacted).ends_with("(oldest available revision 9)"));
    }

    #[test]
    fn txn_flags_parse_conditions_and_ops() {
        let cli = parse(&["txn", "--if", "mod(k) = 5", "--if", "exists(j)", "--then", "put k v", "--else", "get k"])
            .expect("valid");
        match cli.command {
            Command::Txn { conditions, then_ops, else_ops } => {
                assert_eq!(
                    conditions,
                    vec![hypercache_client::Compare::mod_revision("k", 5), hypercache_client::Compare::exists("j")]
                );
                assert_eq!(then_ops[0].op, hypercache_client::Op::put("k", "v"));
                assert_eq!(else_ops[0].verb, "get");
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["txn", "--if", "size(k) = 1"]).expect_err("unknown function");
        assert!(err.use_stderr());
        assert!(err.to_string().contains("unknown function"), "{err}");
    }

    #[test]
    fn game_subcommands_parse() {
        assert!(parse(&["put", "k", "v", "--lease", "7"]).is_ok());
        assert!(parse(&["put", "k", "v", "--lease", "7", "--ttl-ms", "100"]).is_err(), "lease xor ttl");
        assert!(parse(&["lease", "grant", "1000"]).is_ok());
        assert!(parse(&["lease", "keepalive", "7", "--once"]).is_ok());
        assert!(parse(&["watch", "k", "--prefix", "--rev", "3", "--prev-kv"]).is_ok());
        assert!(
            parse(&["servers", "register", "s1", "h:1", "--ttl-ms", "3000", "--label", "a=b", "--keepalive"]).is_ok()
        );
        assert!(parse(&["servers", "register", "s1", "h:1"]).is_err(), "--ttl-ms is required");
        assert!(parse(&["servers", "register", "s1", "h:1", "--ttl-ms", "9", "--label", "ab"]).is_err());
        assert!(parse(&["boards", "assign", "b", "s", "--epoch", "0", "--request-id", "r1"]).is_ok());
        assert!(parse(&["boards", "assign", "b", "s", "--epoch", "0", "--election", "e"]).is_err(), "term needed");
        assert!(parse(&["boards", "sync", "b", "--epoch", "1", "--seq", "2", "data"]).is_ok());
        assert!(parse(&["election", "campaign", "e", "c", "--ttl-ms", "2000", "--hold"]).is_ok());
        assert!(parse(&["election", "campaign", "e", "c"]).is_err(), "a lease or a TTL is required");
        assert!(parse(&["election", "campaign", "e", "c", "--lease", "1", "--ttl-ms", "5"]).is_err());
        assert!(parse(&["shards", "--json"]).is_ok());
        assert!(parse(&["node", "add", "hypercache-5:7000"]).is_ok());
        assert!(parse(&["node", "decommission", "n3", "--no-wait"]).is_ok());
        assert!(parse(&["node", "decommission", "n3", "--wait-timeout-s", "0"]).is_err());
        let cli = parse(&["--namespace", "orbstrike", "servers", "list"]).expect("valid");
        assert_eq!(cli.namespace, "orbstrike");
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let m = || "m".to_string();
        assert_eq!(exit_code(&Error::OutcomeUnknown { message: m() }, true), 3);
        assert_eq!(
            exit_code(
                &Error::InvalidArgument { reason: hypercache_proto::Reason::InvalidArgument, message: m() },
                true
            ),
            4
        );
        assert_eq!(exit_code(&Error::Unavailable { message: m() }, true), 5);
        assert_eq!(exit_code(&Error::DeadlineExceeded { message: m() }, true), 5);
        assert_eq!(exit_code(&Error::Internal { message: m() }, true), 3, "a write may have been applied");
        assert_eq!(exit_code(&Error::Internal { message: m() }, false), 6, "a read: definite");
        for line in ["3   outcome unknown", "1   key not found", "7   lease not found", "9   board not found"] {
            assert!(EXIT_CODES.contains(line), "{line}");
        }
        assert!(parse(&["put", "k", "v"]).expect("valid").command.mutating());
        assert!(!parse(&["get", "k"]).expect("valid").command.mutating());
        assert!(!parse(&["lease", "ttl", "7"]).expect("valid").command.mutating());
    }
}
