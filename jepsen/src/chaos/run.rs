//! One `hcjepsen test` run, start to verdict:
//!
//! 1. a fresh cluster in `<store>/<workload>-<time>/cluster`, waited on until every node is
//!    ready (the fault-free baseline; a cluster that never gets there is an error, not a
//!    verdict);
//! 2. the workload's processes and the nemesis schedule, side by side, until the time limit;
//! 3. heal everything, wait until every node is ready again (the recovery time) and a node
//!    wiped last has caught up (`nemesis/wipe.rs`; one that does not is an error: a stuck
//!    cluster), the final reads;
//! 4. stop the cluster, write the history and the nemesis log, check, write `results.json`;
//! 5. draw the plots and write `index.html` (`render`; a failure there is a warning).
//!
//! The cluster's data and logs stay in the run directory for post-mortems.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::history::{self, Clock, HistoryError};
use super::nemesis::{self, schedule, NemesisKind};
use super::render::{self, Rendered};
use super::report::{self, ReportError, Results, TestInfo};
use super::target::cluster::{Cluster, ClusterSpec, Faketime};
use super::target::TargetError;
use super::target::TargetKind;
use super::workload::{self, Context, Recorder, WorkloadKind};

/// How long a fresh or healed cluster may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Attempts per final read (500 ms apart).
const FINAL_READ_ATTEMPTS: u32 = 20;

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
    pub time_limit: Duration,
    pub nodes: usize,
    pub shards: u32,
    pub seed: u64,
    pub store: PathBuf,
    /// The `hypercache` binary.
    pub exe: PathBuf,
    pub target: TargetKind,
    /// Second faults at once on some steps (`schedule::compose`).
    pub compose: bool,
    /// Concurrent client processes.
    pub workers: u64,
    /// Register keys.
    pub keys: usize,
    pub heal: Duration,
    pub fault: Duration,
    /// Client deadline per operation.
    pub op_timeout: Duration,
    /// The client's timeout per attempt (`None`: the library's default). A short one makes the
    /// client retry writes still in flight, repeats that sessions must answer exactly once.
    pub attempt_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{0}")]
    Io(String),
}

pub struct Outcome {
    pub dir: PathBuf,
    pub results: Results,
    /// The plots and `index.html`, and what could not be drawn.
    pub rendered: Rendered,
}

pub async fn test(opts: TestOptions) -> Result<Outcome, RunError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    std::fs::create_dir_all(&opts.store)
        .map_err(|e| RunError::Io(format!("creating {}: {e}", opts.store.display())))?;
    // Two runs started within one second get `-2`, `-3`...: a run never writes into another's.
    let name = report::run_dir_name(opts.workload, now);
    let mut dir = opts.store.join(&name);
    let mut n = 1;
    while let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(RunError::Io(format!("creating {}: {e}", dir.display())));
        }
        n += 1;
        dir = opts.store.join(format!("{name}-{n}"));
    }
    let info = TestInfo {
        workload: opts.workload,
        nemeses: opts.nemeses.clone(),
        target: opts.target.name().into(),
        nodes: opts.nodes,
        shards: opts.shards,
        seed: opts.seed,
        time_limit_secs: opts.time_limit.as_secs(),
        workers: opts.workers,
        keys: opts.keys,
        attempt_timeout_ms: opts.attempt_timeout.map(|t| t.as_millis() as u64),
        compose: opts.compose,
    };
    report::write_json(&dir.join("test.json"), &info)?;

    let proxied = opts.nemeses.contains(&NemesisKind::Partition);
    // Under libfaketime only when a clock fault may come: it costs every clock read ~4 us.
    let faketime = opts.nemeses.contains(&NemesisKind::Clock).then(Faketime::locate).transpose()?;
    // Churn adds a node before it decommissions one: one slot more than the members.
    let spares = usize::from(opts.nemeses.contains(&NemesisKind::Churn));
    let spec = ClusterSpec {
        nodes: opts.nodes,
        spares,
        shards: opts.shards,
        proxied,
        faketime,
        disks: opts.nemeses.contains(&NemesisKind::Power),
        docker: opts.target == TargetKind::Docker,
    };
    let mut cluster = Cluster::start(&opts.exe, &dir.join("cluster"), spec).await?;
    if let Err(e) = cluster.wait_ready(READY_WITHIN).await {
        cluster.stop().await;
        return Err(e.into());
    }

    let clock = Clock::start();
    let start = Instant::now();
    let until = start + opts.time_limit;
    let mut steps = schedule::plan(opts.seed, &opts.nemeses, opts.nodes, opts.time_limit, opts.heal, opts.fault);
    if opts.compose {
        schedule::compose(opts.seed, &opts.nemeses, opts.nodes, &mut steps);
    }
    let ctx = Arc::new(Context {
        kind: opts.workload,
        endpoints: cluster.endpoints(),
        recorder: Arc::new(Recorder::new(clock)),
        op_timeout: opts.op_timeout,
        attempt_timeout: opts.attempt_timeout,
        pace: Duration::from_millis(10),
        keys: opts.keys,
        next_value: AtomicU64::new(1),
        watchers: workload::watcher::Watchers::default(),
    });
    let nemesis = tokio::spawn(async move {
        let (log, catching_up) = schedule::run(&mut cluster, &steps, &clock, start).await;
        (cluster, log, catching_up)
    });
    let workload_result = workload::run(ctx.clone(), opts.workers, opts.seed, until).await;
    let (mut cluster, mut nemesis_log, catching_up) =
        nemesis.await.map_err(|e| RunError::Io(format!("nemesis task: {e}")))?;

    let recovery = cluster.wait_ready(READY_WITHIN).await;
    // A node wiped last must also catch up (readiness alone does not say it hosts its shards
    // again); one that does not is a stuck cluster, reported as an error.
    let mut stuck = None;
    if let Some(pending) = catching_up {
        match pending.wait(READY_WITHIN).await {
            Ok(caught_up) => nemesis_log.push(caught_up),
            Err(pending) => {
                let never = pending.never(&clock);
                stuck = never.error.clone().map(|e| format!("{e} ({} s after the heal)", READY_WITHIN.as_secs()));
                nemesis_log.push(never);
            }
        }
    }
    // A decommission that never finished is a stuck cluster too.
    let never_left: Vec<String> =
        nemesis_log.iter().filter(|e| e.action == nemesis::Action::Left).filter_map(|e| e.error.clone()).collect();
    let final_result = workload::final_reads(&ctx, opts.workers * 1_000_000, FINAL_READ_ATTEMPTS).await;
    cluster.stop().await;

    let events = ctx.recorder.events();
    history::write_jsonl(&dir.join("history.jsonl"), &events)?;
    history::write_jsonl(&dir.join("nemesis.jsonl"), &nemesis_log)?;
    let mut results = report::check(opts.workload, &events, &nemesis_log)?;
    results.recovery_ms = recovery.as_ref().ok().map(|d| d.as_millis() as u64);
    let errors: Vec<String> = [
        workload_result.err().map(|e| format!("workload: {e}")),
        recovery.err().map(|e| format!("recovery after heal: {e}")),
        stuck,
        (!never_left.is_empty()).then(|| never_left.join("; ")),
        final_result.err().map(|e| format!("final reads: {e}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !errors.is_empty() {
        results.error = Some(errors.join("; "));
    }
    report::write_json(&dir.join("results.json"), &results)?;
    // After the verdict is on disk: the report only shows it and cannot fail the run.
    let run = render::Run {
        info: &info,
        events: &events,
        nemesis: &nemesis_log,
        results: &results,
        made_by: "hcjepsen test",
    };
    let rendered = render::write(&dir, &run);
    Ok(Outcome { dir, results, rendered })
}
