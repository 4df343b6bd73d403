//! `hcbench`: closed-loop load generator for HyperCache. See [`hypercache_benches::load`].

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hypercache_benches::load::{run, Args};

fn main() -> ExitCode {
    match bench(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: Args) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    let report = runtime.block_on(run(plan))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding the report")?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
