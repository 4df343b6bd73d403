//! `orbstrike-demo`: the whole Orbstrike stack on this machine with one command (3 HyperCache
//! nodes, 2 orchestrators, 2 game servers, bots), live stats, and a clean stop on Ctrl-C. A thin
//! wrapper over [`orbstrike::demo`], which explains what it runs and why.
//!
//! Exit codes: 0 after a clean stop, 1 when the stack could not be started, 2 on invalid flags.

use std::process::ExitCode;

use clap::Parser;
use orbstrike::demo::{self, DemoArgs, DemoConfig};

#[derive(Parser)]
#[command(
    name = "orbstrike-demo",
    version,
    about = "The whole Orbstrike stack locally: 3 HyperCache nodes, 2 orchestrators, 2 game servers and bots, \
             as separate processes, with live stats (Ctrl-C stops it)"
)]
struct Cli {
    #[command(flatten)]
    args: DemoArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match DemoConfig::try_from(&cli.args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The demo's own diagnostics (rare: a child that cannot be checked) go to stderr, warnings
    // only, so that they do not interleave with the status lines.
    orbstrike::process::init_logging("text", "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ demo::DemoError::Flag(_)) | Err(e @ demo::DemoError::DirNotEmpty(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
