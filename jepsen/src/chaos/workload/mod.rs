//! Workloads: what the client processes do during a run, and the final reads after healing.
//!
//! Every operation is recorded as an invocation before it is sent and a completion after, both
//! stamped with the run's clock ([`Recorder`]). The completion's type follows the client
//! library's error contract (`hypercache_client::Error`): `may_have_been_applied()` (an
//! `OutcomeUnknown` or `Internal` write) and a client call that outlives its deadline are `info`;
//! every other error certainly had no effect and is `fail`. A read never changes anything, so a
//! failed read is `fail` whatever the error. After an `info` the process is considered crashed:
//! the worker continues as a new process (`process + workers`) with a new client, as in Jepsen.
//!
//! - [`register`]: get / put / compare-and-swap on a few keys, checked for linearizability;
//!   every third worker reads through one node only, as Jepsen's node-bound clients do.
//! - [`set`]: adds of unique elements, one final read of the whole set.
//! - [`bank`]: transfers between accounts of one shard, reads of every balance at once.
//! - [`election`]: campaigns, resignations and leader reads on a few elections.
//! - [`board`]: owners taking boards from each other and checkpointing them, fenced by epochs.
//! - [`append`]: transactions reading and appending to lists, checked for cycles (Elle).
//! - [`lease`]: holders grant leases, attach keys of every shard, keep them alive, revoke or
//!   abandon them, and read keys: none may go before its holder's vouched deadline.
//! - [`watch`]: puts and deletes under a prefix spanning every shard, while [`watcher`]s watch
//!   it, resuming after every error; one final read of the prefix.

pub mod append;
pub mod bank;
pub mod board;
pub mod election;
pub mod lease;
pub mod register;
pub mod set;
pub mod watch;
pub mod watcher;

use hypercache_proto::poison::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypercache_client::{Client, ClientConfig, Error};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::chaos::history::{Clock, Event, EventType, Op, Process};

/// A workload, as named on the command line (`--workload register`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Register,
    Set,
    Bank,
    Election,
    Board,
    ListAppend,
    Watch,
    Lease,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Set => "set",
            WorkloadKind::Bank => "bank",
            WorkloadKind::Election => "election",
            WorkloadKind::Board => "board",
            WorkloadKind::ListAppend => "list-append",
            WorkloadKind::Watch => "watch",
            WorkloadKind::Lease => "lease",
        }
    }
}

/// Collects the history; a std mutex, never held across an await.
pub struct Recorder {
    clock: Clock,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn new(clock: Clock) -> Recorder {
        Recorder { clock, events: Mutex::new(Vec::new()) }
    }

    fn push(&self, process: Process, kind: EventType, op: Op, error: Option<String>) {
        let mut events = lock(&self.events);
        // Stamped under the lock, so the file's order is the clock's order.
        events.push(Event { process, kind, op, time: self.clock.now(), error });
    }

    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }
}

/// What the workers share.
pub struct Context {
    pub kind: WorkloadKind,
    pub endpoints: Vec<String>,
    pub recorder: Arc<Recorder>,
    /// The client's deadline per operation, retries included.
    pub op_timeout: Duration,
    /// The client's timeout per attempt; `None`: the library's default.
    pub attempt_timeout: Option<Duration>,
    /// Pause between one process's operations.
    pub pace: Duration,
    /// Register keys.
    pub keys: usize,
    /// The next unique value or element.
    pub next_value: AtomicU64,
    /// The watch workload's watcher tasks (idle for every other workload).
    pub watchers: watcher::Watchers,
}

fn client(ctx: &Context) -> Result<Client, Error> {
    let config = ClientConfig::new(ctx.endpoints.clone()).request_timeout(ctx.op_timeout);
    Client::new(match ctx.attempt_timeout {
        Some(t) => config.attempt_timeout(t),
        None => config,
    })
}

/// The error for an operation of another workload: a generator bug or a mixed-up history.
fn wrong_workload(workload: &str, op: &Op) -> Error {
    Error::Config { message: format!("the {workload} workload cannot run {op:?} (a {} operation)", op.workload()) }
}

/// How an error completes `op` (see the module essay).
pub fn outcome(op: &Op, error: &Error) -> EventType {
    if !op.is_read() && error.may_have_been_applied() {
        EventType::Info
    } else {
        EventType::Fail
    }
}

/// Runs one operation and records it; returns its completion type and the completed op (with
/// what was read or handed out).
/// `bound`: the one node a node-bound process reads through (see [`register::bound_node`]).
async fn perform(ctx: &Context, client: &Client, process: Process, bound: Option<&str>, op: Op) -> (EventType, Op) {
    ctx.recorder.push(process, EventType::Invoke, op.clone(), None);
    let apply = async {
        match ctx.kind {
            WorkloadKind::Register => register::apply(client, &op, bound).await,
            WorkloadKind::Set => set::apply(client, &op).await,
            WorkloadKind::Bank => bank::apply(client, &op).await,
            WorkloadKind::Election => election::apply(client, &op, ctx.op_timeout).await,
            WorkloadKind::Board => board::apply(client, &op, ctx.next_value.fetch_add(1, Ordering::Relaxed)).await,
            WorkloadKind::ListAppend => append::apply(client, &op).await,
            WorkloadKind::Watch => watch::apply(client, &op).await,
            WorkloadKind::Lease => lease::apply(client, &op).await,
        }
    };
    // The client has its own deadline; this one only catches a call that never returns.
    let (kind, done, error) = match tokio::time::timeout(ctx.op_timeout * 2, apply).await {
        // A `fail` without an error: the operation's own refusal.
        Ok(Ok((EventType::Fail, done))) => (EventType::Fail, done, Some(refusal(&op).to_string())),
        Ok(Ok((kind, done))) => (kind, done, None),
        Ok(Err(e)) => (outcome(&op, &e), op, Some(e.to_string())),
        Err(_) => (EventType::Info, op, Some(format!("no answer within {:?}", ctx.op_timeout * 2))),
    };
    ctx.recorder.push(process, kind, done.clone(), error);
    (kind, done)
}

/// Why an operation that reached the cluster wrote nothing, for its `fail` completion.
fn refusal(op: &Op) -> &'static str {
    match op {
        Op::Transfer { .. } => {
            "comparison did not hold (a balance changed since it was read), or `from` held less than `amount`"
        }
        Op::Resign { .. } => "not the election's leader (its lease had ended)",
        Op::LeasePut { .. } | Op::LeaseRevoke { .. } => "LEASE_NOT_FOUND: the lease had ended",
        _ => "comparison did not hold",
    }
}

/// Attempts per setup op (500 ms apart), as for the final reads.
const SETUP_ATTEMPTS: u32 = 20;

/// The workload's setup before the workers start (the bank's accounts, the boards and their
/// owners), by its own process (`workers * 1_000_000 + 1`, next to the final reads'
/// `workers * 1_000_000`), retried until `ok`: every setup op is safe to repeat (see [`bank`],
/// [`board`]).
async fn setup(ctx: &Context, workers: u64, process: Process) -> Result<(), Error> {
    let ops = match ctx.kind {
        WorkloadKind::Register
        | WorkloadKind::Set
        | WorkloadKind::Election
        | WorkloadKind::ListAppend
        | WorkloadKind::Watch
        | WorkloadKind::Lease => return Ok(()),
        WorkloadKind::Bank => vec![bank::open_accounts()],
        WorkloadKind::Board => vec![board::open_boards(workers)],
    };
    let client = client(ctx)?;
    for op in ops {
        let mut done = false;
        for _ in 0..SETUP_ATTEMPTS {
            if perform(ctx, &client, process, None, op.clone()).await.0 == EventType::Ok {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !done {
            return Err(Error::Unavailable {
                message: format!("setup: {op:?} not ok after {SETUP_ATTEMPTS} attempts"),
            });
        }
    }
    Ok(())
}

/// The setup (see [`setup`]), then `workers` processes issue operations until `until`.
pub async fn run(ctx: Arc<Context>, workers: u64, seed: u64, until: Instant) -> Result<(), Error> {
    setup(&ctx, workers, workers * 1_000_000 + 1).await?;
    if ctx.kind == WorkloadKind::Watch {
        // They outlive this call: `final_reads` tells them where to catch up to and waits.
        watcher::Watchers::spawn(&ctx, workers * 1_000_000 + 10, seed);
    }
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w));
            let mut process = w;
            let mut client = client(&ctx)?;
            let mut generator = Generator::new(ctx.kind, w, workers);
            let bound = match ctx.kind {
                WorkloadKind::Register => register::bound_node(w, &ctx.endpoints),
                _ => None,
            };
            while Instant::now() < until {
                let op = generator.next(&ctx, &mut rng);
                let (kind, done) = perform(&ctx, &client, process, bound, op.clone()).await;
                generator.observe(&op, &done, kind);
                if kind == EventType::Info {
                    process += workers;
                    client = self::client(&ctx)?;
                }
                tokio::time::sleep(ctx.pace).await;
            }
            Ok::<(), Error>(())
        }));
    }
    for task in tasks {
        match task.await {
            Ok(result) => result?,
            Err(e) => return Err(Error::Internal { message: format!("worker task: {e}") }),
        }
    }
    Ok(())
}

/// After healing: the workload's final reads, by a fresh process, each retried until it
/// succeeds or `attempts` run out (every attempt is in the history). The watch workload's
/// watchers then catch up to its final read and stop.
pub async fn final_reads(ctx: &Context, process: Process, attempts: u32) -> Result<(), Error> {
    let done = final_reads_once(ctx, process, attempts).await;
    if ctx.kind != WorkloadKind::Watch {
        return done.map(|_| ());
    }
    let revisions = match &done {
        Ok(Some(Op::WatchFinalRead { revisions, .. })) => revisions.clone(),
        _ => None,
    };
    ctx.watchers.finish(revisions).await?;
    done.map(|_| ())
}

/// The final reads; returns the last one that succeeded.
async fn final_reads_once(ctx: &Context, process: Process, attempts: u32) -> Result<Option<Op>, Error> {
    let client = client(ctx)?;
    let ops = match ctx.kind {
        WorkloadKind::Register => register::final_ops(ctx.keys),
        WorkloadKind::Set => vec![Op::ReadSet { elements: None }],
        WorkloadKind::Bank => vec![bank::final_read()],
        WorkloadKind::Election => election::final_ops(),
        WorkloadKind::Board => board::final_reads(),
        WorkloadKind::ListAppend => append::final_reads(ctx),
        WorkloadKind::Watch => vec![watch::final_read()],
        // The reads during the run are the evidence (see `lease`).
        WorkloadKind::Lease => Vec::new(),
    };
    let mut last = None;
    for op in ops {
        for _ in 0..attempts {
            let (kind, done) = perform(ctx, &client, process, None, op.clone()).await;
            if kind == EventType::Ok {
                last = Some(done);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(last)
}

/// A process's next operation.
enum Generator {
    Register(register::Generator),
    Set,
    Bank,
    Election(election::Generator),
    Board(board::Generator),
    ListAppend,
    Watch,
    Lease(lease::Generator),
}

impl Generator {
    fn new(kind: WorkloadKind, worker: u64, workers: u64) -> Generator {
        match kind {
            WorkloadKind::Register => Generator::Register(register::Generator::default()),
            WorkloadKind::Set => Generator::Set,
            WorkloadKind::Bank => Generator::Bank,
            WorkloadKind::Election => Generator::Election(election::Generator::default()),
            WorkloadKind::Board => Generator::Board(board::Generator::new(worker)),
            WorkloadKind::ListAppend => Generator::ListAppend,
            WorkloadKind::Watch => Generator::Watch,
            WorkloadKind::Lease => Generator::Lease(lease::Generator::new(worker, workers)),
        }
    }

    fn next(&mut self, ctx: &Context, rng: &mut StdRng) -> Op {
        match self {
            Generator::Register(g) => g.next(ctx, rng),
            Generator::Set => set::next(ctx),
            Generator::Bank => bank::next(rng),
            Generator::Election(g) => g.next(ctx, rng),
            Generator::Board(g) => g.next(rng),
            Generator::ListAppend => append::next(ctx, rng),
            Generator::Watch => watch::next(ctx, rng),
            Generator::Lease(g) => g.next(ctx, rng),
        }
    }

    /// `op` as invoked, `done` as completed.
    fn observe(&mut self, op: &Op, done: &Op, kind: EventType) {
        match self {
            Generator::Register(g) => g.observe(op, kind),
            Generator::Election(g) => g.observe(done, kind),
            Generator::Board(g) => g.observe(done, kind),
            Generator::Lease(g) => g.observe(done, kind),
            Generator::Set | Generator::Bank | Generator::ListAppend | Generator::Watch => {}
        }
    }
}
