//! The summary: metrics computed from the results, named and shaped as k6 shapes its
//! summary data (times in milliseconds), plus loadrig's additions. This is the JSON
//! document (`--json`, schema in `loadrig/summary.schema.json`) and the input of the text
//! and HTML reports and of thresholds.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record::{Results, ResultsData, Trend};

/// The version of the JSON document's `loadrig` section.
pub const FORMAT_VERSION: u32 = 1;

/// What was run, as recorded in the summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// The target URL.
    pub url: String,
    /// The HTTP method.
    pub method: String,
    /// `closed` or `open`.
    pub model: String,
    /// Connections at the start.
    pub connections: u64,
    /// The open model's starting rate (requests per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// The stages, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// The segment (`i/n`), if the run was split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Seconds since the Unix epoch at which the run started.
    pub started_at: f64,
    /// When it was to start (`--start-at`), in the same unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<f64>,
}

/// One evaluated threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    /// The threshold as written.
    pub threshold: String,
    /// The metric it is on (a submetric's full name included).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metric: String,
    /// The expression without the metric, as k6 keys it (`p(95)<500`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expr: String,
    /// Whether it held.
    pub ok: bool,
    /// The value it was checked against (`None`: the metric had no data).
    pub value: Option<f64>,
}

/// The statistics of a trend, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendStats {
    /// Mean.
    pub avg: f64,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub med: f64,
    /// Largest.
    pub max: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Samples.
    pub count: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A percentile (0–100) of a histogram in microseconds, as milliseconds.
pub fn percentile(h: &Histogram<u64>, p: f64) -> f64 {
    ms(h.value_at_quantile(p / 100.0))
}

impl TrendStats {
    /// The statistics of a histogram in microseconds.
    pub fn of(h: &Histogram<u64>) -> TrendStats {
        TrendStats {
            avg: h.mean() / 1000.0,
            min: ms(h.min()),
            med: percentile(h, 50.0),
            max: ms(h.max()),
            p90: percentile(h, 90.0),
            p95: percentile(h, 95.0),
            p99: percentile(h, 99.0),
            count: h.len(),
        }
    }
}

/// The kind of a metric, as k6 calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Latency statistics.
    Trend,
    /// A count and its rate.
    Counter,
    /// A fraction of true values.
    Rate,
    /// A single value.
    Gauge,
}

/// The prefix of metrics made from `Server-Timing` entries.
pub const SERVER_TIMING_PREFIX: &str = "server_timing_";

/// The metric name for a `Server-Timing` entry name.
pub fn server_timing_metric(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{SERVER_TIMING_PREFIX}{clean}")
}

/// The type of a metric name, if loadrig knows it (`errors` is short for `http_req_failed`).
pub fn metric_type(name: &str) -> Option<MetricType> {
    if Trend::ALL.iter().any(|t| t.name() == name) || name.starts_with(SERVER_TIMING_PREFIX) {
        return Some(MetricType::Trend);
    }
    if crate::ws::TRENDS.contains(&name) {
        return Some(MetricType::Trend);
    }
    if crate::ws::COUNTERS.contains(&name) {
        return Some(MetricType::Counter);
    }
    match name {
        "http_reqs" | "data_received" | "data_sent" | "loadrig_late_sends" => {
            Some(MetricType::Counter)
        }
        "http_req_failed" | "errors" => Some(MetricType::Rate),
        "loadrig_cpu" | "loadrig_connections" => Some(MetricType::Gauge),
        _ => None,
    }
}

/// Every metric name a threshold can name (besides `server_timing_*`).
pub fn known_metrics() -> Vec<&'static str> {
    let mut v: Vec<&str> = Trend::ALL.iter().map(|t| t.name()).collect();
    v.extend([
        "http_reqs",
        "http_req_failed",
        "errors",
        "data_received",
        "data_sent",
        "loadrig_late_sends",
        "loadrig_cpu",
        "loadrig_connections",
    ]);
    v.extend(crate::ws::TRENDS);
    v.extend(crate::ws::COUNTERS);
    v
}

fn histogram<'a>(r: &'a Results, metric: &str) -> Option<&'a Histogram<u64>> {
    if let Some(t) = Trend::ALL.iter().find(|t| t.name() == metric) {
        return Some(r.trend(*t));
    }
    r.server_timing
        .iter()
        .find(|(name, _)| server_timing_metric(name) == metric)
        .map(|(_, h)| h)
}

/// One aggregate of one metric: `avg`, `min`, `med`, `max`, `p(N)` of a trend (ms); `count`
/// or `rate` (per second) of a counter; `rate` (a fraction) of a rate; `value` of a gauge.
/// `None` when the metric has no data or no such aggregate.
pub fn value(r: &Results, metric: &str, agg: &str) -> Option<f64> {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    // Submetrics and a scenario's named metrics (iterations, checks, its own).
    if let Some(m) = r.metrics.submetrics.get(metric) {
        return m.value(agg, secs);
    }
    let named = metric_type(metric).is_none()
        || crate::ws::TRENDS.contains(&metric)
        || crate::ws::COUNTERS.contains(&metric);
    if named {
        return r.metrics.metrics.get(metric)?.value(agg, secs);
    }
    let counter = |n: u64| match agg {
        "count" => Some(n as f64),
        "rate" => Some(n as f64 / secs),
        _ => None,
    };
    match metric_type(metric)? {
        MetricType::Trend => {
            let h = histogram(r, metric).filter(|h| !h.is_empty())?;
            match agg {
                "avg" => Some(h.mean() / 1000.0),
                "min" => Some(ms(h.min())),
                "med" => Some(percentile(h, 50.0)),
                "max" => Some(ms(h.max())),
                _ => {
                    let p: f64 = agg.strip_prefix("p(")?.strip_suffix(')')?.parse().ok()?;
                    (0.0..=100.0).contains(&p).then(|| percentile(h, p))
                }
            }
        }
        MetricType::Counter => counter(match metric {
            "http_reqs" => r.requests(),
            "data_received" => r.bytes_received,
            "data_sent" => r.bytes_sent,
            _ => r.late_sends,
        }),
        MetricType::Rate => {
            let total = r.requests();
            (agg == "rate" && total > 0).then(|| r.failed() as f64 / total as f64)
        }
        MetricType::Gauge => (agg == "value").then(|| match metric {
            "loadrig_cpu" => r.cpu.as_secs_f64() / secs,
            _ => r.connections_peak as f64,
        }),
    }
}

/// The `metrics` object of the summary, in k6's shape.
pub fn metrics(r: &Results) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    let mut trend = |name: String, h: &Histogram<u64>| {
        if h.is_empty() {
            return;
        }
        let s = TrendStats::of(h);
        m.insert(
            name,
            json!({"type": "trend", "contains": "time", "values": {
                "avg": s.avg, "min": s.min, "med": s.med, "max": s.max,
                "p(90)": s.p90, "p(95)": s.p95, "p(99)": s.p99,
            }}),
        );
    };
    for t in Trend::ALL {
        trend(t.name().to_owned(), r.trend(t));
    }
    for (name, h) in &r.server_timing {
        trend(server_timing_metric(name), h);
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let counter = |n: u64, contains: &str| {
        json!({"type": "counter", "contains": contains,
               "values": {"count": n, "rate": n as f64 / secs}})
    };
    m.insert("http_reqs".into(), counter(r.requests(), "default"));
    m.insert("data_received".into(), counter(r.bytes_received, "data"));
    m.insert("data_sent".into(), counter(r.bytes_sent, "data"));
    m.insert(
        "loadrig_late_sends".into(),
        counter(r.late_sends, "default"),
    );
    let (total, failed) = (r.requests(), r.failed());
    m.insert(
        "http_req_failed".into(),
        json!({"type": "rate", "contains": "default", "values": {
            "rate": if total == 0 { 0.0 } else { failed as f64 / total as f64 },
            "passes": failed, "fails": total - failed,
        }}),
    );
    let cpu = r.cpu.as_secs_f64() / secs;
    m.insert(
        "loadrig_cpu".into(),
        json!({"type": "gauge", "contains": "default",
               "values": {"value": cpu, "min": cpu, "max": cpu}}),
    );
    let peak = r.connections_peak as f64;
    m.insert(
        "loadrig_connections".into(),
        json!({"type": "gauge", "contains": "default",
               "values": {"value": peak, "min": peak, "max": peak}}),
    );
    for (name, metric) in r.metrics.metrics.iter().chain(&r.metrics.submetrics) {
        m.insert(
            name.clone(),
            json!({
                "type": crate::metrics::type_name(metric.kind()),
                "contains": if metric.time { "time" } else { "default" },
                "values": metric.summary_values(secs),
            }),
        );
    }
    m
}

/// k6's `root_group`: the groups the run entered, nested, each with its checks; the root
/// holds the checks made outside any group. Ids are the MD5 of the path, as k6's.
pub fn root_group(r: &Results) -> Value {
    fn group(r: &Results, path: &str, name: &str) -> Value {
        let children: Vec<Value> = r
            .metrics
            .groups
            .iter()
            .filter(|g| {
                g.strip_prefix(path)
                    .and_then(|rest| rest.strip_prefix("::"))
                    .is_some_and(|rest| !rest.contains("::"))
            })
            .map(|g| group(r, g, g.rsplit("::").next().unwrap_or(g)))
            .collect();
        let checks: Vec<Value> = r
            .metrics
            .checks
            .get(path)
            .map(|list| {
                list.iter()
                    .map(|(n, t)| {
                        let p = format!("{path}::{n}");
                        json!({"name": n, "path": p, "id": md5_hex(&p),
                               "passes": t.passes, "fails": t.fails})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({"name": name, "path": path, "id": md5_hex(path),
               "groups": children, "checks": checks})
    }
    group(r, "", "")
}

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

/// The whole JSON document: k6's `handleSummary` data plus loadrig's section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryDoc {
    /// Groups and checks, as k6's `root_group`.
    #[serde(default)]
    pub root_group: Value,
    /// The options the summary was made with, as k6's (`summaryTrendStats`, …).
    #[serde(default)]
    pub options: Value,
    /// Metrics in k6's summary shape, each with its thresholds as
    /// `{"expression": {"ok": bool}}`.
    pub metrics: BTreeMap<String, Value>,
    /// Run state, as k6 reports it.
    pub state: State,
    /// loadrig's additions: what ran, thresholds, and the mergeable raw results.
    pub loadrig: Extra,
}

/// k6's `state` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The run's wall-clock length in milliseconds.
    pub test_run_duration_ms: f64,
    /// Whether stdout is a terminal.
    #[serde(default, rename = "isStdOutTTY")]
    pub is_std_out_tty: bool,
    /// Whether stderr is a terminal.
    #[serde(default, rename = "isStdErrTTY")]
    pub is_std_err_tty: bool,
}

/// loadrig's section of the JSON document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The runs this summary covers (several after a merge).
    pub runs: Vec<RunInfo>,
    /// Thresholds and whether they held.
    pub thresholds: Vec<ThresholdResult>,
    /// Everything measured, with serialized histograms.
    pub results: ResultsData,
}

impl SummaryDoc {
    /// Builds the document.
    pub fn new(runs: Vec<RunInfo>, r: &Results, thresholds: Vec<ThresholdResult>) -> Self {
        use std::io::IsTerminal;
        let mut metrics = metrics(r);
        for t in &thresholds {
            let name = if t.metric == "errors" {
                "http_req_failed"
            } else {
                t.metric.as_str()
            };
            let entry = metrics.entry(name.to_owned()).or_insert_with(|| {
                // A threshold on a metric that got no data still shows, failed.
                json!({"type": "counter", "contains": "default", "values": {"count": 0, "rate": 0}})
            });
            if let Some(obj) = entry.as_object_mut() {
                let th = obj.entry("thresholds").or_insert_with(|| json!({}));
                th[t.expr.as_str()] = json!({"ok": t.ok});
            }
        }
        SummaryDoc {
            root_group: root_group(r),
            options: json!({
                "summaryTrendStats": ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"],
                "summaryTimeUnit": "",
                "noColor": false,
            }),
            metrics,
            state: State {
                test_run_duration_ms: r.elapsed.as_secs_f64() * 1000.0,
                is_std_out_tty: std::io::stdout().is_terminal(),
                is_std_err_tty: std::io::stderr().is_terminal(),
            },
            loadrig: Extra {
                version: FORMAT_VERSION,
                runs,
                thresholds,
                results: r.to_data(),
            },
        }
    }
}
