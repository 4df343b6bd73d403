//! `orbstrike-bot`: scripted players against the orchestrators, or a live terminal view of one
//! game (`--spectate`). A thin wrapper over [`orbstrike::bot`].

use std::process::ExitCode;

use clap::Parser;
use orbstrike::bot::{self, BotArgs, BotConfig};

#[derive(Parser)]
#[command(name = "orbstrike-bot", version, about = "Orbstrike bots: load, demo and chaos players")]
struct Cli {
    #[command(flatten)]
    args: BotArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match BotConfig::try_from(&cli.args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    orbstrike::process::init_logging("text", "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if let Some(game_id) = &cli.args.spectate {
            let mut stdout = std::io::stdout();
            tokio::select! {
                r = bot::spectate(&config, game_id, &mut stdout) => r.map(|()| None),
                _ = orbstrike::process::wait_for_stop_signal() => Ok(None),
            }
        } else {
            tokio::select! {
                r = bot::run(config) => r.map(Some),
                _ = orbstrike::process::wait_for_stop_signal() => {
                    eprintln!("interrupted");
                    Ok(None)
                }
            }
        }
    });
    match result {
        Ok(Some(report)) if cli.args.json => match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: encoding the report: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Some(report)) => {
            print!("{}", report.text());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
