//! Named metrics beyond the HTTP phases: what scenarios record — k6's built-in
//! `iterations`, `iteration_duration`, `checks`, `group_duration`, `vus`, `vus_max`,
//! `dropped_iterations`, the script's own `Counter`/`Gauge`/`Rate`/`Trend` metrics, the
//! submetrics thresholds name (`http_req_duration{name:login}`), and the checks tree.
//!
//! Like [`Results`](crate::record::Results), everything here is constant in memory per
//! metric (trends are HDR histograms), adds exactly across threads and machines, and
//! serializes for `loadrig merge`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::summary::MetricType;

/// Trend values are kept as thousandths (so milliseconds are kept as microseconds, the
/// unit of the HTTP phases), with 3 significant digits.
const TREND_SCALE: f64 = 1000.0;
const TREND_SIGFIG: u8 = 3;

/// Tags on a sample, `[(name, value)]`.
pub type Tags = [(String, String)];

/// One metric's accumulated samples.
#[derive(Debug, Clone)]
pub enum Sink {
    /// The sum of the values.
    Counter(f64),
    /// The last value (in record order within a thread), with the extremes.
    Gauge {
        /// The last value.
        value: f64,
        /// The smallest.
        min: f64,
        /// The largest.
        max: f64,
    },
    /// Non-zero and zero values.
    Rate {
        /// Non-zero samples.
        passes: u64,
        /// Zero samples.
        fails: u64,
    },
    /// Every value, in thousandths, in an auto-sizing HDR histogram.
    Trend(Box<Histogram<u64>>),
}

/// A metric: its kind, whether its values are times (ms), and its samples.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Values are milliseconds (k6's `contains: "time"`).
    pub time: bool,
    /// The samples.
    pub sink: Sink,
}

impl Metric {
    /// An empty metric of a kind.
    pub fn new(kind: MetricType, time: bool) -> Metric {
        let sink = match kind {
            MetricType::Counter => Sink::Counter(0.0),
            MetricType::Gauge => Sink::Gauge {
                value: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            },
            MetricType::Rate => Sink::Rate {
                passes: 0,
                fails: 0,
            },
            MetricType::Trend => Sink::Trend(Box::new(trend_histogram())),
        };
        Metric { time, sink }
    }

    /// The metric's kind.
    pub fn kind(&self) -> MetricType {
        match self.sink {
            Sink::Counter(_) => MetricType::Counter,
            Sink::Gauge { .. } => MetricType::Gauge,
            Sink::Rate { .. } => MetricType::Rate,
            Sink::Trend(_) => MetricType::Trend,
        }
    }

    /// Adds one sample.
    pub fn add(&mut self, v: f64) {
        match &mut self.sink {
            Sink::Counter(sum) => *sum += v,
            Sink::Gauge { value, min, max } => {
                *value = v;
                *min = min.min(v);
                *max = max.max(v);
            }
            Sink::Rate { passes, fails } => {
                if v != 0.0 {
                    *passes += 1
                } else {
                    *fails += 1
                }
            }
            Sink::Trend(h) => {
                let x = (v.max(0.0) * TREND_SCALE).round() as u64;
                // `record` grows an auto-sizing histogram; `saturating_record` would clamp.
                if h.record(x).is_err() {
                    h.saturating_record(x);
                }
            }
        }
    }

    fn merge(&mut self, other: &Metric) -> anyhow::Result<()> {
        match (&mut self.sink, &other.sink) {
            (Sink::Counter(a), Sink::Counter(b)) => *a += b,
            (
                Sink::Gauge { value, min, max },
                Sink::Gauge {
                    value: v2,
                    min: n2,
                    max: x2,
                },
            ) => {
                // Gauges of several machines have no common "last": keep the largest last.
                *value = value.max(*v2);
                *min = min.min(*n2);
                *max = max.max(*x2);
            }
            (
                Sink::Rate { passes, fails },
                Sink::Rate {
                    passes: p,
                    fails: f,
                },
            ) => {
                *passes += p;
                *fails += f;
            }
            (Sink::Trend(a), Sink::Trend(b)) => a
                .add(b.as_ref())
                .map_err(|e| anyhow::anyhow!("adding histograms: {e:?}"))?,
            _ => bail!("a metric has different kinds in the runs being merged"),
        }
        Ok(())
    }

    /// One aggregate, in k6's units: trends in the values' unit (ms for times), `count` and
    /// `rate` (per second over `secs`) of counters, `rate` of rates, `value`/`min`/`max` of
    /// gauges. `None`: no data, or no such aggregate for this kind.
    pub fn value(&self, agg: &str, secs: f64) -> Option<f64> {
        match &self.sink {
            Sink::Counter(sum) => match agg {
                "count" => Some(*sum),
                "rate" => Some(*sum / secs.max(1e-9)),
                _ => None,
            },
            Sink::Gauge { value, min, max } => {
                if !min.is_finite() {
                    return None;
                }
                match agg {
                    "value" => Some(*value),
                    "min" => Some(*min),
                    "max" => Some(*max),
                    _ => None,
                }
            }
            Sink::Rate { passes, fails } => {
                let total = passes + fails;
                (agg == "rate" && total > 0).then(|| *passes as f64 / total as f64)
            }
            Sink::Trend(h) => {
                if h.is_empty() {
                    return None;
                }
                let unit = |x: u64| x as f64 / TREND_SCALE;
                match agg {
                    "avg" => Some(h.mean() / TREND_SCALE),
                    "min" => Some(unit(h.min())),
                    "max" => Some(unit(h.max())),
                    "med" => Some(unit(h.value_at_quantile(0.5))),
                    "count" => Some(h.len() as f64),
                    _ => {
                        let p: f64 = agg.strip_prefix("p(")?.strip_suffix(')')?.parse().ok()?;
                        (0.0..=100.0)
                            .contains(&p)
                            .then(|| unit(h.value_at_quantile(p / 100.0)))
                    }
                }
            }
        }
    }

    /// The `values` object of k6's summary for this metric.
    pub fn summary_values(&self, secs: f64) -> serde_json::Value {
        use serde_json::json;
        match &self.sink {
            Sink::Counter(sum) => json!({"count": sum, "rate": sum / secs.max(1e-9)}),
            Sink::Gauge { value, min, max } => {
                let (min, max) = if min.is_finite() {
                    (*min, *max)
                } else {
                    (0.0, 0.0)
                };
                json!({"value": value, "min": min, "max": max})
            }
            Sink::Rate { passes, fails } => {
                let total = passes + fails;
                let rate = if total == 0 {
                    0.0
                } else {
                    *passes as f64 / total as f64
                };
                json!({"rate": rate, "passes": passes, "fails": fails})
            }
            Sink::Trend(_) => {
                let v = |agg: &str| self.value(agg, secs).unwrap_or(0.0);
                json!({
                    "avg": v("avg"), "min": v("min"), "med": v("med"), "max": v("max"),
                    "p(90)": v("p(90)"), "p(95)": v("p(95)"), "p(99)": v("p(99)"),
                })
            }
        }
    }
}

fn trend_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(TREND_SIGFIG).expect("valid precision");
    h.auto(true);
    h
}

/// A submetric a threshold names: `metric{tag:value,…}`, fed by every sample of `metric`
/// whose tags include all of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmetricDef {
    /// The whole name, as written in the threshold.
    pub name: String,
    /// The parent metric.
    pub parent: String,
    /// The tags a sample must carry.
    pub tags: Vec<(String, String)>,
}

impl SubmetricDef {
    /// Parses `metric{tag:value, tag2:value2}`; `None` for a plain metric name.
    pub fn parse(s: &str) -> anyhow::Result<Option<SubmetricDef>> {
        let Some((parent, rest)) = s.split_once('{') else {
            return Ok(None);
        };
        let inner = rest
            .strip_suffix('}')
            .with_context(|| format!("submetric `{s}` does not end with `}}`"))?;
        let mut tags = Vec::new();
        for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once(':')
                .with_context(|| format!("submetric `{s}`: `{pair}` is not `tag:value`"))?;
            let unquote = |t: &str| t.trim().trim_matches(['"', '\'']).to_owned();
            tags.push((unquote(k), unquote(v)));
        }
        if tags.is_empty() {
            bail!("submetric `{s}` names no tag");
        }
        Ok(Some(SubmetricDef {
            name: s.trim().to_owned(),
            parent: parent.trim().to_owned(),
            tags,
        }))
    }

    fn matches(&self, tags: &Tags) -> bool {
        self.tags
            .iter()
            .all(|(k, v)| tags.iter().any(|(k2, v2)| k == k2 && v == v2))
    }
}

/// One check's tally, under its group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTally {
    /// Times it held.
    pub passes: u64,
    /// Times it failed.
    pub fails: u64,
}

/// Every named metric of a run, its submetrics, and the checks tree.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Metrics by name.
    pub metrics: BTreeMap<String, Metric>,
    /// Submetrics by their full name (`metric{tag:value}`).
    pub submetrics: BTreeMap<String, Metric>,
    /// The submetrics to feed.
    pub defs: Vec<SubmetricDef>,
    /// Checks by group path (`""` is the root group, `::a::b` nested) and name, in first-seen
    /// order per group.
    pub checks: BTreeMap<String, Vec<(String, CheckTally)>>,
    /// Every group path seen.
    pub groups: Vec<String>,
}

impl Metrics {
    /// Empty metrics that feed the given submetrics.
    pub fn with_submetrics(defs: Vec<SubmetricDef>) -> Metrics {
        Metrics {
            defs,
            ..Metrics::default()
        }
    }

    /// Adds a sample to `name`, declaring it with `kind` at its first sample. A sample of
    /// another kind than the declared one is refused.
    pub fn add(
        &mut self,
        name: &str,
        kind: MetricType,
        time: bool,
        value: f64,
        tags: &Tags,
    ) -> Result<(), String> {
        let metric = match self.metrics.get_mut(name) {
            Some(m) => m,
            None => self
                .metrics
                .entry(name.to_owned())
                .or_insert_with(|| Metric::new(kind, time)),
        };
        if metric.kind() != kind {
            return Err(format!(
                "metric `{name}` is a {:?}, not a {kind:?}",
                metric.kind()
            ));
        }
        metric.add(value);
        self.feed_submetrics(name, kind, time, value, tags);
        Ok(())
    }

    /// Feeds `value` of `parent` (recorded elsewhere, e.g. an HTTP phase) to the submetrics
    /// whose tags match.
    pub fn feed_submetrics(
        &mut self,
        parent: &str,
        kind: MetricType,
        time: bool,
        value: f64,
        tags: &Tags,
    ) {
        for def in &self.defs {
            if def.parent == parent && def.matches(tags) {
                self.submetrics
                    .entry(def.name.clone())
                    .or_insert_with(|| Metric::new(kind, time))
                    .add(value);
            }
        }
    }

    /// Records a check under `group`.
    pub fn check(&mut self, group: &str, name: &str, ok: bool, tags: &Tags) {
        let list = self.checks.entry(group.to_owned()).or_default();
        let tally = match list.iter_mut().position(|(n, _)| n == name) {
            Some(i) => &mut list[i].1,
            None => {
                list.push((name.to_owned(), CheckTally::default()));
                &mut list.last_mut().expect("just pushed").1
            }
        };
        if ok {
            tally.passes += 1;
        } else {
            tally.fails += 1;
        }
        let _ = self.add("checks", MetricType::Rate, false, ok as u8 as f64, tags);
    }

    /// Notes a group path.
    pub fn group(&mut self, path: &str) {
        if !self.groups.iter().any(|g| g == path) {
            self.groups.push(path.to_owned());
        }
    }

    /// Whether anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.checks.is_empty() && self.groups.is_empty()
    }

    /// Adds another run's metrics to these.
    pub fn merge(&mut self, other: &Metrics) -> anyhow::Result<()> {
        for (dst, src) in [
            (&mut self.metrics, &other.metrics),
            (&mut self.submetrics, &other.submetrics),
        ] {
            for (name, m) in src {
                match dst.get_mut(name) {
                    Some(d) => d.merge(m).with_context(|| format!("metric `{name}`"))?,
                    None => {
                        dst.insert(name.clone(), m.clone());
                    }
                }
            }
        }
        for def in &other.defs {
            if !self.defs.contains(def) {
                self.defs.push(def.clone());
            }
        }
        for (group, list) in &other.checks {
            for (name, t) in list {
                let mine = self.checks.entry(group.clone()).or_default();
                match mine.iter_mut().find(|(n, _)| n == name) {
                    Some((_, m)) => {
                        m.passes += t.passes;
                        m.fails += t.fails;
                    }
                    None => mine.push((name.clone(), *t)),
                }
            }
        }
        for g in &other.groups {
            self.group(g);
        }
        Ok(())
    }

    /// The serializable form.
    pub fn to_data(&self) -> MetricsData {
        let encode_all = |m: &BTreeMap<String, Metric>| {
            m.iter()
                .map(|(k, v)| (k.clone(), MetricData::of(v)))
                .collect()
        };
        MetricsData {
            metrics: encode_all(&self.metrics),
            submetrics: encode_all(&self.submetrics),
            checks: self
                .checks
                .iter()
                .map(|(g, list)| {
                    (
                        g.clone(),
                        list.iter()
                            .map(|(n, t)| CheckData {
                                name: n.clone(),
                                passes: t.passes,
                                fails: t.fails,
                            })
                            .collect(),
                    )
                })
                .collect(),
            groups: self.groups.clone(),
        }
    }

    /// Rebuilds metrics from their serialized form.
    pub fn from_data(d: &MetricsData) -> anyhow::Result<Metrics> {
        let decode_all = |m: &BTreeMap<String, MetricData>| {
            m.iter()
                .map(|(k, v)| Ok((k.clone(), v.metric().with_context(|| format!("in `{k}`"))?)))
                .collect::<anyhow::Result<BTreeMap<_, _>>>()
        };
        let submetrics = decode_all(&d.submetrics)?;
        let mut defs = Vec::new();
        for name in submetrics.keys() {
            if let Some(def) = SubmetricDef::parse(name)? {
                defs.push(def);
            }
        }
        Ok(Metrics {
            metrics: decode_all(&d.metrics)?,
            submetrics,
            defs,
            checks: d
                .checks
                .iter()
                .map(|(g, list)| {
                    (
                        g.clone(),
                        list.iter()
                            .map(|c| {
                                (
                                    c.name.clone(),
                                    CheckTally {
                                        passes: c.passes,
                                        fails: c.fails,
                                    },
                                )
                            })
                            .collect(),
                    )
                })
                .collect(),
            groups: d.groups.clone(),
        })
    }
}

/// The serialized named metrics (`loadrig.results.metrics` in the JSON summary).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsData {
    /// Metrics by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, MetricData>,
    /// Submetrics by full name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub submetrics: BTreeMap<String, MetricData>,
    /// Checks by group path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Vec<CheckData>>,
    /// Group paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl MetricsData {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.checks.is_empty() && self.groups.is_empty()
    }
}

/// A serialized check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckData {
    /// The check's name.
    pub name: String,
    /// Times it held.
    pub passes: u64,
    /// Times it failed.
    pub fails: u64,
}

/// A serialized metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricData {
    /// `counter`, `gauge`, `rate` or `trend`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Values are milliseconds.
    #[serde(default)]
    pub time: bool,
    /// Counter: the sum; gauge: the last value.
    #[serde(default)]
    pub value: f64,
    /// Gauge extremes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Gauge extremes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Rate: non-zero samples.
    #[serde(default)]
    pub passes: u64,
    /// Rate: zero samples.
    #[serde(default)]
    pub fails: u64,
    /// Trend: the histogram of thousandths (HdrHistogram V2 + deflate, base64).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
}

impl MetricData {
    fn of(m: &Metric) -> MetricData {
        let mut d = MetricData {
            kind: type_name(m.kind()).to_owned(),
            time: m.time,
            value: 0.0,
            min: None,
            max: None,
            passes: 0,
            fails: 0,
            histogram: String::new(),
        };
        match &m.sink {
            Sink::Counter(sum) => d.value = *sum,
            Sink::Gauge { value, min, max } => {
                d.value = *value;
                if min.is_finite() {
                    (d.min, d.max) = (Some(*min), Some(*max));
                }
            }
            Sink::Rate { passes, fails } => (d.passes, d.fails) = (*passes, *fails),
            Sink::Trend(h) => {
                let mut buf = Vec::new();
                V2DeflateSerializer::new()
                    .serialize(h.as_ref(), &mut buf)
                    .expect("serializing to memory");
                d.histogram = base64::engine::general_purpose::STANDARD.encode(buf);
            }
        }
        d
    }

    fn metric(&self) -> anyhow::Result<Metric> {
        let kind = match self.kind.as_str() {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "rate" => MetricType::Rate,
            "trend" => MetricType::Trend,
            other => bail!("unknown metric type `{other}`"),
        };
        let mut m = Metric::new(kind, self.time);
        match &mut m.sink {
            Sink::Counter(sum) => *sum = self.value,
            Sink::Gauge { value, min, max } => {
                *value = self.value;
                if let (Some(a), Some(b)) = (self.min, self.max) {
                    (*min, *max) = (a, b);
                }
            }
            Sink::Rate { passes, fails } => (*passes, *fails) = (self.passes, self.fails),
            Sink::Trend(h) => {
                if !self.histogram.is_empty() {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&self.histogram)
                        .context("histogram is not valid base64")?;
                    let mut decoded: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut std::io::Cursor::new(bytes))
                        .map_err(|e| anyhow::anyhow!("histogram does not decode: {e:?}"))?;
                    decoded.auto(true);
                    **h = decoded;
                }
            }
        }
        Ok(m)
    }
}

/// k6's name for a metric type.
pub fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Rate => "rate",
        MetricType::Trend => "trend",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn submetrics_take_the_samples_whose_tags_match() {
        let def = SubmetricDef::parse("http_req_duration{name:login, method:POST}")
            .unwrap()
            .unwrap();
        assert_eq!(def.parent, "http_req_duration");
        let mut m = Metrics::with_submetrics(vec![def]);
        m.feed_submetrics(
            "http_req_duration",
            MetricType::Trend,
            true,
            5.0,
            &tags(&[("name", "login"), ("method", "POST"), ("status", "200")]),
        );
        m.feed_submetrics(
            "http_req_duration",
            MetricType::Trend,
            true,
            99.0,
            &tags(&[("name", "login"), ("method", "GET")]),
        );
        let sub = &m.submetrics["http_req_duration{name:login, method:POST}"];
        assert!((sub.value("max", 1.0).unwrap() - 5.0).abs() < 0.01);
        assert!(SubmetricDef::parse("x{name}").is_err());
        assert!(SubmetricDef::parse("plain").unwrap().is_none());
    }

    #[test]
    fn metrics_merge_exactly_through_their_serialized_form() {
        let (mut all, mut a, mut b) = (Metrics::default(), Metrics::default(), Metrics::default());
        for i in 0..1000 {
            let half = if i % 2 == 0 { &mut a } else { &mut b };
            for m in [&mut all, half] {
                m.add("t", MetricType::Trend, false, i as f64 * 1.5, &[])
                    .unwrap();
                m.add("c", MetricType::Counter, false, 2.0, &[]).unwrap();
                m.check("::g", "ok", i % 3 != 0, &[]);
            }
        }
        let json = serde_json::to_string(&b.to_data()).unwrap();
        let b = Metrics::from_data(&serde_json::from_str(&json).unwrap()).unwrap();
        a.merge(&b).unwrap();
        for agg in ["avg", "min", "med", "max", "p(99)"] {
            assert_eq!(
                a.metrics["t"].value(agg, 1.0),
                all.metrics["t"].value(agg, 1.0)
            );
        }
        assert_eq!(a.metrics["c"].value("count", 1.0), Some(2000.0));
        assert_eq!(a.checks["::g"], all.checks["::g"]);
        assert_eq!(
            a.metrics["checks"].value("rate", 1.0),
            all.metrics["checks"].value("rate", 1.0)
        );
        assert!(a.add("c", MetricType::Trend, false, 1.0, &[]).is_err());
    }
}
