//! The run directory: `test.json` (what was run), `history.jsonl`, `nemesis.jsonl`,
//! `results.json` (the verdict), and the cluster's data and logs under `cluster/`. [`check`] is
//! pure: history in, results out; [`check_dir`] re-reads a stored run for `hcjepsen check`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::availability::{self, FaultWindow};
use super::checker::{append, bank, board, election, lease, linearizable, set, watch, Validity};
use super::history::{self, Event, EventType, HistoryError};
use super::nemesis::{NemesisEvent, NemesisKind};
use super::workload::WorkloadKind;

/// `test.json`: the parameters of a run, enough to repeat it (same seed, same fault plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestInfo {
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
    pub target: String,
    pub nodes: usize,
    pub shards: u32,
    pub seed: u64,
    pub time_limit_secs: u64,
    pub workers: u64,
    pub keys: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// Second faults composed onto the steps (`schedule::compose`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compose: bool,
}

/// Operation counts by completion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    pub valid: Validity,
    pub workload: WorkloadKind,
    pub ops: Stats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linearizable: Option<linearizable::Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<set::Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<bank::Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election: Option<election::Report>,
    pub board: Option<board::Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_append: Option<append::Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<watch::Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<lease::Report>,
    /// From the end of the workload (every fault healed by then) until every node was ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_ms: Option<u64>,
    /// Per fault: writes during it, the longest write gap, the first write after its heal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub availability: Vec<FaultWindow>,
    /// Why the run could not be checked normally (the verdict is then `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{path}: {message}")]
    Json { path: String, message: String },
}

/// Checks a history with the workload's checker, and measures availability during the faults
/// of `nemesis`.
pub fn check(workload: WorkloadKind, events: &[Event], nemesis: &[NemesisEvent]) -> Result<Results, HistoryError> {
    let ops = history::pair(events)?;
    let mut stats = Stats::default();
    for o in &ops {
        match o.outcome {
            EventType::Ok => stats.ok += 1,
            EventType::Fail => stats.fail += 1,
            EventType::Info | EventType::Invoke => stats.info += 1,
        }
    }
    let mut results = Results {
        valid: Validity::Unknown,
        workload,
        ops: stats,
        linearizable: None,
        set: None,
        bank: None,
        election: None,
        board: None,
        list_append: None,
        watch: None,
        lease: None,
        recovery_ms: None,
        availability: availability::windows(&ops, nemesis),
        error: None,
    };
    match workload {
        WorkloadKind::Register => {
            let report = linearizable::check(&ops);
            results.valid = report.valid;
            results.linearizable = Some(report);
        }
        WorkloadKind::Set => {
            let report = set::check(&ops);
            results.valid = report.valid;
            results.set = Some(report);
        }
        WorkloadKind::Bank => {
            let report = bank::check(&ops);
            results.valid = report.valid;
            results.bank = Some(report);
        }
        WorkloadKind::Election => {
            let report = election::check(&ops);
            results.valid = report.valid;
            results.election = Some(report);
        }
        WorkloadKind::Board => {
            let report = board::check(&ops);
            results.valid = report.valid;
            results.board = Some(report);
        }
        WorkloadKind::ListAppend => {
            let report = append::check(&ops);
            results.valid = report.valid;
            results.list_append = Some(report);
        }
        WorkloadKind::Watch => {
            let report = watch::check(&ops);
            results.valid = report.valid;
            results.watch = Some(report);
        }
        WorkloadKind::Lease => {
            let report = lease::check(&ops);
            results.valid = report.valid;
            results.lease = Some(report);
        }
    }
    Ok(results)
}

/// A stored run's records, as `hcjepsen check` reads them back.
pub struct StoredRun {
    pub info: TestInfo,
    pub events: Vec<Event>,
    /// Empty when `nemesis.jsonl` is missing.
    pub nemesis: Vec<NemesisEvent>,
    /// `results.json` as the run wrote it, if it is there and readable.
    pub results: Option<Results>,
}

/// Reads a stored run: its `test.json` names the workload; `nemesis.jsonl` and `results.json`
/// are optional.
pub fn read_dir(dir: &Path) -> Result<StoredRun, ReportError> {
    let info: TestInfo = read_json(&dir.join("test.json"))?;
    let events: Vec<Event> = history::read_jsonl(&dir.join("history.jsonl"))?;
    let nemesis_log = dir.join("nemesis.jsonl");
    let nemesis: Vec<NemesisEvent> = if nemesis_log.exists() { history::read_jsonl(&nemesis_log)? } else { Vec::new() };
    let results = read_json(&dir.join("results.json")).ok();
    Ok(StoredRun { info, events, nemesis, results })
}

/// Re-checks a stored run. What only the live run could measure (the recovery time, errors
/// met along the way) is carried over from its `results.json`.
pub fn check_dir(dir: &Path) -> Result<(StoredRun, Results), ReportError> {
    let stored = read_dir(dir)?;
    let mut results = check(stored.info.workload, &stored.events, &stored.nemesis)?;
    if let Some(before) = &stored.results {
        results.recovery_ms = before.recovery_ms;
        results.error.clone_from(&before.error);
    }
    Ok((stored, results))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ReportError> {
    let err = |message: String| ReportError::Json { path: path.display().to_string(), message };
    let text = serde_json::to_string_pretty(value).map_err(|e| err(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| err(e.to_string()))
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ReportError> {
    let err = |message: String| ReportError::Json { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// `<workload>-<UTC time>`, e.g. `register-20261206T041500Z`, from seconds since the epoch.
pub fn run_dir_name(workload: WorkloadKind, unix_secs: u64) -> String {
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{}-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", workload.name(), secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::Op;

    #[test]
    fn run_directories_are_named_by_workload_and_utc_time() {
        assert_eq!(run_dir_name(WorkloadKind::Register, 0), "register-19700101T000000Z");
        // 2026-12-06 04:15:00 UTC.
        assert_eq!(run_dir_name(WorkloadKind::Set, 1_796_530_500), "set-20261206T041500Z");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn results_count_outcomes_and_carry_the_checker_report() {
        let e = |process, kind, op: Op, time| Event { process, kind, op, time, error: None };
        let w = Op::Write { key: "k".into(), value: 1 };
        let events = [
            e(0, EventType::Invoke, w.clone(), 1),
            e(0, EventType::Ok, w.clone(), 2),
            e(1, EventType::Invoke, Op::Read { key: "k".into(), value: None }, 3),
            e(1, EventType::Ok, Op::Read { key: "k".into(), value: Some(2) }, 4),
            e(2, EventType::Invoke, w, 5),
        ];
        let results = check(WorkloadKind::Register, &events, &[]).unwrap();
        assert_eq!(results.valid, Validity::False);
        assert_eq!(results.ops, Stats { ok: 2, fail: 0, info: 1 });
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["valid"], "false");
        assert_eq!(json["linearizable"]["keys"][0]["anomaly"]["ops"][1]["op"]["value"], 2);
    }
}
