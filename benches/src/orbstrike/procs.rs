//! Game-server processes the failover and drain benchmarks start, kill and read the logs of.
//!
//! Those benchmarks must know *when* a server died (to the millisecond) and *which tick* the
//! new owner resumed a board from, so they start the servers themselves: `kill -9` or SIGTERM is
//! then sent by this process at a recorded instant, and each server's JSON log (its stderr, in a
//! file) says when it gained a board and at which tick (`"board gained"`, fields `board`,
//! `epoch`, `tick`: the tick of the checkpoint it loaded) and when a drained board was released
//! (`"board drained"`). Log timestamps are wall-clock UTC, as are the instants recorded here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::time::Instant;

use super::metrics::get;

/// How to start one game server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    pub server_id: String,
    pub port: u16,
    pub admin_port: u16,
    pub hypercache: Vec<String>,
    pub log_dir: PathBuf,
    /// More flags, e.g. `--capacity 500`.
    pub extra: Vec<String>,
}

/// A running game server started by this process.
pub struct ServerProc {
    pub spec: ServerSpec,
    child: Child,
    pub log: PathBuf,
}

impl ServerSpec {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    /// Starts the server (log in `log_dir/<server_id>.<n>.log`) and waits until `/readyz` says it
    /// is registered with a safe lease.
    pub async fn start(&self, attempt: u32) -> anyhow::Result<ServerProc> {
        std::fs::create_dir_all(&self.log_dir).with_context(|| format!("creating {}", self.log_dir.display()))?;
        let log = self.log_dir.join(format!("{}.{attempt}.log", self.server_id));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&self.bin)
            .args(["--server-id", &self.server_id])
            .args(["--listen", &self.addr()])
            .args(["--advertise", &self.addr()])
            .args(["--admin-listen", &self.admin_addr()])
            .args(["--hypercache", &self.hypercache.join(",")])
            .args(["--log-format", "json"])
            .args(&self.extra)
            .env("ORBSTRIKE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let mut proc = ServerProc { spec: self.clone(), child, log };
        proc.wait_ready(Duration::from_secs(30)).await?;
        Ok(proc)
    }
}

impl ServerProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().context("checking the game server")? {
                bail!("game server {} exited with {status} at start; see {}", self.spec.server_id, self.log.display());
            }
            if get(&self.spec.admin_addr(), "/readyz").await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("game server {} not ready within {patience:?}; see {}", self.spec.server_id, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`; returns the instant it was sent (wall clock and monotonic).
    pub fn kill9(&mut self) -> anyhow::Result<(SystemTime, Instant)> {
        let at = (SystemTime::now(), Instant::now());
        self.child.kill().context("SIGKILL")?;
        let _ = self.child.wait();
        Ok(at)
    }

    /// SIGTERM (the graceful drain); returns the instant it was sent.
    pub fn term(&mut self) -> anyhow::Result<(SystemTime, Instant)> {
        let at = (SystemTime::now(), Instant::now());
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.pid());
        }
        Ok(at)
    }

    /// Waits for the process to exit; `None` if it is still running after `patience`.
    pub async fn wait_exit(
        &mut self,
        patience: Duration,
    ) -> anyhow::Result<Option<(std::process::ExitStatus, Instant)>> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the game server")? {
                return Ok(Some((status, Instant::now())));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after `patience`).
    pub async fn stop(mut self, patience: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.term();
        if !matches!(self.wait_exit(patience).await, Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Never leave a server behind: a benchmark that fails half-way still cleans up.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of interest in a game server's JSON log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub at: SystemTime,
    pub message: String,
    pub board: String,
    pub epoch: u64,
    pub tick: Option<u64>,
    pub released: Option<bool>,
}

/// The `board gained` and `board drained` lines of a log.
pub fn board_events(log: &Path) -> anyhow::Result<Vec<LogEvent>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text.lines().filter_map(parse_event).collect())
}

fn parse_event(line: &str) -> Option<LogEvent> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    let message = fields.get("message")?.as_str()?;
    if message != "board gained" && message != "board drained" {
        return None;
    }
    Some(LogEvent {
        at: parse_rfc3339_utc(v.get("timestamp")?.as_str()?)?,
        message: message.to_string(),
        board: fields.get("board")?.as_str()?.to_string(),
        epoch: fields.get("epoch").and_then(serde_json::Value::as_u64).unwrap_or(0),
        tick: fields.get("tick").and_then(serde_json::Value::as_u64),
        released: fields.get("released").and_then(serde_json::Value::as_bool),
    })
}

/// `2026-11-22T10:11:12.123456Z` (what tracing-subscriber's JSON writer prints) as a
/// `SystemTime`. Only UTC (`Z`) is accepted.
pub fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let digits = frac.len().min(9);
    let nanos = frac[..digits].parse::<u64>().ok()? * 10u64.pow(9 - digits as u32);
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `later - earlier` in milliseconds, negative if `later` is earlier.
pub fn ms_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_utc() {
        let t = parse_rfc3339_utc("1970-01-02T00:00:01.5Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap(), Duration::from_millis(86_401_500));
        let t = parse_rfc3339_utc("2026-11-22T10:11:12.123456Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_micros() % 1_000_000, 123_456);
        // 2000-03-01 is day 11017.
        let t = parse_rfc3339_utc("2000-03-01T00:00:00Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 11_017 * 86_400);
        assert!(parse_rfc3339_utc("2026-11-22T10:11:12+01:00").is_none());
    }

    #[test]
    fn board_lines_are_picked_from_the_json_log() {
        let gained = r#"{"timestamp":"2026-11-22T10:00:00.250000Z","level":"INFO","fields":{"message":"board gained","board":"g-1","epoch":3,"tick":120,"players":2},"target":"orbstrike::gameserver::session"}"#;
        let e = parse_event(gained).unwrap();
        assert_eq!((e.board.as_str(), e.epoch, e.tick, e.released), ("g-1", 3, Some(120), None));
        let drained = r#"{"timestamp":"2026-11-22T10:00:00Z","level":"INFO","fields":{"message":"board drained","board":"g-1","epoch":3,"released":true}}"#;
        assert_eq!(parse_event(drained).unwrap().released, Some(true));
        assert!(parse_event(r#"{"fields":{"message":"registered"}}"#).is_none());
        assert!(parse_event("not json").is_none());
        assert!((ms_between(UNIX_EPOCH + Duration::from_secs(1), UNIX_EPOCH) + 1000.0).abs() < 1e-9);
    }
}
