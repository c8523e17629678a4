//! `loadrig run`: load one URL and report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Method};

use crate::drive::{self, Progress, RequestSpec, RunConfig, Target};
use crate::plan::{self, Arrivals, Plan, Share};
use crate::summary::RunInfo;
use crate::threshold::Threshold;

use super::{Verdict, parse_thresholds, report, usage};

/// How long a run lasts when neither `-d`, `-n` nor `--stage` says.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Load a URL, or run a scenario, and report latency by phase, throughput and errors.
///
/// A URL: closed model (default): `-c` connections send back to back. Open model (`-r` or
/// `--stage`): requests are due on a fixed schedule and latency is measured from when each
/// was due, so a server that stalls is not flattered (coordinated omission is corrected);
/// the uncorrected figures are kept too.
///
/// A scenario (`scenario.wasm`: a component exporting `loadrig:scenario/vu`, see
/// loadrig/wit/scenario.wit): one instance per virtual user, on the executors its
/// k6-shaped options name; `--vus`, `-d`, `--iterations` and `--stage DURATION:VUS`
/// override them as in k6. A k6 script (`script.js`) runs unchanged, each VU an instance of
/// a JavaScript engine snapshotted after the script's init code.
///
/// Compiled code (the k6 VU engine, scenario components) is kept in `$LOADRIG_CACHE_DIR`,
/// default `~/.cache/loadrig` (an empty value: no cache), so only a first run compiles it.
///
/// Exit codes: 0 done, 99 a threshold failed, 2 bad input, 104 invalid scenario options,
/// 107 scenario error, 108 run aborted, 110 started too late after `--start-at`, 1 anything
/// else.
#[derive(Debug, Parser)]
#[command(after_help = "Examples:\n  \
    loadrig run http://127.0.0.1:8080/ -c 16 -d 10s\n  \
    loadrig run http://127.0.0.1:8080/ -r 5000 -d 30s --threshold 'p(99)<5ms' --json out.json\n  \
    loadrig run http://127.0.0.1:8080/ --stage 10s:1000 --stage 20s:1000 --stage 10s:0\n  \
    loadrig run http://127.0.0.1:8080/ -r 20k -d 1m --segment 1/2 --json a.json  # and 2/2 elsewhere\n  \
    loadrig run scenario.wasm --vus 10 -d 30s -e BASE_URL=http://127.0.0.1:8080\n  \
    loadrig run script.js --vus 50 -d 1m -e BASE_URL=http://127.0.0.1:8080")]
pub struct RunArgs {
    /// The URL to load (http:// only), or a scenario component (`.wasm`).
    #[arg(value_name = "URL|SCENARIO")]
    pub url: String,
    /// Scenario: VUs (k6's `--vus`); with `-d` alone, a constant-vus run.
    #[arg(long, value_name = "N")]
    pub vus: Option<u64>,
    /// Scenario: iterations shared by the VUs (k6's `--iterations`).
    #[arg(short = 'i', long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Scenario: an environment variable for the VUs, `KEY=VALUE` (k6's `-e`;
    /// repeatable). The VUs see nothing else of loadrig's environment.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Connections to open. Closed model: each sends back to back. Open model: the pool
    /// at the start, grown while every connection is busy and a request is overdue.
    #[arg(short = 'c', long, default_value_t = 10, value_name = "N")]
    pub connections: u64,
    /// Open model: send this many requests per second (e.g. 1000, 2.5k, 600/m).
    #[arg(short = 'r', long, value_name = "RATE")]
    pub rate: Option<String>,
    /// Open model with a ramp: move linearly to RATE over DURATION, starting from `-r` (or
    /// 0). Repeatable; the stages set the run's length.
    #[arg(long = "stage", value_name = "DURATION:RATE")]
    pub stages: Vec<String>,
    /// Open model: let the pool grow to this many connections while every connection is
    /// busy and requests are overdue (a slow server needs rate × latency connections).
    /// Default: `-c`, i.e. a fixed pool like wrk2's; growing costs the generator CPU, and a
    /// generator near its limit that grows can spiral.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u64>,
    /// Stop starting requests after this long (e.g. 30s, 1m30s). Default 10s unless `-n`
    /// or `--stage` bound the run.
    #[arg(short = 'd', long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Stop after this many requests.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// The request method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// A request header, `Name: value` (repeatable). `Host` overrides the URL's.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(short = 'b', long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Give up opening a connection after this long.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub connect_timeout: String,
    /// Give up on a request (from sending it to the end of the response) after this long.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub timeout: String,
    /// Speak HTTP/2 over cleartext (h2c, prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,
    /// Worker threads. Default: the CPUs this process may use.
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Run only the i-th of n equal shares of the load (e.g. 1/2 here, 2/2 on another
    /// machine) and combine the JSON outputs with `loadrig merge`.
    #[arg(long, value_name = "i/n")]
    pub segment: Option<String>,
    /// Fail (exit 99) unless this holds, e.g. `p(99)<5ms` (on http_req_duration),
    /// `http_req_waiting:p(95)<2ms`, `http_reqs:rate>10000`, `errors<0.1%`. Units: us, ms, s
    /// (bare numbers are ms), % for rates. Repeatable.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
    /// Write the summary as JSON (k6's summary shape plus serialized histograms; schema in
    /// loadrig/summary.schema.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No live progress line on stderr (it is only shown on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub start: crate::start::StartArgs,
}

/// A validated `run`: every error in the flags surfaces before a socket is opened.
struct Validated {
    config: RunConfig,
    thresholds: Vec<Threshold>,
    info: RunInfo,
}

impl RunArgs {
    fn validate(&self) -> anyhow::Result<Validated> {
        let target = Target::parse(&self.url)?;
        ensure!(self.connections > 0, "--connections must be at least 1");
        let (rate, arrivals, duration) =
            plan::parse_load(self.rate.as_deref(), &self.stages, self.duration.as_deref())?;
        ensure!(self.requests != Some(0), "--requests must be at least 1");
        let duration = match (duration, &arrivals, self.requests) {
            (Some(d), _, _) => Some(d),
            (None, Arrivals::Open(_), _) if !self.stages.is_empty() => None,
            (None, _, Some(_)) => None,
            (None, _, None) => Some(DEFAULT_DURATION),
        };
        let max_connections = self
            .max_connections
            .unwrap_or(self.connections)
            .max(self.connections);
        let share = match &self.segment {
            Some(s) => Share::parse_segment(s)?,
            None => Share::WHOLE,
        };
        let mut headers = HeaderMap::new();
        for h in &self.headers {
            let (name, value) = RequestSpec::parse_header(h)?;
            headers.append(name, value);
        }
        let method: Method = self
            .method
            .parse()
            .with_context(|| format!("`{}` is not a valid HTTP method", self.method))?;
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Bytes::from(b.clone()),
            (None, Some(path)) => Bytes::from(
                std::fs::read(path)
                    .with_context(|| format!("reading the body file `{}`", path.display()))?,
            ),
            (None, None) => Bytes::new(),
        };
        let threads = match self.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let thresholds = parse_thresholds(&self.threshold)?;
        let info = RunInfo {
            url: self.url.clone(),
            method: method.to_string(),
            model: match arrivals {
                Arrivals::Closed => "closed".into(),
                Arrivals::Open(_) => "open".into(),
            },
            connections: self.connections,
            rate,
            stages: self.stages.clone(),
            segment: self.segment.as_ref().map(|_| share.segment_text()),
            started_at: 0.0,
            planned_start: None,
        };
        Ok(Validated {
            config: RunConfig {
                target,
                request: RequestSpec {
                    method,
                    headers,
                    body,
                    http2: self.http2,
                    connect_timeout: plan::parse_duration(&self.connect_timeout)?,
                    timeout: plan::parse_duration(&self.timeout)?,
                },
                plan: Plan {
                    arrivals,
                    duration,
                    requests: self.requests,
                    connections: self.connections,
                    max_connections,
                    share,
                },
                threads,
            },
            thresholds,
            info,
        })
    }

    /// Runs the command.
    pub fn execute(&self) -> anyhow::Result<Verdict> {
        if super::script::is_scenario(&self.url) {
            return super::script::execute(self);
        }
        let Validated {
            config,
            thresholds,
            mut info,
        } = self.validate().map_err(usage)?;
        let start = self.start.validate().map_err(usage)?;
        info.planned_start = start.map(|s| s.wait(true)).transpose()?;
        info.started_at = crate::start::now();
        let show = !self.no_progress && std::io::stderr().is_terminal();
        let length = config.plan.length();
        let results = drive::run(&config, |p| {
            if show {
                progress_line(p, length);
            }
        })?;
        if show {
            eprint!("\r\x1b[2K");
        }
        report(
            vec![info],
            &results,
            &thresholds,
            self.json.as_deref(),
            self.html.as_deref(),
        )
    }
}

fn progress_line(p: Progress, length: Option<Duration>) {
    let secs = p.elapsed.as_secs_f64();
    let of = length.map_or(String::new(), |l| format!("/{:.0}s", l.as_secs_f64()));
    eprint!(
        "\r\x1b[2K  {secs:.1}s{of}  {} requests  {:.0}/s  {} failed",
        p.requests,
        p.requests as f64 / secs.max(1e-9),
        p.failed
    );
    let _ = std::io::stderr().flush();
}
