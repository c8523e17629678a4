//! Driving the load: worker threads, each a single-threaded tokio runtime with its share of
//! the connections; one loop per connection takes the next slot from the plan, waits until
//! it is due, sends, and records the sample.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::h1;
use crate::plan::{Arrivals, Plan, Share};
use crate::record::{ErrorKind, LATE_AFTER, Results, Sample};

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The address connections go to (resolved once, before the run).
    pub addr: SocketAddr,
    authority: http::uri::Authority,
    path: Uri,
}

impl Target {
    /// Parses and resolves an `http://` URL.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        if !url.contains("://") {
            bail!("`{url}` has no scheme: write http://{url}");
        }
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                bail!("`{url}`: https is not supported yet; loadrig speaks plain HTTP/1.1 and h2c")
            }
            Some(other) => bail!("`{url}`: scheme `{other}` is not supported, use http://"),
            None => bail!("`{url}` has no scheme: write http://{url}"),
        }
        let authority = uri
            .authority()
            .cloned()
            .with_context(|| format!("`{url}` has no host"))?;
        let addr = resolve(&authority)?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .expect("a path taken from a valid URI");
        Ok(Target {
            url: url.to_owned(),
            addr,
            authority,
            path,
        })
    }
}

/// The address of a URL's authority (port 80 unless it says), resolved once.
pub(crate) fn resolve(authority: &http::uri::Authority) -> anyhow::Result<SocketAddr> {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{host}`"))?
        .next()
        .with_context(|| format!("`{host}` resolves to no address"))
}

/// What each request looks like, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The method.
    pub method: Method,
    /// Extra headers (a `Host` here overrides the URL's).
    pub headers: HeaderMap,
    /// The body sent with every request.
    pub body: Bytes,
    /// Speak HTTP/2 over cleartext (prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Give up opening a connection after this long.
    pub connect_timeout: Duration,
    /// Give up on a request (from sending to the end of the response) after this long.
    pub timeout: Duration,
}

impl RequestSpec {
    /// Parses a `Name: value` header.
    pub fn parse_header(s: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
        let (name, value) = s
            .split_once(':')
            .with_context(|| format!("header `{s}` is missing `:`"))?;
        let name: HeaderName = name
            .trim()
            .parse()
            .with_context(|| format!("header `{s}`: `{}` is not a valid name", name.trim()))?;
        let value: HeaderValue = value
            .trim()
            .parse()
            .with_context(|| format!("header `{s}`: the value is not valid"))?;
        Ok((name, value))
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where to send.
    pub target: Target,
    /// What to send.
    pub request: RequestSpec,
    /// When to send and when to stop.
    pub plan: Plan,
    /// Worker threads (each a single-threaded runtime).
    pub threads: usize,
}

/// Live counters a worker publishes for the progress line (one writer each).
#[derive(Debug, Default)]
pub struct Live {
    /// Requests finished (responses and errors).
    pub requests: AtomicU64,
    /// Requests that failed.
    pub failed: AtomicU64,
}

impl Live {
    fn bump(counter: &AtomicU64) {
        // A single writer: a plain load and store avoids a locked instruction per request.
        counter.store(counter.load(Relaxed) + 1, Relaxed);
    }
}

/// Progress of a running run, for the live display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Requests finished.
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
}

/// Runs the plan against the target and returns what was measured. `progress` is called
/// about five times a second while the run lasts.
pub fn run(cfg: &RunConfig, mut progress: impl FnMut(Progress)) -> anyhow::Result<Results> {
    let plan = &cfg.plan;
    let open = matches!(plan.arrivals, Arrivals::Open(_));
    let connections = plan.share.of(plan.connections);
    ensure!(
        connections > 0 || open,
        "segment {}/{} gets none of the {} connections: use at least {} connections",
        plan.share.index + 1,
        plan.share.count,
        plan.connections,
        plan.share.count
    );
    // A thread without a connection could not send its share of the requests.
    let limit = if open {
        plan.share.of(plan.max_connections).max(1)
    } else {
        connections
    };
    let threads = (cfg.threads.max(1) as u64).min(limit);
    let clock = Clock::new();
    let cpu_before = cpu_time();
    let shared = Arc::new(cfg.clone());
    let mut handles = Vec::new();
    let mut lives = Vec::new();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    for w in 0..threads {
        let live = Arc::new(Live::default());
        lives.push(live.clone());
        let shared = shared.clone();
        let done = done_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadrig-{w}"))
            .spawn(move || {
                let r = worker(shared, w, threads, clock, live);
                let _ = done.send(());
                r
            })
            .context("starting a worker thread")?;
        handles.push(handle);
    }
    let mut finished = 0;
    while finished < handles.len() {
        match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => finished += 1,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => progress(Progress {
                elapsed: clock.start.elapsed(),
                requests: lives.iter().map(|l| l.requests.load(Relaxed)).sum(),
                failed: lives.iter().map(|l| l.failed.load(Relaxed)).sum(),
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    gather(handles, cpu_before)
}

/// Joins the worker threads and merges their results, with the CPU the run used since
/// `cpu_before`. Each worker's results carry the moment it finished; merging keeps the
/// latest.
pub(crate) fn gather(
    handles: Vec<std::thread::JoinHandle<anyhow::Result<Results>>>,
    cpu_before: Duration,
) -> anyhow::Result<Results> {
    let mut results = Results::default();
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        results.merge(&r);
    }
    results.cpu = cpu_time().saturating_sub(cpu_before);
    results.cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    Ok(results)
}

/// A worker thread's runtime: current-thread, with the thread's timer slack at 1 ns (the
/// default 50 µs would make every timed send up to 50 µs late).
pub(crate) fn worker_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let _ = nix::sys::prctl::set_timerslack(1);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a worker runtime")
}

/// CPU time (user + system) this process has used.
pub(crate) fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// The run's clock: nanoseconds since the start, readable as `Instant` and as the
/// `CLOCK_MONOTONIC` time the precise timer is armed with.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The start.
    pub start: Instant,
    start_mono: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        // `Instant` reads CLOCK_MONOTONIC on Linux; reading both back to back ties them.
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .unwrap_or_default();
        Clock {
            start: Instant::now(),
            start_mono: mono,
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

fn worker(
    cfg: Arc<RunConfig>,
    index: u64,
    threads: u64,
    clock: Clock,
    live: Arc<Live>,
) -> anyhow::Result<Results> {
    let rt = worker_runtime()?;
    let plan = &cfg.plan;
    let share = plan.share.split(index, threads);
    let open = matches!(plan.arrivals, Arrivals::Open(_));
    let initial = share.of(plan.connections).max(open as u64);
    let max_open = share.of(plan.max_connections).max(initial);
    let target = &cfg.target;
    let spec = &cfg.request;
    let encoded = h1::encode_request(
        &spec.method,
        target.path.path_and_query().map_or("/", |p| p.as_str()),
        target.authority.as_str(),
        &spec.headers,
        &spec.body,
    );
    let w = Rc::new(Worker {
        encoded,
        schedule: RefCell::new(Slots {
            share,
            next: 0,
            limit: plan.requests.map(|n| share.of(n)),
        }),
        end: plan.duration.map(|d| d.as_nanos() as u64),
        results: RefCell::new(Results::default()),
        open: Cell::new(0),
        max_open,
        last_growth: Cell::new(0),
        released: Default::default(),
        release: tokio::sync::Notify::new(),
        released_all: Cell::new(false),
        cfg: cfg.clone(),
        clock,
        live,
    });
    let local = tokio::task::LocalSet::new();
    for _ in 0..initial {
        w.spawn_connection(&local);
    }
    if open {
        local.spawn_local(dispatch(w.clone()));
    }
    rt.block_on(local);
    let mut results = w.results.take();
    results.seal();
    results.elapsed = Duration::from_nanos(clock.now());
    Ok(results)
}

/// The slots of one worker's share of the plan.
struct Slots {
    share: Share,
    next: u64,
    limit: Option<u64>,
}

struct Worker {
    cfg: Arc<RunConfig>,
    /// The HTTP/1.1 request, encoded once.
    encoded: Bytes,
    clock: Clock,
    schedule: RefCell<Slots>,
    /// Nanoseconds after the start at which no new request starts.
    end: Option<u64>,
    results: RefCell<Results>,
    open: Cell<u64>,
    max_open: u64,
    last_growth: Cell<u64>,
    live: Arc<Live>,
    /// Open model: slots the dispatcher has released because they are due, oldest first.
    released: RefCell<std::collections::VecDeque<u64>>,
    /// Wakes an idle connection when a slot is released.
    release: tokio::sync::Notify,
    /// The dispatcher has released every slot.
    released_all: Cell<bool>,
}

/// At most one connection is added per worker per this many nanoseconds.
const GROW_EVERY_NS: u64 = 1_000_000;

impl Worker {
    /// Closed model: takes the next request, or `None` when the run is over.
    fn take_closed(&self, now: u64) -> Option<()> {
        let mut s = self.schedule.borrow_mut();
        if s.limit.is_some_and(|l| s.next >= l) || self.end.is_some_and(|e| now >= e) {
            return None;
        }
        s.next += 1;
        Some(())
    }

    /// Open model: when the next request of this worker's share is due, without taking it;
    /// `None` when the schedule is over.
    fn peek_open(&self) -> Option<u64> {
        let s = self.schedule.borrow();
        let Arrivals::Open(schedule) = &self.cfg.plan.arrivals else {
            return None;
        };
        if s.limit.is_some_and(|l| s.next >= l) {
            return None;
        }
        let t = schedule.due(s.share.global(s.next))?.as_nanos() as u64;
        if self.end.is_some_and(|e| t >= e) {
            return None;
        }
        Some(t)
    }

    /// Open model: waits for a released slot; `None` once the schedule is over.
    async fn take_open(&self) -> Option<u64> {
        loop {
            if let Some(t) = self.released.borrow_mut().pop_front() {
                return Some(t);
            }
            if self.released_all.get() {
                return None;
            }
            self.release.notified().await;
        }
    }

    fn spawn_connection(self: &Rc<Self>, local: &tokio::task::LocalSet) {
        self.open.set(self.open.get() + 1);
        let mut r = self.results.borrow_mut();
        r.connections_peak = r.connections_peak.max(self.open.get());
        local.spawn_local(connection_loop(self.clone()));
    }

    /// Opens one more connection, if the cap allows and none was opened within the last
    /// [`GROW_EVERY_NS`]: a slot taken late means every connection is busy, but the new one
    /// needs a moment to connect, and growing on every late slot meanwhile would spiral.
    fn grow(self: &Rc<Self>) {
        let now = self.clock.now();
        if self.open.get() < self.max_open
            && now.saturating_sub(self.last_growth.get()) >= GROW_EVERY_NS
        {
            self.last_growth.set(now);
            self.open.set(self.open.get() + 1);
            let mut r = self.results.borrow_mut();
            r.connections_peak = r.connections_peak.max(self.open.get());
            tokio::task::spawn_local(connection_loop(self.clone()));
        }
    }

    fn error(&self, kind: ErrorKind) {
        self.results
            .borrow_mut()
            .record_error(kind, self.clock.now());
        Live::bump(&self.live.requests);
        Live::bump(&self.live.failed);
    }

    fn retire(&self, conn: Conn) {
        let (bytes_in, bytes_out) = match &conn {
            Conn::H1(c) => (c.bytes_in, c.bytes_out),
            Conn::H2 { io, .. } => (io.bytes_in.load(Relaxed), io.bytes_out.load(Relaxed)),
        };
        let mut r = self.results.borrow_mut();
        r.bytes_received += bytes_in;
        r.bytes_sent += bytes_out;
    }

    async fn connect(&self) -> Result<Conn, ErrorKind> {
        let spec = &self.cfg.request;
        let stream = match tokio::time::timeout(
            spec.connect_timeout,
            TcpStream::connect(self.cfg.target.addr),
        )
        .await
        {
            Err(_) => return Err(ErrorKind::ConnectTimeout),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ErrorKind::ConnectRefused);
            }
            Ok(Err(_)) => return Err(ErrorKind::Connect),
            Ok(Ok(s)) => s,
        };
        // Requests are small and latency is what we measure: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        self.results.borrow_mut().connections_opened += 1;
        if !spec.http2 {
            return Ok(Conn::H1(h1::Conn::new(stream)));
        }
        let io = Arc::new(IoStats::default());
        let timed = TokioIo::new(TimedStream {
            inner: stream,
            io: io.clone(),
            clock: self.clock,
        });
        let (sender, conn) = http2::handshake(TokioExecutor::new(), timed)
            .await
            .map_err(|e| classify(&e))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(Conn::H2 { sender, io })
    }

    /// The request for HTTP/2, where the authority travels in the URI (`:authority`).
    fn build_h2_request(&self) -> Request<Full<Bytes>> {
        let spec = &self.cfg.request;
        let target = &self.cfg.target;
        let mut req = Request::new(Full::new(spec.body.clone()));
        *req.method_mut() = spec.method.clone();
        *req.headers_mut() = spec.headers.clone();
        req.headers_mut().remove(HOST);
        let mut parts = target.path.clone().into_parts();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(target.authority.clone());
        *req.uri_mut() = Uri::from_parts(parts).expect("valid parts");
        *req.version_mut() = http::Version::HTTP_2;
        req
    }

    /// Sends one request on `conn` and reads the whole response.
    async fn exchange(
        &self,
        conn: &mut Conn,
        watchdog: &mut Watchdog,
    ) -> Result<Exchange, ErrorKind> {
        let clock = self.clock;
        let deadline = Instant::now() + self.cfg.request.timeout;
        match conn {
            Conn::H1(c) => {
                let head_only = self.cfg.request.method == Method::HEAD;
                let work = std::pin::pin!(c.exchange(&self.encoded, head_only, || clock.now()));
                let r = watchdog
                    .run(work, deadline)
                    .await
                    .ok_or(ErrorKind::Timeout)??;
                Ok(Exchange {
                    status: r.status,
                    timings: r
                        .server_timing
                        .iter()
                        .flat_map(|v| server_timings(v))
                        .collect(),
                    sent: r.sent,
                    first_byte: r.first_byte,
                    ended: r.ended,
                })
            }
            Conn::H2 { sender, io } => {
                io.first_read.store(0, Relaxed);
                let req = self.build_h2_request();
                let work = std::pin::pin!(async {
                    let resp = sender.send_request(req).await.map_err(|e| classify(&e))?;
                    let status = resp.status().as_u16();
                    let timings: Vec<_> = resp
                        .headers()
                        .get_all("server-timing")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(server_timings)
                        .collect();
                    let mut body = resp.into_body();
                    while let Some(frame) = body.frame().await {
                        frame.map_err(|e| classify(&e))?;
                    }
                    Ok::<_, ErrorKind>((status, timings))
                });
                let (status, timings) = watchdog
                    .run(work, deadline)
                    .await
                    .ok_or(ErrorKind::Timeout)??;
                let ended = clock.now();
                let sent = io.sent.load(Relaxed).min(ended);
                let first = io.first_read.load(Relaxed);
                Ok(Exchange {
                    status,
                    timings,
                    sent,
                    first_byte: if first == 0 {
                        ended
                    } else {
                        first.clamp(sent, ended)
                    },
                    ended,
                })
            }
        }
    }
}

struct Exchange {
    status: u16,
    timings: Vec<(String, f64)>,
    sent: u64,
    first_byte: u64,
    ended: u64,
}

/// One connection's loop: take a slot, wait until it is due, (re)connect if needed, send,
/// record. Under the open model, a slot taken late means every connection is busy: open
/// another (up to the cap) so the schedule is kept.
async fn connection_loop(w: Rc<Worker>) {
    let mut conn: Option<Conn> = None;
    let mut watchdog = Watchdog::new();
    // A fresh connection's first slot is late by its own connecting: not a reason to grow.
    let mut served = false;
    let open = matches!(w.cfg.plan.arrivals, Arrivals::Open(_));
    loop {
        let free = w.clock.now();
        let intended = if open {
            let Some(t) = w.take_open().await else { break };
            if served && free.saturating_sub(t) > LATE_AFTER.as_nanos() as u64 {
                w.grow();
            }
            t
        } else {
            let Some(()) = w.take_closed(free) else { break };
            free
        };
        let ready = intended.max(free);
        // A kept-alive connection the server has closed is replaced, not counted as an error.
        if let Some(c) = &mut conn
            && !c.ready().await
        {
            w.retire(conn.take().expect("checked"));
        }
        let mut connecting = 0;
        if conn.is_none() {
            let t0 = w.clock.now();
            match w.connect().await {
                Ok(c) => {
                    conn = Some(c);
                    connecting = w.clock.now() - t0;
                }
                Err(kind) => {
                    w.error(kind);
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let started = w.clock.now();
        served = true;
        match w.exchange(c, &mut watchdog).await {
            Ok(x) => {
                let sent = x.sent.clamp(started, x.ended);
                let sample = Sample {
                    intended,
                    ready,
                    connecting,
                    started,
                    sent,
                    first_byte: x.first_byte.clamp(sent, x.ended),
                    ended: x.ended,
                    status: x.status,
                };
                let mut r = w.results.borrow_mut();
                r.record_response(&sample);
                for (name, dur) in &x.timings {
                    r.record_server_timing(name, *dur);
                }
                Live::bump(&w.live.requests);
                if !(200..400).contains(&x.status) {
                    Live::bump(&w.live.failed);
                }
            }
            Err(kind) => {
                w.error(kind);
                w.retire(conn.take().expect("connected above"));
            }
        }
    }
    if let Some(c) = conn {
        w.retire(c);
    }
    w.open.set(w.open.get() - 1);
}

/// Open model: releases each slot when it is due, to whichever connection is free. One
/// dispatcher per worker keeps timers off the per-request path: a gap shorter than
/// [`SPIN_BELOW_NS`] is waited out by yielding to the connections (the thread is busy at
/// such rates anyway), only a longer one arms the timer.
async fn dispatch(w: Rc<Worker>) {
    let mut timer = Timer::new(w.clock).ok();
    loop {
        let now = w.clock.now();
        let next = loop {
            match w.peek_open() {
                None => {
                    w.released_all.set(true);
                    w.release.notify_waiters();
                    return;
                }
                Some(t) if t <= now => {
                    w.schedule.borrow_mut().next += 1;
                    w.released.borrow_mut().push_back(t);
                    w.release.notify_one();
                }
                Some(t) => break t,
            }
        };
        if next - now <= SPIN_BELOW_NS {
            tokio::task::yield_now().await;
        } else if let Some(timer) = &mut timer {
            timer.sleep_until(next).await;
        } else {
            tokio::time::sleep_until((w.clock.start + Duration::from_nanos(next)).into()).await;
        }
    }
}

/// Parses a `Server-Timing` value (`name;dur=1.5;desc="x", other;dur=2`) into
/// `(name, ms)` pairs; entries without a duration are skipped.
pub fn server_timings(value: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for entry in value.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim();
        let dur = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("dur") {
                return None;
            }
            v.trim().trim_matches('"').parse::<f64>().ok()
        });
        if let (false, Some(dur)) = (name.is_empty(), dur) {
            out.push((name.to_owned(), dur));
        }
    }
    out
}

/// Maps a hyper error to the kind of failure it reports.
fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_parse() || e.is_parse_status() {
        return ErrorKind::Protocol;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    ErrorKind::Reset
                }
                io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
                _ => ErrorKind::Other,
            };
        }
        if let Some(h2) = s.downcast_ref::<hyper::Error>()
            && h2.is_parse()
        {
            return ErrorKind::Protocol;
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ErrorKind::Closed;
    }
    if e.to_string().contains("protocol") || e.to_string().contains("frame") {
        return ErrorKind::Protocol;
    }
    ErrorKind::Other
}

enum Conn {
    H1(h1::Conn),
    H2 {
        sender: http2::SendRequest<Full<Bytes>>,
        io: Arc<IoStats>,
    },
}

impl Conn {
    async fn ready(&mut self) -> bool {
        match self {
            Conn::H1(c) => c.reusable(),
            Conn::H2 { sender, .. } => sender.ready().await.is_ok(),
        }
    }
}

/// What the socket saw, stamped as it happened: the phases of a request come from here.
#[derive(Debug, Default)]
struct IoStats {
    /// When the last write completed.
    sent: AtomicU64,
    /// When the first read after the current request returned data (0: not yet).
    first_read: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// A TCP stream that stamps writes and the first read of each response.
struct TimedStream {
    inner: TcpStream,
    io: Arc<IoStats>,
    clock: Clock,
}

impl TimedStream {
    fn wrote(&self, n: usize) {
        let io = &self.io;
        io.bytes_out
            .store(io.bytes_out.load(Relaxed) + n as u64, Relaxed);
        io.sent.store(self.clock.now(), Relaxed);
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            let io = &self.io;
            io.bytes_in
                .store(io.bytes_in.load(Relaxed) + n as u64, Relaxed);
            if io.first_read.load(Relaxed) == 0 {
                io.first_read.store(self.clock.now(), Relaxed);
            }
        }
        poll
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.wrote(n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.wrote(n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request timeout, without a timer-wheel insert and removal per request (which
/// `tokio::time::timeout` costs, and which was the largest user-space cost in profiles):
/// one long-lived sleep per connection that, when it fires, either times the request out or
/// moves on to the current request's deadline.
pub(crate) struct Watchdog {
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Watchdog {
    pub(crate) fn new() -> Self {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        }
    }

    /// Runs `fut` to completion, or returns `None` once `deadline` has passed. The caller
    /// pins `fut`, so that this future does not hold a second copy of it.
    pub(crate) async fn run<F: Future>(
        &mut self,
        mut fut: Pin<&mut F>,
        deadline: Instant,
    ) -> Option<F::Output> {
        let sleep = &mut self.sleep;
        if sleep.deadline() > deadline.into() {
            sleep.as_mut().reset(deadline.into());
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            while sleep.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(None);
                }
                sleep.as_mut().reset(deadline.into());
            }
            Poll::Pending
        })
        .await
    }
}

/// A slot due sooner than this is waited for by yielding rather than with a timer: a
/// timer's wake-up takes longer than that (about 50 µs on the development VM).
const SPIN_BELOW_NS: u64 = 20_000;

/// A timer with nanosecond resolution: tokio's timer wheel has 1 ms ticks, which would
/// make an open-model send up to 1 ms late and put the rig's own error into every
/// corrected latency. A `timerfd` armed at the absolute due time, polled by the runtime's
/// reactor, is late by microseconds.
pub(crate) struct Timer {
    fd: AsyncFd<RawTimer>,
    clock: Clock,
}

struct RawTimer(TimerFd);

impl AsRawFd for RawTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    pub(crate) fn new(clock: Clock) -> io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated because the fd could be closed while registered;
        // here the AsyncFd owns the TimerFd, so the fd lives exactly as long as the
        // registration.
        #[allow(deprecated)]
        let fd = AsyncFd::new(RawTimer(fd))?;
        Ok(Timer { fd, clock })
    }

    /// Waits until `at` (run time).
    pub(crate) async fn sleep_until(&mut self, at: u64) {
        if !self.arm(at) {
            let at = self.clock.start + Duration::from_nanos(at);
            return tokio::time::sleep_until(at.into()).await;
        }
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            if guard
                .try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from))
                .is_ok()
            {
                return;
            }
        }
    }

    /// Arms the timer to expire at `at` (run time); false if that failed.
    fn arm(&self, at: u64) -> bool {
        let when = TimeSpec::from_duration(self.clock.start_mono + Duration::from_nanos(at));
        self.fd
            .get_ref()
            .0
            .set(
                Expiration::OneShot(when),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_entries_parse() {
        assert_eq!(
            server_timings("instantiate;dur=0.012, handle;desc=\"x\";dur=1.5, miss, db;dur=\"2\""),
            vec![
                ("instantiate".to_owned(), 0.012),
                ("handle".to_owned(), 1.5),
                ("db".to_owned(), 2.0)
            ]
        );
    }

    #[test]
    fn targets_parse_or_explain() {
        let t = Target::parse("http://127.0.0.1:8080/a?b=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/a?b=1");
        assert_eq!(Target::parse("http://[::1]:9/").unwrap().addr.port(), 9);
        for (bad, msg) in [
            ("localhost:80", "no scheme"),
            ("https://127.0.0.1/", "https is not supported"),
            ("ftp://x/", "scheme `ftp`"),
            ("http://exa mple/", "not a valid URL"),
            ("localhost", "no scheme"),
        ] {
            let e = format!("{:#}", Target::parse(bad).unwrap_err());
            assert!(e.contains(msg), "{bad}: {e}");
        }
        assert!(RequestSpec::parse_header("X-A: 1").is_ok());
        assert!(RequestSpec::parse_header("nocolon").is_err());
    }
}
