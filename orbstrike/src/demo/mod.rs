//! The one-command demo: the whole Orbstrike stack on one machine, as separate processes.
//!
//! `cargo run --bin orbstrike-demo` starts a 3-node HyperCache cluster (`hypercache dev`), two
//! game servers, two orchestrators and the bots, each process with its log in the data
//! directory, and then prints one status line a second: the orchestrators' global statistics
//! (WatchStats) and, per game server, its pid and the boards it owns (ListGames). Killing a game
//! server (`kill -9 <pid>`) shows failover: the orchestrators' failover master moves its boards
//! to the other server within about three seconds, the players' streams are re-routed and the
//! bots keep playing. Ctrl-C (or SIGTERM) stops everything in order and exits 0.
//!
//! # Why these settings
//!
//! The demo shortens the timers that decide how fast a dead game server's boards move
//! (registration lease 2 s with a 400 ms self-fencing margin, failover margin 500 ms, board scan
//! every 250 ms, election lease 2 s) so that the effect of a `kill -9` is visible within a few
//! seconds; the safety argument is unchanged (a server stops serving at `deadline - margin`, its
//! boards move only after its lease has expired plus the failover margin). Everything else is
//! the binaries' defaults.
//!
//! # Not done (deliberately)
//!
//! - No process isolation beyond process groups: if the demo itself is killed with SIGKILL, its
//!   children keep running (`pgrep -fl orbstrike` finds them); every path that lets the demo run
//!   stops them.
//! - Store nodes are not restarted when killed (the supervisor prints the command line to do it
//!   by hand, in the store's log); game servers and orchestrators are, after `--restart-after`.

mod binaries;
mod child;
mod config;
mod stack;
mod stats;
mod supervise;

use std::path::{Path, PathBuf};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

pub use binaries::BinariesError;
pub use child::SpawnError;
pub use config::{DemoArgs, DemoConfig, FlagError, PortPlan, DEFAULT_BASE_PORT};

use crate::proto::v1 as pb;
use config::DataDir;
use stack::Stack;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("invalid --dir: {} is not empty; give a new or empty directory (the demo starts a fresh stack)", .0.display())]
    DirNotEmpty(PathBuf),
    #[error("start-up failed: {0}")]
    Start(String),
}

/// Runs the demo until SIGINT or SIGTERM; `Ok` after a clean stop.
pub async fn run(config: DemoConfig) -> Result<(), DemoError> {
    config.ports.check_free()?;
    // Registered before any child exists, so that no signal can leave children behind.
    let mut signals = Signals::new()?;
    let bins = tokio::task::spawn_blocking({
        let build = config.build;
        move || binaries::prepare(build)
    })
    .await
    .map_err(|e| DemoError::Start(format!("the build task failed: {e}")))??;
    // The build can take minutes: a port may have been taken meanwhile.
    config.ports.check_free()?;
    let dir = make_dir(&config.dir)?;
    println!("data and logs: {}", dir.display());
    let mut stack = Stack::new(config, dir.clone(), bins)?;
    let (mut stats, stats_task) = stack.api.watch_stats();

    let started = tokio::select! {
        result = start(&mut stack, &mut stats) => Some(result),
        name = signals.next() => {
            println!("{name} received during start-up; stopping");
            None
        }
    };
    let result = match started {
        Some(Ok(())) => {
            stack.print_banner();
            let name = stack.supervise(stats, signals.next()).await;
            println!("{name} received; stopping the demo (Ctrl-C again to kill everything at once)");
            Ok(())
        }
        Some(Err(e)) => {
            println!("{e}; stopping what was started");
            Err(e)
        }
        None => Ok(()),
    };
    stats_task.abort();
    let (hurry_tx, hurry) = watch::channel(false);
    let hurry_task = tokio::spawn(async move {
        let name = signals.next().await;
        println!("{name} received again: killing what is left");
        hurry_tx.send_replace(true);
    });
    stack.stop(hurry).await;
    hurry_task.abort();
    println!("stopped; logs are in {}", dir.display());
    result
}

async fn start(stack: &mut Stack, stats: &mut watch::Receiver<Option<pb::Stats>>) -> Result<(), DemoError> {
    println!("starting HyperCache (3 nodes)...");
    stack.start_store().await?;
    println!("starting 2 game servers and 2 orchestrators...");
    stack.start_services(stats).await?;
    stack.start_bots()
}

/// SIGINT (Ctrl-C) and SIGTERM, both meaning "stop".
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> Result<Signals, DemoError> {
        let error = |source| DemoError::Io { what: "listening for signals".into(), source };
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).map_err(error)?,
            terminate: signal(SignalKind::terminate()).map_err(error)?,
        })
    }

    /// Resolves with the signal's name at the next SIGINT or SIGTERM.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// The data directory: `--dir` (created if missing, refused if not empty) or a fresh one under
/// the system temp dir.
fn make_dir(dir: &DataDir) -> Result<PathBuf, DemoError> {
    let io = |what: String| move |source| DemoError::Io { what, source };
    match dir {
        DataDir::Given(path) => {
            if path.exists() {
                let mut entries =
                    std::fs::read_dir(path).map_err(io(format!("invalid --dir: reading {}", path.display())))?;
                if entries.next().is_some() {
                    return Err(DemoError::DirNotEmpty(path.clone()));
                }
            } else {
                std::fs::create_dir_all(path).map_err(io(format!("invalid --dir: creating {}", path.display())))?;
            }
            absolute(path)
        }
        DataDir::Fresh => {
            let path = std::env::temp_dir().join(format!(
                "orbstrike-demo-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            // create_dir (not _all): fails rather than reuse a directory that already exists.
            std::fs::create_dir(&path).map_err(io(format!("creating {}", path.display())))?;
            Ok(path)
        }
    }
}

/// Children get absolute paths: they may resolve them from another working directory.
fn absolute(path: &Path) -> Result<PathBuf, DemoError> {
    std::path::absolute(path).map_err(|source| DemoError::Io { what: format!("resolving {}", path.display()), source })
}
