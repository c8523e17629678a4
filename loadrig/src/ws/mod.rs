//! WebSocket load (`loadrig ws`): hold many connections, send messages (or PINGs) on a
//! closed or open model, and histogram the round trips, on the same recorder, summary,
//! thresholds and merges as HTTP runs.
//!
//! A run has three phases:
//!
//! ```text
//! connect: each connection opens at its slot (`--connect-rate`), records ws_connecting
//!   → hold for -d (or the stages): messages sent, echoes matched, round trips recorded
//!   → drain (replies still owed, up to --timeout) and close (1000, acknowledged)
//! ```
//!
//! The message phase starts for every connection of the process at once, when the last
//! one has finished its first attempt to connect, so the schedule is not eaten by the
//! connect ramp. Under the open model message `k` is due at the schedule's time for `k`
//! and goes out on connection `k mod N`; its round trip is measured from when it was due
//! (`ws_rtt`), with the time from when it was sent kept as `ws_rtt_uncorrected`.
//!
//! Workers are single-threaded runtimes, as for HTTP: a worker's connections, its
//! dispatcher and its statistics live on one thread, so nothing on the per-message path
//! takes a lock.

mod session;
mod stats;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::{HeaderMap, Uri};

use crate::drive::{Clock, Progress, Timer, cpu_time, gather, worker_runtime};
use crate::plan::{Arrivals, Share};
use crate::record::Results;

use stats::Stats;
pub use stats::{COUNTERS, TRENDS};

/// Where the connections go.
#[derive(Debug, Clone)]
pub struct WsTarget {
    /// The URL as given (`ws://host:port/path`).
    pub url: String,
    /// The address connections go to (resolved once, before the run).
    pub addr: SocketAddr,
}

impl WsTarget {
    /// Parses and resolves a `ws://` URL.
    pub fn parse(url: &str) -> anyhow::Result<WsTarget> {
        if !url.contains("://") {
            bail!("`{url}` has no scheme: write ws://{url}");
        }
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a valid URL"))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => bail!(
                "`{url}`: wss:// is not supported yet; loadrig speaks plain ws:// until it has TLS"
            ),
            Some("http") => bail!("`{url}` is an HTTP URL: write ws:// (or use `loadrig run`)"),
            Some(other) => bail!("`{url}`: scheme `{other}` is not supported, use ws://"),
            None => bail!("`{url}` has no scheme: write ws://{url}"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("`{url}` has no host"))?;
        Ok(WsTarget {
            url: url.to_owned(),
            addr: crate::drive::resolve(authority)?,
        })
    }
}

/// What each connection sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// Data messages: this payload, as a text or a binary message.
    Messages {
        /// The payload (valid UTF-8 when `binary` is false).
        payload: Bytes,
        /// Send binary messages instead of text.
        binary: bool,
    },
    /// PING frames, each carrying its sequence number; the PONGs are the replies.
    Pings,
}

/// Everything a WebSocket run needs.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Where to connect.
    pub target: WsTarget,
    /// Extra headers on the upgrade request.
    pub headers: HeaderMap,
    /// Connections, in total across segments.
    pub connections: u64,
    /// Open connections at this many per second (in total); `None`: all at once.
    pub connect_rate: Option<f64>,
    /// When messages are due.
    pub arrivals: Arrivals,
    /// How long the message phase lasts (`None`: the open schedule's stages say).
    pub duration: Option<Duration>,
    /// Messages or pings.
    pub traffic: Traffic,
    /// Closed model: messages each connection keeps outstanding. Open model: the most a
    /// connection may have outstanding before a due message waits (`None`: no cap).
    pub in_flight: Option<u64>,
    /// Whether the server answers every message (an echo, or PONGs to PINGs). Off: only
    /// the send and receive rates are measured.
    pub expect_reply: bool,
    /// Give up opening a connection (TCP and the upgrade) after this long.
    pub connect_timeout: Duration,
    /// A reply not received this long after its message was sent ends the connection.
    pub timeout: Duration,
    /// The largest message or frame accepted from the server.
    pub max_message_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// The part of the run this process executes.
    pub share: Share,
}

impl WsConfig {
    /// The length of the message phase, if known in advance.
    pub fn length(&self) -> Option<Duration> {
        crate::plan::length(&self.arrivals, self.duration)
    }
}

/// Counters the workers publish for the progress line.
#[derive(Debug, Default)]
struct Live {
    sent: AtomicU64,
    received: AtomicU64,
    failed: AtomicU64,
    connected: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    // One writer per counter: a plain load and store, no locked instruction.
    counter.store(counter.load(Relaxed) + by, Relaxed);
}

/// The progress of a WebSocket run, for the live display.
#[derive(Debug, Clone, Copy)]
pub struct WsProgress {
    /// Time since the start, requests = messages received, failed = failures of any kind.
    pub base: Progress,
    /// Messages sent.
    pub sent: u64,
    /// Connections that have opened at least once.
    pub connected: u64,
}

/// What every worker shares: the moment the message phase starts.
struct Global {
    /// Connections whose first attempt to open has not finished yet.
    connecting: AtomicU64,
    start: tokio::sync::watch::Sender<Option<u64>>,
}

impl Global {
    fn first_attempt_done(&self, clock: Clock) {
        if self.connecting.fetch_sub(1, Relaxed) == 1 {
            self.start.send_replace(Some(clock.now()));
        }
    }
}

/// Runs the WebSocket load and returns what was measured; `progress` is called about five
/// times a second.
pub fn run(cfg: &WsConfig, mut progress: impl FnMut(WsProgress)) -> anyhow::Result<Results> {
    let connections = cfg.share.of(cfg.connections);
    ensure!(
        connections > 0,
        "segment {}/{} gets none of the {} connections: use at least {} connections",
        cfg.share.index + 1,
        cfg.share.count,
        cfg.connections,
        cfg.share.count
    );
    raise_fd_limit(connections);
    let threads = (cfg.threads.max(1) as u64).min(connections);
    let clock = Clock::new();
    let cpu_before = cpu_time();
    let global = Arc::new(Global {
        connecting: AtomicU64::new(connections),
        start: tokio::sync::watch::channel(None).0,
    });
    let shared = Arc::new(cfg.clone());
    let live = Arc::new(Live::default());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut handles = Vec::new();
    for w in 0..threads {
        let (shared, global, live, done) = (
            shared.clone(),
            global.clone(),
            live.clone(),
            done_tx.clone(),
        );
        let share = cfg.share.split(w, threads);
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadrig-ws-{w}"))
                .spawn(move || {
                    let r = worker(shared, share, clock, global, live);
                    let _ = done.send(());
                    r
                })
                .context("starting a worker thread")?,
        );
    }
    let mut finished = 0;
    while finished < handles.len() {
        match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => finished += 1,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => progress(WsProgress {
                base: Progress {
                    elapsed: clock.start.elapsed(),
                    requests: live.received.load(Relaxed),
                    failed: live.failed.load(Relaxed),
                },
                sent: live.sent.load(Relaxed),
                connected: live.connected.load(Relaxed),
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    gather(handles, cpu_before)
}

/// Ten thousand connections need ten thousand descriptors: lift the soft limit to the
/// hard one when it is lower than what the run needs.
fn raise_fd_limit(connections: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = (connections + 64).min(hard);
        if want > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

/// One connection's queue of due messages (open model), filled by the dispatcher.
#[derive(Default)]
struct Slot {
    due: RefCell<VecDeque<u64>>,
    wake: tokio::sync::Notify,
}

/// One worker thread's state.
struct Worker {
    cfg: Arc<WsConfig>,
    clock: Clock,
    global: Arc<Global>,
    live: Arc<Live>,
    /// This thread's connections (global numbers `share.global(i)`).
    slots: Vec<Rc<Slot>>,
    /// When the message phase started (run time, ns), once it has.
    start: Cell<Option<u64>>,
    /// When the message phase ends, once known.
    end: Cell<Option<u64>>,
    /// The message phase is over: no new messages.
    over: Cell<bool>,
    /// Wakes every connection when the phase changes.
    phase: tokio::sync::Notify,
    /// Sessions open now.
    open: Cell<u64>,
    stats: RefCell<Stats>,
}

impl Worker {
    fn connect_slot(&self, global_index: u64) -> Duration {
        match self.cfg.connect_rate {
            Some(r) if r > 0.0 => Duration::from_secs_f64(global_index as f64 / r),
            _ => Duration::ZERO,
        }
    }

    /// Waits until the message phase has changed from what the caller last saw: to be
    /// awaited in a `select!` after checking `start` and `over`.
    async fn phase_change(&self) {
        self.phase.notified().await
    }

    fn fail(&self, kind: &str) {
        self.stats.borrow_mut().error(kind);
        bump(&self.live.failed, 1);
    }
}

fn worker(
    cfg: Arc<WsConfig>,
    share: Share,
    clock: Clock,
    global: Arc<Global>,
    live: Arc<Live>,
) -> anyhow::Result<Results> {
    let rt = worker_runtime()?;
    let n = share.of(cfg.connections);
    let w = Rc::new(Worker {
        stats: RefCell::new(Stats::new(&cfg)),
        slots: (0..n).map(|_| Rc::default()).collect(),
        cfg,
        clock,
        global,
        live,
        start: Cell::new(None),
        end: Cell::new(None),
        over: Cell::new(false),
        phase: tokio::sync::Notify::new(),
        open: Cell::new(0),
    });
    let local = tokio::task::LocalSet::new();
    for i in 0..n {
        local.spawn_local(session::connection(w.clone(), i as usize, share.global(i)));
    }
    local.spawn_local(conductor(w.clone(), share));
    rt.block_on(local);
    let mut results = w.stats.take().into_results();
    results.seal();
    results.elapsed = Duration::from_nanos(clock.now());
    Ok(results)
}

/// A gap to the next due message shorter than this is waited out by yielding rather
/// than with a timer, whose wake-up takes longer.
const SPIN_BELOW_NS: u64 = 20_000;

/// Starts the message phase when every connection has had its first try, releases the
/// open model's messages when they are due, and ends the phase.
async fn conductor(w: Rc<Worker>, share: Share) {
    let mut rx = w.global.start.subscribe();
    let start = match rx.wait_for(|v| v.is_some()).await {
        Ok(v) => v.expect("waited for it"),
        Err(_) => return,
    };
    let length = w.cfg.length().map(|d| d.as_nanos() as u64);
    w.start.set(Some(start));
    w.end.set(length.map(|l| start + l));
    w.phase.notify_waiters();
    let mut timer = Timer::new(w.clock).ok();
    let mut sleep_until = async |at: u64| {
        if let Some(t) = &mut timer {
            t.sleep_until(at).await;
        } else {
            tokio::time::sleep_until((w.clock.start + Duration::from_nanos(at)).into()).await;
        }
    };
    match &w.cfg.arrivals {
        Arrivals::Closed => {
            if let Some(end) = w.end.get() {
                sleep_until(end).await;
            }
        }
        Arrivals::Open(schedule) => {
            let n = w.slots.len() as u64;
            let mut m = 0u64;
            while let Some(due) = schedule.due(share.global(m)) {
                let due = start + due.as_nanos() as u64;
                if w.end.get().is_some_and(|e| due >= e) {
                    break;
                }
                let now = w.clock.now();
                if due > now {
                    if due - now <= SPIN_BELOW_NS {
                        while w.clock.now() < due {
                            tokio::task::yield_now().await;
                        }
                    } else {
                        sleep_until(due).await;
                    }
                }
                let slot = &w.slots[(m % n) as usize];
                slot.due.borrow_mut().push_back(due);
                slot.wake.notify_one();
                m += 1;
            }
        }
    }
    w.over.set(true);
    w.phase.notify_waiters();
    for s in &w.slots {
        s.wake.notify_one();
    }
}
