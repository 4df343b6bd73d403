//! `orbstrike-orchestrator`: the public API replica. A thin wrapper over
//! [`orbstrike::orchestrator`]: parse flags (and `ORBSTRIKE_*` variables), validate, set up
//! logging, run until SIGTERM or Ctrl-C, shut down gracefully.

use std::process::ExitCode;

use clap::Parser;

// mimalloc instead of glibc malloc: the orchestrator allocates per update and per stream message, and the
// allocator was a large share of its CPU under load (docs/benchmarks.md, "Game-server capacity").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use orbstrike::orchestrator::{self, Config, OrchestratorArgs};

#[derive(Parser)]
#[command(name = "orbstrike-orchestrator", version, about = "Orbstrike orchestrator: the public game API")]
struct Cli {
    #[command(flatten)]
    args: OrchestratorArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.args.log_format.clone();
    let config = match Config::try_from(cli.args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    orbstrike::process::init_logging(&log_format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(orchestrator::run(config, orbstrike::process::wait_for_stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "orchestrator failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
