//! `hcjepsen`: the chaos suite's command line (docs/chaos.md).
//!
//! `hcjepsen test` starts a fresh cluster, runs a workload under a nemesis schedule, heals,
//! checks, and writes the run directory; `hcjepsen matrix` runs every workload with every
//! nemesis; `hcjepsen check DIR` re-checks a stored run and redraws its report (plots and
//! `index.html`; `results.json` is left as the run wrote it). The last
//! line printed is `valid: true`, `valid: false` or `valid: unknown`; the exit code is 0, 1 or 2
//! accordingly (2 also when the run could not be carried out).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use hypercache_jepsen::chaos::checker::board::{Anomaly, OpRef};
use hypercache_jepsen::chaos::checker::lease as lease_checker;
use hypercache_jepsen::chaos::checker::watch as watch_checker;
use hypercache_jepsen::chaos::checker::Validity;
use hypercache_jepsen::chaos::nemesis::NemesisKind;
use hypercache_jepsen::chaos::render::{self, Rendered};
use hypercache_jepsen::chaos::report::{self, Results};
use hypercache_jepsen::chaos::run::{self, TestOptions};
use hypercache_jepsen::chaos::target::{locate_hypercache, mountns, TargetKind};
use hypercache_jepsen::chaos::workload::WorkloadKind;

#[derive(Parser)]
#[command(name = "hcjepsen", about = "HyperCache's chaos suite: workloads under faults, checked like Jepsen")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// Real `hypercache` processes on loopback (HYPERCACHE_BIN, or the binary next to hcjepsen).
    Local,
    /// One container per node with its own IP and DNS name, found through DNS discovery as on
    /// Kubernetes; partitions by iptables. Needs a Docker engine, root, `nsenter` and `iptables`.
    Docker,
}

#[derive(Subcommand)]
enum Command {
    /// Start a fresh cluster, run a workload under faults, heal, check, write the run directory.
    Test {
        #[arg(long, value_enum)]
        workload: WorkloadKind,
        /// Fault kinds, comma-separated; none given: no faults. `clock` needs libfaketime (Debian's
        /// `faketime` package; HCJ_LIBFAKETIME names another copy).
        #[arg(long, value_enum, value_delimiter = ',')]
        nemesis: Vec<NemesisKind>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run every workload with every nemesis (one fault kind per run, then all together), one
    /// fresh cluster each, one after the other.
    Matrix {
        #[arg(long, value_enum, value_delimiter = ',', default_value = "register,set")]
        workloads: Vec<WorkloadKind>,
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "kill,kill-all,power,pause,partition,wipe,clock,churn"
        )]
        nemeses: Vec<NemesisKind>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Re-check a stored run directory and redraw its plots and index.html.
    Check { dir: PathBuf },
}

/// What every run takes.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Seconds of workload per run (the final reads come after).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: usize,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,
    #[arg(long, value_enum, default_value = "local")]
    target: Target,
    /// Compose faults: half of the kill, pause, partition and clock steps also get a second
    /// fault (kill, pause or partition of one other node, among the run's kinds) at once.
    #[arg(long)]
    compose: bool,
    /// Seeds the nemesis plan and the workload's choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where run directories go.
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// Concurrent client processes.
    #[arg(long, default_value_t = 5)]
    workers: u64,
    /// Register keys.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Seconds of quiet before each fault.
    #[arg(long, default_value_t = 3)]
    heal_secs: u64,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 4)]
    fault_secs: u64,
    /// Client deadline per operation, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    op_timeout_ms: u64,
    /// Client timeout per attempt, in milliseconds (default: the client library's). A short one
    /// makes the client retry writes still in flight.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    attempt_timeout_ms: Option<u64>,
}

impl RunArgs {
    fn options(&self, workload: WorkloadKind, nemeses: Vec<NemesisKind>, seed: u64, exe: PathBuf) -> TestOptions {
        TestOptions {
            compose: self.compose,
            target: match self.target {
                Target::Local => TargetKind::Local,
                Target::Docker => TargetKind::Docker,
            },
            workload,
            nemeses,
            time_limit: Duration::from_secs(self.time_limit),
            nodes: self.nodes,
            shards: self.shards,
            seed,
            store: self.store.clone(),
            exe,
            workers: self.workers.max(1),
            keys: self.keys.max(1),
            heal: Duration::from_secs(self.heal_secs),
            fault: Duration::from_secs(self.fault_secs),
            op_timeout: Duration::from_millis(self.op_timeout_ms.max(1)),
            attempt_timeout: self.attempt_timeout_ms.map(Duration::from_millis),
        }
    }
}

/// A node count the suite does not run (its nemeses are written for 3 or 5 nodes).
#[derive(Debug, thiserror::Error)]
#[error("3 or 5")]
struct NodeCountError;

fn parse_nodes(s: &str) -> Result<usize, NodeCountError> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(NodeCountError),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let validity = match cli.command {
        Command::Check { dir } => match report::check_dir(&dir) {
            Ok((stored, results)) => {
                let run = render::Run {
                    info: &stored.info,
                    events: &stored.events,
                    nemesis: &stored.nemesis,
                    results: &results,
                    made_by: "hcjepsen check",
                };
                print_rendered(&dir, &render::write(&dir, &run));
                summarize(&results)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Validity::Unknown
            }
        },
        Command::Test { workload, nemesis, run } => {
            with_runtime(&run, |exe, seed| vec![run.options(workload, nemesis, seed, exe)])
        }
        Command::Matrix { workloads, nemeses, run } => with_runtime(&run, |exe, seed| {
            let mut combos: Vec<Vec<NemesisKind>> = nemeses.iter().map(|n| vec![*n]).collect();
            if nemeses.len() > 1 {
                combos.push(nemeses.clone());
            }
            let mut plan = Vec::new();
            for w in &workloads {
                for combo in &combos {
                    let kept: Vec<NemesisKind> =
                        combo.iter().copied().filter(|n| !outside_assumptions(*w, *n)).collect();
                    if kept.len() < combo.len() {
                        println!(
                            "{} / {}: without clock: leases assume every node's clock runs at about real time's rate, which the clock nemesis breaks on purpose (docs/chaos.md)",
                            w.name(),
                            nemesis_names(combo)
                        );
                    }
                    if !kept.is_empty() {
                        plan.push(run.options(*w, kept, seed, exe.clone()));
                    }
                }
            }
            plan
        }),
    };
    println!("valid: {}", validity.as_str());
    ExitCode::from(match validity {
        Validity::True => 0,
        Validity::False => 1,
        Validity::Unknown => 2,
    })
}

/// A fault the workload's guarantee does not cover, left out of the matrix: a lease ends by
/// its leader's clock, so a leader whose clock races expires leases early in real time (seen:
/// `--workload lease --nemesis clock`, `valid: false`), as in etcd; that is the design's stated
/// assumption, not a bug for the matrix to report every time. `hcjepsen test` still runs it.
fn outside_assumptions(workload: WorkloadKind, nemesis: NemesisKind) -> bool {
    workload == WorkloadKind::Lease && nemesis == NemesisKind::Clock
}

/// Runs the tests `plan` lists, one after the other; the verdict of all of them.
fn with_runtime(run: &RunArgs, plan: impl FnOnce(PathBuf, u64) -> Vec<TestOptions>) -> Validity {
    let seed =
        run.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    println!("seed: {seed}");
    let exe = match locate_hypercache() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: {e}");
            return Validity::Unknown;
        }
    };
    // Before the runtime's threads exist: the namespace is per thread until then.
    if let Target::Docker = run.target {
        if let Err(e) = mountns::enter_own_mount_namespace() {
            eprintln!("error: {e}");
            return Validity::Unknown;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return Validity::Unknown;
        }
    };
    let tests = plan(exe, seed);
    let many = tests.len() > 1;
    let mut verdicts = Vec::new();
    for options in tests {
        let name = format!("{} / {}", options.workload.name(), nemesis_names(&options.nemeses));
        if many {
            println!("== {name}");
        }
        let validity = match runtime.block_on(run::test(options)) {
            Ok(outcome) => {
                println!("run: {}", outcome.dir.display());
                print_rendered(&outcome.dir, &outcome.rendered);
                summarize(&outcome.results)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Validity::Unknown
            }
        };
        verdicts.push((name, validity));
    }
    if many {
        println!("== matrix");
        for (name, validity) in &verdicts {
            println!("{name}: valid: {}", validity.as_str());
        }
    }
    Validity::all(verdicts.into_iter().map(|(_, v)| v))
}

/// Where the report is, how long it took; its warnings on stderr (they never change a verdict).
fn print_rendered(dir: &Path, rendered: &Rendered) {
    for warning in &rendered.warnings {
        eprintln!("warning: report: {warning}");
    }
    println!(
        "report: {} ({} files in {} ms)",
        dir.join("index.html").display(),
        rendered.files.len(),
        rendered.elapsed.as_millis()
    );
}

/// A list for a terminal: its length and at most its first 10 elements.
fn some<T: std::fmt::Debug>(items: &[T]) -> String {
    const SHOWN: usize = 10;
    if items.len() <= SHOWN {
        format!("{items:?}")
    } else {
        format!("{} {:?}...", items.len(), &items[..SHOWN])
    }
}

fn nemesis_names(nemeses: &[NemesisKind]) -> String {
    if nemeses.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = nemeses.iter().map(|n| n.name()).collect();
    names.join(",")
}

/// Prints what an SRE reads first: counts, anomalies, errors.
fn summarize(results: &Results) -> Validity {
    let o = &results.ops;
    println!("workload: {}  ops: {} ok, {} fail, {} info", results.workload.name(), o.ok, o.fail, o.info);
    if let Some(ms) = results.recovery_ms {
        println!("ready again {ms} ms after the workload ended");
    }
    if let Some(lin) = &results.linearizable {
        for key in &lin.keys {
            println!("key {}: {} ops, linearizable: {}", key.key, key.ops, key.valid.as_str());
            if let Some(anomaly) = &key.anomaly {
                println!("  smallest failing sub-history (initial value: {}):", anomaly.initial);
                for op in &anomaly.ops {
                    let done = op.complete.map_or("never".to_string(), |t| format!("{:.3}s", t as f64 / 1e9));
                    let invoked = op.invoke as f64 / 1e9;
                    println!(
                        "    process {} {:?} {:?} invoked {invoked:.3}s completed {done}",
                        op.process, op.outcome, op.op
                    );
                }
            }
        }
    }
    if let Some(set) = &results.set {
        println!(
            "set: {} acknowledged, {} uncertain ({} present), final read {:?}; lost {}, failed but present {}, never added {} \
             (every element in results.json)",
            set.acknowledged,
            set.uncertain,
            set.uncertain_present,
            set.final_read,
            some(&set.lost),
            some(&set.failed_but_present),
            some(&set.never_added)
        );
    }
    if let Some(bank) = &results.bank {
        println!(
            "bank: {:?} accounts, total {:?}; transfers {} ok, {} fail, {} info; {} reads ({} final), {} bad",
            bank.accounts,
            bank.total,
            bank.transfers_ok,
            bank.transfers_fail,
            bank.transfers_info,
            bank.reads,
            bank.final_reads,
            bank.bad_reads
        );
        for bad in &bank.anomalies {
            println!(
                "  op {} process {} invoked {:.3}s{}: {:?} {:?}",
                bad.index,
                bad.process,
                bad.invoke as f64 / 1e9,
                if bad.final_read { " (final read)" } else { "" },
                bad.balances,
                bad.problems
            );
        }
    }
    if let Some(election) = &results.election {
        println!(
            "election: {} names, highest terms {:?}; campaigns {} ok, {} fail, {} info; resigns {} ok, {} fail, {} info; {} leader reads ({} final); {} anomalies",
            election.names,
            election.highest_term,
            election.campaigns_ok,
            election.campaigns_fail,
            election.campaigns_info,
            election.resigns_ok,
            election.resigns_fail,
            election.resigns_info,
            election.reads,
            election.final_reads,
            election.anomaly_count
        );
        for anomaly in &election.anomalies {
            println!("  {anomaly:?}");
        }
    }
    if let Some(board) = &results.board {
        println!(
            "board: {:?} boards; assigns {} ok, {} fail, {} info; syncs {} ok, {} fail (refused), {} info; {} reads ({} boards read at the end); {} anomalies",
            board.boards,
            board.assigns_ok,
            board.assigns_fail,
            board.assigns_info,
            board.syncs_ok,
            board.syncs_fail,
            board.syncs_info,
            board.reads,
            board.final_reads,
            board.anomaly_count
        );
        for anomaly in &board.anomalies {
            println!("  {}", describe_board_anomaly(anomaly));
        }
    }
    if let Some(append) = &results.list_append {
        let t = &append.txns;
        println!(
            "list-append: txns {} ok, {} fail, {} info; {} keys, longest list {}; edges {:?}; {} final reads; anomalies {:?}",
            t.ok, t.fail, t.info, t.keys, t.longest_list, t.edges, append.final_reads, append.anomaly_counts
        );
        for anomaly in &append.anomalies {
            println!("  {anomaly}");
        }
    }
    if let Some(watch) = &results.watch {
        summarize_watch(watch);
    }
    if let Some(lease) = &results.lease {
        summarize_lease(lease);
    }
    for w in &results.availability {
        let after = w.first_write_after_heal_ms.map_or("none".to_string(), |ms| format!("{ms} ms"));
        let shape = w.shape.map_or(String::new(), |s| format!(" ({s:?})"));
        println!(
            "{:?}{shape} {:?} at {:.1}s for {:.1}s: {} writes, longest write gap {} ms, first write after heal {after}",
            w.action,
            w.nodes,
            w.start as f64 / 1e9,
            (w.healed - w.start) as f64 / 1e9,
            w.writes,
            w.longest_write_gap_ms
        );
    }
    if let Some(error) = &results.error {
        println!("errors: {error}");
        // A cluster that did not recover, a decommission that never ended: findings too, even
        // when no history anomaly shows them.
        if results.valid == Validity::True {
            println!("no anomaly in the history, but the run did not end cleanly: valid: unknown");
            return Validity::Unknown;
        }
    }
    results.valid
}

fn summarize_lease(lease: &lease_checker::Report) {
    let c = |c: &lease_checker::Counts| format!("{} ok, {} fail, {} info", c.ok, c.fail, c.info);
    println!(
        "lease: {} leases; grants {}; puts {} ({} in another shard than the lease); keepalives {} ({} renewed, {} found it gone); revokes {}; reads {}; {} checkable reads ({} cross-shard), {} after a revoke, longest cross-shard lag after a revoke {}; {} anomalies",
        lease.leases,
        c(&lease.grants),
        c(&lease.puts),
        lease.cross_shard_puts,
        c(&lease.keepalives),
        lease.keepalives_renewed,
        lease.keepalives_gone,
        c(&lease.revokes),
        c(&lease.reads),
        lease.checkable_reads,
        lease.checkable_cross_shard_reads,
        lease.reads_after_revoke,
        lease.longest_cross_shard_lag_ms.map_or("none".to_string(), |ms| format!("{ms} ms")),
        lease.anomaly_count
    );
    for anomaly in &lease.anomalies {
        println!("  {}", describe_lease_anomaly(anomaly));
    }
}

/// One lease anomaly on one line, naming the put, the vouching op or revoke, and the read.
fn describe_lease_anomaly(anomaly: &lease_checker::Anomaly) -> String {
    use lease_checker::Anomaly as A;
    let at = |o: &lease_checker::OpRef| {
        let done = o.complete.map_or("never".to_string(), |c| format!("{:.3}s", c as f64 / 1e9));
        format!("op {} (process {}, {:.3}s-{done}: {})", o.index, o.process, o.invoke as f64 / 1e9, o.op.label())
    };
    match anomaly {
        A::ExpiredEarly { lease, key, deadline, put, vouched_by, read } => format!(
            "expired early: {key} on lease {lease} read absent by {} before the vouched deadline {:.3}s (from {}); put by {}",
            at(read),
            *deadline as f64 / 1e9,
            at(vouched_by),
            at(put)
        ),
        A::PresentAfterRevoke { lease, key, allowance_ms, put, revoke, read } => format!(
            "present after revoke: {key} on lease {lease} read by {} after {} completed (+{allowance_ms} ms); put by {}",
            at(read),
            at(revoke),
            at(put)
        ),
    }
}

fn summarize_watch(watch: &watch_checker::Report) {
    println!(
        "watch: puts {} ok, {} fail, {} info; deletes {} ok, {} fail, {} info; final read at {:?}; {} anomalies",
        watch.puts_ok,
        watch.puts_fail,
        watch.puts_info,
        watch.deletes_ok,
        watch.deletes_fail,
        watch.deletes_info,
        watch.final_revisions,
        watch.anomaly_count
    );
    for w in &watch.watchers {
        println!(
            "  watcher {}: {}; from {:?} to {:?} ({:?}), {} events in {} updates ({} of uncertain writes), {} resumes ({} reconnects), {} errors, {} anomalies",
            w.watcher,
            w.valid.as_str(),
            w.start,
            w.last,
            w.end,
            w.events,
            w.updates,
            w.uncertain_delivered,
            w.resumes,
            w.reconnects,
            w.errors,
            w.anomalies
        );
    }
    for anomaly in &watch.anomalies {
        println!("  {}", describe_watch_anomaly(anomaly));
    }
}

/// One watch anomaly on one line, naming the events and writes involved.
fn describe_watch_anomaly(anomaly: &watch_checker::Anomaly) -> String {
    use watch_checker::Anomaly as A;
    let ev = |e: &watch_checker::Delivered| {
        let what = e.value.map_or("delete".to_string(), |v| format!("put {v}"));
        format!(
            "shard {} revision {} {} {what} (op {}, {:.3}s)",
            e.shard,
            e.revision,
            e.key,
            e.index,
            e.time as f64 / 1e9
        )
    };
    let write = |o: &watch_checker::OpRef| {
        let done = o.complete.map_or("never".to_string(), |t| format!("{:.3}s", t as f64 / 1e9));
        format!("op {} {:?} {:?} (process {}, completed {done})", o.index, o.outcome, o.op, o.process)
    };
    match anomaly {
        A::Duplicate { watcher, first, again } => {
            format!("watcher {watcher}: duplicate: {} delivered again as {}", ev(first), ev(again))
        }
        A::OutOfOrder { watcher, previous, event } => {
            format!("watcher {watcher}: out of order: {} after {}", ev(event), ev(previous))
        }
        A::BeforeStart { watcher, start, event } => {
            format!("watcher {watcher}: {} delivered, before its start revision {start}", ev(event))
        }
        A::Missed { watcher, from, to, write: w } => {
            format!("watcher {watcher}: missed {} (covered revisions {from}..={to})", write(w))
        }
        A::Phantom { watcher, why, event, write: w } => format!(
            "watcher {watcher}: phantom ({why:?}): {}{}",
            ev(event),
            w.as_ref().map_or(String::new(), |w| format!("; the write: {}", write(w)))
        ),
        A::FinalMismatch { watcher, key, final_kv, last_delivered } => format!(
            "watcher {watcher}: {key}: final read {final_kv:?}, last delivered {}",
            last_delivered.as_ref().map_or("nothing".to_string(), ev)
        ),
    }
}

/// One board anomaly on one line, naming the operations that prove it.
fn describe_board_anomaly(anomaly: &Anomaly) -> String {
    let at = |o: &OpRef| {
        let done = o.complete.map_or("never".to_string(), |t| format!("{:.3}s", t as f64 / 1e9));
        format!("op {} (process {}, invoked {:.3}s, completed {done})", o.index, o.process, o.invoke as f64 / 1e9)
    };
    match anomaly {
        Anomaly::StaleEpochAccepted { board, epoch, newer_epoch, sync, superseded_by } => format!(
            "{board}: stale epoch {epoch} accepted: sync {} after epoch {newer_epoch} was shown by {}",
            at(sync),
            at(superseded_by)
        ),
        Anomaly::SeqNotIncreasing { board, epoch, earlier, later } => {
            format!("{board}: seqs of epoch {epoch} not increasing: {} then {}", at(earlier), at(later))
        }
        Anomaly::CheckpointWentBack { board, read_checkpoint, expected, read, after } => format!(
            "{board}: read {} returned checkpoint (epoch, seq) {read_checkpoint:?}, older than {expected:?} from {}",
            at(read),
            at(after)
        ),
        Anomaly::BoardMissing { board, read } => format!("{board}: read {} found no board", at(read)),
    }
}
