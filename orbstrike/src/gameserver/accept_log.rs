//! The accept log: one JSON line per tick in which a board accepted at least one input,
//!
//! ```json
//! {"board":"g1","server":"gs-0","epoch":3,"tick":812,"at_ms":1700000000123,"inputs":2}
//! ```
//!
//! It exists for the chaos suite, which checks from the logs of all servers that no two servers
//! accepted inputs for the same board at overlapping times (the single-owner invariant seen from
//! the players' side). Lines are written at the tick that applies the inputs, which is when they
//! take effect; an input recorded by a board that is stopped before its next tick never took
//! effect and is not logged.
//!
//! A tick never waits for the disk: it hands the record to a bounded channel (`try_send`) and a
//! dedicated OS thread serializes and writes it, flushing after every batch it drains. If the
//! writer falls that far behind, lines are dropped and counted
//! (`orbstrike_gameserver_accept_log_dropped_total`); a dropped line can only hide an overlap,
//! never invent one.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hypercache_client::Epoch;
use prometheus::IntCounter;
use serde::Serialize;
use tokio::sync::mpsc;

/// Records buffered between the ticks and the writer thread.
const BUFFER: usize = 65_536;

#[derive(Debug)]
struct Line {
    board: Arc<str>,
    server: Arc<str>,
    epoch: Epoch,
    tick: u64,
    at_ms: u64,
    inputs: u32,
}

/// The JSON form of a [`Line`] (serialized on the writer thread, not in the tick).
#[derive(Serialize)]
struct JsonLine<'a> {
    board: &'a str,
    server: &'a str,
    epoch: u64,
    tick: u64,
    at_ms: u64,
    inputs: u32,
}

impl<'a> From<&'a Line> for JsonLine<'a> {
    fn from(l: &'a Line) -> Self {
        JsonLine {
            board: &l.board,
            server: &l.server,
            epoch: l.epoch.0,
            tick: l.tick,
            at_ms: l.at_ms,
            inputs: l.inputs,
        }
    }
}

/// Where ticks hand their records; a disabled log drops them at no cost.
#[derive(Clone)]
pub(crate) struct AcceptLog {
    tx: Option<mpsc::Sender<Line>>,
    server: Arc<str>,
    dropped: IntCounter,
}

/// The writer thread; [`finish`](AcceptLogWriter::finish) waits for it to flush everything.
pub(crate) struct AcceptLogWriter {
    thread: JoinHandle<()>,
}

impl AcceptLog {
    pub(crate) fn disabled(server: &str, dropped: IntCounter) -> AcceptLog {
        AcceptLog { tx: None, server: Arc::from(server), dropped }
    }

    /// Opens (creates, appends to) `path` and starts the writer thread.
    pub(crate) fn open(
        path: &Path,
        server: &str,
        dropped: IntCounter,
    ) -> std::io::Result<(AcceptLog, AcceptLogWriter)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let display = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("accept-log".into())
            .spawn(move || write_lines(BufWriter::new(file), rx, &display))?;
        Ok((AcceptLog { tx: Some(tx), server: Arc::from(server), dropped }, AcceptLogWriter { thread }))
    }

    /// Records that `board` (owned at `epoch`) applied `inputs` inputs at `tick`, now.
    pub(crate) fn record(&self, board: &Arc<str>, epoch: Epoch, tick: u64, inputs: u32) {
        let Some(tx) = &self.tx else { return };
        let line = Line { board: board.clone(), server: self.server.clone(), epoch, tick, at_ms: unix_ms(), inputs };
        if tx.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

impl AcceptLogWriter {
    /// Waits (without blocking a Tokio worker) until every record handed over before all
    /// [`AcceptLog`] clones were dropped is written and flushed, at most `timeout`.
    pub(crate) async fn finish(self, timeout: Duration) {
        let join = tokio::task::spawn_blocking(move || self.thread.join());
        match tokio::time::timeout(timeout, join).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => tracing::error!("accept-log writer thread failed"),
            Err(_) => {
                tracing::warn!(?timeout, "accept-log writer did not finish in time (an AcceptLog is still alive)")
            }
        }
    }
}

fn write_lines(mut out: BufWriter<std::fs::File>, mut rx: mpsc::Receiver<Line>, path: &str) {
    let mut failed = false;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut result = Ok(());
        for line in &batch {
            result = serde_json::to_writer(&mut out, &JsonLine::from(line))
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            // Logged once: a full disk would otherwise log on every tick.
            if !failed {
                tracing::error!(path, error = %e, "writing the accept log failed");
                failed = true;
            }
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_json_and_complete_after_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accept.jsonl");
        let dropped = IntCounter::new("d", "d").expect("counter");
        let (log, writer) = AcceptLog::open(&path, "gs-1", dropped.clone()).expect("open");
        let board: Arc<str> = Arc::from("g1");
        for tick in 1..=100 {
            log.record(&board, Epoch(4), tick, 2);
        }
        drop(log);
        writer.finish(Duration::from_secs(5)).await;
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0]["board"], "g1");
        assert_eq!(lines[0]["server"], "gs-1");
        assert_eq!(lines[0]["epoch"], 4);
        assert_eq!(lines[99]["tick"], 100);
        assert_eq!(lines[0]["inputs"], 2);
        assert!(lines[0]["at_ms"].as_u64().expect("at_ms") > 1_600_000_000_000);
        assert_eq!(dropped.get(), 0);
    }
}
