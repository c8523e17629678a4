//! A scenario's options, in k6's `options` shape, turned into data: one [`ScenarioSpec`]
//! per scenario, each with its executor's schedule, and the thresholds.
//!
//! The shortcuts resolve as k6 resolves them: `stages` → `ramping-vus`; `iterations` →
//! `shared-iterations`; `duration` → `constant-vus`; none of them → one VU, one
//! iteration. Command-line `--vus`, `-d`, `--iterations` and `--stage` override the
//! script's values and, as in k6, replace its `scenarios` with the shortcut.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::plan::{self, Share};

/// k6's default `gracefulStop` (and `gracefulRampDown`).
const GRACEFUL_STOP: Duration = Duration::from_secs(30);
/// k6's default `maxDuration` of the iteration-count executors.
const MAX_DURATION: Duration = Duration::from_secs(600);

/// How a scenario's VUs get their iterations.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    /// `vus` VUs loop for `duration`.
    ConstantVus {
        /// VUs.
        vus: u64,
        /// How long.
        duration: Duration,
    },
    /// The number of looping VUs follows `stages` linearly, from `start_vus`.
    RampingVus {
        /// VUs at the start.
        start_vus: u64,
        /// `(duration, target VUs)`.
        stages: Vec<(Duration, u64)>,
        /// How long a VU that is ramped down may finish its iteration.
        graceful_ramp_down: Duration,
    },
    /// Each of `vus` VUs runs `iterations` iterations.
    PerVuIterations {
        /// VUs.
        vus: u64,
        /// Iterations per VU.
        iterations: u64,
        /// The scenario stops after this long anyway.
        max_duration: Duration,
    },
    /// `vus` VUs share `iterations` iterations, each taking the next as it is free.
    SharedIterations {
        /// VUs.
        vus: u64,
        /// Iterations in all.
        iterations: u64,
        /// The scenario stops after this long anyway.
        max_duration: Duration,
    },
    /// Iterations start on a schedule (an open model), whatever the VUs' speed: per second,
    /// `rate` constantly for `duration`, or ramps through `stages`.
    ArrivalRate {
        /// Iterations per second at the start.
        start_rate: f64,
        /// `(duration, iterations per second reached)`; one constant stage for
        /// `constant-arrival-rate`.
        stages: Vec<plan::Stage>,
        /// VUs initialized before the start.
        pre_allocated: u64,
        /// At most this many VUs; an iteration due when all are busy is dropped
        /// (`dropped_iterations`).
        max_vus: u64,
        /// `constant-arrival-rate` (else `ramping-arrival-rate`), for the summary.
        constant: bool,
    },
}

impl Executor {
    /// k6's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::SharedIterations { .. } => "shared-iterations",
            Executor::ArrivalRate { constant: true, .. } => "constant-arrival-rate",
            Executor::ArrivalRate { .. } => "ramping-arrival-rate",
        }
    }

    /// The most VUs it can use at once (all of them are initialized before the start,
    /// except arrival-rate VUs beyond `preAllocatedVUs`).
    pub fn max_vus(&self) -> u64 {
        match self {
            Executor::ConstantVus { vus, .. }
            | Executor::PerVuIterations { vus, .. }
            | Executor::SharedIterations { vus, .. } => *vus,
            Executor::RampingVus {
                start_vus, stages, ..
            } => stages
                .iter()
                .map(|(_, t)| *t)
                .max()
                .unwrap_or(0)
                .max(*start_vus),
            Executor::ArrivalRate { max_vus, .. } => *max_vus,
        }
    }

    /// VUs initialized before the start.
    pub fn initial_vus(&self) -> u64 {
        match self {
            Executor::ArrivalRate { pre_allocated, .. } => *pre_allocated,
            other => other.max_vus(),
        }
    }

    /// How long the executor's schedule runs (without the graceful stop).
    pub fn length(&self) -> Duration {
        match self {
            Executor::ConstantVus { duration, .. } => *duration,
            Executor::RampingVus { stages, .. } => stages.iter().map(|(d, _)| *d).sum(),
            Executor::PerVuIterations { max_duration, .. }
            | Executor::SharedIterations { max_duration, .. } => *max_duration,
            Executor::ArrivalRate { stages, .. } => stages.iter().map(|s| s.duration).sum(),
        }
    }

    /// Ramping VUs: how many VUs should be looping `t` into the scenario.
    pub fn vus_at(&self, t: Duration) -> u64 {
        let Executor::RampingVus {
            start_vus, stages, ..
        } = self
        else {
            return self.max_vus();
        };
        let mut from = *start_vus as f64;
        let mut start = Duration::ZERO;
        for (d, target) in stages {
            if t < start + *d {
                let f = (t - start).as_secs_f64() / d.as_secs_f64().max(1e-9);
                return (from + (*target as f64 - from) * f).round() as u64;
            }
            start += *d;
            from = *target as f64;
        }
        from as u64
    }

    /// The part of this executor that segment `share` of a split run carries: VUs and
    /// iterations are divided so that the segments add up to the whole; arrival rates
    /// are divided by taking every n-th iteration (see [`ScenarioSpec::share`]).
    fn split(&self, share: Share) -> Executor {
        let mut e = self.clone();
        match &mut e {
            Executor::ConstantVus { vus, .. } | Executor::PerVuIterations { vus, .. } => {
                *vus = share.of(*vus)
            }
            Executor::SharedIterations {
                vus, iterations, ..
            } => {
                *vus = share.of(*vus).max(1);
                *iterations = share.of(*iterations);
            }
            Executor::RampingVus {
                start_vus, stages, ..
            } => {
                *start_vus = share.of(*start_vus);
                for (_, t) in stages.iter_mut() {
                    *t = share.of(*t);
                }
            }
            Executor::ArrivalRate {
                pre_allocated,
                max_vus,
                ..
            } => {
                *pre_allocated = share.of(*pre_allocated).max(1);
                *max_vus = share.of(*max_vus).max(*pre_allocated);
            }
        }
        e
    }
}

/// One scenario of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioSpec {
    /// Its name (`default` for the shortcuts).
    pub name: String,
    /// Its schedule.
    pub executor: Executor,
    /// The function each iteration runs.
    pub exec: String,
    /// When it starts, from the start of the run.
    pub start_time: Duration,
    /// How long iterations still running at its end may take before they are interrupted.
    pub graceful_stop: Duration,
    /// Environment variables only its VUs see (on top of `--env`).
    pub env: BTreeMap<String, String>,
    /// Tags on everything it records.
    pub tags: BTreeMap<String, String>,
    /// The slice of a split run this process runs (arrival-rate iterations k ≡ i mod n).
    pub share: Share,
}

impl ScenarioSpec {
    /// When the scenario ends for good, iterations interrupted included.
    pub fn hard_end(&self) -> Duration {
        self.start_time + self.executor.length() + self.graceful_stop
    }
}

/// The command-line overrides of `loadrig run SCRIPT`, as k6 has them.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--vus`.
    pub vus: Option<u64>,
    /// `-d`.
    pub duration: Option<Duration>,
    /// `--iterations`.
    pub iterations: Option<u64>,
    /// `--stage DURATION:TARGET` (VUs).
    pub stages: Vec<(Duration, u64)>,
}

impl Overrides {
    fn any(&self) -> bool {
        self.vus.is_some()
            || self.duration.is_some()
            || self.iterations.is_some()
            || !self.stages.is_empty()
    }
}

/// A threshold as k6 writes it: `{"metric{tags}": ["expr", {threshold, abortOnFail}]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdSpec {
    /// The metric, possibly a submetric (`http_req_duration{name:login}`).
    pub metric: String,
    /// The expression (`p(95)<500`, `rate>0.99`).
    pub expr: String,
    /// Stop the run as soon as it fails.
    pub abort_on_fail: bool,
    /// With `abort_on_fail`: do not judge it before this much of the run has passed (k6's
    /// `delayAbortEval`), so early noise cannot abort.
    pub delay_abort_eval: Duration,
}

/// Everything the options say.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The scenarios, by start time.
    pub scenarios: Vec<ScenarioSpec>,
    /// The thresholds.
    pub thresholds: Vec<ThresholdSpec>,
    /// `setupTimeout` (k6 default 60 s).
    pub setup_timeout: Duration,
    /// `teardownTimeout` (k6 default 60 s).
    pub teardown_timeout: Duration,
    /// The options as given, echoed in the summary.
    pub raw: Value,
}

/// The `options` keys loadrig acts on; any other is refused rather than ignored.
const KNOWN_KEYS: &[&str] = &[
    "vus",
    "duration",
    "iterations",
    "stages",
    "scenarios",
    "thresholds",
    "setupTimeout",
    "teardownTimeout",
    "summaryTrendStats",
    "tags",
    // Accepted without effect: they describe k6's output or its HTTP client, which
    // loadrig's summary and client already match.
    "noConnectionReuse",
    "discardResponseBodies",
    "userAgent",
    "insecureSkipTLSVerify",
    "summaryTimeUnit",
    "maxRedirects",
];

/// Parses a k6 duration: `"30s"`, `"1m30s"`, `"500ms"`, or a number of milliseconds.
pub fn duration(v: &Value, what: &str) -> anyhow::Result<Duration> {
    match v {
        Value::Number(n) => {
            let ms = n
                .as_f64()
                .filter(|m| *m >= 0.0)
                .with_context(|| format!("`{what}`: {n} is not a duration"))?;
            Ok(Duration::from_secs_f64(ms / 1000.0))
        }
        Value::String(s) => {
            plan::parse_duration(s).with_context(|| format!("`{what}`: `{s}` is not a duration"))
        }
        other => bail!("`{what}`: {other} is not a duration (write \"30s\")"),
    }
}

fn count(v: &Value, what: &str) -> anyhow::Result<u64> {
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .with_context(|| format!("`{what}`: {v} is not a whole number"))
}

fn stages(v: &Value, what: &str) -> anyhow::Result<Vec<(Duration, f64)>> {
    let list = v
        .as_array()
        .with_context(|| format!("`{what}` is not a list of {{duration, target}}"))?;
    ensure!(!list.is_empty(), "`{what}` is empty");
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{what}[{i}]");
            let d = duration(s.get("duration").unwrap_or(&Value::Null), &at)?;
            let t = s
                .get("target")
                .and_then(Value::as_f64)
                .filter(|t| *t >= 0.0)
                .with_context(|| format!("`{at}` has no target ≥ 0"))?;
            Ok((d, t))
        })
        .collect()
}

fn vu_stages(v: &Value, what: &str) -> anyhow::Result<Vec<(Duration, u64)>> {
    Ok(stages(v, what)?
        .into_iter()
        .map(|(d, t)| (d, t.round() as u64))
        .collect())
}

fn string_map(v: Option<&Value>, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let obj = v
        .as_object()
        .with_context(|| format!("`{what}` is not an object"))?;
    obj.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((k.clone(), v))
        })
        .collect()
}

impl Options {
    /// Parses the options JSON a scenario exports, with the command line's overrides, for
    /// segment `share` of the run.
    pub fn parse(json: &str, overrides: &Overrides, share: Share) -> anyhow::Result<Options> {
        let raw: Value = if json.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(json).context("the options are not valid JSON")?
        };
        let obj = raw
            .as_object()
            .context("the options are not an object")?
            .clone();
        for key in obj.keys() {
            ensure!(
                KNOWN_KEYS.contains(&key.as_str()),
                "option `{key}` is not supported (supported: {})",
                KNOWN_KEYS.join(", ")
            );
        }
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        let run_tags = string_map(get("tags"), "tags")?;
        let mut scenarios = Vec::new();
        if let (Some(list), false) = (get("scenarios"), overrides.any()) {
            let list = list.as_object().context("`scenarios` is not an object")?;
            ensure!(!list.is_empty(), "`scenarios` is empty");
            for (name, s) in list {
                scenarios.push(
                    scenario(name, s, &run_tags, share)
                        .with_context(|| format!("in scenario `{name}`"))?,
                );
            }
        } else {
            let vus = match overrides.vus {
                Some(v) => Some(v),
                None => get("vus").map(|v| count(v, "vus")).transpose()?,
            };
            let duration_v = match overrides.duration {
                Some(d) => Some(d),
                None => get("duration")
                    .map(|v| duration(v, "duration"))
                    .transpose()?,
            };
            let iterations = match overrides.iterations {
                Some(i) => Some(i),
                None => get("iterations")
                    .map(|v| count(v, "iterations"))
                    .transpose()?,
            };
            let stage_list = if !overrides.stages.is_empty() {
                Some(overrides.stages.clone())
            } else {
                get("stages").map(|v| vu_stages(v, "stages")).transpose()?
            };
            let executor = if let Some(stages) = stage_list {
                Executor::RampingVus {
                    start_vus: vus.unwrap_or(1),
                    stages,
                    graceful_ramp_down: GRACEFUL_STOP,
                }
            } else if let Some(iterations) = iterations {
                Executor::SharedIterations {
                    vus: vus.unwrap_or(1),
                    iterations,
                    max_duration: duration_v.unwrap_or(MAX_DURATION),
                }
            } else if let Some(duration) = duration_v {
                Executor::ConstantVus {
                    vus: vus.unwrap_or(1),
                    duration,
                }
            } else {
                Executor::SharedIterations {
                    vus: vus.unwrap_or(1),
                    iterations: 1,
                    max_duration: MAX_DURATION,
                }
            };
            check_executor(&executor)?;
            scenarios.push(ScenarioSpec {
                name: "default".into(),
                executor: executor.split(share),
                exec: "default".into(),
                start_time: Duration::ZERO,
                graceful_stop: GRACEFUL_STOP,
                env: BTreeMap::new(),
                tags: run_tags.clone(),
                share,
            });
        }
        scenarios.sort_by_key(|s| s.start_time);
        let mut thresholds = Vec::new();
        if let Some(t) = get("thresholds") {
            let t = t.as_object().context("`thresholds` is not an object")?;
            for (metric, list) in t {
                let list = match list {
                    Value::Array(a) => a.clone(),
                    one => vec![one.clone()],
                };
                for item in list {
                    let (expr, abort, delay) = match &item {
                        Value::String(s) => (s.clone(), false, Duration::ZERO),
                        Value::Object(o) => {
                            for key in o.keys() {
                                ensure!(
                                    matches!(
                                        key.as_str(),
                                        "threshold" | "abortOnFail" | "delayAbortEval"
                                    ),
                                    "threshold on `{metric}`: `{key}` is not a threshold key \
                                     (threshold, abortOnFail, delayAbortEval)"
                                );
                            }
                            let delay = match o.get("delayAbortEval") {
                                Some(v) => duration(v, "delayAbortEval")?,
                                None => Duration::ZERO,
                            };
                            (
                                o.get("threshold")
                                    .and_then(Value::as_str)
                                    .with_context(|| {
                                        format!("threshold on `{metric}` has no `threshold` string")
                                    })?
                                    .to_owned(),
                                o.get("abortOnFail")
                                    .and_then(Value::as_bool)
                                    .unwrap_or(false),
                                delay,
                            )
                        }
                        other => bail!("threshold on `{metric}`: {other} is not an expression"),
                    };
                    thresholds.push(ThresholdSpec {
                        metric: metric.clone(),
                        expr,
                        abort_on_fail: abort,
                        delay_abort_eval: delay,
                    });
                }
            }
        }
        let timeout = |k: &str| -> anyhow::Result<Duration> {
            Ok(match get(k) {
                Some(v) => duration(v, k)?,
                None => Duration::from_secs(60),
            })
        };
        Ok(Options {
            scenarios,
            thresholds,
            setup_timeout: timeout("setupTimeout")?,
            teardown_timeout: timeout("teardownTimeout")?,
            raw,
        })
    }

    /// How long the run can last, graceful stops included.
    pub fn length(&self) -> Duration {
        self.scenarios
            .iter()
            .map(ScenarioSpec::hard_end)
            .max()
            .unwrap_or_default()
    }
}

fn check_executor(e: &Executor) -> anyhow::Result<()> {
    match e {
        Executor::ConstantVus { vus, duration } => {
            ensure!(*vus > 0, "`vus` must be at least 1");
            ensure!(!duration.is_zero(), "`duration` must be above zero");
        }
        Executor::PerVuIterations {
            vus, iterations, ..
        }
        | Executor::SharedIterations {
            vus, iterations, ..
        } => {
            ensure!(*vus > 0, "`vus` must be at least 1");
            ensure!(*iterations > 0, "`iterations` must be at least 1");
        }
        Executor::RampingVus { stages, .. } => {
            ensure!(!stages.is_empty(), "`stages` is empty")
        }
        Executor::ArrivalRate {
            pre_allocated,
            max_vus,
            ..
        } => {
            ensure!(
                *pre_allocated > 0 || *max_vus > 0,
                "`preAllocatedVUs` must be at least 1"
            );
        }
    }
    Ok(())
}

fn scenario(
    name: &str,
    s: &Value,
    run_tags: &BTreeMap<String, String>,
    share: Share,
) -> anyhow::Result<ScenarioSpec> {
    let obj = s.as_object().context("not an object")?;
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let need = |k: &str| field(k).with_context(|| format!("`{k}` is required"));
    let kind = field("executor")
        .and_then(Value::as_str)
        .context("`executor` is required (constant-vus, ramping-vus, per-vu-iterations, shared-iterations, constant-arrival-rate, ramping-arrival-rate)")?;
    let opt_dur = |k: &str, d: Duration| -> anyhow::Result<Duration> {
        field(k).map_or(Ok(d), |v| duration(v, k))
    };
    let time_unit = opt_dur("timeUnit", Duration::from_secs(1))?;
    ensure!(!time_unit.is_zero(), "`timeUnit` must be above zero");
    let per_second = |r: f64| r / time_unit.as_secs_f64();
    let (allowed, executor): (&[&str], Executor) = match kind {
        "constant-vus" => (
            &["vus", "duration"],
            Executor::ConstantVus {
                vus: field("vus").map_or(Ok(1), |v| count(v, "vus"))?,
                duration: duration(need("duration")?, "duration")?,
            },
        ),
        "ramping-vus" => (
            &["startVUs", "stages", "gracefulRampDown"],
            Executor::RampingVus {
                start_vus: field("startVUs").map_or(Ok(1), |v| count(v, "startVUs"))?,
                stages: vu_stages(need("stages")?, "stages")?,
                graceful_ramp_down: opt_dur("gracefulRampDown", GRACEFUL_STOP)?,
            },
        ),
        "per-vu-iterations" => (
            &["vus", "iterations", "maxDuration"],
            Executor::PerVuIterations {
                vus: field("vus").map_or(Ok(1), |v| count(v, "vus"))?,
                iterations: field("iterations").map_or(Ok(1), |v| count(v, "iterations"))?,
                max_duration: opt_dur("maxDuration", MAX_DURATION)?,
            },
        ),
        "shared-iterations" => (
            &["vus", "iterations", "maxDuration"],
            Executor::SharedIterations {
                vus: field("vus").map_or(Ok(1), |v| count(v, "vus"))?,
                iterations: field("iterations").map_or(Ok(1), |v| count(v, "iterations"))?,
                max_duration: opt_dur("maxDuration", MAX_DURATION)?,
            },
        ),
        "constant-arrival-rate" => {
            let rate = need("rate")?
                .as_f64()
                .filter(|r| *r > 0.0)
                .context("`rate` must be a number above zero")?;
            let pre = count(need("preAllocatedVUs")?, "preAllocatedVUs")?;
            (
                &["rate", "timeUnit", "duration", "preAllocatedVUs", "maxVUs"],
                Executor::ArrivalRate {
                    start_rate: per_second(rate),
                    stages: vec![plan::Stage {
                        duration: duration(need("duration")?, "duration")?,
                        target: per_second(rate),
                    }],
                    pre_allocated: pre,
                    max_vus: field("maxVUs")
                        .map_or(Ok(pre), |v| count(v, "maxVUs"))?
                        .max(pre),
                    constant: true,
                },
            )
        }
        "ramping-arrival-rate" => {
            let pre = count(need("preAllocatedVUs")?, "preAllocatedVUs")?;
            let start = field("startRate").and_then(Value::as_f64).unwrap_or(0.0);
            (
                &[
                    "startRate",
                    "timeUnit",
                    "stages",
                    "preAllocatedVUs",
                    "maxVUs",
                ],
                Executor::ArrivalRate {
                    start_rate: per_second(start),
                    stages: stages(need("stages")?, "stages")?
                        .into_iter()
                        .map(|(d, t)| plan::Stage {
                            duration: d,
                            target: per_second(t),
                        })
                        .collect(),
                    pre_allocated: pre,
                    max_vus: field("maxVUs")
                        .map_or(Ok(pre), |v| count(v, "maxVUs"))?
                        .max(pre),
                    constant: false,
                },
            )
        }
        other => bail!(
            "executor `{other}` is not supported (constant-vus, ramping-vus, per-vu-iterations, shared-iterations, constant-arrival-rate, ramping-arrival-rate)"
        ),
    };
    const COMMON: &[&str] = &[
        "executor",
        "exec",
        "startTime",
        "gracefulStop",
        "env",
        "tags",
    ];
    for key in obj.keys() {
        ensure!(
            COMMON.contains(&key.as_str()) || allowed.contains(&key.as_str()),
            "option `{key}` does not apply to executor `{kind}` (it takes {})",
            allowed
                .iter()
                .chain(COMMON)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    check_executor(&executor)?;
    let mut tags = run_tags.clone();
    tags.extend(string_map(field("tags"), "tags")?);
    Ok(ScenarioSpec {
        name: name.to_owned(),
        executor: executor.split(share),
        exec: field("exec")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned(),
        start_time: opt_dur("startTime", Duration::ZERO)?,
        graceful_stop: opt_dur("gracefulStop", GRACEFUL_STOP)?,
        env: string_map(field("env"), "env")?,
        tags,
        share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> anyhow::Result<Options> {
        Options::parse(json, &Overrides::default(), Share::WHOLE)
    }

    #[test]
    fn shortcuts_resolve_as_in_k6() {
        let o = parse(r#"{"vus": 5, "duration": "10s"}"#).unwrap();
        assert_eq!(
            o.scenarios[0].executor,
            Executor::ConstantVus {
                vus: 5,
                duration: Duration::from_secs(10)
            }
        );
        let o = parse(r#"{"vus": 2, "iterations": 7}"#).unwrap();
        assert_eq!(o.scenarios[0].executor.name(), "shared-iterations");
        let o = parse(r#"{"stages": [{"duration": "1s", "target": 4}]}"#).unwrap();
        assert_eq!(o.scenarios[0].executor.max_vus(), 4);
        assert_eq!(
            o.scenarios[0].executor.vus_at(Duration::from_millis(500)),
            3
        );
        let o = parse("{}").unwrap();
        assert_eq!(
            o.scenarios[0].executor,
            Executor::SharedIterations {
                vus: 1,
                iterations: 1,
                max_duration: MAX_DURATION
            }
        );
        let cli = Overrides {
            vus: Some(3),
            duration: Some(Duration::from_secs(2)),
            ..Overrides::default()
        };
        let o = Options::parse(
            r#"{"scenarios": {"a": {"executor": "shared-iterations"}}}"#,
            &cli,
            Share::WHOLE,
        )
        .unwrap();
        assert_eq!(o.scenarios.len(), 1);
        assert_eq!(o.scenarios[0].executor.name(), "constant-vus");
    }

    #[test]
    fn scenarios_and_thresholds_parse() {
        let o = parse(
            r#"{
            "scenarios": {
              "open": {"executor": "constant-arrival-rate", "rate": 120, "timeUnit": "1m",
                       "duration": "30s", "preAllocatedVUs": 2, "maxVUs": 5, "exec": "api",
                       "startTime": "5s", "tags": {"kind": "open"}},
              "warm": {"executor": "per-vu-iterations", "vus": 2, "iterations": 3}
            },
            "thresholds": {
              "http_req_duration{name:login}": ["p(95)<500", {"threshold": "max<900", "abortOnFail": true, "delayAbortEval": "10s"}],
              "checks": "rate>0.99"
            }
        }"#,
        )
        .unwrap();
        assert_eq!(o.scenarios[0].name, "warm");
        let open = &o.scenarios[1];
        assert_eq!(open.exec, "api");
        assert_eq!(open.start_time, Duration::from_secs(5));
        let Executor::ArrivalRate {
            start_rate,
            max_vus,
            ..
        } = open.executor
        else {
            panic!("{:?}", open.executor)
        };
        assert_eq!((start_rate, max_vus), (2.0, 5));
        assert_eq!(o.thresholds.len(), 3);
        assert!(o.thresholds.iter().any(|t| t.abort_on_fail));
        assert!(
            o.thresholds
                .iter()
                .any(|t| t.delay_abort_eval == Duration::from_secs(10))
        );
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let err = |j: &str| format!("{:#}", parse(j).unwrap_err());
        assert!(err(r#"{"vu": 1}"#).contains("option `vu` is not supported"));
        assert!(
            err(r#"{"scenarios": {"x": {"executor": "warp-speed"}}}"#)
                .contains("executor `warp-speed` is not supported")
        );
        assert!(
            err(r#"{"scenarios": {"x": {"executor": "constant-vus", "vus": 1}}}"#)
                .contains("`duration` is required")
        );
        assert!(
            err(
                r#"{"scenarios": {"x": {"executor": "constant-vus", "duration": "1s", "rate": 3}}}"#
            )
            .contains("option `rate` does not apply")
        );
        assert!(err(r#"{"duration": "soon"}"#).contains("not a duration"));
    }
}
