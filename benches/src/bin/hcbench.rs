//! `hcbench`: load generators for HyperCache. Without a subcommand, the closed-loop KV load
//! generator ([`hypercache_benches::load`]); with one, a game-state benchmark
//! ([`hypercache_benches::game`]).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hypercache_benches::game::Command;
use hypercache_benches::load::{run, Args};

#[derive(Parser)]
/// HyperCache load generators: the closed-loop KV load generator without a subcommand, the
/// game-state benchmarks (issue #3) with one.
#[command(name = "hcbench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    game: Option<Command>,
    #[command(flatten)]
    kv: Args,
}

fn main() -> ExitCode {
    match bench(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    if let Some(game) = cli.game {
        print!("{}", runtime.block_on(game.run())?);
        return Ok(());
    }
    let args = cli.kv;
    let plan = args.plan()?;
    let report = runtime.block_on(run(plan))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding the report")?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hcbench").chain(args.iter().copied()))
    }

    #[test]
    fn plain_flags_are_the_kv_load_and_subcommands_are_game_benchmarks() {
        let cli = parse(&["--concurrency", "4"]).expect("kv flags");
        assert!(cli.game.is_none());
        assert_eq!(cli.kv.concurrency, 4);
        let cli = parse(&["board-sync", "--boards", "8", "--concurrency", "8"]).expect("subcommand");
        assert!(matches!(cli.game, Some(Command::BoardSync(a)) if a.boards == 8));
        for name in ["watch-latency", "heartbeat", "lease-expiry"] {
            assert!(parse(&[name]).expect(name).game.is_some());
        }
        assert!(parse(&["--concurrency", "4", "heartbeat"]).is_err(), "kv flags do not mix with a subcommand");
    }
}
