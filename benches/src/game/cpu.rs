//! Process CPU time from Linux `/proc`, for measuring what a workload costs a node.
//!
//! `/proc/<pid>/stat` gives the user and system CPU time a process (all its threads) has used,
//! in clock ticks (`getconf CLK_TCK`, 100 on every mainstream Linux). Two samples and the wall
//! time between them give the average share of one core. The resolution is one tick (10 ms)
//! per sample, so a 10 s window resolves 0.1 % of a core.
//!
//! Finding the node's process: `hypercache dev` starts each node as `hypercache serve ...
//! --listen <endpoint>`, so we look for that argument pair in `/proc/*/cmdline`. This is Linux
//! only and deliberately so; the benchmarks that need it say so in their help.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

/// CPU time used by one process up to one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    ticks: u64,
    at: Instant,
}

/// Reads the clock tick rate once (`getconf CLK_TCK`).
pub fn ticks_per_sec() -> anyhow::Result<u64> {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().context("running getconf CLK_TCK")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u64>() {
        Ok(hz) if out.status.success() && hz > 0 => Ok(hz),
        _ => bail!("getconf CLK_TCK printed {:?} (status {})", text.trim(), out.status),
    }
}

/// Samples the CPU time of `pid` now.
pub fn sample(pid: u32) -> anyhow::Result<CpuSample> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(CpuSample { ticks, at: Instant::now() })
}

/// Samples the CPU time of the calling thread now (`/proc/thread-self/stat`, Linux 3.17+).
pub fn sample_thread() -> anyhow::Result<CpuSample> {
    let path = "/proc/thread-self/stat";
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(CpuSample { ticks, at: Instant::now() })
}

/// CPU seconds used between two samples.
pub fn cpu_secs(before: CpuSample, after: CpuSample, ticks_per_sec: u64) -> f64 {
    if ticks_per_sec == 0 {
        return 0.0;
    }
    after.ticks.saturating_sub(before.ticks) as f64 / ticks_per_sec as f64
}

/// Average CPU use between two samples, in percent of one core (200 % = two busy cores).
pub fn percent_of_core(before: CpuSample, after: CpuSample, ticks_per_sec: u64) -> f64 {
    let wall = after.at.saturating_duration_since(before.at);
    if wall.is_zero() || ticks_per_sec == 0 {
        return 0.0;
    }
    let cpu = after.ticks.saturating_sub(before.ticks) as f64 / ticks_per_sec as f64;
    100.0 * cpu / wall.as_secs_f64()
}

/// utime + stime from the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces or parentheses, so fields are counted from the
/// last `)`: after it come state (field 3) ... utime (14) and stime (15).
fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else { bail!("no ')' after the command name") };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let raw = fields.get(n - 3).with_context(|| format!("field {n} missing"))?;
        raw.parse::<u64>().with_context(|| format!("field {n} is {raw:?}, not a tick count"))
    };
    Ok(field(14)? + field(15)?)
}

/// The pid of the `hypercache serve` process listening on `endpoint`.
pub fn find_node_pid(endpoint: &str) -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // Processes come and go while we scan; an unreadable one is not ours.
        let Ok(raw) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")) else { continue };
        if is_node_command(&raw, endpoint) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no `hypercache serve --listen {endpoint}` process on this machine (pass --leader-pid)"),
        many => bail!("several processes serve {endpoint}: {many:?} (pass --leader-pid)"),
    }
}

fn is_node_command(cmdline: &[u8], endpoint: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let serves = args.iter().any(|a| *a == b"serve");
    let listens = args.windows(2).any(|w| w[0] == b"--listen" && w[1] == endpoint.as_bytes());
    serves && listens
}

/// The node processes of a cluster on this machine: the leader's and the others that could be
/// found.
#[derive(Debug, Clone)]
pub struct NodePids {
    pub leader: u32,
    pub followers: Vec<u32>,
}

impl NodePids {
    /// `leader_pid` overrides the search for the leader; followers are context, not the target,
    /// so one that cannot be found is left out.
    pub fn find(leader_endpoint: &str, endpoints: &[String], leader_pid: Option<u32>) -> anyhow::Result<NodePids> {
        let leader = match leader_pid {
            Some(p) => p,
            None => find_node_pid(leader_endpoint).context("finding the leader's process")?,
        };
        let followers = endpoints
            .iter()
            .filter(|e| e.as_str() != leader_endpoint)
            .filter_map(|e| find_node_pid(e).ok())
            .filter(|p| *p != leader)
            .collect();
        Ok(NodePids { leader, followers })
    }
}

/// CPU over one window, in percent of one core.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFigures {
    pub window_secs: f64,
    pub leader_pct: f64,
    /// The other node processes found.
    pub followers_pct: Vec<f64>,
    /// This process: the load generator shares the machine with the nodes.
    pub hcbench_pct: f64,
}

impl CpuFigures {
    /// `leader 34.0, followers 11.8 / 12.3, hcbench 18.2` (percent of one core).
    pub fn to_text(&self) -> String {
        let followers: Vec<String> = self.followers_pct.iter().map(|p| format!("{p:.1}")).collect();
        format!(
            "leader {:.1}, followers {}, hcbench {:.1}",
            self.leader_pct,
            if followers.is_empty() { "-".to_owned() } else { followers.join(" / ") },
            self.hcbench_pct
        )
    }
}

/// A CPU window over the nodes and this process.
pub struct NodeWindow {
    window: Window,
    hz: u64,
}

impl NodeWindow {
    pub fn start(pids: &NodePids, hz: u64) -> anyhow::Result<NodeWindow> {
        let mut all = vec![pids.leader];
        all.extend(&pids.followers);
        all.push(std::process::id());
        Ok(NodeWindow { window: Window::start(&all)?, hz })
    }

    pub fn finish(self) -> anyhow::Result<CpuFigures> {
        let (pct, wall) = self.window.finish(self.hz)?;
        let n = pct.len();
        Ok(CpuFigures {
            window_secs: wall.as_secs_f64(),
            leader_pct: pct[0],
            followers_pct: pct[1..n - 1].to_vec(),
            hcbench_pct: pct[n - 1],
        })
    }
}

/// CPU use of several processes over one window, in percent of one core each.
pub struct Window {
    pids: Vec<u32>,
    before: Vec<CpuSample>,
}

impl Window {
    pub fn start(pids: &[u32]) -> anyhow::Result<Window> {
        let before = pids.iter().map(|p| sample(*p)).collect::<anyhow::Result<_>>()?;
        Ok(Window { pids: pids.to_vec(), before })
    }

    /// Ends the window; percentages are in the order of the pids given to [`Window::start`].
    pub fn finish(self, ticks_per_sec: u64) -> anyhow::Result<(Vec<f64>, Duration)> {
        let after: Vec<CpuSample> = self.pids.iter().map(|p| sample(*p)).collect::<anyhow::Result<_>>()?;
        let wall = after.first().map(|a| a.at).zip(self.before.first().map(|b| b.at));
        let wall = wall.map(|(a, b)| a.saturating_duration_since(b)).unwrap_or_default();
        let pct = self.before.iter().zip(&after).map(|(b, a)| percent_of_core(*b, *a, ticks_per_sec)).collect();
        Ok((pct, wall))
    }

    /// Ends the window; CPU seconds per process, in the order given to [`Window::start`].
    pub fn finish_secs(self, ticks_per_sec: u64) -> anyhow::Result<(Vec<f64>, Duration)> {
        let after: Vec<CpuSample> = self.pids.iter().map(|p| sample(*p)).collect::<anyhow::Result<_>>()?;
        let wall = after.first().map(|a| a.at).zip(self.before.first().map(|b| b.at));
        let wall = wall.map(|(a, b)| a.saturating_duration_since(b)).unwrap_or_default();
        let secs = self.before.iter().zip(&after).map(|(b, a)| cpu_secs(*b, *a, ticks_per_sec)).collect();
        Ok((secs, wall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        let stat = "4242 (hyper cache) (x)) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9 0 100";
        assert_eq!(parse_stat_ticks(stat).expect("valid"), 325);
        assert!(parse_stat_ticks("4242 hypercache S 1").is_err());
        assert!(parse_stat_ticks("4242 (x) S 1 2").is_err());
    }

    #[test]
    fn node_command_lines_are_matched_by_listen_endpoint() {
        let cmd = b"/bin/hypercache\0serve\0--node-id\x001\0--listen\x00127.0.0.1:7601\0--admin\0x\0";
        assert!(is_node_command(cmd, "127.0.0.1:7601"));
        assert!(!is_node_command(cmd, "127.0.0.1:7602"));
        assert!(!is_node_command(b"/bin/hypercache\0dev\0--listen\x00127.0.0.1:7601\0", "127.0.0.1:7601"));
    }

    #[test]
    fn percent_is_cpu_time_over_wall_time() {
        let at = Instant::now();
        let before = CpuSample { ticks: 100, at };
        let after = CpuSample { ticks: 150, at: at + Duration::from_secs(5) };
        assert!((percent_of_core(before, after, 100) - 10.0).abs() < 1e-9);
        assert!((cpu_secs(before, after, 100) - 0.5).abs() < 1e-9);
        assert_eq!(percent_of_core(before, before, 100), 0.0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let hz = ticks_per_sec().expect("getconf");
        let w = Window::start(&[std::process::id()]).expect("own stat");
        let (pct, _) = w.finish(hz).expect("own stat");
        assert_eq!(pct.len(), 1);
        let w = Window::start(&[std::process::id()]).expect("own stat");
        assert_eq!(w.finish_secs(hz).expect("own stat").0.len(), 1);
        let before = sample_thread().expect("own thread");
        assert!(cpu_secs(before, sample_thread().expect("own thread"), hz) >= 0.0);
    }
}
