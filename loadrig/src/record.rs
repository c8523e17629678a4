//! Recording: every sample goes into HDR histograms (constant memory however long the run,
//! lossless to merge), one recorder per worker thread, merged at the end. Statistics live
//! here; rendering them is `report`'s job.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, MetricsData};

/// Histograms cover 1 µs to 60 s with 3 significant digits; values are microseconds.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
const SIGFIG: u8 = 3;
/// Histograms per timeline interval only feed charts: 2 significant digits keep them small.
const TIMELINE_SIGFIG: u8 = 2;
/// The timeline never holds more points than this: past it, neighbours are merged and the
/// interval doubles, so a day-long run costs the same memory as a minute-long one.
const TIMELINE_MAX_POINTS: usize = 1200;
/// A request that starts this long after it was due counts as a late send.
pub const LATE_AFTER: Duration = Duration::from_millis(1);
/// At most this many distinct `Server-Timing` names are tracked (a guard against a server
/// that puts request ids in them).
const MAX_SERVER_TIMINGS: usize = 16;

/// The latency trends, named as k6 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    /// From when the request was due until it started: waiting for a free connection,
    /// including opening one.
    Blocked,
    /// Opening the TCP connection (0 on a reused connection).
    Connecting,
    /// Writing the request.
    Sending,
    /// From the request written to the first byte of the response.
    Waiting,
    /// From the first byte of the response to its last.
    Receiving,
    /// From when the request was due until its response was complete: corrected for
    /// coordinated omission under the open model.
    Duration,
    /// From when the request was actually sent until its response was complete (k6's
    /// definition; what an uncorrected generator reports).
    DurationUncorrected,
    /// How late the generator itself started a request whose connection was free: its
    /// timer and scheduling lag, i.e. the rig's own error.
    SendLag,
}

impl Trend {
    /// Every trend, in report order.
    pub const ALL: [Trend; 8] = [
        Trend::Blocked,
        Trend::Connecting,
        Trend::Sending,
        Trend::Waiting,
        Trend::Receiving,
        Trend::Duration,
        Trend::DurationUncorrected,
        Trend::SendLag,
    ];

    /// The metric name in reports and thresholds.
    pub fn name(self) -> &'static str {
        match self {
            Trend::Blocked => "http_req_blocked",
            Trend::Connecting => "http_req_connecting",
            Trend::Sending => "http_req_sending",
            Trend::Waiting => "http_req_waiting",
            Trend::Receiving => "http_req_receiving",
            Trend::Duration => "http_req_duration",
            Trend::DurationUncorrected => "http_req_duration_uncorrected",
            Trend::SendLag => "loadrig_send_lag",
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection was refused (nothing listening).
    ConnectRefused,
    /// Opening the connection took longer than `--connect-timeout`.
    ConnectTimeout,
    /// Opening the connection failed otherwise (unreachable network, …).
    Connect,
    /// The request took longer than `--timeout`.
    Timeout,
    /// The server reset the connection.
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The server answered something that is not HTTP.
    Protocol,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }
}

/// One finished request, as times in nanoseconds since the start of the run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// When the request was due (open model) or ready to go (closed model).
    pub intended: u64,
    /// When the generator would have started it had it been perfectly punctual: the later
    /// of `intended` and the moment its connection became free.
    pub ready: u64,
    /// Time spent opening a connection for it (0 if reused).
    pub connecting: u64,
    /// When it started on an open connection.
    pub started: u64,
    /// When its last byte was written.
    pub sent: u64,
    /// When the first byte of the response arrived.
    pub first_byte: u64,
    /// When the response was complete.
    pub ended: u64,
    /// The status code.
    pub status: u16,
}

/// Everything a run measured: mergeable, serializable, the input of every report.
#[derive(Debug, Clone)]
pub struct Results {
    /// One histogram per [`Trend`], in [`Trend::ALL`] order, in microseconds.
    pub trends: Vec<Histogram<u64>>,
    /// `Server-Timing` entries by name, in microseconds.
    pub server_timing: BTreeMap<String, Histogram<u64>>,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Requests without a response, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests that started more than [`LATE_AFTER`] after they were due.
    pub late_sends: u64,
    /// Bytes read from and written to the sockets.
    pub bytes_received: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Most connections open at once.
    pub connections_peak: u64,
    /// Wall-clock length of the run (the longest segment's, after a merge).
    pub elapsed: Duration,
    /// CPU time the generator used (user + system), summed over merged runs.
    pub cpu: Duration,
    /// CPUs the generator could use, summed over merged runs.
    pub cpus: u64,
    /// Requests and latency over time.
    pub timeline: Timeline,
    /// Named metrics beyond the HTTP phases (scenarios: iterations, checks, groups, the
    /// script's own metrics and the submetrics thresholds name).
    pub metrics: Metrics,
}

/// Requests over time: one point per interval, merged pairwise when it grows too long.
/// Each closed interval keeps its latency histogram encoded (a few hundred bytes), so the
/// timeline costs a bounded few hundred kilobytes however long the run.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Length of one interval.
    pub interval: Duration,
    /// The points, indexed by interval since the start of the run.
    pub points: Vec<Point>,
    /// The interval being recorded, decoded.
    live: Option<(usize, Histogram<u64>)>,
}

/// One interval of the timeline.
#[derive(Debug, Clone, Default)]
pub struct Point {
    /// Responses and errors in the interval.
    pub requests: u64,
    /// Requests that failed in the interval (errors and status >= 400).
    pub failed: u64,
    /// Latency (`http_req_duration`) of the responses in the interval, encoded ("" when
    /// there were none).
    latency: String,
}

fn trend_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("valid bounds")
}

fn timeline_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, TIMELINE_SIGFIG).expect("valid bounds")
}

impl Point {
    /// The interval's latency histogram (microseconds).
    pub fn latency(&self) -> Histogram<u64> {
        if self.latency.is_empty() {
            timeline_histogram()
        } else {
            decode(&self.latency, TIMELINE_SIGFIG).expect("encoded by this process")
        }
    }

    fn add(&mut self, other: &Point) {
        self.requests += other.requests;
        self.failed += other.failed;
        if !other.latency.is_empty() {
            let mut h = self.latency();
            h.add(other.latency()).expect("same bounds");
            self.latency = encode(&h);
        }
    }
}

impl Timeline {
    fn new() -> Self {
        Timeline {
            // 125 ms: a short run still draws a line, and 8 × 125 ms is 1 s, so
            // coarsening meets the 1 s timelines of older summaries when merging.
            interval: Duration::from_millis(125),
            points: Vec::new(),
            live: None,
        }
    }

    fn record(&mut self, at_ns: u64, failed: bool, latency_us: Option<u64>) {
        let mut idx = (at_ns / self.interval.as_nanos() as u64) as usize;
        while idx >= TIMELINE_MAX_POINTS {
            self.coarsen();
            idx = (at_ns / self.interval.as_nanos() as u64) as usize;
        }
        if idx >= self.points.len() {
            self.points.resize_with(idx + 1, Point::default);
        }
        let p = &mut self.points[idx];
        p.requests += 1;
        p.failed += failed as u64;
        let Some(v) = latency_us else { return };
        match &mut self.live {
            Some((i, h)) if *i == idx => h.saturating_record(v),
            _ => {
                self.seal();
                let mut h = self.points[idx].latency();
                h.saturating_record(v);
                self.live = Some((idx, h));
            }
        }
    }

    /// Encodes the interval being recorded.
    fn seal(&mut self) {
        if let Some((i, h)) = self.live.take() {
            self.points[i].latency = encode(&h);
        }
    }

    /// Doubles the interval, merging neighbouring points exactly.
    fn coarsen(&mut self) {
        self.seal();
        let old = std::mem::take(&mut self.points);
        for pair in old.chunks(2) {
            let mut p = pair[0].clone();
            if let Some(q) = pair.get(1) {
                p.add(q);
            }
            self.points.push(p);
        }
        self.interval *= 2;
    }

    fn merge(&mut self, other: &Timeline) {
        self.seal();
        let mut other = other.clone();
        other.seal();
        while other.interval < self.interval {
            other.coarsen();
        }
        while self.interval < other.interval {
            self.coarsen();
        }
        if other.points.len() > self.points.len() {
            self.points.resize_with(other.points.len(), Point::default);
        }
        for (p, q) in self.points.iter_mut().zip(&other.points) {
            p.add(q);
        }
        while self.points.len() > TIMELINE_MAX_POINTS {
            self.coarsen();
        }
    }
}

impl Default for Results {
    fn default() -> Self {
        Results {
            trends: Trend::ALL.iter().map(|_| trend_histogram()).collect(),
            server_timing: BTreeMap::new(),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            late_sends: 0,
            bytes_received: 0,
            bytes_sent: 0,
            connections_opened: 0,
            connections_peak: 0,
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            cpus: 0,
            timeline: Timeline::new(),
            metrics: Metrics::default(),
        }
    }
}

fn us(ns: u64) -> u64 {
    ns / 1000
}

impl Results {
    /// The histogram of one trend.
    pub fn trend(&self, t: Trend) -> &Histogram<u64> {
        &self.trends[t as usize]
    }

    fn record(&mut self, t: Trend, ns: u64) {
        self.trends[t as usize].saturating_record(us(ns));
    }

    /// Records a completed response.
    pub fn record_response(&mut self, s: &Sample) {
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        self.record(Trend::Blocked, sub(s.started, s.intended));
        self.record(Trend::Connecting, s.connecting);
        self.record(Trend::Sending, sub(s.sent, s.started));
        self.record(Trend::Waiting, sub(s.first_byte, s.sent));
        self.record(Trend::Receiving, sub(s.ended, s.first_byte));
        let duration = sub(s.ended, s.intended);
        self.record(Trend::Duration, duration);
        self.record(Trend::DurationUncorrected, sub(s.ended, s.started));
        self.record(
            Trend::SendLag,
            sub(s.started, s.ready).saturating_sub(s.connecting),
        );
        if sub(s.started, s.intended) > LATE_AFTER.as_nanos() as u64 {
            self.late_sends += 1;
        }
        *self.status.entry(s.status).or_default() += 1;
        let failed = !(200..400).contains(&s.status);
        self.timeline.record(s.ended, failed, Some(us(duration)));
    }

    /// Finishes recording: encodes the timeline's open interval. Call before reading
    /// `timeline.points`.
    pub fn seal(&mut self) {
        self.timeline.seal();
    }

    /// Records a request that got no response.
    pub fn record_error(&mut self, kind: ErrorKind, at_ns: u64) {
        *self.errors.entry(kind).or_default() += 1;
        self.timeline.record(at_ns, true, None);
    }

    /// Records one event on the timeline (a WebSocket round trip, a failure) without
    /// touching the HTTP trends: `latency_us` feeds the interval's latency histogram.
    pub fn record_point(&mut self, at_ns: u64, failed: bool, latency_us: Option<u64>) {
        self.timeline.record(at_ns, failed, latency_us);
    }

    /// Records a `Server-Timing` entry (`dur` in milliseconds).
    pub fn record_server_timing(&mut self, name: &str, dur_ms: f64) {
        let value = (dur_ms * 1000.0).round().max(0.0) as u64;
        if let Some(h) = self.server_timing.get_mut(name) {
            h.saturating_record(value);
        } else if self.server_timing.len() < MAX_SERVER_TIMINGS {
            let mut h = trend_histogram();
            h.saturating_record(value);
            self.server_timing.insert(name.to_owned(), h);
        }
    }

    /// Responses received.
    pub fn responses(&self) -> u64 {
        self.status.values().sum()
    }

    /// Requests that got no response.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// All requests: responses and errors.
    pub fn requests(&self) -> u64 {
        self.responses() + self.error_count()
    }

    /// Failed requests as k6 counts them: no response, or a status outside 200–399.
    pub fn failed(&self) -> u64 {
        let bad: u64 = self
            .status
            .iter()
            .filter(|(s, _)| !(200..400).contains(*s))
            .map(|(_, n)| n)
            .sum();
        bad + self.error_count()
    }

    /// Adds another run's results to these: histograms are added bucket by bucket, so the
    /// merged percentiles are exactly those of one run over all the samples.
    pub fn merge(&mut self, other: &Results) {
        for (h, o) in self.trends.iter_mut().zip(&other.trends) {
            h.add(o).expect("same bounds");
        }
        for (name, o) in &other.server_timing {
            self.server_timing
                .entry(name.clone())
                .or_insert_with(trend_histogram)
                .add(o)
                .expect("same bounds");
        }
        for (s, n) in &other.status {
            *self.status.entry(*s).or_default() += n;
        }
        for (k, n) in &other.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        self.late_sends += other.late_sends;
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        self.connections_opened += other.connections_opened;
        self.connections_peak += other.connections_peak;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.cpu += other.cpu;
        self.cpus += other.cpus;
        self.timeline.merge(&other.timeline);
        if let Err(e) = self.metrics.merge(&other.metrics) {
            eprintln!("loadrig: merging named metrics: {e:#}; the other run's value is left out");
        }
    }

    /// The serializable form, with every histogram encoded (HdrHistogram V2 + deflate +
    /// base64, the format HdrHistogram's own tools read).
    pub fn to_data(&self) -> ResultsData {
        let mut timeline = self.timeline.clone();
        timeline.seal();
        ResultsData {
            histograms: Trend::ALL
                .iter()
                .map(|t| (t.name().to_owned(), encode(self.trend(*t))))
                .collect(),
            server_timing: self
                .server_timing
                .iter()
                .map(|(k, h)| (k.clone(), encode(h)))
                .collect(),
            status: self
                .status
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            errors: self.errors.clone(),
            late_sends: self.late_sends,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            connections_opened: self.connections_opened,
            connections_peak: self.connections_peak,
            elapsed_seconds: self.elapsed.as_secs_f64(),
            cpu_seconds: self.cpu.as_secs_f64(),
            cpus: self.cpus,
            timeline: TimelineData {
                interval_seconds: timeline.interval.as_secs_f64(),
                requests: timeline.points.iter().map(|p| p.requests).collect(),
                failed: timeline.points.iter().map(|p| p.failed).collect(),
                latency: timeline.points.into_iter().map(|p| p.latency).collect(),
            },
            metrics: self.metrics.to_data(),
        }
    }

    /// Rebuilds results from their serialized form (e.g. to merge runs).
    pub fn from_data(d: &ResultsData) -> anyhow::Result<Results> {
        let mut r = Results::default();
        for t in Trend::ALL {
            let encoded = d
                .histograms
                .get(t.name())
                .with_context(|| format!("histogram `{}` is missing", t.name()))?;
            r.trends[t as usize] =
                decode(encoded, SIGFIG).with_context(|| format!("in `{}`", t.name()))?;
        }
        for (k, v) in &d.server_timing {
            r.server_timing.insert(
                k.clone(),
                decode(v, SIGFIG).with_context(|| format!("in `{k}`"))?,
            );
        }
        for (s, n) in &d.status {
            let code: u16 = s
                .parse()
                .with_context(|| format!("status `{s}` is not a number"))?;
            r.status.insert(code, *n);
        }
        r.errors = d.errors.clone();
        r.late_sends = d.late_sends;
        r.bytes_received = d.bytes_received;
        r.bytes_sent = d.bytes_sent;
        r.connections_opened = d.connections_opened;
        r.connections_peak = d.connections_peak;
        r.elapsed =
            Duration::try_from_secs_f64(d.elapsed_seconds).context("bad elapsed_seconds")?;
        r.cpu = Duration::try_from_secs_f64(d.cpu_seconds).context("bad cpu_seconds")?;
        r.cpus = d.cpus;
        r.metrics = Metrics::from_data(&d.metrics).context("in the named metrics")?;
        let tl = &d.timeline;
        ensure!(
            tl.requests.len() == tl.failed.len() && tl.failed.len() == tl.latency.len(),
            "timeline arrays differ in length"
        );
        r.timeline.interval =
            Duration::try_from_secs_f64(tl.interval_seconds).context("bad interval_seconds")?;
        ensure!(!r.timeline.interval.is_zero(), "timeline interval is zero");
        for i in 0..tl.requests.len() {
            if !tl.latency[i].is_empty() {
                decode(&tl.latency[i], TIMELINE_SIGFIG).context("in the timeline")?;
            }
            r.timeline.points.push(Point {
                requests: tl.requests[i],
                failed: tl.failed[i],
                latency: tl.latency[i].clone(),
            });
        }
        Ok(r)
    }
}

fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

fn decode(s: &str, sigfig: u8) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("histogram is not valid base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("histogram does not decode: {e:?}"))?;
    // Histograms only add exactly when their layouts match.
    ensure!(
        (h.low(), h.high(), h.sigfig()) == (LOWEST_US, HIGHEST_US, sigfig),
        "histogram covers {}..{} with {} digits, expected {LOWEST_US}..{HIGHEST_US} with {sigfig}",
        h.low(),
        h.high(),
        h.sigfig()
    );
    Ok(h)
}

/// The serialized results (the `loadrig` section of the JSON summary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultsData {
    /// Every trend's histogram (microseconds), encoded.
    pub histograms: BTreeMap<String, String>,
    /// `Server-Timing` histograms (microseconds) by entry name, encoded.
    pub server_timing: BTreeMap<String, String>,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Requests without a response, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests started more than 1 ms after they were due.
    pub late_sends: u64,
    /// Bytes read from the sockets.
    pub bytes_received: u64,
    /// Bytes written to the sockets.
    pub bytes_sent: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Most connections open at once.
    pub connections_peak: u64,
    /// Wall-clock length of the run.
    pub elapsed_seconds: f64,
    /// CPU time the generator used.
    pub cpu_seconds: f64,
    /// CPUs the generator could use.
    pub cpus: u64,
    /// Requests over time.
    pub timeline: TimelineData,
    /// Named metrics (scenario runs).
    #[serde(default, skip_serializing_if = "MetricsData::is_empty")]
    pub metrics: MetricsData,
}

/// The serialized timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineData {
    /// Length of one interval.
    pub interval_seconds: f64,
    /// Requests completed per interval.
    pub requests: Vec<u64>,
    /// Failed requests per interval.
    pub failed: Vec<u64>,
    /// Latency histogram per interval (microseconds), encoded; "" for none.
    pub latency: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Sample {
        let t = i * 1_000_000;
        Sample {
            intended: t,
            ready: t,
            connecting: 0,
            started: t + 1_000,
            sent: t + 3_000,
            first_byte: t + 50_000 + i * 7_000,
            ended: t + 60_000 + i * 7_000,
            status: if i.is_multiple_of(10) { 500 } else { 200 },
        }
    }

    #[test]
    fn merging_halves_equals_recording_everything() {
        let (mut all, mut a, mut b) = (Results::default(), Results::default(), Results::default());
        for i in 0..3000 {
            all.record_response(&sample(i));
            if i % 2 == 0 { &mut a } else { &mut b }.record_response(&sample(i));
        }
        all.record_error(ErrorKind::Reset, 5);
        b.record_error(ErrorKind::Reset, 5);
        // Round-trip one half through its serialized form, as `loadrig merge` does.
        let b = Results::from_data(
            &serde_json::from_str(&serde_json::to_string(&b.to_data()).unwrap()).unwrap(),
        )
        .unwrap();
        a.merge(&b);
        all.seal();
        for t in Trend::ALL {
            assert!(a.trend(t) == all.trend(t), "{} differs", t.name());
        }
        assert_eq!(a.status, all.status);
        assert_eq!(a.errors, all.errors);
        assert_eq!(a.failed(), all.failed());
        assert_eq!(a.timeline.points.len(), all.timeline.points.len());
        for (p, q) in a.timeline.points.iter().zip(&all.timeline.points) {
            assert_eq!((p.requests, p.failed), (q.requests, q.failed));
            assert!(p.latency() == q.latency(), "timeline latency differs");
        }
    }

    #[test]
    fn the_timeline_stays_bounded() {
        let mut r = Results::default();
        // Two hours of one request per second.
        for s in 0..7200u64 {
            let mut x = sample(0);
            x.ended = s * 1_000_000_000 + 10;
            r.record_response(&x);
        }
        assert!(r.timeline.points.len() <= TIMELINE_MAX_POINTS);
        assert_eq!(r.timeline.interval, Duration::from_secs(8));
        assert_eq!(
            r.timeline.points.iter().map(|p| p.requests).sum::<u64>(),
            7200
        );
    }
}
