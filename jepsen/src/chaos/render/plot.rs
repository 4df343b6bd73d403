//! The run report's PNGs, drawn with `plotters` on its bitmap backend:
//!
//! - [`latency`]: every completed operation as a point at its completion time, its latency
//!   (completion - invocation) on a log scale, colored by completion type;
//! - [`rate`]: completions per second (1 s buckets), one line per completion type;
//! - [`timeline`]: a failing key's smallest failing sub-history, one bar per operation on its
//!   process's row, labelled with what it did.
//!
//! The first two shade the fault periods: the [`FaultWindow`]s that `availability.rs` derives
//! from the nemesis log (a fault's start to its heal's start), so the plots and the
//! availability table cannot disagree about when a fault was in force.
//!
//! Text needs a font, and plotters' usual font source (font-kit) would link fontconfig and
//! freetype. Instead a font is embedded in the binary (DejaVu Sans cut down to ASCII, 35 KB;
//! how it was made and its license are beside it in `jepsen/assets/fonts`) and drawn by the
//! pure-Rust `ab_glyph`: no run depends on what a machine has installed. A proportional font,
//! because plotters 0.3.7's ab_glyph text drops each glyph's left side bearing, which leaves
//! visible gaps after the narrow glyphs of a monospaced one (`1. 0`).
//!
//! The data preparation ([`latency_points`], [`rate_buckets`], [`shades`]) is pure and tested
//! on its own; the drawing functions only place what it returns.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::chaos::availability::FaultWindow;
use crate::chaos::history::{EventType, Operation, Returned};
use crate::chaos::nemesis::Action;

/// The family every text style here names; the embedded font is registered under it.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-ASCII.ttf");

pub const LATENCY_SIZE: (u32, u32) = (1200, 520);
pub const RATE_SIZE: (u32, u32) = (1200, 420);
const NS_PER_S: f64 = 1e9;
const NS_PER_MS: f64 = 1e6;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the embedded font could not be registered with plotters")]
    Font,
    #[error("drawing {file}: {message}")]
    Draw { file: String, message: String },
}

/// Registers the embedded font once per process.
fn font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

fn draw_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> PlotError + '_ {
    move |e| PlotError::Draw { file: path.display().to_string(), message: e.to_string() }
}

/// Completion types in the order they are drawn (rarer ones on top) and listed.
const OUTCOMES: [EventType; 3] = [EventType::Ok, EventType::Fail, EventType::Info];

fn outcome_color(outcome: EventType) -> RGBColor {
    match outcome {
        EventType::Ok => RGBColor(40, 150, 60),
        EventType::Fail => RGBColor(210, 50, 60),
        EventType::Info | EventType::Invoke => RGBColor(235, 140, 0),
    }
}

fn outcome_name(outcome: EventType) -> &'static str {
    match outcome {
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info | EventType::Invoke => "info",
    }
}

fn action_color(action: Action) -> RGBColor {
    match action {
        Action::Kill | Action::PowerCut | Action::Restart => RGBColor(220, 40, 40),
        Action::Pause | Action::Resume => RGBColor(40, 90, 220),
        Action::Partition | Action::Heal => RGBColor(150, 60, 200),
        Action::Wipe | Action::CaughtUp | Action::Skip => RGBColor(140, 90, 30),
        Action::ClockJump | Action::ClockStrobe | Action::ClockReset => RGBColor(0, 150, 150),
        Action::Join | Action::Promoted | Action::Decommission | Action::Left | Action::Replaced => {
            RGBColor(30, 140, 40)
        }
    }
}

/// A shaded fault period, in seconds of run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Shade {
    pub action: Action,
    pub from_s: f64,
    pub to_s: f64,
}

/// The fault periods to shade on an axis spanning `span` seconds: clipped to it, empty ones
/// dropped (a fault entirely outside the plotted time says nothing about it).
pub fn shades(windows: &[FaultWindow], span: &Range<f64>) -> Vec<Shade> {
    windows
        .iter()
        .filter_map(|w| {
            let from_s = (w.start as f64 / NS_PER_S).max(span.start);
            let to_s = (w.healed as f64 / NS_PER_S).min(span.end);
            (to_s > from_s).then_some(Shade { action: w.action, from_s, to_s })
        })
        .collect()
}

/// One completed operation: completion time (s) and latency (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyPoint {
    pub at_s: f64,
    pub latency_ms: f64,
    pub outcome: EventType,
}

/// Every operation that completed, `info` ones at the time the client gave up; operations still
/// open when the history ended have no latency and are left out.
pub fn latency_points(ops: &[Returned]) -> Vec<LatencyPoint> {
    ops.iter()
        .filter_map(|r| {
            let returned = r.returned?;
            Some(LatencyPoint {
                at_s: returned as f64 / NS_PER_S,
                latency_ms: returned.saturating_sub(r.op.invoke) as f64 / NS_PER_MS,
                outcome: r.op.outcome,
            })
        })
        .collect()
}

/// Completions per 1 s bucket of run time, per completion type (indexed as [`OUTCOMES`]).
pub fn rate_buckets(ops: &[Returned]) -> Vec<[u32; 3]> {
    let mut buckets: Vec<[u32; 3]> = Vec::new();
    for r in ops {
        let Some(returned) = r.returned else { continue };
        let second = (returned / 1_000_000_000) as usize;
        if buckets.len() <= second {
            buckets.resize(second + 1, [0; 3]);
        }
        let i = OUTCOMES.iter().position(|o| *o == r.op.outcome).unwrap_or(2);
        buckets[second][i] += 1;
    }
    buckets
}

/// The plotted time span: from 0 to the last completion or heal, at least 1 s.
fn time_span(ops: &[Returned], windows: &[FaultWindow]) -> Range<f64> {
    let last_op = ops.iter().filter_map(|r| r.returned).max().unwrap_or(0);
    let last_heal = windows.iter().map(|w| w.healed).max().unwrap_or(0);
    0.0..(last_op.max(last_heal) as f64 / NS_PER_S).max(1.0)
}

/// Shaded rectangles from `y.start` to `y.end`, one legend entry per kind of fault.
fn draw_shades<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    shades: &[Shade],
    y: Range<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut seen: Vec<Action> = Vec::new();
    for s in shades {
        let color = action_color(s.action);
        let rect = Rectangle::new([(s.from_s, y.start), (s.to_s, y.end)], color.mix(0.15).filled());
        let series = chart.draw_series(std::iter::once(rect))?;
        if !seen.contains(&s.action) {
            seen.push(s.action);
            series
                .label(action_name(s.action))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.4).filled()));
        }
    }
    Ok(())
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Kill => "kill",
        Action::PowerCut => "power-cut",
        Action::Restart => "restart",
        Action::Pause => "pause",
        Action::Resume => "resume",
        Action::Partition => "partition",
        Action::Heal => "heal",
        Action::Wipe => "wipe",
        Action::CaughtUp => "caught-up",
        Action::Skip => "skip",
        Action::ClockJump => "clock-jump",
        Action::ClockStrobe => "clock-strobe",
        Action::ClockReset => "clock-reset",
        Action::Join => "join",
        Action::Promoted => "promoted",
        Action::Decommission => "decommission",
        Action::Left => "left",
        Action::Replaced => "replaced",
    }
}

/// `latency.png`.
pub fn latency(path: &Path, ops: &[Returned], windows: &[FaultWindow]) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let points = latency_points(ops);
    let span = time_span(ops, windows);
    // A log scale needs a positive floor; sub-10 us latencies do not happen over gRPC anyway.
    let lo = points.iter().map(|p| p.latency_ms).fold(f64::INFINITY, f64::min).max(0.01);
    // Log-scale key points are powers of ten: `1000`, `0.1`, not `1000.0`.
    let ms_label = |v: &f64| {
        if *v >= 1.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    let hi = points.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
    let (lo, hi) = if points.is_empty() { (0.1, 1000.0) } else { (lo * 0.8, (hi * 1.25).max(lo * 10.0)) };

    let root = BitMapBackend::new(path, LATENCY_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency per operation (completion - invocation)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(span.clone(), (lo..hi).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("run time (s)")
        .y_desc("latency (ms, log)")
        .y_label_formatter(&ms_label)
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    draw_shades(&mut chart, &shades(windows, &span), lo..hi).map_err(|e| err(&e))?;
    for outcome in OUTCOMES {
        let color = outcome_color(outcome);
        let mine = points.iter().filter(|p| p.outcome == outcome);
        let count = mine.clone().count();
        chart
            .draw_series(mine.map(|p| Circle::new((p.at_s, p.latency_ms), 2, color.filled())))
            .map_err(|e| err(&e))?
            .label(format!("{} ({count})", outcome_name(outcome)))
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// `rate.png`.
pub fn rate(path: &Path, ops: &[Returned], windows: &[FaultWindow]) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let buckets = rate_buckets(ops);
    let span = time_span(ops, windows);
    let top = buckets.iter().flat_map(|b| b.iter()).copied().max().unwrap_or(0).max(1) as f64 * 1.15;

    let root = BitMapBackend::new(path, RATE_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Completions per second (1 s buckets)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(span.clone(), 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("run time (s)")
        .y_desc("ops / s")
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    draw_shades(&mut chart, &shades(windows, &span), 0.0..top).map_err(|e| err(&e))?;
    for (i, outcome) in OUTCOMES.into_iter().enumerate() {
        let color = outcome_color(outcome);
        // Steps, not a line through bucket centres: a bucket is a count over its whole second.
        let steps = buckets.iter().enumerate().flat_map(|(s, b)| {
            let (from, to, n) = (s as f64, s as f64 + 1.0, f64::from(b[i]));
            [(from, n), (to, n)]
        });
        let total: u32 = buckets.iter().map(|b| b[i]).sum();
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{} ({total})", outcome_name(outcome)))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Rows of a timeline: processes in the order of their first operation.
fn timeline_rows(ops: &[Operation]) -> Vec<u64> {
    let mut rows: Vec<u64> = Vec::new();
    for o in ops {
        if !rows.contains(&o.process) {
            rows.push(o.process);
        }
    }
    rows
}

/// The size of a timeline image for `ops`: one 56 px row per process.
pub fn timeline_size(ops: &[Operation]) -> (u32, u32) {
    let rows = timeline_rows(ops).len() as u32;
    (1200, 130 + 56 * rows.max(1))
}

/// `timeline-<key>.png`: the operations of a failing key's smallest failing sub-history.
/// An operation that never completed (`info`) runs to the right edge: it may take effect at
/// any time after its invocation.
pub fn timeline(path: &Path, key: &str, initial: &str, ops: &[Operation]) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let rows = timeline_rows(ops);
    let first = ops.iter().map(|o| o.invoke).min().unwrap_or(0);
    let last = ops.iter().map(|o| o.complete.unwrap_or(o.invoke)).max().unwrap_or(first);
    let ms = |t: u64| t as f64 / NS_PER_MS;
    // A margin on both sides so bars do not touch the frame; at least 1 ms wide.
    let pad = ((ms(last) - ms(first)) * 0.08).max(0.5);
    let (x0, x1) = (ms(first) - pad, ms(last) + pad * 2.0);

    let root = BitMapBackend::new(path, timeline_size(ops)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let caption = format!("{key}: smallest failing sub-history (initial value: {initial})");
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(130)
        .build_cartesian_2d(x0..x1, -0.6..(n as f64 - 0.4))
        .map_err(|e| err(&e))?;
    let row_name = |y: &f64| {
        let i = y.round();
        match rows.get(i as usize) {
            Some(p) if (y - i).abs() < 1e-6 && i >= 0.0 => format!("process {p}"),
            _ => String::new(),
        }
    };
    chart
        .configure_mesh()
        .x_desc("run time (ms)")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_labels(n)
        .y_label_formatter(&row_name)
        .disable_y_mesh()
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    for o in ops {
        let row = rows.iter().position(|p| *p == o.process).unwrap_or(0) as f64;
        let end = o.complete.map_or(x1, ms);
        let color = outcome_color(o.outcome);
        let bar = Rectangle::new([(ms(o.invoke), row - 0.28), (end, row + 0.28)], color.mix(0.55).filled());
        let frame = Rectangle::new([(ms(o.invoke), row - 0.28), (end, row + 0.28)], color.stroke_width(1));
        let mut label = o.op.label();
        if o.outcome == EventType::Info {
            label.push_str(" (info: may or may not have happened)");
        }
        let text = Text::new(label, (ms(o.invoke), row + 0.2), (FONT, 15).into_font().color(&BLACK));
        chart.draw_series([bar, frame]).map_err(|e| err(&e))?;
        chart.draw_series(std::iter::once(text)).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::Op;

    const MS: u64 = 1_000_000;

    fn returned(outcome: EventType, invoke_ms: u64, returned_ms: Option<u64>) -> Returned {
        let op = Op::Write { key: "reg/0".into(), value: invoke_ms };
        let complete = if outcome == EventType::Info { None } else { returned_ms.map(|t| t * MS) };
        Returned {
            op: Operation { process: invoke_ms % 3, op, outcome, invoke: invoke_ms * MS, complete },
            returned: returned_ms.map(|t| t * MS),
        }
    }

    fn window(action: Action, start_ms: u64, healed_ms: u64) -> FaultWindow {
        FaultWindow {
            action,
            nodes: vec![1],
            shape: None,
            start: start_ms * MS,
            healed: healed_ms * MS,
            writes: 0,
            longest_write_gap_ms: 0,
            first_write_after_heal_ms: None,
        }
    }

    fn history() -> Vec<Returned> {
        vec![
            returned(EventType::Ok, 100, Some(103)),
            returned(EventType::Fail, 200, Some(1_250)),
            returned(EventType::Info, 900, Some(2_900)),
            returned(EventType::Ok, 1_000, Some(1_001)),
            returned(EventType::Info, 3_000, None),
        ]
    }

    /// Width and height from a PNG's IHDR chunk (signature, length, "IHDR", width, height).
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 100, "{} is only {} bytes", path.display(), bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        (be(16), be(20))
    }

    #[test]
    fn latencies_include_info_ops_at_the_time_the_client_gave_up() {
        let points = latency_points(&history());
        assert_eq!(points.len(), 4, "the op still open at the end has no latency");
        assert_eq!(points[0], LatencyPoint { at_s: 0.103, latency_ms: 3.0, outcome: EventType::Ok });
        assert_eq!((points[2].at_s, points[2].latency_ms, points[2].outcome), (2.9, 2000.0, EventType::Info));
    }

    #[test]
    fn rates_count_completions_per_second_by_type() {
        assert_eq!(rate_buckets(&history()), vec![[1, 0, 0], [1, 1, 0], [0, 0, 1]]);
        assert!(rate_buckets(&[]).is_empty());
    }

    #[test]
    fn shading_spans_each_fault_from_start_to_heal_clipped_to_the_axis() {
        let windows = [
            window(Action::Kill, 1_000, 5_000),
            window(Action::Pause, 8_000, 12_500),
            window(Action::Partition, 20_000, 24_000),
        ];
        let s = shades(&windows, &(0.0..10.0));
        assert_eq!(
            s,
            vec![
                Shade { action: Action::Kill, from_s: 1.0, to_s: 5.0 },
                Shade { action: Action::Pause, from_s: 8.0, to_s: 10.0 },
            ],
            "the pause is clipped at the axis' end and the partition after it is dropped"
        );
        // The time axis reaches the last heal even after the last completion.
        assert_eq!(time_span(&history(), &windows), 0.0..24.0);
        assert_eq!(time_span(&[], &[]), 0.0..1.0);
    }

    #[test]
    fn plots_are_pngs_of_the_promised_size() {
        let dir = tempfile::tempdir().unwrap();
        let windows = [window(Action::Kill, 500, 1_500), window(Action::ClockJump, 2_000, 2_500)];
        let path = dir.path().join("latency.png");
        latency(&path, &history(), &windows).unwrap();
        assert_eq!(png_size(&path), LATENCY_SIZE);
        let path = dir.path().join("rate.png");
        rate(&path, &history(), &windows).unwrap();
        assert_eq!(png_size(&path), RATE_SIZE);
        // An empty history still gives a (blank) plot rather than an error.
        latency(&path, &[], &[]).unwrap();
        assert_eq!(png_size(&path), LATENCY_SIZE);

        let ops: Vec<Operation> = history().into_iter().map(|r| r.op).collect();
        let path = dir.path().join("timeline-reg-0.png");
        timeline(&path, "reg/0", "empty", &ops).unwrap();
        assert_eq!(png_size(&path), timeline_size(&ops));
        assert_eq!(timeline_size(&ops), (1200, 130 + 56 * 3), "one row per process");
    }
}
