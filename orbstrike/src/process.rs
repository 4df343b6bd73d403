//! What every Orbstrike binary does the same way: logging set-up, its host name, and waiting for a
//! stop signal.

use std::io::IsTerminal;

/// Logs to stderr, filtered by `ORBSTRIKE_LOG` (else `default_filter`: `info` for the servers,
/// `warn` for the bot and the demo, whose own output is on stdout); `format` is `text` or `json`.
/// Colours only on a terminal, so log files stay plain.
pub fn init_logging(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORBSTRIKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The host name from `$HOSTNAME` (set in containers) or the kernel; `None` when neither gives
/// one. Game servers and orchestrators name themselves after it by default, so a pod keeps its
/// name across restarts.
pub fn hostname() -> Option<String> {
    let from_env = std::env::var("HOSTNAME").ok();
    let name = from_env.or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Resolves on SIGTERM (how Kubernetes and the demo stop a process) or Ctrl-C: the workspace's
/// one stop signal, shared with the `hypercache` binary.
pub use hypercache_proto::stop_signal::wait as wait_for_stop_signal;
