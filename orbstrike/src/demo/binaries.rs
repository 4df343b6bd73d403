//! Finding (and, under cargo, building) the binaries the demo starts.
//!
//! The demo runs its siblings from the directory of its own executable, so the stack always
//! matches the demo's build profile. Under `cargo run` (cargo sets `CARGO` for the programs it
//! runs) a fresh clone has only built the demo itself, so the demo first runs `cargo build` for
//! the four siblings with the profile its own directory names (`debug` is cargo's `dev`); cargo
//! makes that a no-op when they are up to date. Outside cargo nothing is built: a missing binary
//! is an error that says how to build it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The store node (package `hypercache-server`).
pub const HYPERCACHE: &str = "hypercache";
pub const GAME_SERVER: &str = "orbstrike-gameserver";
pub const ORCHESTRATOR: &str = "orbstrike-orchestrator";
pub const BOT: &str = "orbstrike-bot";

/// Why the binaries are not available.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error("cannot locate the demo's own executable: {0}")]
    OwnPath(std::io::Error),
    #[error("cannot run {cargo} build: {source}")]
    Spawn { cargo: String, source: std::io::Error },
    #[error("`{command}` failed ({status}); see its output above")]
    Build { command: String, status: std::process::ExitStatus },
    #[error("{} not found in {}; {hint}", name, dir.display())]
    Missing { name: &'static str, dir: PathBuf, hint: String },
}

/// Absolute paths of the four binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub hypercache: PathBuf,
    pub game_server: PathBuf,
    pub orchestrator: PathBuf,
    pub bot: PathBuf,
}

/// Builds the siblings when run by cargo (unless `build` is false), then locates them.
pub fn prepare(build: bool) -> Result<Binaries, BinariesError> {
    let exe = std::env::current_exe().map_err(BinariesError::OwnPath)?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let cargo = std::env::var_os("CARGO");
    if let (true, Some(cargo)) = (build, &cargo) {
        cargo_build(Path::new(cargo), &dir)?;
    }
    let hint = if cargo.is_some() {
        "the build did not put it next to the demo (was the demo built with --target? then pass the same --target)"
            .to_string()
    } else {
        format!(
            "build it with `cargo build{} --bin {HYPERCACHE} --bin {GAME_SERVER} --bin {ORCHESTRATOR} --bin {BOT}`, \
             or start the demo with `cargo run --bin orbstrike-demo`",
            profile_flags(&dir).iter().map(|f| format!(" {f}")).collect::<String>()
        )
    };
    let find = |name: &'static str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(BinariesError::Missing { name, dir: dir.clone(), hint: hint.clone() })
        }
    };
    Ok(Binaries {
        hypercache: find(HYPERCACHE)?,
        game_server: find(GAME_SERVER)?,
        orchestrator: find(ORCHESTRATOR)?,
        bot: find(BOT)?,
    })
}

/// `cargo build` of the siblings into `dir`'s profile, with cargo's output on the terminal.
fn cargo_build(cargo: &Path, dir: &Path) -> Result<(), BinariesError> {
    // The workspace is found from this crate's manifest, whatever the current directory.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut args: Vec<String> = vec!["build".into(), "--manifest-path".into(), manifest.display().to_string()];
    args.extend(profile_flags(dir));
    for package in ["hypercache-server", "orbstrike"] {
        args.extend(["-p".to_string(), package.to_string()]);
    }
    for bin in [HYPERCACHE, GAME_SERVER, ORCHESTRATOR, BOT] {
        args.extend(["--bin".to_string(), bin.to_string()]);
    }
    let command = format!("{} {}", cargo.display(), args.join(" "));
    println!("building the stack: {command}");
    let status = Command::new(cargo)
        .args(&args)
        .status()
        .map_err(|source| BinariesError::Spawn { cargo: cargo.display().to_string(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(BinariesError::Build { command, status })
    }
}

/// The cargo flags that select the profile whose output directory is `dir` (`debug` is the dev
/// profile, cargo's default; a custom profile's directory carries its name).
fn profile_flags(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        None | Some("debug") => Vec::new(),
        Some("release") => vec!["--release".into()],
        Some(profile) => vec!["--profile".into(), profile.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_follows_the_directory() {
        assert_eq!(profile_flags(Path::new("/w/target/release")), vec!["--release"]);
        assert!(profile_flags(Path::new("/w/target/debug")).is_empty());
        assert_eq!(profile_flags(Path::new("/w/target/profiling")), vec!["--profile", "profiling"]);
    }
}
