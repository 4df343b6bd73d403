//! `hcbench`: load generators for HyperCache. Without a subcommand, the closed-loop KV load
//! generator ([`hypercache_benches::load`]); with one, a game-state benchmark
//! ([`hypercache_benches::game`]) or an Orbstrike benchmark ([`hypercache_benches::orbstrike`]).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hypercache_benches::game::Command;
use hypercache_benches::load::{run, Args};
use hypercache_benches::orbstrike::Command as OrbstrikeCommand;
use hypercache_benches::routing_cost::{self, RoutingCostArgs};

#[derive(Parser)]
/// HyperCache load generators: the closed-loop KV load generator without a subcommand, the
/// game-state benchmarks (issue #3), the Orbstrike benchmarks (issue #4) and the routing cost
/// (issue #6) with one.
#[command(name = "hcbench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    game: Option<Sub>,
    #[command(flatten)]
    kv: Args,
}

/// Every subcommand: the game-state benchmarks and the Orbstrike ones.
#[derive(clap::Subcommand)]
enum Sub {
    #[command(flatten)]
    Game(Command),
    #[command(flatten)]
    Orbstrike(OrbstrikeCommand),
    /// Client CPU per request through the client library, and the share of it spent routing
    /// keys to shards (issue #6).
    RoutingCost(RoutingCostArgs),
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
    if let Some(sub) = cli.game {
        let report = match sub {
            Sub::Game(game) => runtime.block_on(game.run())?,
            Sub::Orbstrike(orbstrike) => runtime.block_on(orbstrike.run())?,
            Sub::RoutingCost(args) => runtime.block_on(routing_cost::run(args))?,
        };
        print!("{report}");
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
        assert!(matches!(cli.game, Some(Sub::Game(Command::BoardSync(a))) if a.boards == 8));
        let cli = parse(&["orbstrike-capacity", "--boards", "5"]).expect("orbstrike subcommand");
        assert!(matches!(cli.game, Some(Sub::Orbstrike(OrbstrikeCommand::OrbstrikeCapacity(a))) if a.boards == 5));
        for name in [
            "watch-latency",
            "heartbeat",
            "lease-expiry",
            "orbstrike-proxy",
            "orbstrike-failover",
            "orbstrike-drain",
            "orbstrike-placement",
            "routing-cost",
        ] {
            assert!(parse(&[name]).expect(name).game.is_some());
        }
        assert!(parse(&["--concurrency", "4", "heartbeat"]).is_err(), "kv flags do not mix with a subcommand");
    }
}
