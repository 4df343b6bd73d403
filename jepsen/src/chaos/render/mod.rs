//! The run report a person reads: `latency.png`, `rate.png`, one `timeline-<key>.png` per
//! non-linearizable register key, and `index.html` tying them to the run's other files.
//!
//! [`write`] is called once the verdict is on disk (`results.json`), by `hcjepsen test` and
//! again by `hcjepsen check`. It never fails and never touches the verdict: a plot that cannot
//! be drawn (or whose drawing panics inside the plotting library) becomes a warning, shown on
//! the page and returned for the caller to print, and the rest of the report is still written.
//!
//! - [`plot`]: the PNGs (plotters, bitmap backend, an embedded font);
//! - [`html`]: the page, a pure function of what it shows.

pub mod html;
pub mod plot;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::history::{self, Event};
use super::nemesis::NemesisEvent;
use super::report::{Results, TestInfo};
use html::{Image, Page};

/// What [`write`] produced.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Files written, in the run directory.
    pub files: Vec<PathBuf>,
    /// What could not be drawn or written, and why.
    pub warnings: Vec<String>,
    /// Wall time spent.
    pub elapsed: Duration,
}

/// The run's record, as [`write`] needs it.
pub struct Run<'a> {
    pub info: &'a TestInfo,
    pub events: &'a [Event],
    pub nemesis: &'a [NemesisEvent],
    pub results: &'a Results,
    /// What is making the report (`hcjepsen test`, `hcjepsen check`), named on the page.
    pub made_by: &'a str,
}

/// Writes the plots and `index.html` into `dir`.
pub fn write(dir: &Path, run: &Run<'_>) -> Rendered {
    let started = Instant::now();
    let mut out = Rendered::default();
    let ops = match history::pair_returned(run.events) {
        Ok(ops) => ops,
        Err(e) => {
            out.warnings.push(format!("history: {e}; plots drawn without operations"));
            Vec::new()
        }
    };
    let windows = &run.results.availability;

    let mut plots = Vec::new();
    let latency = dir.join("latency.png");
    if attempt(&mut out, &latency, || plot::latency(&latency, &ops, windows)) {
        plots.push(Image { file: "latency.png".into(), alt: "latency per operation over run time".into() });
    }
    let rate = dir.join("rate.png");
    if attempt(&mut out, &rate, || plot::rate(&rate, &ops, windows)) {
        plots.push(Image { file: "rate.png".into(), alt: "completions per second over run time".into() });
    }

    let mut timelines = Vec::new();
    let failing = run.results.linearizable.iter().flat_map(|r| &r.keys).filter_map(|k| Some((k, k.anomaly.as_ref()?)));
    for (key, anomaly) in failing {
        let file = timeline_file(&key.key, timelines.iter().map(|(_, img): &(String, Image)| img.file.as_str()));
        let path = dir.join(&file);
        if attempt(&mut out, &path, || plot::timeline(&path, &key.key, &anomaly.initial, &anomaly.ops)) {
            let alt = format!("timeline of {}'s smallest failing sub-history", key.key);
            timelines.push((key.key.clone(), Image { file, alt }));
        }
    }

    let node_logs = node_logs(&dir.join("cluster"));
    let page = html::index(&Page {
        info: run.info,
        results: run.results,
        nemesis: run.nemesis,
        plots: &plots,
        timelines: &timelines,
        node_logs: &node_logs,
        made_by: run.made_by,
        warnings: &out.warnings,
    });
    let index = dir.join("index.html");
    match std::fs::write(&index, page) {
        Ok(()) => out.files.push(index),
        Err(e) => out.warnings.push(format!("{}: {e}", index.display())),
    }
    out.elapsed = started.elapsed();
    out
}

/// Runs one plot; a failure or a panic in the plotting library becomes a warning.
fn attempt(out: &mut Rendered, path: &Path, draw: impl FnOnce() -> Result<(), plot::PlotError>) -> bool {
    match catch_unwind(AssertUnwindSafe(draw)) {
        Ok(Ok(())) => {
            out.files.push(path.to_path_buf());
            true
        }
        Ok(Err(e)) => {
            out.warnings.push(e.to_string());
            false
        }
        Err(_) => {
            out.warnings.push(format!("drawing {} panicked", path.display()));
            false
        }
    }
}

/// `timeline-<key>.png`, the key reduced to characters safe in a file name and a URL, with a
/// number appended if two keys reduce to one name.
fn timeline_file<'a>(key: &str, taken: impl Iterator<Item = &'a str> + Clone) -> String {
    let safe: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    let mut name = format!("timeline-{safe}.png");
    let mut n = 1;
    while taken.clone().any(|t| t == name) {
        n += 1;
        name = format!("timeline-{safe}-{n}.png");
    }
    name
}

/// The node logs under `cluster/` (`n1.log`...), as links relative to the run directory.
fn node_logs(cluster: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cluster) else { return Vec::new() };
    let mut logs: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".log"))
        .map(|name| format!("cluster/{name}"))
        .collect();
    logs.sort();
    logs
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::chaos::history::{EventType, Op};
    use crate::chaos::nemesis::{Action, NemesisKind};
    use crate::chaos::report::{self, TestInfo};
    use crate::chaos::workload::WorkloadKind;

    #[test]
    fn a_run_directory_gets_plots_a_timeline_per_failing_key_and_the_page() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cluster")).unwrap();
        std::fs::write(dir.path().join("cluster/n1.log"), "").unwrap();
        let info = TestInfo {
            workload: WorkloadKind::Register,
            nemeses: vec![NemesisKind::Kill],
            target: "local".into(),
            nodes: 3,
            shards: 2,
            seed: 1,
            time_limit_secs: 1,
            workers: 2,
            keys: 2,
            attempt_timeout_ms: None,
            compose: false,
        };
        const MS: u64 = 1_000_000;
        let e = |process, kind, op: Op, ms: u64| Event { process, kind, op, time: ms * MS, error: None };
        let w = |key: &str, v| Op::Write { key: key.into(), value: v };
        let r = |key: &str, v| Op::Read { key: key.into(), value: v };
        // reg/0 reads a value overwritten before the read began; reg/1 is fine.
        let events = [
            e(0, EventType::Invoke, w("reg/0", 1), 10),
            e(0, EventType::Ok, w("reg/0", 1), 20),
            e(0, EventType::Invoke, w("reg/0", 2), 30),
            e(0, EventType::Ok, w("reg/0", 2), 40),
            e(1, EventType::Invoke, r("reg/0", None), 50),
            e(1, EventType::Ok, r("reg/0", Some(1)), 60),
            e(1, EventType::Invoke, w("reg/1", 3), 700),
            e(1, EventType::Fail, w("reg/1", 3), 1_700),
        ];
        let nemesis = [
            NemesisEvent {
                action: Action::Kill,
                nodes: vec![1],
                start: 100 * MS,
                end: 101 * MS,
                error: None,
                offset_ms: None,
                shape: None,
                cut: Vec::new(),
            },
            NemesisEvent {
                action: Action::Restart,
                nodes: vec![1],
                start: 900 * MS,
                end: 950 * MS,
                error: None,
                offset_ms: None,
                shape: None,
                cut: Vec::new(),
            },
        ];
        let results = report::check(WorkloadKind::Register, &events, &nemesis).unwrap();
        let run = Run { info: &info, events: &events, nemesis: &nemesis, results: &results, made_by: "test" };
        let rendered = write(dir.path(), &run);
        assert!(rendered.warnings.is_empty(), "{:?}", rendered.warnings);
        let names: Vec<String> =
            rendered.files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["latency.png", "rate.png", "timeline-reg-0.png", "index.html"]);
        let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(html.contains("src=\"timeline-reg-0.png\"") && html.contains("href=\"cluster/n1.log\""));

        // Nothing can be written: every file is a warning, nothing panics.
        let rendered = write(&dir.path().join("missing"), &run);
        assert!(rendered.files.is_empty());
        assert_eq!(rendered.warnings.len(), 4, "{:?}", rendered.warnings);
    }

    #[test]
    fn timeline_files_are_safe_and_distinct() {
        assert_eq!(timeline_file("reg/0", std::iter::empty()), "timeline-reg-0.png");
        let taken = ["timeline-reg-0.png", "timeline-reg-0-2.png"];
        assert_eq!(timeline_file("reg?0", taken.iter().copied()), "timeline-reg-0-3.png");
        assert_eq!(timeline_file("<a href>", std::iter::empty()), "timeline--a-href-.png");
    }
}
