//! `hc-restart-bench`: measures issue #5's recovery targets on containers with real DNS.
//!
//! Per round, on a 3-node cluster formed by discovery (`hypercache-jepsen:<tag>` image):
//! - **recreate**: one node's container is removed and recreated under the same hostname and
//!   data volume with a new IP; time from `docker run` returning to its `/readyz` answering 200
//!   (target <= 5 s);
//! - **full restart**: every node stopped (SIGTERM) and removed, then all recreated with new IPs;
//!   time from the last `docker run` returning to every node's `/readyz` answering 200, and to
//!   the first acknowledged write (`hcctl put` in a fresh container, whose own start-up is
//!   included: an upper bound). Target: writable <= 10 s.
//!
//! Prints one line per measurement and a min / median / max summary. Everything it creates is
//! removed at the end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use hypercache_jepsen::cluster::{Cluster, ClusterError};
use hypercache_jepsen::docker::Scope;

#[derive(Parser)]
#[command(name = "hc-restart-bench", about = "Times node recreation and full restarts with new IPs")]
struct Cli {
    /// Rounds of (recreate one node, full restart).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Image with /hypercache and /hcctl (k8s/images/build.sh --only jepsen --tag TAG).
    #[arg(long, default_value = "hypercache-jepsen:bench")]
    image: String,
}

const WAIT: Duration = Duration::from_secs(60);

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort();
    if samples.is_empty() {
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} min {:.0} ms, median {:.0} ms, max {:.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

fn run(cli: &Cli) -> Result<(), ClusterError> {
    let scope = Scope::new("bench")?;
    let mut cluster = Cluster::new(&scope, &cli.image, 3)?;
    for n in 0..3 {
        cluster.start(n)?;
    }
    for n in 0..3 {
        cluster.wait_ready(n, WAIT)?;
    }
    cluster.eventually("first write", WAIT, || Ok(cluster.hcctl(&["put", "bench/0", "0"]).is_ok()))?;
    let (mut recreate, mut all_ready, mut writable) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cli.rounds {
        let n = round % 3;
        cluster.remove(n)?;
        cluster.start(n)?;
        let started = Instant::now();
        let ready = cluster.wait_ready(n, WAIT)? - started;
        println!("round {round}: recreated hypercache-{n} with a new IP: ready after {} ms", ready.as_millis());
        recreate.push(ready);

        for n in 0..3 {
            cluster.stop(n)?;
        }
        for n in 0..3 {
            cluster.remove(n)?;
        }
        for n in 0..3 {
            cluster.start(n)?;
        }
        let last_started = Instant::now();
        let mut ready_at = last_started;
        for n in 0..3 {
            ready_at = ready_at.max(cluster.wait_ready(n, WAIT)?);
        }
        let key = format!("bench/{}", round + 1);
        cluster.eventually("writable", WAIT, || Ok(cluster.hcctl(&["put", &key, "1"]).is_ok()))?;
        let (r, w) = (ready_at - last_started, last_started.elapsed());
        println!(
            "round {round}: full restart with new IPs: all ready after {} ms, a write acknowledged after {} ms",
            r.as_millis(),
            w.as_millis()
        );
        all_ready.push(r);
        writable.push(w);
    }
    summary("recreated node ready", &mut recreate);
    summary("full restart, all nodes ready", &mut all_ready);
    summary("full restart, first write acknowledged (upper bound)", &mut writable);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
