//! `loadrig ws`: hold WebSocket connections, send messages or pings, histogram the round
//! trips.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use http::HeaderMap;

use crate::drive::RequestSpec;
use crate::metrics::Metric;
use crate::plan::{self, Arrivals, Share};
use crate::summary::{MetricType, RunInfo};
use crate::threshold::Threshold;
use crate::ws::{self, Traffic, WsConfig, WsProgress, WsTarget};

use super::{Verdict, report, usage};

/// How long the message phase lasts when neither `-d` nor `--stage` says.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// The payload size when neither `--message` nor `--message-size` says.
const DEFAULT_MESSAGE_SIZE: usize = 16;

/// Load a WebSocket server: open connections, hold them, send messages (or PINGs) and
/// histogram the round trips, with k6's metric names (`ws_connecting`, `ws_sessions`,
/// `ws_msgs_sent`, `ws_msgs_received`, `ws_session_duration`, `ws_ping`) plus `ws_rtt`.
///
/// The connections open first (at `--connect-rate`), then the message phase lasts `-d`
/// (or the stages), then replies still owed are awaited and every connection is closed
/// with 1000.
///
/// Closed model (default): each connection keeps `--in-flight` messages outstanding and
/// sends the next when an echo arrives. Open model (`-r`, `--stage`): messages are due on
/// the schedule, spread over the connections, and each round trip is measured from when
/// its message was due (`ws_rtt`; from when it was sent: `ws_rtt_uncorrected`).
///
/// Failures are counted by kind (`ws_errors{kind:…}`: connect_refused, handshake_status_404,
/// handshake_timeout, protocol, oversized, timeout, lost, …) and sessions by the close code
/// they ended with (`ws_closes{code:1000}`, 1006 without a close frame). A connection that
/// fails or is closed by the server is reopened after a pause (100 ms, doubling to 2 s).
///
/// Exit codes: 0 done, 99 a threshold failed, 2 bad input, 110 started too late after
/// `--start-at`, 1 anything else.
#[derive(Debug, Parser)]
#[command(after_help = "Examples:\n  \
    loadrig ws ws://127.0.0.1:8080/ws -c 64 -d 10s\n  \
    loadrig ws ws://127.0.0.1:8080/ws -c 64 -r 20k -d 30s --threshold 'p(99)<5ms'\n  \
    loadrig ws ws://127.0.0.1:8080/ws -c 10000 --connect-rate 2000 --ping -r 1000 -d 1m\n  \
    loadrig ws ws://127.0.0.1:8080/feed --expect-reply off -c 100  # count what a feed sends\n  \
    loadrig ws ws://127.0.0.1:8080/ws -r 10k --segment 1/2 --json a.json  # 2/2 elsewhere, then merge")]
pub struct WsArgs {
    /// The WebSocket URL (ws:// only).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Connections to open and hold.
    #[arg(short = 'c', long, default_value_t = 10, value_name = "N")]
    pub connections: u64,
    /// Open connections at this rate (e.g. 500, 2k, 6000/m). Default: all at once.
    #[arg(long, value_name = "RATE")]
    pub connect_rate: Option<String>,
    /// How long the message phase lasts (e.g. 30s, 1m). Default 10s unless `--stage`.
    #[arg(short = 'd', long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Open model: send this many messages per second in total (e.g. 1000, 20k).
    #[arg(short = 'r', long, value_name = "RATE")]
    pub rate: Option<String>,
    /// Open model with a ramp: move linearly to RATE over DURATION, starting from `-r` (or
    /// 0). Repeatable; the stages set the message phase's length.
    #[arg(long = "stage", value_name = "DURATION:RATE")]
    pub stages: Vec<String>,
    /// Send this text as every message.
    #[arg(long, value_name = "TEXT", conflicts_with = "message_size")]
    pub message: Option<String>,
    /// Send a random payload of this many bytes as every message [default: 16].
    #[arg(long, value_name = "BYTES")]
    pub message_size: Option<usize>,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub binary: bool,
    /// Send PING frames instead of messages; the PONGs are the replies (`ws_ping`).
    #[arg(long, conflicts_with_all = ["message", "message_size", "binary"])]
    pub ping: bool,
    /// Closed model: messages each connection keeps outstanding [default: 1]. Open model:
    /// the most a connection may have outstanding, after which due messages wait (and
    /// their wait counts in `ws_rtt`) [default: no limit].
    #[arg(long, value_name = "K")]
    pub in_flight: Option<u64>,
    /// Whether the server answers every message with its echo (or every PING with a
    /// PONG). `off`: only send and receive rates are measured, for servers that do not
    /// echo; the closed model then sends as fast as the connection takes.
    #[arg(long, default_value = "on", value_name = "on|off", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub expect_reply: bool,
    /// A header on the upgrade request, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Give up opening a connection (TCP connect and upgrade) after this long.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub connect_timeout: String,
    /// A reply not received this long after its message was sent counts as a timeout
    /// and ends the connection (it is reopened).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,
    /// The largest message or frame accepted from the server (e.g. 64KiB, 16MiB); a
    /// larger one ends the session as `oversized`.
    #[arg(long, default_value = "16MiB", value_name = "SIZE")]
    pub max_message_size: String,
    /// Worker threads. Default: the CPUs this process may use.
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Run only the i-th of n equal shares of the connections and messages, and combine
    /// the JSON outputs with `loadrig merge`.
    #[arg(long, value_name = "i/n")]
    pub segment: Option<String>,
    /// Fail (exit 99) unless this holds, e.g. `p(99)<5ms` (on ws_rtt, or ws_ping with
    /// `--ping`), `ws_connecting:p(95)<50ms`, `ws_errors:count<1`,
    /// `ws_msgs_received:rate>10000`. Repeatable.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
    /// Write the summary as JSON (k6's summary shape plus serialized histograms).
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

/// A random text payload: letters and digits, so it is valid UTF-8.
fn random_payload(size: usize, binary: bool) -> anyhow::Result<Bytes> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; size];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    if !binary {
        for b in &mut bytes {
            *b = ALNUM[*b as usize % ALNUM.len()];
        }
    }
    Ok(Bytes::from(bytes))
}

impl WsArgs {
    fn validate(&self) -> anyhow::Result<(WsConfig, Vec<Threshold>, RunInfo)> {
        let target = WsTarget::parse(&self.url)?;
        ensure!(self.connections > 0, "--connections must be at least 1");
        let connect_rate = self
            .connect_rate
            .as_deref()
            .map(plan::parse_rate)
            .transpose()?;
        ensure!(
            connect_rate.is_none_or(|r| r > 0.0),
            "--connect-rate must be above zero"
        );
        let (rate, arrivals, duration) =
            plan::parse_load(self.rate.as_deref(), &self.stages, self.duration.as_deref())?;
        let duration = match (duration, self.stages.is_empty()) {
            (Some(d), _) => Some(d),
            (None, false) => None,
            (None, true) => Some(DEFAULT_DURATION),
        };
        ensure!(self.in_flight != Some(0), "--in-flight must be at least 1");
        let traffic = if self.ping {
            Traffic::Pings
        } else if let Some(text) = &self.message {
            Traffic::Messages {
                payload: Bytes::from(text.clone()),
                binary: self.binary,
            }
        } else {
            let size = self.message_size.unwrap_or(DEFAULT_MESSAGE_SIZE);
            ensure!(size > 0, "--message-size must be at least 1");
            Traffic::Messages {
                payload: random_payload(size, self.binary)?,
                binary: self.binary,
            }
        };
        let max_message_size: bytesize::ByteSize = self
            .max_message_size
            .parse()
            .map_err(|e| anyhow::anyhow!("--max-message-size `{}`: {e}", self.max_message_size))?;
        let mut headers = HeaderMap::new();
        for h in &self.headers {
            let (name, value) = RequestSpec::parse_header(h)?;
            headers.append(name, value);
        }
        let threads = match self.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let share = match &self.segment {
            Some(s) => Share::parse_segment(s)?,
            None => Share::WHOLE,
        };
        let default_metric = if self.ping { "ws_ping" } else { "ws_rtt" };
        let thresholds = self
            .threshold
            .iter()
            .map(|t| Threshold::parse_on(t, default_metric))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let info = RunInfo {
            url: self.url.clone(),
            method: "ws".into(),
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
        let config = WsConfig {
            target,
            headers,
            connections: self.connections,
            connect_rate,
            arrivals,
            duration,
            traffic,
            in_flight: self.in_flight,
            expect_reply: self.expect_reply,
            connect_timeout: plan::parse_duration(&self.connect_timeout)?,
            timeout: plan::parse_duration(&self.timeout)?,
            max_message_size: usize::try_from(max_message_size.as_u64())
                .context("--max-message-size is too large")?,
            threads,
            share,
        };
        Ok((config, thresholds, info))
    }

    /// Runs the command.
    pub fn execute(&self) -> anyhow::Result<Verdict> {
        let (config, thresholds, mut info) = self.validate().map_err(usage)?;
        let start = self.start.validate().map_err(usage)?;
        info.planned_start = start.map(|s| s.wait(true)).transpose()?;
        info.started_at = crate::start::now();
        let show = !self.no_progress && std::io::stderr().is_terminal();
        let total = config.share.of(config.connections);
        let mut results = ws::run(&config, |p| {
            if show {
                progress_line(p, total);
            }
        })?;
        if show {
            eprint!("\r\x1b[2K");
        }
        // A threshold on a kind or close code that never happened holds against zero.
        for t in &thresholds {
            let name = t.metric();
            if (name.starts_with("ws_errors{") || name.starts_with("ws_closes{"))
                && !results.metrics.submetrics.contains_key(name)
            {
                results
                    .metrics
                    .submetrics
                    .insert(name.to_owned(), Metric::new(MetricType::Counter, false));
            }
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

fn progress_line(p: WsProgress, connections: u64) {
    let secs = p.base.elapsed.as_secs_f64();
    eprint!(
        "\r\x1b[2K  {secs:.1}s  {}/{connections} connected  {} sent  {} received  {:.0}/s  {} failed",
        p.connected,
        p.sent,
        p.base.requests,
        p.base.requests as f64 / secs.max(1e-9),
        p.base.failed
    );
    let _ = std::io::stderr().flush();
}
