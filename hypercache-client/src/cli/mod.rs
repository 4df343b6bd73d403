//! `hcctl`, the HyperCache command line: argument parsing, one function per command, and the
//! mapping from client errors to exit codes. The binary in `src/bin/hcctl.rs` only calls
//! [`main`]; the logic lives here so it is unit-tested with the library.
//!
//! Output goes through [`output::Out`], which turns a closed stdout (`hcctl range | head`) into
//! a quiet exit instead of a panic.

mod output;

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgGroup, Parser, Subcommand};

use crate::{parse_endpoint_list, Client, ClientConfig, Error, RangeOptions};
use output::Out;

/// Exit codes (also listed in `hcctl --help`).
pub mod exit {
    pub const OK: u8 = 0;
    /// `get`: the key does not exist.
    pub const NOT_FOUND: u8 = 1;
    /// `cas`: the comparison failed; nothing was written.
    pub const CAS_FAILED: u8 = 2;
    /// A write may or may not have been applied; read the key back.
    pub const OUTCOME_UNKNOWN: u8 = 3;
    /// The server rejected the request (empty key, key or value too large, bad range...).
    pub const INVALID_ARGUMENT: u8 = 4;
    /// No node could serve the request in time (no leader, nodes down, deadline); no effect.
    pub const UNAVAILABLE: u8 = 5;
    /// Anything else: internal server error, unknown shard, bad configuration, I/O error.
    pub const OTHER: u8 = 6;
    /// Command-line usage error.
    pub const USAGE: u8 = 64;
}

const EXIT_CODES: &str = "\
Exit codes:
  0   success (del: whether or not the key existed; status: at least one node answered)
  1   get: key not found
  2   cas: comparison failed, nothing written (current state printed on stderr)
  3   outcome unknown: a write may or may not have been applied; read the key back
  4   invalid argument: rejected by the server (empty key, key/value over the limit, bad range)
  5   unavailable: no leader / no node reachable / deadline passed; the request had no effect
  6   other error: internal server error, unknown shard, bad configuration, I/O error
  64  command-line usage error

JSON output (--json): keys and values are UTF-8 strings when they are valid UTF-8; otherwise the
field is replaced by \"<field>_hex\" (lowercase hex of the raw bytes), e.g. \"value_hex\":\"00ff\".
Errors are always a single line on stderr: `error: <message>`.";

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
    Put { key: String, value: String },
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
    /// One row per configured endpoint: identity, Raft role, term, leader, indexes, readiness.
    Status,
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
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

/// The exit code for a client error.
pub fn exit_code(error: &Error) -> u8 {
    match error {
        Error::OutcomeUnknown { .. } => exit::OUTCOME_UNKNOWN,
        Error::InvalidArgument { .. } => exit::INVALID_ARGUMENT,
        Error::Unavailable { .. } | Error::DeadlineExceeded { .. } | Error::NotLeader { .. } => exit::UNAVAILABLE,
        Error::UnknownShard { .. } | Error::Internal { .. } | Error::Rpc { .. } | Error::Config { .. } => exit::OTHER,
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
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Io)
        .and_then(|rt| rt.block_on(run(cli, &mut out)));
    match result {
        Ok(code) => code,
        Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(Failure::Io(e)) => {
            output::error_line(&format!("I/O: {e}"));
            exit::OTHER
        }
        Err(Failure::Client(e)) => {
            output::error_line(&e.to_string());
            exit_code(&e)
        }
    }
}

async fn run(cli: Cli, out: &mut Out) -> Result<u8, Failure> {
    let endpoints = parse_endpoint_list(&cli.endpoints)?;
    let config = ClientConfig::new(endpoints).request_timeout(Duration::from_millis(cli.timeout_ms));
    let client = Client::new(config)?;
    let json = cli.json;
    match cli.command {
        Command::Get { key, serializable } => {
            let found = if serializable {
                client.get_serializable(key.clone()).await?
            } else {
                client.get(key.clone()).await?
            };
            output::get(out, json, key.as_bytes(), found.as_ref())
        }
        Command::Put { key, value } => {
            let value = if value == "-" { read_stdin()? } else { Bytes::from(value.into_bytes()) };
            let result = client.put(key, value).await?;
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
        collected.extend(if json { page.kvs } else { Vec::new() });
        match page.continuation {
            Some(next) if all => options.continuation = Some(next),
            _ => {
                if json {
                    output::range_json(out, &collected, revision, more, keys_only)?;
                } else if more {
                    output::note("more keys remain; pass --all to list everything");
                }
                return Ok(exit::OK);
            }
        }
    }
}

fn read_stdin() -> Result<Bytes, Failure> {
    let mut buf = Vec::new();
    std::io::stdin().lock().read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let m = || "m".to_string();
        assert_eq!(exit_code(&Error::OutcomeUnknown { message: m() }), 3);
        assert_eq!(exit_code(&Error::InvalidArgument { reason: m(), message: m() }), 4);
        assert_eq!(exit_code(&Error::Unavailable { message: m() }), 5);
        assert_eq!(exit_code(&Error::DeadlineExceeded { message: m() }), 5);
        assert_eq!(exit_code(&Error::Internal { message: m() }), 6);
        assert!(EXIT_CODES.contains("3   outcome unknown"));
    }
}
