//! Thresholds: pass/fail criteria on the summary, written as k6 writes them
//! (`p(99)<5ms`, `http_req_waiting:p(95)<2ms`, `http_reqs:rate>10000`, `errors<0.1%`).

use anyhow::{Context, bail, ensure};

use crate::record::Results;
use crate::summary::{self, MetricType, ThresholdResult};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    source: String,
    /// The expression without the metric (`p(99)<5ms`).
    expr: String,
    metric: String,
    agg: String,
    op: Op,
    /// In the aggregate's unit: ms for trends, a fraction for rates, per second or a count
    /// for counters.
    limit: f64,
}

const OPS: [(&str, Op); 6] = [
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("<", Op::Lt),
    (">", Op::Gt),
];

/// Where the `:` between the metric and the aggregate is: the first one outside a
/// submetric's braces (`ws_errors{kind:timeout}:count`).
fn metric_colon(s: &str) -> Option<usize> {
    let from = s.find('}').map_or(0, |i| i + 1);
    s[from..].find(':').map(|i| from + i)
}

fn is_agg(s: &str) -> bool {
    matches!(
        s,
        "avg" | "min" | "med" | "max" | "rate" | "count" | "value"
    ) || (s.starts_with("p(") && s.ends_with(')'))
}

impl Threshold {
    /// Parses `[metric:]aggregate OP value[unit]`; the metric defaults to
    /// `http_req_duration`; a rate or counter metric may omit the aggregate (`errors<1%`).
    pub fn parse(s: &str) -> anyhow::Result<Threshold> {
        Self::parse_on(s, "http_req_duration")
    }

    /// Parses as [`Threshold::parse`] does, with `default_metric` for a bare aggregate
    /// (`ws_rtt` in a WebSocket run). The metric may be a submetric
    /// (`ws_errors{kind:timeout}`), typed as its parent.
    pub fn parse_on(s: &str, default_metric: &str) -> anyhow::Result<Threshold> {
        let src = s.trim();
        let (pos, text, op) = OPS
            .iter()
            .filter_map(|(t, op)| src.find(t).map(|p| (p, *t, *op)))
            .min_by_key(|(p, t, _)| (*p, std::cmp::Reverse(t.len())))
            .with_context(|| {
                format!("threshold `{s}` has no comparison (<, <=, >, >=, ==, !=), e.g. p(99)<5ms")
            })?;
        let (lhs, rhs) = (src[..pos].trim(), src[pos + text.len()..].trim());
        let (metric, agg) = match metric_colon(lhs).map(|i| (&lhs[..i], &lhs[i + 1..])) {
            Some((m, a)) => (m.trim().to_owned(), a.trim().to_owned()),
            None if is_agg(lhs) => (default_metric.to_owned(), lhs.to_owned()),
            None => (lhs.to_owned(), String::new()),
        };
        let base = metric.split('{').next().unwrap_or(&metric).trim();
        let ty = summary::metric_type(base).with_context(|| {
            format!(
                "threshold `{s}`: unknown metric `{base}`; known: {}, and server_timing_NAME",
                summary::known_metrics().join(", ")
            )
        })?;
        let agg = match (agg.is_empty(), ty) {
            (false, _) => agg,
            (true, MetricType::Rate) => "rate".to_owned(),
            (true, MetricType::Counter) => "count".to_owned(),
            (true, MetricType::Gauge) => "value".to_owned(),
            (true, MetricType::Trend) => {
                bail!("threshold `{s}`: say which aggregate of `{metric}`, e.g. {metric}:p(99)<5ms")
            }
        };
        let allowed = match ty {
            MetricType::Trend => {
                is_agg(&agg) && !matches!(agg.as_str(), "rate" | "count" | "value")
            }
            MetricType::Counter => matches!(agg.as_str(), "count" | "rate"),
            MetricType::Rate => agg == "rate",
            MetricType::Gauge => agg == "value",
        };
        ensure!(
            allowed,
            "threshold `{s}`: `{metric}` has no aggregate `{agg}`"
        );
        if let Some(p) = agg.strip_prefix("p(").and_then(|a| a.strip_suffix(')')) {
            let p: f64 = p
                .parse()
                .with_context(|| format!("threshold `{s}`: `{agg}` is not a percentile"))?;
            ensure!(
                (0.0..=100.0).contains(&p),
                "threshold `{s}`: percentile {p} is not between 0 and 100"
            );
        }
        let limit = parse_limit(rhs, ty)
            .with_context(|| format!("threshold `{s}`: value `{rhs}` is not valid"))?;
        let expr = match metric_colon(src) {
            Some(i) => src[i + 1..].trim().to_owned(),
            None => src.to_owned(),
        };
        Ok(Threshold {
            source: src.to_owned(),
            expr,
            metric,
            agg,
            op,
            limit,
        })
    }

    /// Parses a threshold as a k6 script writes it: the metric (possibly a submetric,
    /// `http_req_duration{name:login}`) apart from the expression (`p(95)<500`,
    /// `rate>0.99`). Any metric name is accepted, since a script's own metrics exist only
    /// once it runs; one that never gets data fails, as in k6.
    pub fn parse_k6(metric: &str, expr: &str) -> anyhow::Result<Threshold> {
        let src = expr.trim();
        let (pos, text, op) = OPS
            .iter()
            .filter_map(|(t, op)| src.find(t).map(|p| (p, *t, *op)))
            .min_by_key(|(p, t, _)| (*p, std::cmp::Reverse(t.len())))
            .with_context(|| {
                format!("threshold `{expr}` on `{metric}` has no comparison (<, <=, >, >=, ==, !=)")
            })?;
        let (agg, rhs) = (src[..pos].trim(), src[pos + text.len()..].trim());
        ensure!(
            is_agg(agg),
            "threshold `{expr}` on `{metric}`: `{agg}` is not an aggregate (avg, min, med, max, p(N), count, rate, value)"
        );
        let base = metric.split('{').next().unwrap_or(metric).trim();
        let ty = summary::metric_type(base).unwrap_or(match agg {
            "rate" => MetricType::Rate,
            "count" => MetricType::Counter,
            "value" => MetricType::Gauge,
            _ => MetricType::Trend,
        });
        let limit = parse_limit(rhs, ty).with_context(|| {
            format!("threshold `{expr}` on `{metric}`: value `{rhs}` is not valid")
        })?;
        Ok(Threshold {
            source: format!("{}: {src}", metric.trim()),
            expr: src.to_owned(),
            metric: metric.trim().to_owned(),
            agg: agg.to_owned(),
            op,
            limit,
        })
    }

    /// The threshold as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Checks the threshold against the results.
    pub fn check(&self, r: &Results) -> ThresholdResult {
        let value = summary::value(r, &self.metric, &self.agg);
        let ok = value.is_some_and(|v| match self.op {
            Op::Lt => v < self.limit,
            Op::Le => v <= self.limit,
            Op::Gt => v > self.limit,
            Op::Ge => v >= self.limit,
            Op::Eq => v == self.limit,
            Op::Ne => v != self.limit,
        });
        ThresholdResult {
            threshold: self.source.clone(),
            metric: self.metric.clone(),
            expr: self.expr.clone(),
            ok,
            value,
        }
    }

    /// The metric it applies to.
    pub fn metric(&self) -> &str {
        &self.metric
    }
}

/// Parses a limit into the unit `value` reports for this kind of metric.
fn parse_limit(s: &str, ty: MetricType) -> anyhow::Result<f64> {
    let number = |t: &str| -> anyhow::Result<f64> {
        let v: f64 = t.trim().parse().context("not a number")?;
        ensure!(v.is_finite(), "not a finite number");
        Ok(v)
    };
    Ok(match ty {
        MetricType::Trend => {
            // Bare numbers are milliseconds, as in k6.
            for (unit, scale) in [("us", 1e-3), ("µs", 1e-3), ("ms", 1.0), ("s", 1000.0)] {
                if let Some(n) = s.strip_suffix(unit) {
                    return Ok(number(n)? * scale);
                }
            }
            number(s)?
        }
        MetricType::Rate => match s.strip_suffix('%') {
            Some(n) => number(n)? / 100.0,
            None => number(s)?,
        },
        MetricType::Counter | MetricType::Gauge => {
            let s = s.strip_suffix("/s").unwrap_or(s);
            match s.strip_suffix(['k', 'K']) {
                Some(n) => number(n)? * 1000.0,
                None => number(s)?,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ErrorKind, Sample};
    use std::time::Duration;

    #[test]
    fn the_issue_examples_parse() {
        let t = Threshold::parse("p(99)<5ms").unwrap();
        assert_eq!(
            (t.metric.as_str(), t.agg.as_str(), t.op, t.limit),
            ("http_req_duration", "p(99)", Op::Lt, 5.0)
        );
        let t = Threshold::parse("http_req_waiting:p(95)<2ms").unwrap();
        assert_eq!((t.metric.as_str(), t.limit), ("http_req_waiting", 2.0));
        let t = Threshold::parse("http_reqs:rate>10000").unwrap();
        assert_eq!((t.agg.as_str(), t.op, t.limit), ("rate", Op::Gt, 10000.0));
        let t = Threshold::parse("errors<0.1%").unwrap();
        assert_eq!((t.metric.as_str(), t.agg.as_str()), ("errors", "rate"));
        assert!((t.limit - 0.001).abs() < 1e-12);
        assert_eq!(Threshold::parse("avg <= 250us").unwrap().limit, 0.25);
        assert_eq!(Threshold::parse("max>=1s").unwrap().op, Op::Ge);
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        for (bad, msg) in [
            ("p(99)", "no comparison"),
            ("latency:p(99)<5ms", "unknown metric `latency`"),
            ("http_req_waiting<5ms", "say which aggregate"),
            ("http_reqs:p(99)<5", "has no aggregate"),
            ("p(101)<5ms", "not between 0 and 100"),
            ("p(99)<fast", "value `fast`"),
            ("p(99)<5min", "value `5min`"),
        ] {
            let e = format!("{:#}", Threshold::parse(bad).unwrap_err());
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn thresholds_check_the_results() {
        let mut r = Results::default();
        for i in 0..100u64 {
            r.record_response(&Sample {
                intended: 0,
                ready: 0,
                started: 0,
                sent: 0,
                first_byte: 0,
                ended: (i + 1) * 1_000_000, // 1..100 ms
                status: 200,
                ..Default::default()
            });
        }
        r.record_error(ErrorKind::Reset, 0);
        r.elapsed = Duration::from_secs(1);
        let check = |s: &str| Threshold::parse(s).unwrap().check(&r).ok;
        assert!(check("p(99)<=100ms"));
        assert!(!check("p(99)<90ms"));
        assert!(check("http_reqs:count==101"));
        assert!(check("http_reqs:rate>100"));
        assert!(check("errors<1%"));
        assert!(!check("errors<0.5%"));
        // A metric with no data fails rather than passing silently.
        let none = Threshold::parse("server_timing_instantiate:p(50)<1ms")
            .unwrap()
            .check(&r);
        assert!(!none.ok && none.value.is_none());
    }
}
