//! One child process of the demo: spawned with its output appended to a log file, in a process
//! group of its own, and stopped on request with SIGTERM, a bounded wait, then SIGKILL.
//!
//! Own process group: a Ctrl-C in the terminal reaches only the demo, which then stops the
//! children in its own order (bots first, the store last) instead of all of them at once.
//! `kill_on_drop` is the safety net for an early return; the orderly path never relies on it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// How to start a process (kept so that it can be started again the same way).
#[derive(Debug, Clone)]
pub struct Spec {
    /// Short name shown to the viewer (`gs-1`, `orchestrator-2`, ...).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
}

/// A process could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {name} ({program}): {source}")]
pub struct SpawnError {
    pub name: String,
    pub program: String,
    pub source: std::io::Error,
}

/// A running (or exited) child.
pub struct Proc {
    pub spec: Spec,
    child: Child,
    pid: u32,
    exit: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(spec: Spec) -> Result<Proc, SpawnError> {
        let error =
            |source| SpawnError { name: spec.name.clone(), program: spec.program.display().to_string(), source };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log).map_err(error)?;
        let log_err = log.try_clone().map_err(error)?;
        let child = Command::new(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(error)?;
        // A freshly spawned child has a pid until it is reaped, which only we do.
        let pid = child.id().unwrap_or(0);
        Ok(Proc { spec, child, pid, exit: None })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.spec.log
    }

    /// How it ended, once it has.
    pub fn exit(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Checks without waiting; `Some` exactly once, when the exit is first noticed.
    pub fn newly_exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                Some(status)
            }
            Ok(None) => None,
            Err(e) => {
                // Only happens if the child was reaped elsewhere, which nothing here does.
                tracing::warn!(name = %self.spec.name, error = %e, "cannot check the process");
                None
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.newly_exited();
        self.exit.is_none()
    }

    /// Sends `signal` if the process still runs.
    pub fn signal(&mut self, signal: Signal) {
        if self.is_running() {
            if let Ok(pid) = i32::try_from(self.pid) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    /// Waits for the exit until `deadline`; `None` if it still runs then.
    pub async fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.exit = Some(status);
                Some(status)
            }
            Ok(Err(e)) => {
                tracing::warn!(name = %self.spec.name, error = %e, "waiting for the process failed");
                None
            }
            Err(_) => None,
        }
    }

    /// SIGKILL and reap.
    pub async fn kill_now(&mut self) -> Option<ExitStatus> {
        if !self.is_running() {
            return self.exit;
        }
        let _ = self.child.start_kill();
        self.wait_until(Instant::now() + Duration::from_secs(5)).await
    }
}

/// "exit 0", "exit code 3", "killed by SIGKILL".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(0), _) => "exit 0".to_string(),
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {}", signal.as_str()),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// Stops a group of processes together: `signal` to all, a wait bounded by `grace`, then
/// SIGKILL for the stragglers. Prints one line per process; `hurry` turning true (a second
/// Ctrl-C) cuts the wait short.
pub async fn stop_group(
    what: &str,
    procs: &mut [&mut Proc],
    signal: Signal,
    grace: Duration,
    mut hurry: watch::Receiver<bool>,
) {
    // Processes already gone (killed by hand, say) were reported when it happened.
    let running: Vec<bool> = procs.iter_mut().map(|p| p.is_running()).collect();
    let count = running.iter().filter(|r| **r).count();
    if count == 0 {
        return;
    }
    let started = Instant::now();
    println!("stopping {what} ({} {})", signal.as_str(), if count == 1 { "sent" } else { "sent to each" });
    for p in procs.iter_mut() {
        p.signal(signal);
    }
    let deadline = started + grace;
    let mut hurried = *hurry.borrow();
    for (p, _) in procs.iter_mut().zip(&running).filter(|(_, r)| **r) {
        let status = if hurried {
            p.wait_until(Instant::now()).await
        } else {
            tokio::select! {
                status = p.wait_until(deadline) => status,
                _ = hurry.wait_for(|h| *h) => {
                    hurried = true;
                    None
                }
            }
        };
        match status {
            Some(status) => {
                println!("  {} stopped ({}, after {} ms)", p.name(), describe(status), started.elapsed().as_millis())
            }
            None => {
                let why = if hurried { "stop hurried" } else { "did not stop in time" };
                let status = p.kill_now().await;
                println!("  {} {why}: {}", p.name(), status.map_or_else(|| "SIGKILL sent".to_string(), describe));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, name: &str, script: &str) -> Spec {
        Spec {
            name: name.into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            log: dir.join(format!("{name}.log")),
        }
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_exits_are_described() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Proc::spawn(spec(dir.path(), "echo", "echo hello; exit 3")).expect("spawn");
        let status = p.wait_until(Instant::now() + Duration::from_secs(10)).await.expect("exits");
        assert_eq!(describe(status), "exit code 3");
        assert_eq!(std::fs::read_to_string(p.log()).expect("log"), "hello\n");
        assert!(!p.is_running());
        assert_eq!(p.newly_exited(), None, "reported once (by wait_until here)");
    }

    #[tokio::test]
    async fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = "trap '' TERM; echo ready; sleep 30";
        let mut stubborn = Proc::spawn(spec(dir.path(), "stubborn", script)).expect("spawn");
        let mut polite = Proc::spawn(spec(dir.path(), "polite", "sleep 30")).expect("spawn");
        // SIGTERM must arrive after sh has installed its trap.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(stubborn.log()).unwrap_or_default().is_empty() {
            assert!(Instant::now() < deadline, "the stubborn script never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_keep, hurry) = watch::channel(false);
        stop_group("test", &mut [&mut polite, &mut stubborn], Signal::SIGTERM, Duration::from_millis(500), hurry).await;
        assert_eq!(polite.exit().map(describe).as_deref(), Some("killed by SIGTERM"));
        assert_eq!(stubborn.exit().map(describe).as_deref(), Some("killed by SIGKILL"));
    }
}
