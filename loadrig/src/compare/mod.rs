//! `loadrig compare native wasm`: the same app natively and on edge, the identical workload
//! against each — interleaved and repeated, at closed-model saturation and at fixed
//! open-model rates — and cold start as separate numbers.

pub mod cold;
pub mod servers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Value, json};

use crate::drive::{self, RequestSpec, RunConfig, Target};
use crate::plan::{Arrivals, Plan, Schedule, Share};
use crate::record::{Results, Trend};
use crate::summary::{self, SummaryDoc};

use cold::ColdStart;
use servers::{Repo, Server};

/// The two sides, in table order.
pub const SIDES: [&str; 2] = ["native", "wasm"];

/// The Markdown document the `markdown` workload posts.
const MARKDOWN_SAMPLE: &[u8] = include_bytes!("../../../examples/apps/assets/sample.md");

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// A scenario to run against each side instead of the app's request.
    pub script: Option<PathBuf>,
    /// The scenario's `-e` environment (BASE_URL is set per side).
    pub env: Vec<(String, String)>,
    /// The example app.
    pub app: String,
    /// Already-running servers (`native=URL`, `wasm=URL`); the others are built and started.
    pub urls: [Option<String>; 2],
    /// Length of each measured run.
    pub duration: Duration,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Connections per run.
    pub connections: u64,
    /// Open-model rates as fractions of the slower side's closed-model rate.
    pub open_fractions: Vec<f64>,
    /// Cold-start repetitions (0: skip).
    pub cold: usize,
    /// The checkout to build from.
    pub repo: Option<PathBuf>,
    /// Pin servers to CPU 0 and the generator to CPU 1.
    pub pin: bool,
}

/// One load mode's results for both sides.
#[derive(Debug, Clone)]
pub struct Mode {
    /// `closed` or `open N req/s`.
    pub name: String,
    /// Per side, the merged results of every round, with `elapsed` the sum of the rounds'.
    pub results: [Results; 2],
    /// Per side, the CPU time its server used during those rounds, when loadrig started
    /// the server and could read it.
    pub cpu: [Option<Duration>; 2],
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The app.
    pub app: String,
    /// The URLs compared.
    pub urls: [String; 2],
    /// The request sent to both.
    pub request: String,
    /// The load modes.
    pub modes: Vec<Mode>,
    /// Cold starts (empty when the servers were not started here).
    pub cold: Vec<ColdStart>,
}

/// The workload for an example: the same request to both sides.
fn workload(app: &str) -> (Method, &'static str, Bytes) {
    match app {
        "markdown" => (Method::POST, "/", Bytes::from_static(MARKDOWN_SAMPLE)),
        _ => (Method::GET, "/", Bytes::new()),
    }
}

fn say(msg: &str) {
    eprintln!("loadrig: {msg}");
}

/// Pins the calling thread (and the threads it spawns from now on) to `cpu`; returns the
/// CPUs it could run on before, for [`restore_affinity`].
fn pin_self(cpu: usize) -> Option<nix::sched::CpuSet> {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    let me = nix::unistd::Pid::from_raw(0);
    let before = sched_getaffinity(me).ok();
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(me, &set);
    }
    before
}

/// Lets the calling thread run on the CPUs [`pin_self`] took it from.
fn restore_affinity(before: &nix::sched::CpuSet) {
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), before);
}

/// Runs the comparison.
pub fn run(cfg: &CompareConfig) -> anyhow::Result<Comparison> {
    ensure!(
        crate::compare::workload_known(&cfg.app),
        "unknown app `{}`: choose hello, site or markdown",
        cfg.app
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = Command::new("taskset").arg("-V").output().is_ok();
    let pin = cfg.pin && cpus >= 2 && taskset;
    let server_cpu = pin.then_some(0);
    let need_build = cfg.urls.iter().any(Option::is_none);
    let built = if need_build {
        Some(Repo::find(cfg.repo.as_deref())?.build(&cfg.app)?)
    } else {
        None
    };
    let scratch = tempfile_dir()?;
    let token = format!("compare-{}", std::process::id());
    let mut servers: Vec<Server> = Vec::new();
    let mut urls = [String::new(), String::new()];
    // Which of `servers` is each side's server, where loadrig started it (edge is side 1).
    let mut side_server: [Option<usize>; 2] = [None, None];
    for (i, side) in SIDES.iter().enumerate() {
        if let Some(url) = &cfg.urls[i] {
            urls[i] = url.trim_end_matches('/').to_owned();
            continue;
        }
        let built = built.as_ref().expect("built above");
        let cmd = if *side == "native" {
            let mut c = Command::new(&built.native);
            c.args(["--app", &cfg.app, "--listen", "127.0.0.1:0"]);
            c
        } else {
            let apps = scratch.path.join("apps");
            std::fs::create_dir_all(&apps)?;
            std::fs::copy(&built.component, apps.join(format!("{}.wasm", cfg.app)))?;
            if cfg.script.is_some() {
                // A script addresses the side by URL alone: every path goes to the app.
                std::fs::write(apps.join(format!("{}.toml", cfg.app)), "paths = [\"/\"]\n")?;
            }
            let mut c = Command::new(&built.edge);
            c.arg("serve")
                .arg(&apps)
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--admin",
                    "127.0.0.1:0",
                    "--threads",
                    "1",
                ])
                .arg("--cache-dir")
                .arg(scratch.path.join("cache"))
                .env("EDGE_ADMIN_TOKEN", &token)
                // A backtrace captured on every store drop costs ~10 % of a request.
                .env_remove("RUST_BACKTRACE");
            c
        };
        say(&format!(
            "starting {side}{}",
            if pin { " on CPU 0" } else { "" }
        ));
        let server = Server::start(cmd, server_cpu, *side == "wasm")?;
        urls[i] = server.url.clone();
        side_server[i] = Some(servers.len());
        servers.push(server);
    }
    let affinity_before_pin = if pin { pin_self(1) } else { None };
    let (method, path, body) = workload(&cfg.app);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::HOST,
        HeaderValue::from_str(&format!("{}.localhost", cfg.app)).context("app name")?,
    );
    let spec = RequestSpec {
        method: method.clone(),
        headers,
        body: body.clone(),
        http2: false,
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(60),
    };
    let targets = [
        Target::parse(&format!("{}{path}", urls[0]))?,
        Target::parse(&format!("{}{path}", urls[1]))?,
    ];
    let threads = if pin { 1 } else { cpus };
    if let Some(script) = &cfg.script {
        let mode = measure_script(cfg, script, &urls, threads)?;
        return Ok(Comparison {
            app: cfg.app.clone(),
            urls,
            request: format!("scenario {}", script.display()),
            modes: vec![mode],
            cold: Vec::new(),
        });
    }
    let run_one =
        |side: usize, arrivals: Arrivals, duration: Duration| -> anyhow::Result<Results> {
            let config = RunConfig {
                target: targets[side].clone(),
                request: spec.clone(),
                plan: Plan {
                    arrivals,
                    duration: Some(duration),
                    requests: None,
                    connections: cfg.connections,
                    max_connections: cfg.connections,
                    share: Share::WHOLE,
                },
                threads,
            };
            drive::run(&config, |_| {})
        };
    // The CPU time of each side's server, where loadrig started it: what a request costs
    // the server, which is what decides its queueing in the open model.
    let cpu_of = |side: usize| side_server[side].and_then(|i| servers[i].cpu_time());
    // Warm both sides: first requests fault in code and fill caches.
    for side in 0..2 {
        run_one(side, Arrivals::Closed, Duration::from_secs(1))?;
    }
    // Every mode: rounds of native then wasm, merged per side; rates over the summed time.
    let measure = |name: String, arrivals: &dyn Fn() -> Arrivals, label: &str| {
        let mut mode = Mode {
            name,
            results: [Results::default(), Results::default()],
            cpu: side_server.map(|s| s.map(|_| Duration::ZERO)),
        };
        let mut elapsed = [Duration::ZERO; 2];
        for round in 1..=cfg.rounds {
            for (side, total) in elapsed.iter_mut().enumerate() {
                say(&format!(
                    "round {round}/{}: {} {label}",
                    cfg.rounds, SIDES[side]
                ));
                let before = cpu_of(side);
                let r = run_one(side, arrivals(), cfg.duration)?;
                mode.cpu[side] = match (mode.cpu[side], before, cpu_of(side)) {
                    (Some(sum), Some(b), Some(a)) => Some(sum + a.saturating_sub(b)),
                    _ => None,
                };
                *total += r.elapsed;
                mode.results[side].merge(&r);
            }
        }
        for (r, e) in mode.results.iter_mut().zip(elapsed) {
            r.elapsed = e;
        }
        anyhow::Ok(mode)
    };
    let closed = measure(
        "closed".into(),
        &|| Arrivals::Closed,
        &format!(
            "closed, {} connections, {:?}",
            cfg.connections, cfg.duration
        ),
    )?;
    let slower = closed
        .results
        .iter()
        .map(|r| summary::value(r, "http_reqs", "rate").unwrap_or(0.0))
        .fold(f64::INFINITY, f64::min);
    let mut modes = vec![closed];
    for fraction in &cfg.open_fractions {
        let rate = (slower * fraction).round().max(1.0);
        modes.push(measure(
            format!(
                "open {rate:.0} req/s ({:.0} % of the slower side's closed rate)",
                fraction * 100.0
            ),
            &|| Arrivals::Open(Schedule::constant(rate, None)),
            &format!("open at {rate:.0} req/s"),
        )?);
    }
    let cold = match (side_server[1], &built, cfg.cold) {
        (Some(_), Some(built), n) if n > 0 && cfg.urls[0].is_none() => {
            say(&format!(
                "cold start: {n} of each (unpinned, the load servers stopped)"
            ));
            // Nothing else runs from here on: the servers under load go, and the cold
            // starts get every CPU (see `cold::measure`).
            drop(std::mem::take(&mut servers));
            if let Some(before) = &affinity_before_pin {
                restore_affinity(before);
            }
            cold::measure(&cold::ColdPlan {
                built,
                token: &token,
                app: &cfg.app,
                scratch: &scratch.path,
                repeat: n,
            })?
        }
        _ => Vec::new(),
    };
    Ok(Comparison {
        app: cfg.app.clone(),
        urls,
        request: format!(
            "{method} {path} ({} byte body), Host: {}.localhost",
            body.len(),
            cfg.app
        ),
        modes,
        cold,
    })
}

/// `--script`: the scenario against each side, rounds interleaved, merged per side.
fn measure_script(
    cfg: &CompareConfig,
    script: &Path,
    urls: &[String; 2],
    threads: usize,
) -> anyhow::Result<Mode> {
    let name = script.display().to_string();
    let js = name.ends_with(".js");
    let mut loaded = Vec::new();
    for url in urls {
        let mut env = cfg.env.clone();
        env.push(("BASE_URL".into(), url.trim_end_matches('/').to_owned()));
        // A k6 script's init code reads BASE_URL: each side gets its own snapshot.
        let l = if js {
            crate::scenario::load_bytes(&crate::scenario::js::build(script, &env)?, &name)?
        } else {
            crate::scenario::load(script)?
        };
        loaded.push((l, env));
    }
    let mut mode = Mode {
        name: format!("scenario {name}"),
        results: [Results::default(), Results::default()],
        cpu: [None, None],
    };
    let mut elapsed = [Duration::ZERO; 2];
    for round in 1..=cfg.rounds {
        for (side, (l, env)) in loaded.iter().enumerate() {
            say(&format!(
                "round {round}/{}: {} {name}",
                cfg.rounds, SIDES[side]
            ));
            let settings = crate::scenario::Settings {
                env: env.clone(),
                threads,
                ..Default::default()
            };
            let r = crate::scenario::run(l, &settings, |_| {})?.results;
            elapsed[side] += r.elapsed;
            mode.results[side].merge(&r);
        }
    }
    for (r, e) in mode.results.iter_mut().zip(elapsed) {
        r.elapsed = e;
    }
    Ok(mode)
}

fn workload_known(app: &str) -> bool {
    matches!(app, "hello" | "site" | "markdown")
}

/// A scratch directory removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempfile_dir() -> anyhow::Result<Scratch> {
    let path = std::env::temp_dir().join(format!(
        "loadrig-compare-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&path).with_context(|| format!("creating `{}`", path.display()))?;
    Ok(Scratch { path })
}

/// One row of the table: a metric and its value on each side.
#[derive(Debug, Clone)]
pub struct Row {
    /// The metric, e.g. `http_req_duration p(99)`.
    pub metric: String,
    /// The unit, e.g. `ms`.
    pub unit: &'static str,
    /// Native and wasm values (`None`: no data).
    pub values: [Option<f64>; 2],
}

impl Row {
    /// wasm / native.
    pub fn ratio(&self) -> Option<f64> {
        match self.values {
            [Some(n), Some(w)] if n > 0.0 => Some(w / n),
            _ => None,
        }
    }
}

/// The table rows of one mode.
pub fn rows(mode: &Mode) -> Vec<Row> {
    let r = &mode.results;
    let mut rows = vec![
        Row {
            metric: "http_reqs rate".into(),
            unit: "req/s",
            values: [0, 1].map(|s| summary::value(&r[s], "http_reqs", "rate")),
        },
        Row {
            metric: "data_received rate".into(),
            unit: "B/s",
            values: [0, 1].map(|s| summary::value(&r[s], "data_received", "rate")),
        },
    ];
    // The server's CPU time per request and as a share of the run: the open model's
    // latency grows with how busy the server is, and a request can cost a server more when
    // requests arrive one by one than in the closed model's batches.
    let per_request = |side: usize| {
        let count = summary::value(&r[side], "http_reqs", "count")?;
        (count > 0.0).then(|| mode.cpu[side].map(|c| c.as_secs_f64() * 1e6 / count))?
    };
    let busy = |side: usize| {
        let elapsed = r[side].elapsed.as_secs_f64();
        (elapsed > 0.0).then(|| mode.cpu[side].map(|c| 100.0 * c.as_secs_f64() / elapsed))?
    };
    if mode.cpu.iter().any(Option::is_some) {
        rows.push(Row {
            metric: "server CPU per request".into(),
            unit: "µs",
            values: [0, 1].map(per_request),
        });
        rows.push(Row {
            metric: "server CPU busy".into(),
            unit: "%",
            values: [0, 1].map(busy),
        });
    }
    let phases = [
        Trend::Blocked,
        Trend::Connecting,
        Trend::Sending,
        Trend::Waiting,
        Trend::Receiving,
        Trend::Duration,
    ];
    for t in phases {
        for agg in ["p(50)", "p(95)", "p(99)"] {
            rows.push(Row {
                metric: format!("{} {agg}", t.name()),
                unit: "ms",
                values: [0, 1].map(|s| summary::value(&r[s], t.name(), agg)),
            });
        }
    }
    for agg in ["p(50)", "p(99)"] {
        let v = summary::value(&r[1], "server_timing_instantiate", agg);
        if v.is_some() {
            rows.push(Row {
                metric: format!("instantiation (Server-Timing) {agg}"),
                unit: "ms",
                values: [None, v],
            });
        }
    }
    rows.push(Row {
        metric: "http_req_failed rate".into(),
        unit: "",
        values: [0, 1].map(|s| summary::value(&r[s], "http_req_failed", "rate")),
    });
    // Scenario runs: iterations and checks too.
    if r.iter().any(|x| !x.metrics.is_empty()) {
        rows.push(Row {
            metric: "iterations rate".into(),
            unit: "it/s",
            values: [0, 1].map(|s| summary::value(&r[s], "iterations", "rate")),
        });
        for agg in ["p(50)", "p(99)"] {
            rows.push(Row {
                metric: format!("iteration_duration {agg}"),
                unit: "ms",
                values: [0, 1].map(|s| summary::value(&r[s], "iteration_duration", agg)),
            });
        }
        rows.push(Row {
            metric: "checks rate".into(),
            unit: "",
            values: [0, 1].map(|s| summary::value(&r[s], "checks", "rate")),
        });
    }
    rows
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(v) if unit == "ms" => format!("{v:.3} ms"),
        Some(v) if unit == "µs" => format!("{v:.1} µs"),
        Some(v) if unit == "%" => format!("{v:.0} %"),
        Some(v) if unit == "B/s" => format!("{}/s", crate::report::bytes(v)),
        Some(v) if unit == "req/s" || unit == "it/s" => format!("{v:.0}/s"),
        Some(v) => format!("{v:.4}"),
    }
}

/// The text report.
pub fn text(c: &Comparison) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "\n  {} — native {} vs wasm (edge) {}",
        c.app, c.urls[0], c.urls[1]
    )
    .unwrap();
    writeln!(out, "  request: {}", c.request).unwrap();
    for mode in &c.modes {
        writeln!(out, "\n  {}", mode.name).unwrap();
        writeln!(
            out,
            "  {:<38} {:>16} {:>16} {:>12}",
            "metric", "native", "wasm", "wasm/native"
        )
        .unwrap();
        for row in rows(mode) {
            writeln!(
                out,
                "  {:<38} {:>16} {:>16} {:>12}",
                row.metric,
                fmt_value(row.values[0], row.unit),
                fmt_value(row.values[1], row.unit),
                row.ratio().map_or("-".into(), |r| format!("{r:.2}×"))
            )
            .unwrap();
        }
    }
    if !c.cold.is_empty() {
        writeln!(out, "\n  cold start (ms)").unwrap();
        writeln!(
            out,
            "  {:<46} {:>4} {:>9} {:>9} {:>9}",
            "", "n", "p50", "p90", "max"
        )
        .unwrap();
        for cs in &c.cold {
            writeln!(
                out,
                "  {:<46} {:>4} {:>9.2} {:>9.2} {:>9.2}",
                cs.name,
                cs.samples_ms.len(),
                cs.percentile(50.0),
                cs.percentile(90.0),
                cs.percentile(100.0)
            )
            .unwrap();
        }
        if let Some(mode) = c.modes.first() {
            let inst = &mode.results[1];
            if let (Some(p50), Some(p99)) = (
                summary::value(inst, "server_timing_instantiate", "p(50)"),
                summary::value(inst, "server_timing_instantiate", "p(99)"),
            ) {
                writeln!(
                    out,
                    "  {:<46} {:>4} {:>9.3} {:>9} {:>9.3}  (p50, p99; from Server-Timing)",
                    "per-request instantiation", "", p50, "", p99
                )
                .unwrap();
            }
        }
    }
    out
}

/// The JSON document: the table, the cold starts, and each side's full summary per mode.
pub fn json(c: &Comparison) -> Value {
    let modes: Vec<Value> = c
        .modes
        .iter()
        .map(|m| {
            let table: Vec<Value> = rows(m)
                .iter()
                .map(|r| json!({"metric": r.metric, "unit": r.unit, "native": r.values[0], "wasm": r.values[1], "ratio": r.ratio()}))
                .collect();
            json!({
                "mode": m.name,
                "table": table,
                "native": SummaryDoc::new(vec![], &m.results[0], vec![]),
                "wasm": SummaryDoc::new(vec![], &m.results[1], vec![]),
            })
        })
        .collect();
    let cold: Vec<Value> = c
        .cold
        .iter()
        .map(|cs| json!({"name": cs.name, "how": cs.how, "samples_ms": cs.samples_ms,
                         "p50_ms": cs.percentile(50.0), "p90_ms": cs.percentile(90.0), "max_ms": cs.percentile(100.0)}))
        .collect();
    json!({"app": c.app, "native": c.urls[0], "wasm": c.urls[1], "request": c.request, "modes": modes, "cold_start": cold})
}

/// A self-contained HTML page: per mode, the table and native and wasm on shared axes
/// (latency percentile spectrum, rate over time); the cold starts as a chart and a table.
pub fn html(c: &Comparison) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut body = String::new();
    for mode in &c.modes {
        writeln!(body, "<h2>{}</h2><table><tr><th>metric</th><th>native</th><th>wasm</th><th>wasm/native</th></tr>", esc(&mode.name)).unwrap();
        for row in rows(mode) {
            writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&row.metric),
                esc(&fmt_value(row.values[0], row.unit)),
                esc(&fmt_value(row.values[1], row.unit)),
                row.ratio().map_or("-".into(), |r| format!("{r:.2}×"))
            )
            .unwrap();
        }
        body.push_str("</table>\n");
        let [native, wasm] = &mode.results;
        body.push_str(r#"<div class="pair">"#);
        body.push_str(&crate::report::spectrum_pair(native, wasm));
        body.push_str(&crate::report::rate_pair(native, wasm));
        body.push_str("</div>\n");
    }
    if !c.cold.is_empty() {
        let rows: Vec<(&str, [f64; 3])> = c
            .cold
            .iter()
            .map(|cs| {
                let p = |q| cs.percentile(q);
                (cs.name, [p(50.0), p(90.0), p(100.0)])
            })
            .collect();
        body.push_str(&crate::report::range_bars(
            "Cold starts (ms): bar to the median, whisker from p90 to max",
            "ms",
            &rows,
        ));
        body.push_str("<h2>Cold start (ms)</h2><table><tr><th></th><th>n</th><th>p50</th><th>p90</th><th>max</th><th>how</th></tr>\n");
        for cs in &c.cold {
            writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                esc(cs.name),
                cs.samples_ms.len(),
                cs.percentile(50.0),
                cs.percentile(90.0),
                cs.percentile(100.0),
                esc(cs.how)
            )
            .unwrap();
        }
        body.push_str("</table>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadrig compare: {app}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 860px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }}
td:first-child, th:first-child {{ text-align: left; }}
svg text {{ font-size: 11px; fill: #555; }} figcaption {{ font-weight: 600; }}
</style></head><body>
<h1>{app}: native vs wasm on edge</h1>
<p>{request}; native {native}, wasm {wasm}.</p>
{body}
</body></html>
"#,
        app = esc(&c.app),
        request = esc(&c.request),
        native = esc(&c.urls[0]),
        wasm = esc(&c.urls[1]),
    )
}
