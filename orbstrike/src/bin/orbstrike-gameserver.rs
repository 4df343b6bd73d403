//! `orbstrike-gameserver`: a thin wrapper over [`orbstrike::gameserver`]: parse flags (or
//! `ORBSTRIKE_*` environment variables), validate them, set up logging, serve until SIGTERM or
//! Ctrl-C, then drain (final checkpoints, release every board, deregister) and exit 0.
//!
//! Exit codes: 0 after a clean drain, 1 on a runtime failure, 2 on an invalid configuration.

use std::process::ExitCode;

use clap::Parser;
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
    init_logging(&cli.log_format);
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
    match runtime.block_on(run(cli.config, wait_for_stop_signal())) {
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

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORBSTRIKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
