//! `index.html`: one static page per run directory that ties its files together: the test's
//! parameters, the verdict and operation counts, each checker's report with its anomalies, the
//! plots, availability per fault, the nemesis log as a table, and links to the raw files.
//!
//! Plain HTML with an inline stylesheet: no script, nothing fetched from elsewhere, so the
//! page opens from a CI artifact or a copied directory as it is. Everything that comes from
//! the history or the logs (keys, values, error texts, node names) is escaped.
//!
//! Checker reports other than the register's are shown generically, from their JSON form:
//! scalar fields as a table, lists and maps (anomalies among them) as indented JSON. A checker
//! that gains a field shows it without a change here; the register report, whose anomalies are
//! sub-histories with a timeline each, has its own section.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use crate::chaos::availability::FaultWindow;
use crate::chaos::checker::{linearizable, Validity};
use crate::chaos::history::{EventType, Operation};
use crate::chaos::nemesis::NemesisEvent;
use crate::chaos::report::{Results, TestInfo};

/// An image in the run directory, shown on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub file: String,
    pub alt: String,
}

/// What the page shows; every file name is relative to the run directory.
pub struct Page<'a> {
    pub info: &'a TestInfo,
    pub results: &'a Results,
    pub nemesis: &'a [NemesisEvent],
    /// `latency.png`, `rate.png`: those that were drawn.
    pub plots: &'a [Image],
    /// Per failing register key: its timeline image, if drawn.
    pub timelines: &'a [(String, Image)],
    /// `cluster/n1.log`...
    pub node_logs: &'a [String],
    /// What made the page (`hcjepsen test`, `hcjepsen check`).
    pub made_by: &'a str,
    /// Problems met while making the report (a plot that could not be drawn).
    pub warnings: &'a [String],
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:1250px;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}\
th{background:#f2f2f2}pre{background:#f7f7f7;padding:.5em;overflow-x:auto}img{max-width:100%;border:1px solid #ddd}\
.true{color:#1a7f37}.false{color:#cf222e}.unknown{color:#9a6700}.ok{color:#1a7f37}.fail{color:#cf222e}.info{color:#9a6700}\
.warn{background:#fff8c5;padding:.5em}";

fn secs(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e9)
}

fn verdict(v: Validity) -> String {
    format!("<span class=\"{0}\"><b>{0}</b></span>", v.as_str())
}

fn outcome(o: EventType) -> &'static str {
    match o {
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
        EventType::Invoke => "invoke",
    }
}

/// A JSON value as cell text: strings without quotes, everything else as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The whole page.
pub fn index(page: &Page<'_>) -> String {
    let (info, results) = (page.info, page.results);
    let nemeses: Vec<&str> = info.nemeses.iter().map(|n| n.name()).collect();
    let nemeses = if nemeses.is_empty() { "none".to_string() } else { nemeses.join(",") };
    let title = format!("hcjepsen {} / {}: valid: {}", info.workload.name(), nemeses, results.valid.as_str());
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ =
        writeln!(h, "<h1>{} / {}: valid: {}</h1>", esc(info.workload.name()), esc(&nemeses), verdict(results.valid));
    let _ = writeln!(h, "<p>Made by <code>{}</code>.</p>", esc(page.made_by));
    if let Some(error) = &results.error {
        let _ = writeln!(h, "<p class=\"warn\"><b>Errors during the run:</b> {}</p>", esc(error));
    }
    for w in page.warnings {
        let _ = writeln!(h, "<p class=\"warn\"><b>Report warning:</b> {}</p>", esc(w));
    }

    section_summary(&mut h, page);
    section_files(&mut h, page);
    if !page.plots.is_empty() {
        h.push_str(
            "<h2>Latency and throughput</h2>\n<p>Shaded: fault periods (a fault's start to its heal's start).</p>\n",
        );
        for img in page.plots {
            img_tag(&mut h, img);
        }
    }
    section_checker(&mut h, page);
    section_availability(&mut h, &results.availability);
    section_nemesis(&mut h, page.nemesis);
    h.push_str("</body></html>\n");
    h
}

fn img_tag(h: &mut String, img: &Image) {
    let _ = writeln!(h, "<p><a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\"></a></p>", esc(&img.file), esc(&img.alt));
}

fn section_summary(h: &mut String, page: &Page<'_>) {
    let results = page.results;
    h.push_str("<h2>Test</h2>\n<table>\n");
    if let Value::Object(fields) = json(page.info) {
        for (k, v) in &fields {
            let v = match v {
                Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
                v => cell(v),
            };
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
        }
    }
    h.push_str("</table>\n<h2>Operations</h2>\n<table>\n");
    let o = &results.ops;
    let _ = writeln!(
        h,
        "<tr><th class=\"ok\">ok</th><th class=\"fail\">fail</th><th class=\"info\">info</th><th>total</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        o.ok,
        o.fail,
        o.info,
        o.ok + o.fail + o.info
    );
    h.push_str("</table>\n");
    match results.recovery_ms {
        Some(ms) => {
            let _ = writeln!(h, "<p>Every node ready again {ms} ms after the workload ended (everything healed).</p>");
        }
        None => h.push_str("<p>Recovery time: not measured.</p>\n"),
    }
}

fn section_files(h: &mut String, page: &Page<'_>) {
    h.push_str("<h2>Files</h2>\n<ul>\n");
    let fixed = [
        ("test.json", "the parameters"),
        ("history.jsonl", "every invocation and completion"),
        ("nemesis.jsonl", "every nemesis action"),
        ("results.json", "the verdict and the checker's report"),
    ];
    for (file, what) in fixed {
        let _ = writeln!(h, "<li><a href=\"{file}\">{file}</a>: {what}</li>");
    }
    if !page.node_logs.is_empty() {
        let logs: Vec<String> = page.node_logs.iter().map(|l| format!("<a href=\"{0}\">{0}</a>", esc(l))).collect();
        let _ = writeln!(h, "<li>node logs: {}</li>", logs.join(", "));
    }
    h.push_str("</ul>\n");
}

fn section_checker(h: &mut String, page: &Page<'_>) {
    let results = page.results;
    let _ = writeln!(h, "<h2>Checker: {}</h2>", esc(results.workload.name()));
    if let Some(lin) = &results.linearizable {
        linearizable_report(h, lin, page.timelines);
    }
    let others = [
        ("set", results.set.as_ref().map(json)),
        ("bank", results.bank.as_ref().map(json)),
        ("election", results.election.as_ref().map(json)),
        ("board", results.board.as_ref().map(json)),
        ("list-append", results.list_append.as_ref().map(json)),
        ("watch", results.watch.as_ref().map(json)),
        ("lease", results.lease.as_ref().map(json)),
    ];
    for (name, report) in others {
        if let Some(report) = report {
            generic_report(h, name, &report);
        }
    }
}

fn linearizable_report(h: &mut String, report: &linearizable::Report, timelines: &[(String, Image)]) {
    let _ = writeln!(h, "<p>Linearizable (every key): {}</p>", verdict(report.valid));
    h.push_str("<table>\n<tr><th>key</th><th>ops checked</th><th>linearizable</th></tr>\n");
    for k in &report.keys {
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&k.key), k.ops, verdict(k.valid));
    }
    h.push_str("</table>\n");
    for k in &report.keys {
        let Some(anomaly) = &k.anomaly else { continue };
        let _ = writeln!(
            h,
            "<h3>{}: smallest failing sub-history</h3>\n<p>Initial value: {} ({}). No order of these {} operations explains what they returned; <code>info</code> ones may or may not have happened.</p>",
            esc(&k.key),
            esc(&anomaly.initial),
            if anomaly.initial == "empty" {
                "from the start of the run: the key did not exist"
            } else {
                "cut from the middle of the run: the register may hold anything"
            },
            anomaly.ops.len()
        );
        if let Some((_, img)) = timelines.iter().find(|(key, _)| key == &k.key) {
            img_tag(h, img);
        }
        ops_table(h, &anomaly.ops);
    }
}

fn ops_table(h: &mut String, ops: &[Operation]) {
    h.push_str(
        "<table>\n<tr><th>process</th><th>type</th><th>op</th><th>invoked (s)</th><th>completed (s)</th></tr>\n",
    );
    for o in ops {
        let done = o.complete.map_or("never".to_string(), secs);
        let _ = writeln!(
            h,
            "<tr><td>{process}</td><td class=\"{kind}\">{kind}</td><td>{op}</td><td>{invoked}</td><td>{done}</td></tr>",
            process = o.process,
            kind = outcome(o.outcome),
            op = esc(&o.op.label()),
            invoked = secs(o.invoke),
        );
    }
    h.push_str("</table>\n");
}

/// A checker report from its JSON: scalars in a table, the rest as JSON, open when not empty.
fn generic_report(h: &mut String, name: &str, report: &Value) {
    let Value::Object(fields) = report else {
        let _ = writeln!(h, "<pre>{}</pre>", cell(report));
        return;
    };
    let _ = writeln!(h, "<h3>{}</h3>\n<table>", esc(name));
    for (k, v) in fields {
        if !(v.is_array() || v.is_object()) {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), cell(v));
        }
    }
    h.push_str("</table>\n");
    for (k, v) in fields {
        let empty = match v {
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => continue,
        };
        let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
        let _ = writeln!(
            h,
            "<details{}><summary>{}{}</summary><pre>{}</pre></details>",
            if empty { "" } else { " open" },
            esc(k),
            if empty { " (none)" } else { "" },
            esc(&pretty)
        );
    }
}

fn section_availability(h: &mut String, windows: &[FaultWindow]) {
    h.push_str("<h2>Availability per fault</h2>\n");
    if windows.is_empty() {
        h.push_str("<p>No fault was injected and healed.</p>\n");
        return;
    }
    h.push_str("<table>\n<tr><th>fault</th><th>nodes</th><th>from (s)</th><th>healed (s)</th><th>writes during</th><th>longest write gap (ms)</th><th>first write after heal (ms)</th></tr>\n");
    for w in windows {
        let after = w.first_write_after_heal_ms.map_or("none".to_string(), |ms| ms.to_string());
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.shape.map_or(cell(&json(&w.action)), |s| format!("{} ({})", cell(&json(&w.action)), cell(&json(&s)))),
            esc(&nodes(&w.nodes)),
            secs(w.start),
            secs(w.healed),
            w.writes,
            w.longest_write_gap_ms,
            after
        );
    }
    h.push_str("</table>\n");
}

fn nodes(ids: &[u64]) -> String {
    ids.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

fn section_nemesis(h: &mut String, log: &[NemesisEvent]) {
    h.push_str("<h2>Nemesis timeline</h2>\n");
    if log.is_empty() {
        h.push_str("<p>No nemesis action.</p>\n");
        return;
    }
    h.push_str("<table>\n<tr><th>action</th><th>nodes</th><th>start (s)</th><th>end (s)</th><th>clock offset (ms)</th><th>error</th></tr>\n");
    for e in log {
        // A partition: its shape and the directed links it cut.
        let cut: Vec<String> = e.cut.iter().map(|[a, b]| format!("{a}\u{2192}{b}")).collect();
        let action = e.shape.map_or(cell(&json(&e.action)), |s| {
            format!("{} ({}: {})", cell(&json(&e.action)), cell(&json(&s)), esc(&cut.join(" ")))
        });
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            action,
            esc(&nodes(&e.nodes)),
            secs(e.start),
            secs(e.end),
            e.offset_ms.map_or(String::new(), |ms| ms.to_string()),
            esc(e.error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::{Event, Op};
    use crate::chaos::nemesis::{Action, NemesisKind};
    use crate::chaos::report;
    use crate::chaos::workload::WorkloadKind;

    fn info() -> TestInfo {
        TestInfo {
            workload: WorkloadKind::Register,
            nemeses: vec![NemesisKind::Kill, NemesisKind::Pause],
            target: "local".into(),
            nodes: 3,
            shards: 2,
            seed: 42,
            time_limit_secs: 15,
            workers: 5,
            keys: 1,
            attempt_timeout_ms: None,
            compose: false,
        }
    }

    /// A stale read on a key whose name needs escaping, checked for real.
    fn bad_results() -> Results {
        let key = "reg/<0>&\"x\"";
        let e = |process, kind, op: Op, time| Event { process, kind, op, time, error: None };
        let w = |v| Op::Write { key: key.into(), value: v };
        let events = [
            e(0, EventType::Invoke, w(1), 1_000_000),
            e(0, EventType::Ok, w(1), 2_000_000),
            e(0, EventType::Invoke, w(2), 3_000_000),
            e(0, EventType::Ok, w(2), 4_000_000),
            e(1, EventType::Invoke, Op::Read { key: key.into(), value: None }, 5_000_000),
            e(1, EventType::Ok, Op::Read { key: key.into(), value: Some(1) }, 6_000_000),
        ];
        let log = [
            NemesisEvent {
                action: Action::Kill,
                nodes: vec![2],
                start: 0,
                end: 1,
                error: None,
                offset_ms: None,
                shape: None,
                cut: Vec::new(),
            },
            NemesisEvent {
                action: Action::Restart,
                nodes: vec![2],
                start: 5_000_000,
                end: 5_500_000,
                error: Some("spawn <failed>".into()),
                offset_ms: None,
                shape: None,
                cut: Vec::new(),
            },
        ];
        let mut results = report::check(WorkloadKind::Register, &events, &log).unwrap();
        results.error = Some("final reads: <timeout>".into());
        results
    }

    fn page_html(results: &Results, nemesis: &[NemesisEvent]) -> String {
        let timelines =
            [("reg/<0>&\"x\"".to_string(), Image { file: "timeline-reg--0---x-.png".into(), alt: "timeline".into() })];
        let plots = [Image { file: "latency.png".into(), alt: "latency".into() }];
        index(&Page {
            info: &info(),
            results,
            nemesis,
            plots: &plots,
            timelines: &timelines,
            node_logs: &["cluster/n1.log".into(), "cluster/n2.log".into()],
            made_by: "hcjepsen check",
            warnings: &["rate.png: <boom>".into()],
        })
    }

    #[test]
    fn the_page_links_every_file_and_shows_the_anomaly() {
        let results = bad_results();
        assert_eq!(results.valid, Validity::False);
        let log = [NemesisEvent {
            action: Action::Pause,
            nodes: vec![1],
            start: 0,
            end: 1,
            error: None,
            offset_ms: None,
            shape: None,
            cut: Vec::new(),
        }];
        let html = page_html(&results, &log);
        for link in [
            "href=\"test.json\"",
            "href=\"history.jsonl\"",
            "href=\"nemesis.jsonl\"",
            "href=\"results.json\"",
            "href=\"cluster/n1.log\"",
            "href=\"cluster/n2.log\"",
            "src=\"latency.png\"",
            "src=\"timeline-reg--0---x-.png\"",
        ] {
            assert!(html.contains(link), "{link} missing");
        }
        assert!(html.contains("valid: <span class=\"false\">"), "the verdict is in the heading");
        assert!(html.contains("smallest failing sub-history"));
        // The stale read and the writes around it, as the anomaly's table rows.
        assert!(html.contains("<td>read 1</td>") && html.contains("<td>write 2</td>"), "{html}");
        assert!(html.contains("<th>seed</th><td>42</td>") && html.contains("kill, pause"));
        assert!(html.contains("<td>pause</td><td>1</td>"), "the nemesis table");
        assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn everything_from_the_history_and_logs_is_escaped() {
        let results = bad_results();
        let log = [NemesisEvent {
            action: Action::Kill,
            nodes: vec![1],
            start: 0,
            end: 1,
            error: Some("<script>alert(1)</script>".into()),
            offset_ms: None,
            shape: None,
            cut: Vec::new(),
        }];
        let html = page_html(&results, &log);
        assert!(!html.contains("<0>") && !html.contains("<script>") && !html.contains("<boom>"));
        assert!(!html.contains("<timeout>"));
        assert!(html.contains("reg/&lt;0&gt;&amp;&quot;x&quot;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("final reads: &lt;timeout&gt;") && html.contains("rate.png: &lt;boom&gt;"));
        assert_eq!(esc("a'b"), "a&#39;b");
    }

    #[test]
    fn other_checkers_show_scalars_and_open_non_empty_anomalies() {
        let mut h = String::new();
        let report = serde_json::json!({"valid": "false", "reads": 3, "anomalies": [{"total": "<790>"}], "lost": []});
        generic_report(&mut h, "bank", &report);
        assert!(h.contains("<tr><th>reads</th><td>3</td></tr>"));
        assert!(h.contains("<details open><summary>anomalies</summary>") && h.contains("&lt;790&gt;"));
        assert!(h.contains("<details><summary>lost (none)</summary>"));
    }
}
