//! `orbstrike-gameserver`: a thin wrapper over [`orbstrike::gameserver`]: parse flags (or
//! `ORBSTRIKE_*` environment variables), validate them, set up logging, serve until SIGTERM or
//! Ctrl-C, then drain (final checkpoints, release every board, deregister) and exit 0.
//!
//! Exit codes: 0 after a clean drain, 1 on a runtime failure, 2 on an invalid configuration.

use std::process::ExitCode;

use clap::Parser;

// mimalloc instead of glibc malloc: the game server allocates per update and per stream message, and the
// allocator was a large share of its CPU under load (docs/benchmarks.md, "Game-server capacity").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use orbstrike::gameserver::{run, Config};

#[derive(Parser)]
#[command(
    name = "orbstrike-gameserver",
    version,
    about = "Orbstrike game server: hosts boards, ticks them, checkpoints them into HyperCache"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Log format.
    #[arg(long, env = "ORBSTRIKE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    orbstrike::process::init_logging(&cli.log_format, "info");
    if let Err(e) = cli.config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.config, orbstrike::process::wait_for_stop_signal())) {
        Ok(report) => {
            tracing::info!(
                released = report.released.len(),
                not_released = report.not_released.len(),
                deregistered = report.deregistered,
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
