//! `hypercache`: the node binary. A thin wrapper over the library: parse flags, load and
//! validate config, set up logging, run until SIGTERM/Ctrl-C, shut down gracefully.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hypercache_server::config::Config;
use hypercache_server::dev::{self, DevArgs};
use hypercache_server::inspect::{inspect_log, InspectError, InspectOptions};
use hypercache_server::node::Node;
use hypercache_server::types::ShardId;
use serde::Serialize;

// mimalloc instead of glibc malloc: allocation was a fifth of the leader's CPU under load
// (docs/benchmarks.md, "Board sync").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hypercache", version, about = "HyperCache: a Raft-replicated key-value cache for game state")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node.
    Serve(NodeFlags),
    /// Run a local cluster of separate node processes (data under --dir).
    Dev(DevArgs),
    /// Load and validate a configuration, print it resolved (JSON), and exit.
    CheckConfig(NodeFlags),
    /// Print what a stopped node's Raft log holds (read-only: nothing is changed or repaired).
    InspectLog(InspectFlags),
}

/// `--shard`: a data shard's number or `meta`.
fn parse_shard(text: &str) -> Result<ShardId, String> {
    if text == "meta" {
        return Ok(ShardId::META);
    }
    match text.parse::<u32>() {
        Ok(n) if ShardId(n) != ShardId::META => Ok(ShardId(n)),
        _ => Err(format!("'{text}' is not a shard: a data shard's number (0, 1, ...) or `meta`")),
    }
}

#[derive(clap::Args)]
struct InspectFlags {
    /// The stopped node's data directory (the log is `<data dir>/wal`).
    #[arg(long)]
    data_dir: PathBuf,
    /// Only this shard: a data shard's number, or `meta` for the meta group.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<ShardId>,
    /// One line per entry: log id, payload kind, requests.
    #[arg(long)]
    entries: bool,
    /// With --entries: the keys each entry touches (your data: off by default).
    #[arg(long, requires = "entries")]
    keys: bool,
}

/// Command-line overrides; unset flags leave the file/env/default value alone.
#[derive(clap::Args, Serialize, Default)]
struct NodeFlags {
    /// TOML config file (see hypercache.example.toml).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// This node's id (>= 1). Unset: the id persisted in the data dir, else (with --discovery) the
    /// hostname's StatefulSet ordinal + 1.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<u64>,
    /// Human-readable node name.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Data directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (clients and peers).
    #[arg(long = "listen")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_addr: Option<String>,
    /// host:port peers and clients use to reach this node (defaults to --listen).
    #[arg(long = "advertise")]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_addr: Option<String>,
    /// Admin HTTP listen address.
    #[arg(long = "admin")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_addr: Option<String>,
    /// Static members including this node: id=host:port,id=host:port,...
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    peers: Vec<String>,
    /// Peer discovery: dns://<name>:<port>, dns+srv://_<port-name>._tcp.<service> or
    /// static://host:port,... (exclusive with --peers).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    discovery: Option<String>,
    /// With --discovery: how many nodes form a new cluster (the lowest id among them initializes).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap_expect: Option<usize>,
    /// Data shards of a new cluster (fixed once the cluster exists).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<u32>,
    /// Replicas per data shard of a new cluster.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<u32>,
    /// "text" or "json".
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(flags) => match load(&flags) {
            Ok(config) => serve(config),
            Err(code) => code,
        },
        Cmd::CheckConfig(flags) => match load(&flags) {
            Ok(config) => match resolved_json(&config) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Cmd::InspectLog(flags) => {
            let options = InspectOptions { shard: flags.shard, entries: flags.entries, keys: flags.keys };
            match inspect_log(&flags.data_dir, &options, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                // The reader stopped reading (`| head`): not an error.
                Err(InspectError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Dev(args) => {
            init_logging("text");
            run_async(dev::run(args))
        }
    }
}

fn resolved_json(config: &Config) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(config)
}

fn load(flags: &NodeFlags) -> Result<Config, ExitCode> {
    Config::load(flags.config.as_deref(), flags).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYPERCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    use std::io::IsTerminal;
    // A span that is enabled logs one line when it closes, with its time busy and idle: turning
    // on the request, peer or placement spans (docs/operations.md) shows each call and its cost.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run_async<E: std::fmt::Display>(fut: impl std::future::Future<Output = Result<(), E>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    init_logging(&config.log_format);
    run_async(async move {
        let node = Node::start(config).await?;
        hypercache_proto::stop_signal::wait().await;
        node.shutdown().await
    })
}
