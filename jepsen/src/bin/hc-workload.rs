//! `hc-workload`: the client the container tests run inside the cluster's network.
//!
//! Writes `<prefix><n>` = `n` for n = 0, 1, 2, ... one at a time, through a client configured
//! with nothing but the given endpoints (the tests give it only the service name), and counts
//! what the cluster acknowledged. Prints a progress line every 500 ms. On SIGTERM it stops
//! writing, reads every acknowledged key back (linearizably) and prints the final report; exit 0
//! when nothing acknowledged was lost, 1 otherwise. Report formats: `hypercache_jepsen::workload`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use hypercache_client::{Client, ClientConfig, Error};
use hypercache_jepsen::workload::{Final, Progress};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(name = "hc-workload", about = "Writes sequential keys, then verifies every acknowledged one")]
struct Cli {
    /// Seed endpoints, comma-separated (a DNS name that resolves to any node will do).
    #[arg(long, default_value = "hypercache:7000", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Key prefix.
    #[arg(long, default_value = "w/")]
    prefix: String,
    /// Pause between writes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Deadline per operation, retries included, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

fn print<T: serde::Serialize>(value: &T) {
    if let Ok(line) = serde_json::to_string(value) {
        println!("{line}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Why the workload could not run at all (a run that ran reports its findings instead).
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Client(#[from] hypercache_client::Error),
    #[error("SIGTERM handler: {0}")]
    Signal(std::io::Error),
}

async fn run(cli: Cli) -> Result<bool, RunError> {
    let config = ClientConfig::new(cli.endpoints.clone()).request_timeout(Duration::from_millis(cli.timeout_ms));
    let client = Client::new(config)?;
    let mut progress = Progress::default();
    // Writes go one at a time with increasing n, so the acknowledged ones come in order.
    let mut acked: Vec<u64> = Vec::new();
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut report = tokio::time::interval(Duration::from_millis(500));
    let mut n: u64 = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(cli.interval_ms.max(1)));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = report.tick() => print(&progress),
            _ = pace.tick() => {
                let key = format!("{}{n:010}", cli.prefix);
                match client.put(key, n.to_string()).await {
                    Ok(_) => {
                        progress.acked += 1;
                        acked.push(n);
                    }
                    Err(e) => {
                        if matches!(e, Error::OutcomeUnknown { .. }) {
                            progress.unknown += 1;
                        } else {
                            progress.failed += 1;
                        }
                        progress.last_error = Some(e.to_string());
                    }
                }
                n += 1;
            }
        }
    }
    print(&progress);
    let mut report = Final { acked: acked.len() as u64, ..Final::default() };
    let checks = futures::stream::iter(acked)
        .map(|n| {
            let client = client.clone();
            let key = format!("{}{n:010}", cli.prefix);
            async move {
                let mut last = None;
                for _ in 0..5 {
                    match client.get(key.clone()).await {
                        Ok(kv) => return (key, Ok(kv.is_some_and(|kv| kv.value == n.to_string().as_bytes()))),
                        Err(e) => last = Some(e),
                    }
                }
                (key, Err(last))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for (key, check) in checks {
        match check {
            Ok(true) => report.verified += 1,
            Ok(false) => report.lost.push(key),
            Err(_) => report.read_errors += 1,
        }
    }
    report.lost.sort();
    print(&report);
    Ok(report.lost.is_empty() && report.read_errors == 0)
}
