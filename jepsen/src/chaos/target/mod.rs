//! Where a chaos run's cluster lives. Only [`local`] exists today: real `hypercache` processes
//! on loopback. A `docker` target (one container per node, as in the discovery scenarios) is
//! future work; see docs/chaos.md.

pub mod disk;
pub mod local;
pub mod proxy;

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

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Io(String),
    #[error("node {node}: {message}")]
    Node { node: u64, message: String },
    #[error("cluster not ready within {secs} s: {detail}")]
    NotReady { secs: u64, detail: String },
}
