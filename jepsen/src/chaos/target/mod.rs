//! Where a chaos run's cluster lives ([`cluster`]): real `hypercache` processes on loopback
//! (`local`), or one container per node with its own IP and DNS name ([`docker`]), as in the
//! discovery scenarios.

pub mod cluster;
pub mod disk;
pub mod docker;
pub mod mountns;
pub mod proxy;

/// Where a run's nodes live (`hcjepsen test --target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetKind {
    /// Processes on loopback, partitions through per-link proxies.
    #[default]
    Local,
    /// Containers with their own IPs and DNS names, partitions by iptables (`docker.rs`).
    Docker,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Local => "local",
            TargetKind::Docker => "docker",
        }
    }
}

use std::path::PathBuf;

/// The `hypercache` binary a run starts: `HYPERCACHE_BIN` if set, else the one next to the
/// running executable (cargo puts every binary of the workspace in one directory).
pub fn locate_hypercache() -> Result<PathBuf, TargetError> {
    if let Some(bin) = std::env::var_os("HYPERCACHE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| TargetError::Io(format!("locating this executable: {e}")))?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    // A test binary lives in target/<profile>/deps; the binaries one level up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("hypercache");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(TargetError::Io(format!(
            "no hypercache binary at {} (build it with `cargo build -p hypercache-server --bin hypercache`, or set HYPERCACHE_BIN)",
            bin.display()
        )))
    }
}

/// Runs `program args` (without blocking a Tokio worker) and returns its stdout, trimmed; an
/// error names the command and carries its stderr, or `needs` if it cannot be started.
pub(crate) async fn command(program: &str, args: &[String], needs: &str) -> Result<String, TargetError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| TargetError::Io(format!("{program}: {e} ({needs})")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(TargetError::Io(format!(
            "{program} {}: {} ({})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Io(String),
    #[error("node {node}: {message}")]
    Node { node: u64, message: String },
    #[error("cluster not ready within {secs} s: {detail}")]
    NotReady { secs: u64, detail: String },
}
