//! The human summary: one aligned line per metric, as k6 prints it.

use std::fmt::Write as _;

use crate::record::{Results, Trend};
use crate::summary::{RunInfo, ThresholdResult, TrendStats, server_timing_metric};

use super::{bytes, duration, warnings};

/// Describes what ran, in one line per run.
pub(super) fn describe(run: &RunInfo) -> String {
    if run.method == "scenario" {
        let mut s = format!("scenario {}: {}", run.url, run.model);
        if let Some(seg) = &run.segment {
            write!(s, ", segment {seg}").unwrap();
        }
        return s;
    }
    let mut s = format!("{} {}  {} model, ", run.method, run.url, run.model);
    let unit = if run.method == "ws" { "msg/s" } else { "req/s" };
    match (run.rate, run.stages.is_empty()) {
        (Some(r), true) => write!(s, "{r} {unit}, ").unwrap(),
        (r, false) => write!(
            s,
            "{}stages {}, ",
            r.map(|r| format!("from {r} {unit}, ")).unwrap_or_default(),
            run.stages.join(" ")
        )
        .unwrap(),
        (None, true) => {}
    }
    write!(s, "{} connection(s)", run.connections).unwrap();
    if let Some(seg) = &run.segment {
        write!(s, ", segment {seg}").unwrap();
    }
    s
}

/// Renders the summary.
pub fn text(runs: &[RunInfo], r: &Results, thresholds: &[ThresholdResult]) -> String {
    let mut out = String::new();
    for run in runs {
        writeln!(out, "  {}", describe(run)).unwrap();
    }
    let open = runs.iter().any(|r| r.model == "open");
    // A WebSocket run has no HTTP requests: its lines are the `ws_*` metrics.
    let ws = !runs.is_empty() && runs.iter().all(|r| r.method == "ws");
    let count = |name: &str| crate::summary::value(r, name, "count").map_or(0, |v| v as u64);
    if ws && r.metrics.metrics.contains_key("ws_ping") {
        writeln!(
            out,
            "  {} pings sent, {} pongs in {:.2}s, {} session(s) on {} connection(s) opened",
            count("ws_pings"),
            count("ws_ping"),
            r.elapsed.as_secs_f64(),
            count("ws_sessions"),
            r.connections_opened
        )
        .unwrap();
    } else if ws {
        writeln!(
            out,
            "  {} messages sent, {} received in {:.2}s, {} session(s) on {} connection(s) opened",
            count("ws_msgs_sent"),
            count("ws_msgs_received"),
            r.elapsed.as_secs_f64(),
            count("ws_sessions"),
            r.connections_opened
        )
        .unwrap();
    } else {
        writeln!(
            out,
            "  {} requests in {:.2}s, {} connection(s) opened",
            r.requests(),
            r.elapsed.as_secs_f64(),
            r.connections_opened
        )
        .unwrap();
    }
    if !thresholds.is_empty() {
        writeln!(out, "\n  THRESHOLDS").unwrap();
        for t in thresholds {
            let mark = if t.ok { "✓" } else { "✗" };
            let value = t.value.map_or("no data".to_owned(), |v| format!("{v:.4}"));
            writeln!(out, "    {mark} {}  (value {value})", t.threshold).unwrap();
        }
    }
    if !r.metrics.checks.is_empty() {
        writeln!(out, "\n  CHECKS").unwrap();
        for (group, list) in &r.metrics.checks {
            let indent = if group.is_empty() {
                "    ".to_owned()
            } else {
                writeln!(out, "    █ {}", group.trim_start_matches("::")).unwrap();
                "      ".to_owned()
            };
            for (name, t) in list {
                let mark = if t.fails == 0 { "✓" } else { "✗" };
                let total = (t.passes + t.fails).max(1);
                writeln!(
                    out,
                    "{indent}{mark} {name}  {:.2}% — ✓ {} / ✗ {}",
                    100.0 * t.passes as f64 / total as f64,
                    t.passes,
                    t.fails
                )
                .unwrap();
            }
        }
    }
    writeln!(out, "\n  METRICS").unwrap();
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut trends: Vec<(String, TrendStats)> = Trend::ALL
        .iter()
        .filter(|t| !r.trend(**t).is_empty())
        .map(|t| (t.name().to_owned(), TrendStats::of(r.trend(*t))))
        .collect();
    trends.extend(
        r.server_timing
            .iter()
            .map(|(n, h)| (server_timing_metric(n), TrendStats::of(h))),
    );
    // Align each `key=value` column across all trend lines.
    let cols: Vec<Vec<String>> = trends
        .iter()
        .map(|(_, s)| {
            [
                ("avg", s.avg),
                ("min", s.min),
                ("med", s.med),
                ("max", s.max),
                ("p(90)", s.p90),
                ("p(95)", s.p95),
                ("p(99)", s.p99),
            ]
            .iter()
            .map(|(k, v)| format!("{k}={}", duration(*v)))
            .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..7)
        .map(|i| cols.iter().map(|c| c[i].chars().count()).max().unwrap_or(0))
        .collect();
    for ((name, _), c) in trends.iter().zip(&cols) {
        let line: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        rows.push((name.clone(), line.join(" ").trim_end().to_owned()));
    }
    rows.push((
        "data_received".into(),
        format!(
            "{}  {}/s",
            bytes(r.bytes_received as f64),
            bytes(r.bytes_received as f64 / secs)
        ),
    ));
    rows.push((
        "data_sent".into(),
        format!(
            "{}  {}/s",
            bytes(r.bytes_sent as f64),
            bytes(r.bytes_sent as f64 / secs)
        ),
    ));
    if !ws {
        http_rows(&mut rows, r, secs);
    }
    rows.push((
        "loadrig_connections".into(),
        format!(
            "{} peak, {} opened",
            r.connections_peak, r.connections_opened
        ),
    ));
    rows.push((
        "loadrig_cpu".into(),
        format!("{:.2} of {} CPU(s)", r.cpu.as_secs_f64() / secs, r.cpus),
    ));
    if open {
        rows.push(("loadrig_late_sends".into(), r.late_sends.to_string()));
    }
    for (name, m) in r.metrics.metrics.iter().chain(&r.metrics.submetrics) {
        rows.push((name.clone(), named_metric(m, secs)));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 3;
    for (k, v) in rows {
        writeln!(out, "    {k:.<width$}: {v}").unwrap();
    }
    let warn = warnings(r, open);
    if !warn.is_empty() {
        writeln!(out).unwrap();
        for w in warn {
            writeln!(out, "  ! {w}").unwrap();
        }
    }
    out
}

/// The HTTP lines: failures, requests, statuses, errors by kind.
fn http_rows(rows: &mut Vec<(String, String)>, r: &Results, secs: f64) {
    let (total, failed) = (r.requests(), r.failed());
    rows.push((
        "http_req_failed".into(),
        format!(
            "{:.2}%  ✓ {failed}  ✗ {}",
            if total == 0 {
                0.0
            } else {
                100.0 * failed as f64 / total as f64
            },
            total - failed
        ),
    ));
    rows.push((
        "http_reqs".into(),
        format!("{total}  {:.1}/s", total as f64 / secs),
    ));
    let status: Vec<String> = r.status.iter().map(|(s, n)| format!("{s}={n}")).collect();
    if !status.is_empty() {
        rows.push(("http_status".into(), status.join(" ")));
    }
    let errors: Vec<String> = r
        .errors
        .iter()
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    if !errors.is_empty() {
        rows.push(("errors".into(), errors.join(" ")));
    }
}

/// One line for a named metric (a scenario's iterations, checks, its own metrics).
fn named_metric(m: &crate::metrics::Metric, secs: f64) -> String {
    use crate::metrics::Sink;
    let num = |v: f64| {
        if m.time {
            duration(v)
        } else {
            format!("{v:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        }
    };
    match &m.sink {
        Sink::Counter(sum) => format!(
            "{}  {:.2}/s",
            format!("{sum:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.'),
            sum / secs
        ),
        Sink::Gauge { value, min, max } if min.is_finite() => {
            format!("{}  min={} max={}", num(*value), num(*min), num(*max))
        }
        Sink::Gauge { .. } => "no samples".to_owned(),
        Sink::Rate { passes, fails } => format!(
            "{:.2}%  ✓ {passes}  ✗ {fails}",
            100.0 * *passes as f64 / (*passes + *fails).max(1) as f64
        ),
        Sink::Trend(_) => ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"]
            .iter()
            .map(|agg| format!("{agg}={}", m.value(agg, secs).map_or("-".into(), num)))
            .collect::<Vec<_>>()
            .join(" "),
    }
}
