//! A self-contained HTML report: no scripts, no external assets, charts drawn as inline SVG
//! so the file can be archived, mailed or attached to a CI run as it is.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::metrics::Sink;
use crate::record::{Results, Trend};
use crate::summary::{RunInfo, ThresholdResult};

use super::{duration, text};

struct Series {
    name: &'static str,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws a line chart; `x_ticks` are positions (in x units) with labels.
fn chart(title: &str, y_unit: &str, series: &[Series], x_ticks: &[(f64, String)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 260.0;
    const L: f64 = 64.0;
    const B: f64 = 36.0;
    const T: f64 = 16.0;
    const R: f64 = 30.0;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x_max = xs
        .fold(0.0_f64, f64::max)
        .max(x_ticks.iter().map(|t| t.0).fold(0.0, f64::max));
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let (x_max, y_max) = (x_max.max(1e-9), if y_max > 0.0 { y_max * 1.1 } else { 1.0 });
    let px = |x: f64| L + x / x_max * (W - L - R);
    let py = |y: f64| H - B - y / y_max * (H - B - T);
    let mut s = String::new();
    writeln!(s, "<figure><figcaption>{}</figcaption>", escape(title)).unwrap();
    writeln!(
        s,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">"#
    )
    .unwrap();
    for i in 0..=4 {
        let y = y_max * i as f64 / 4.0;
        let (right, at, label_x) = (W - R, py(y), L - 6.0);
        writeln!(
            s,
            r##"<line x1="{L}" x2="{right}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{label_x}" y="{:.1}" text-anchor="end">{} {y_unit}</text>"##,
            at + 4.0,
            axis_number(y, y_max)
        )
        .unwrap();
    }
    for (x, label) in x_ticks {
        writeln!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{T}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
            px(*x),
            H - B,
            H - B + 16.0,
            escape(label)
        )
        .unwrap();
    }
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/><text x="{}" y="{}" style="fill: {}; font-weight: 600">{}</text>"#,
            ser.color,
            pts.join(" "),
            L + 10.0 + 170.0 * i as f64,
            T + 12.0,
            ser.color,
            escape(ser.name)
        )
        .unwrap();
    }
    s.push_str("</svg></figure>\n");
    s
}

/// The latency a report is about: `http_req_duration`, or a WebSocket run's round trips.
struct Primary<'a> {
    /// The metric's name.
    name: &'static str,
    /// What was counted (`requests`, `round trips`).
    what: &'static str,
    corrected: &'a Histogram<u64>,
    uncorrected: Option<&'a Histogram<u64>>,
}

fn named_trend<'a>(r: &'a Results, name: &str) -> Option<&'a Histogram<u64>> {
    match &r.metrics.metrics.get(name)?.sink {
        Sink::Trend(h) => Some(h),
        _ => None,
    }
}

impl<'a> Primary<'a> {
    fn of(r: &'a Results) -> Primary<'a> {
        // A WebSocket run's trends hold thousandths of a millisecond, i.e. microseconds,
        // the unit of the HTTP phases.
        if r.requests() == 0 {
            if let Some(h) = named_trend(r, "ws_rtt") {
                return Primary {
                    name: "ws_rtt",
                    what: "round trips",
                    corrected: h,
                    uncorrected: named_trend(r, "ws_rtt_uncorrected"),
                };
            }
            if let Some(h) = named_trend(r, "ws_ping") {
                return Primary {
                    name: "ws_ping",
                    what: "pongs",
                    corrected: h,
                    uncorrected: None,
                };
            }
        }
        Primary {
            name: "http_req_duration",
            what: "requests",
            corrected: r.trend(Trend::Duration),
            uncorrected: Some(r.trend(Trend::DurationUncorrected)),
        }
    }
}

/// The latency percentile spectrum (HdrHistogram's classic plot): x is 1/(1−p) on a log
/// scale, so the tail gets as much room as the median.
fn spectrum(r: &Results) -> String {
    let p = Primary::of(r);
    let ticks = spectrum_ticks();
    let mut series = vec![Series {
        name: "corrected",
        color: "#c0392b",
        points: spectrum_line(p.corrected),
    }];
    if let Some(h) = p.uncorrected {
        series.push(Series {
            name: "uncorrected",
            color: "#2471a3",
            points: spectrum_line(h),
        });
    }
    let title = match p.uncorrected {
        Some(_) => format!(
            "Latency by percentile ({}, corrected and uncorrected)",
            p.name
        ),
        None => format!("Latency by percentile ({})", p.name),
    };
    chart(&title, "ms", &series, &ticks)
}

fn spectrum_line(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=50)
        .map(|i| {
            let x = i as f64 / 10.0; // 0..5 → p = 1 − 10^−x, up to 99.999 %
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn spectrum_ticks() -> Vec<(f64, String)> {
    ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, (*l).to_owned()))
        .collect()
}

/// Two runs' `http_req_duration` spectra on one chart (for `loadrig compare`).
pub fn spectrum_pair(native: &Results, wasm: &Results) -> String {
    chart(
        "Latency by percentile (http_req_duration)",
        "ms",
        &[
            Series {
                name: "native",
                color: "#2471a3",
                points: spectrum_line(native.trend(Trend::Duration)),
            },
            Series {
                name: "wasm",
                color: "#c0392b",
                points: spectrum_line(wasm.trend(Trend::Duration)),
            },
        ],
        &spectrum_ticks(),
    )
}

/// An axis label for `y` on an axis up to `max`: as many decimals as the scale needs.
fn axis_number(y: f64, max: f64) -> String {
    match max {
        m if m >= 100.0 => format!("{y:.0}"),
        m if m >= 1.0 => format!("{y:.2}"),
        _ => format!("{y:.3}"),
    }
}

/// Six evenly spaced time ticks from 0 to `end` seconds.
fn time_ticks(end: f64) -> Vec<(f64, String)> {
    let n_ticks = 6;
    (0..=n_ticks)
        .map(|i| {
            let x = end * i as f64 / n_ticks as f64;
            (
                x,
                if end >= 12.0 {
                    format!("{x:.0}s")
                } else {
                    format!("{x:.1}s")
                },
            )
        })
        .collect()
}

/// How long each interval of the timeline lasted: the interval, except the last, which
/// ends with the run. A last interval under a tenth of the step is too short for a rate
/// and is left out.
fn interval_lengths(r: &Results) -> impl Iterator<Item = (usize, f64)> + '_ {
    let step = r.timeline.interval.as_secs_f64();
    let n = r.timeline.points.len();
    let elapsed = r.elapsed.as_secs_f64();
    (0..n)
        .map(move |i| {
            let len = if i + 1 == n && elapsed > 0.0 {
                (elapsed - step * i as f64).min(step)
            } else {
                step
            };
            (i, len)
        })
        .filter(move |&(_, len)| len >= step / 10.0)
}

/// `(mid-interval time, responses per second)` for each interval of the timeline.
fn rate_line(r: &Results) -> Vec<(f64, f64)> {
    let step = r.timeline.interval.as_secs_f64();
    interval_lengths(r)
        .map(|(i, len)| {
            let p = &r.timeline.points[i];
            (step * i as f64 + len / 2.0, p.requests as f64 / len)
        })
        .collect()
}

/// Where the timeline ends: at the end of the run, within its last interval.
fn timeline_end(r: &Results) -> f64 {
    let full = r.timeline.interval.as_secs_f64() * r.timeline.points.len() as f64;
    match r.elapsed.as_secs_f64() {
        e if e > 0.0 => full.min(e),
        _ => full,
    }
}

/// Two runs' request rates over time on one chart (for `loadrig compare`).
pub fn rate_pair(native: &Results, wasm: &Results) -> String {
    chart(
        "Requests per second over time",
        "",
        &[
            Series {
                name: "native",
                color: "#2471a3",
                points: rate_line(native),
            },
            Series {
                name: "wasm",
                color: "#c0392b",
                points: rate_line(wasm),
            },
        ],
        &time_ticks(timeline_end(native).max(timeline_end(wasm))),
    )
}

/// A horizontal range chart: per row, a bar to the median and a whisker from the 90th
/// percentile to the maximum, all on one linear axis in `unit`.
pub fn range_bars(title: &str, unit: &str, rows: &[(&str, [f64; 3])]) -> String {
    const W: f64 = 720.0;
    const LABEL: f64 = 270.0;
    const R: f64 = 30.0;
    const ROW: f64 = 36.0;
    const T: f64 = 8.0;
    let rows: Vec<_> = rows
        .iter()
        .filter(|(_, v)| v.iter().all(|x| x.is_finite()))
        .collect();
    let h = T + ROW * rows.len() as f64 + 24.0;
    let x_max = rows
        .iter()
        .map(|(_, v)| v[2])
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.05;
    let px = |x: f64| LABEL + x / x_max * (W - LABEL - R);
    let mut s = String::new();
    writeln!(s, "<figure><figcaption>{}</figcaption>", escape(title)).unwrap();
    writeln!(
        s,
        r#"<svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img">"#
    )
    .unwrap();
    for i in 0..=4 {
        let x = x_max * i as f64 / 4.0;
        let (at, bottom) = (px(x), h - 20.0);
        writeln!(
            s,
            r##"<line x1="{at:.1}" x2="{at:.1}" y1="{T}" y2="{bottom}" stroke="#eee"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{} {unit}</text>"##,
            bottom + 14.0,
            axis_number(x, x_max)
        )
        .unwrap();
    }
    let label_x = LABEL - 8.0;
    for (i, (name, [p50, p90, max])) in rows.iter().enumerate() {
        let y = T + ROW * i as f64;
        let (bar_w, mid) = ((px(*p50) - LABEL).max(1.0), y + ROW / 2.0);
        let (whisker_from, whisker_to) = (px(*p90), px(*max));
        // The name, and under it the numbers; the bar, the whisker and its end cap.
        writeln!(
            s,
            r##"<text x="{label_x}" y="{:.1}" text-anchor="end">{}</text><text x="{label_x}" y="{:.1}" text-anchor="end" style="fill: #888">p50 {p50:.2} · p90 {p90:.2} · max {max:.2}</text><rect x="{LABEL}" y="{:.1}" width="{bar_w:.1}" height="{:.1}" fill="#5b8db8"/><line x1="{whisker_from:.1}" x2="{whisker_to:.1}" y1="{mid:.1}" y2="{mid:.1}" stroke="#333"/><line x1="{whisker_to:.1}" x2="{whisker_to:.1}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
            mid - 2.0,
            escape(name),
            mid + 11.0,
            y + 8.0,
            ROW - 16.0,
            y + 10.0,
            y + ROW - 10.0,
        )
        .unwrap();
    }
    s.push_str("</svg></figure>\n");
    s
}

fn over_time(r: &Results) -> String {
    let step = r.timeline.interval.as_secs_f64();
    let points = &r.timeline.points;
    let ticks = time_ticks(timeline_end(r));
    let at = |i: usize| step * (i as f64 + 0.5);
    let p = Primary::of(r);
    let rate = chart(
        &format!("{} per second", capitalized(p.what)),
        "",
        &[
            Series {
                name: if p.name == "http_req_duration" {
                    "requests/s"
                } else {
                    "replies/s"
                },
                color: "#1e8449",
                points: rate_line(r),
            },
            Series {
                name: "failed/s",
                color: "#c0392b",
                points: interval_lengths(r)
                    .map(|(i, len)| (step * i as f64 + len / 2.0, points[i].failed as f64 / len))
                    .collect(),
            },
        ],
        &ticks,
    );
    let pct = |q: f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.latency()))
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| (at(i), h.value_at_quantile(q) as f64 / 1000.0))
            .collect()
    };
    let latency = chart(
        &format!("Latency over time ({})", p.name),
        "ms",
        &[
            Series {
                name: "p50",
                color: "#2471a3",
                points: pct(0.5),
            },
            Series {
                name: "p99",
                color: "#d68910",
                points: pct(0.99),
            },
            Series {
                name: "max",
                color: "#c0392b",
                points: pct(1.0),
            },
        ],
        &ticks,
    );
    rate + &latency
}

/// Renders the report page.
pub fn html(runs: &[RunInfo], r: &Results, thresholds: &[ThresholdResult]) -> String {
    let title = runs
        .first()
        .map(|run| format!("loadrig: {}", run.url))
        .unwrap_or_else(|| "loadrig".into());
    let p = Primary::of(r);
    let d = p.corrected;
    let headline = if d.is_empty() {
        format!("no {}", p.what)
    } else {
        let n = d.len();
        format!(
            "{n} {}, {:.1}/s; {} p50 {} · p99 {} · max {}",
            p.what,
            n as f64 / r.elapsed.as_secs_f64().max(1e-9),
            p.name,
            duration(d.value_at_quantile(0.5) as f64 / 1000.0),
            duration(d.value_at_quantile(0.99) as f64 / 1000.0),
            duration(d.max() as f64 / 1000.0)
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 760px; color: #222; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: 600; margin-bottom: .3em; }}
svg text {{ font-size: 11px; fill: #555; }}
</style></head><body>
<h1>{title}</h1>
<p>{headline}</p>
{spectrum}{over_time}
<h2>Summary</h2>
<pre>{summary}</pre>
<p>Generated by loadrig {version}. Latency is measured from when each request was due
(corrected for coordinated omission under the open model); <code>uncorrected</code> is
measured from when it was sent.</p>
</body></html>
"#,
        title = escape(&title),
        headline = escape(&headline),
        spectrum = spectrum(r),
        over_time = over_time(r),
        summary = escape(&text(runs, r, thresholds)),
        version = env!("CARGO_PKG_VERSION"),
    )
}
