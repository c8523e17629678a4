//! Scenarios: a WebAssembly component exporting `loadrig:scenario/vu` (`wit/scenario.wit`)
//! is a virtual user; loadrig runs one long-lived instance of it per VU, on the
//! executors its k6-shaped options name, and records every request through its own client.
//!
//! ```text
//! scenario.wasm ─compile→ VuPre ─VU 0→ options() → Options (executors as data)
//!   → setup() → worker threads: VUs instantiated before the start, each a task looping
//!     iteration(exec, data) as its executor says (arrival-rate: a dispatcher hands due
//!     iterations to idle VUs, growing the pool up to maxVUs, else dropping them)
//!   → teardown(data) → summary → handle-summary(summary)
//! ```

pub mod client;
pub mod js;
pub mod options;
mod stacks;
pub mod vu;
mod ws;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use self::client::Clock;
use self::options::{Executor, Options, Overrides, ScenarioSpec};
use self::vu::{Abort, Blueprint, Vu, VuPre, VuState};
use crate::plan::{Schedule, Share};
use crate::record::Results;
use crate::summary::MetricType;

/// How often the engine's epoch advances: a spinning VU yields to the others on its
/// thread this often, and is interrupted within this of its deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How often a VU that is ramped down (or a dispatcher with nothing due) looks again.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// Why a scenario run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The script or component is broken: it does not load, its options are invalid, or
    /// its init code threw (k6 exit code 107).
    #[error("{0}")]
    Script(String),
    /// The options are invalid (k6 exit code 104).
    #[error("{0}")]
    Options(String),
    /// `setup()` failed or the run was aborted (k6 exit code 108).
    #[error("{0}")]
    Aborted(String),
}

/// A compiled scenario component.
pub struct Loaded {
    engine: Engine,
    pre: VuPre<VuState>,
    /// The file it came from.
    pub path: String,
    /// The component, kept for [`Loaded::with_checked_memories`].
    bytes: Arc<[u8]>,
    /// Whether it came through the code cache.
    cached: bool,
}

/// Compiles a scenario component and checks it is one.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the scenario `{}`", path.display()))?;
    load_with(&bytes, &path.display().to_string(), true)
}

/// As [`load`], from bytes in memory (`name` is used in messages), compiled without the
/// code cache: a k6 script's snapshot differs from run to run (the engine's hash seeds
/// and clocks are in it), so caching it would only fill the cache.
pub fn load_bytes(bytes: &[u8], name: &str) -> anyhow::Result<Loaded> {
    load_with(bytes, name, false)
}

fn load_with(bytes: &[u8], name: &str, cached: bool) -> anyhow::Result<Loaded> {
    load_for(bytes, name, cached, Memories::Unchecked)
}

fn load_for(bytes: &[u8], name: &str, cached: bool, memories: Memories) -> anyhow::Result<Loaded> {
    let script = |m: String| anyhow::Error::new(ScenarioError::Script(m));
    if !wasmparser::Parser::is_component(bytes) {
        return Err(script(if wasmparser::Parser::is_core_wasm(bytes) {
            format!(
                "`{name}` is a core WebAssembly module; a scenario is a component exporting `loadrig:scenario/vu` (build with the wasm32-wasip2 target)"
            )
        } else {
            format!("`{name}` is not a WebAssembly component")
        }));
    }
    let engine = vu_engine(memories)?;
    let component = if cached {
        compile(&engine, bytes)
    } else {
        Component::new(&engine, bytes).map_err(anyhow::Error::from)
    }
    .map_err(|e| script(format!("`{name}` does not compile: {e:#}")))?;
    let linker = vu::linker(&engine)?;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        script(format!(
            "`{name}` imports something loadrig does not provide: {e:#}"
        ))
    })?;
    let pre = VuPre::new(pre).map_err(|e| {
        script(format!(
            "`{name}` does not export the `loadrig:scenario/vu` world (options, setup, iteration, teardown, handle-summary; see loadrig/wit/scenario.wit): {e:#}"
        ))
    })?;
    Ok(Loaded {
        engine,
        pre,
        path: name.to_owned(),
        bytes: bytes.into(),
        cached,
    })
}

impl Loaded {
    /// The same component compiled for [`Memories::Checked`]: for runs with more VUs than
    /// unchecked memories leave address space for.
    fn with_checked_memories(&self) -> anyhow::Result<Loaded> {
        load_for(&self.bytes, &self.path, self.cached, Memories::Checked)
    }
}

/// How many compiled components loadrig's cache keeps (the newest written or used).
const CACHE_KEEP: usize = 32;

/// loadrig's cache of compiled code (the k6 VU engine's, each scenario component's), so
/// that a run starts with one compile fewer:
/// `$LOADRIG_CACHE_DIR` (empty: no cache), else `$XDG_CACHE_HOME/loadrig`, else
/// `~/.cache/loadrig`. A directory that cannot be made means no cache, not an error.
fn code_cache(engine: &Engine) -> Option<edge_codecache::Cache> {
    let dir = match std::env::var_os("LOADRIG_CACHE_DIR") {
        Some(dir) if dir.is_empty() => return None,
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| std::path::PathBuf::from(h).join(".cache"))
            })?
            .join("loadrig"),
    };
    let cache = edge_codecache::Cache::open(&dir, engine).ok()?;
    let _ = cache.prune(CACHE_KEEP);
    Some(cache)
}

/// Compiles `bytes` for `engine`, through loadrig's cache when there is one.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    match code_cache(engine) {
        Some(cache) => cache.load_or_compile(engine, &edge_codecache::digest(bytes), bytes),
        None => Component::new(engine, bytes).map_err(anyhow::Error::from),
    }
}

/// How a VU's linear memory is kept in bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Memories {
    /// 4 GiB of address space reserved per memory, so that compiled code needs no bounds
    /// check on a load or store: the trivial k6 script runs 17 % faster than with checks
    /// (docs/benchmarks.md). Reserving is not committing: 10 000 VUs reserve 40 TiB of
    /// the 128 TiB a process has, and take no more memory than with checks.
    Unchecked,
    /// Address space reserved only up to a VU's limit, every access checked: for runs with
    /// more than [`UNCHECKED_VUS`] VUs, which 4 GiB each would not fit.
    Checked,
}

/// The most VUs a run gives unchecked memories (96 TiB of address space; the rest is
/// left to everything else). `LOADRIG_UNCHECKED_VUS` sets another bound (0: always check).
const UNCHECKED_VUS: u64 = 24 * 1024;

fn unchecked_vus() -> u64 {
    std::env::var("LOADRIG_UNCHECKED_VUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(UNCHECKED_VUS)
}

/// The engine VUs run on: epoch interruption, and memories as `memories` says.
pub(crate) fn vu_engine(memories: Memories) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_reservation(match memories {
        Memories::Unchecked => 1 << 32,
        Memories::Checked => vu::VU_MEMORY_LIMIT as u64,
    });
    config.memory_guard_size(1 << 16);
    config.with_host_stack(Arc::new(stacks::Creator(stacks::StackPool::new())));
    // `LOADRIG_PERFMAP=1`: guest functions by name in `perf report` (/tmp/perf-PID.map).
    if std::env::var_os("LOADRIG_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Hands the heap that preparing the run freed (the Wizer snapshot's buffers, compiled
/// code on its way to the cache, each VU's set-up) back to the system before the run:
/// glibc keeps freed memory in its arenas otherwise, and it would count as the run's.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` only returns free pages of malloc's own arenas to the system.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// How to run a loaded scenario.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--vus`, `-d`, `--iterations`, `--stage`.
    pub overrides: Overrides,
    /// `--segment`.
    pub share: Option<Share>,
    /// `-e KEY=VALUE`: the VUs' environment (k6's `__ENV`).
    pub env: Vec<(String, String)>,
    /// Worker threads.
    pub threads: usize,
}

/// What a scenario run produced.
pub struct Finished {
    /// Everything measured.
    pub results: Results,
    /// The options it ran with.
    pub options: Options,
    /// Why it was aborted, if it was.
    pub aborted: Option<String>,
    /// Iterations interrupted at the end of a graceful stop.
    pub interrupted: u64,
    /// VU 0's instance, kept for `handle-summary`.
    control: Control,
}

/// Files a scenario's `handle-summary` returns: `(path, content)`, `stdout` and `stderr`
/// naming those streams.
pub type SummaryFiles = Vec<(String, Vec<u8>)>;

/// Progress of a running scenario, for the live display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// The run's length, graceful stops included.
    pub length: Duration,
    /// VUs running an iteration now.
    pub active_vus: u64,
    /// Iterations completed.
    pub iterations: u64,
}

/// The instance `options`, `setup`, `teardown` and `handle-summary` run in (k6's VU 0),
/// on a runtime of its own.
struct Control {
    rt: tokio::runtime::Runtime,
    vu: Vu,
}

impl Control {
    fn new(blueprint: &Blueprint, clock: Clock) -> anyhow::Result<Control> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let results = Arc::new(Mutex::new(Results::default()));
        let vu = rt
            .block_on(Vu::new(
                blueprint,
                results,
                clock,
                context(0, "", 0, 0),
                &[],
                Vec::new(),
            ))
            .map_err(|e| ScenarioError::Script(format!("{e:#}")))?;
        Ok(Control { rt, vu })
    }

    /// Calls an export with a deadline; a trap or a missed deadline is a script error.
    fn call<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl AsyncFnOnce(&mut Vu) -> wasmtime::Result<T>,
    ) -> anyhow::Result<T> {
        let vu = &mut self.vu;
        self.rt
            .block_on(async move { tokio::time::timeout(timeout, f(vu)).await })
            .map_err(|_| {
                ScenarioError::Script(format!(
                    "{what} did not finish within {}",
                    humantime::format_duration(timeout)
                ))
            })?
            .map_err(|e| ScenarioError::Script(format!("{what} failed: {}", trap_text(&e))).into())
    }

    fn results(&self) -> Results {
        self.vu
            .store
            .data()
            .client
            .results
            .lock()
            .expect("results lock")
            .clone()
    }
}

/// A trap's message and the guest's backtrace, without the host's chain.
fn trap_text(e: &wasmtime::Error) -> String {
    format!("{e:?}")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(12)
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn context(vu: u32, scenario: &str, iteration: u64, in_scenario: u64) -> vu::VuContext {
    vu::VuContext {
        vu,
        iteration,
        scenario: scenario.to_owned(),
        iteration_in_scenario: in_scenario,
    }
}

/// What interrupts a VU's iteration: the end of its scenario's graceful stop, and an abort
/// of the run. Made once per VU for all its iterations (a timer and a waiter registered
/// per iteration cost more than a trivial iteration's host work).
struct Stops {
    hard: std::pin::Pin<Box<tokio::time::Sleep>>,
    aborted: std::pin::Pin<Box<dyn Future<Output = ()>>>,
}

impl Stops {
    fn new(share: &ScenarioShare, clock: Clock, abort: Arc<Abort>) -> Stops {
        Stops {
            hard: Box::pin(tokio::time::sleep_until(
                (clock.start + share.spec.hard_end()).into(),
            )),
            aborted: Box::pin(async move { abort.wait().await }),
        }
    }
}

/// The epoch ticker: one thread per run.
pub(crate) struct Ticker(Arc<std::sync::atomic::AtomicBool>);

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> Ticker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("loadrig-epoch".into())
            .spawn(move || {
                while !flag.load(Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Ticker(stop)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

fn read_options(control: &mut Control, settings: &Settings) -> anyhow::Result<Options> {
    let json = control.call("options()", Duration::from_secs(60), async |vu| {
        vu.exports.call_options(&mut vu.store).await
    })?;
    Options::parse(
        &json,
        &settings.overrides,
        settings.share.unwrap_or(Share::WHOLE),
    )
    .map_err(|e| ScenarioError::Options(format!("invalid options: {e:#}")).into())
}

/// Runs a scenario to the end: options, setup, the executors, teardown.
pub fn run(
    loaded: &Loaded,
    settings: &Settings,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<Finished> {
    let abort = Arc::new(Abort::default());
    let blueprint = Arc::new(Blueprint {
        pre: loaded.pre.clone(),
        env: settings.env.clone(),
        abort: abort.clone(),
    });
    let _ticker = Ticker::start(&loaded.engine);
    let mut control = Control::new(&blueprint, Clock::new())?;
    let options = read_options(&mut control, settings)?;
    let defs = submetric_defs(&options)?;
    let setup = control.call("setup()", options.setup_timeout, async |vu| {
        vu.exports.call_setup(&mut vu.store).await
    })?;
    let data = match setup {
        Ok(data) => Arc::new(data),
        Err(message) => {
            return Err(ScenarioError::Aborted(format!("setup() failed: {message}")).into());
        }
    };
    if abort.is_set() {
        return Err(ScenarioError::Aborted(format!(
            "aborted in setup(): {}",
            abort.reason().unwrap_or_default()
        ))
        .into());
    }

    // Every VU of every scenario, numbered from 1 across the run, on threads round-robin.
    let threads = settings.threads.max(1);
    let mut first_vu = 1u32;
    let mut plans: Vec<Vec<ScenarioShare>> = (0..threads).map(|_| Vec::new()).collect();
    for (s_index, spec) in options.scenarios.iter().enumerate() {
        let shared = Arc::new(SharedCounters::default());
        for (t, plan) in plans.iter_mut().enumerate() {
            let ids: Vec<u32> = (0..spec.executor.max_vus())
                .filter(|j| (u64::from(first_vu) + j) % threads as u64 == t as u64)
                .map(|j| first_vu + j as u32)
                .collect();
            plan.push(ScenarioShare {
                index: s_index,
                first_vu,
                spec: spec.clone(),
                vu_ids: ids,
                thread: t as u64,
                threads: threads as u64,
                counters: shared.clone(),
            });
        }
        first_vu += spec.executor.max_vus() as u32;
    }
    // VU 0 stays where it is; the others move to checked memories if there are too many.
    let checked;
    let total_vus = u64::from(first_vu - 1);
    let (blueprint, _checked_ticker) = if total_vus > unchecked_vus() {
        eprintln!(
            "note: this run has {total_vus} VUs; above {}, loadrig bounds-checks every VU memory access (about 15 % slower) so that they fit in the address space",
            unchecked_vus()
        );
        checked = loaded.with_checked_memories()?;
        let ticker = Ticker::start(&checked.engine);
        let blueprint = Arc::new(Blueprint {
            pre: checked.pre.clone(),
            env: blueprint.env.clone(),
            abort: abort.clone(),
        });
        (blueprint, Some(ticker))
    } else {
        (blueprint, None)
    };
    let active = Arc::new(AtomicU64::new(0));
    let active_peak = Arc::new(AtomicU64::new(0));
    let iterations = Arc::new(AtomicU64::new(0));
    let interrupted = Arc::new(AtomicU64::new(0));
    let initialized = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let init_started = Instant::now();
    let mut starts = Vec::new();
    let mut handles = Vec::new();
    let mut recorders = Vec::new();
    for (t, plan) in plans.into_iter().enumerate() {
        let (start_tx, start_rx) = std::sync::mpsc::channel::<Clock>();
        starts.push(start_tx);
        let results = Arc::new(Mutex::new(Results {
            metrics: crate::metrics::Metrics::with_submetrics(defs.clone()),
            ..Results::default()
        }));
        recorders.push(results.clone());
        let worker = Worker {
            blueprint: blueprint.clone(),
            data: data.clone(),
            results,
            active: active.clone(),
            active_peak: active_peak.clone(),
            iterations: iterations.clone(),
            interrupted: interrupted.clone(),
            initialized: initialized.clone(),
            abort: abort.clone(),
        };
        let ready = ready_tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadrig-vu-{t}"))
                .spawn(move || worker.run(plan, ready, start_rx))
                .context("starting a worker thread")?,
        );
    }
    drop(ready_tx);
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("a worker thread ended while initializing its VUs"),
        }
    }
    let vus = initialized.load(Relaxed);
    if vus > 0 {
        let took = init_started.elapsed();
        eprintln!(
            "loadrig: {vus} VU(s) initialized in {:.1} ms ({:.0} µs each)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / vus as f64
        );
    }
    release_freed_memory();
    // Every VU is initialized: the run's clock starts now, for every thread at once.
    let clock = Clock::new();
    let start = clock.start;
    let cpu_before = crate::drive::cpu_time();
    for tx in &starts {
        let _ = tx.send(clock);
    }
    let length = options.length();
    let mut vus_gauge = crate::metrics::Metric::new(MetricType::Gauge, false);
    let thresholds = abort_thresholds(&options)?;
    let mut last_check = Instant::now();
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let now_active = active.load(Relaxed);
        vus_gauge.add(now_active as f64);
        progress(Progress {
            elapsed: start.elapsed(),
            length,
            active_vus: now_active,
            iterations: iterations.load(Relaxed),
        });
        if !thresholds.is_empty() && last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            let mut snapshot = Results::default();
            for r in &recorders {
                snapshot.merge(&r.lock().expect("results lock"));
            }
            snapshot.elapsed = start.elapsed();
            for (t, delay) in &thresholds {
                if start.elapsed() >= *delay && !t.check(&snapshot).ok {
                    abort.set(format!("threshold `{}` failed (abortOnFail)", t.source()));
                }
            }
        }
    }
    let mut results = Results {
        metrics: crate::metrics::Metrics::with_submetrics(defs),
        ..Results::default()
    };
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        results.merge(&r);
    }
    results.elapsed = start.elapsed();
    results.cpu = crate::drive::cpu_time().saturating_sub(cpu_before);
    results.cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    // k6 samples `vus` each second; the peak between samples is kept exactly.
    vus_gauge.add(active_peak.load(Relaxed) as f64);
    vus_gauge.add(active.load(Relaxed) as f64);
    results.metrics.metrics.insert("vus".into(), vus_gauge);
    let mut vus_max = crate::metrics::Metric::new(MetricType::Gauge, false);
    vus_max.add(initialized.load(Relaxed) as f64);
    results.metrics.metrics.insert("vus_max".into(), vus_max);
    for name in ["iterations", "dropped_iterations"] {
        results
            .metrics
            .metrics
            .entry(name.into())
            .or_insert_with(|| crate::metrics::Metric::new(MetricType::Counter, false));
    }
    let teardown = control.call("teardown()", options.teardown_timeout, async |vu| {
        vu.exports.call_teardown(&mut vu.store, &data).await
    })?;
    if let Err(message) = teardown {
        eprintln!("loadrig: teardown() failed: {message}");
    }
    // What setup and teardown recorded (their requests and checks) belongs to the run.
    results.merge(&control.results());
    results.seal();
    Ok(Finished {
        results,
        options,
        aborted: abort.reason(),
        interrupted: interrupted.load(Relaxed),
        control,
    })
}

impl Finished {
    /// Calls the scenario's `handle-summary` with the summary JSON: `Some(files)` when it
    /// returns files to write (paths, or `stdout`/`stderr`), `None` when it leaves the
    /// report to loadrig.
    pub fn handle_summary(&mut self, summary: &str) -> anyhow::Result<Option<SummaryFiles>> {
        let files = self
            .control
            .call("handleSummary()", Duration::from_secs(60), async |vu| {
                vu.exports.call_handle_summary(&mut vu.store, summary).await
            })?;
        files.map_err(|m| ScenarioError::Script(format!("handleSummary() failed: {m}")).into())
    }
}

/// The submetrics the thresholds name.
fn submetric_defs(options: &Options) -> anyhow::Result<Vec<crate::metrics::SubmetricDef>> {
    let mut defs = Vec::new();
    for t in &options.thresholds {
        if let Some(def) = crate::metrics::SubmetricDef::parse(&t.metric)
            .map_err(|e| ScenarioError::Script(format!("invalid threshold: {e:#}")))?
            && !defs.contains(&def)
        {
            defs.push(def);
        }
    }
    Ok(defs)
}

/// The thresholds to check while the run goes (those with `abortOnFail`), each with how
/// far into the run its judging starts (`delayAbortEval`).
fn abort_thresholds(
    options: &Options,
) -> anyhow::Result<Vec<(crate::threshold::Threshold, Duration)>> {
    options
        .thresholds
        .iter()
        .filter(|t| t.abort_on_fail)
        .map(|t| {
            crate::threshold::Threshold::parse_k6(&t.metric, &t.expr)
                .map(|th| (th, t.delay_abort_eval))
                .map_err(|e| ScenarioError::Script(format!("invalid threshold: {e:#}")).into())
        })
        .collect()
}

/// Counters a scenario's threads share.
#[derive(Debug, Default)]
struct SharedCounters {
    /// `shared-iterations`: iterations taken so far.
    taken: AtomicU64,
    /// Iterations started in the scenario (for `iteration-in-scenario`).
    started: AtomicU64,
}

/// One thread's part of one scenario.
struct ScenarioShare {
    index: usize,
    /// The number of the scenario's first VU.
    first_vu: u32,
    spec: ScenarioSpec,
    /// The VUs of this scenario that live on this thread.
    vu_ids: Vec<u32>,
    thread: u64,
    threads: u64,
    counters: Arc<SharedCounters>,
}

/// What a worker thread shares with the run.
struct Worker {
    blueprint: Arc<Blueprint>,
    data: Arc<String>,
    results: Arc<Mutex<Results>>,
    active: Arc<AtomicU64>,
    /// The most VUs in an iteration at once.
    active_peak: Arc<AtomicU64>,
    iterations: Arc<AtomicU64>,
    interrupted: Arc<AtomicU64>,
    /// VUs initialized so far (k6's `vus_max`).
    initialized: Arc<AtomicU64>,
    abort: Arc<Abort>,
}

/// An arrival-rate scenario's queue on one thread: due iterations waiting for a VU.
struct Queue {
    due: std::cell::RefCell<VecDeque<u64>>,
    idle: std::cell::Cell<u64>,
    wake: tokio::sync::Notify,
    done: std::cell::Cell<bool>,
}

impl Worker {
    fn run(
        self,
        plan: Vec<ScenarioShare>,
        ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
        start: std::sync::mpsc::Receiver<Clock>,
    ) -> anyhow::Result<Results> {
        let rt = crate::drive::worker_runtime()?;
        let local = tokio::task::LocalSet::new();
        let worker = Rc::new(self);
        // Initialize the VUs that exist from the start (k6's init phase) before the clock.
        let placeholder = Clock::new();
        let mut initial: Vec<(usize, u32, Vu)> = Vec::new();
        let init = local.block_on(&rt, async {
            for share in &plan {
                let n = share.spec.executor.initial_vus();
                for &id in &share.vu_ids {
                    if u64::from(id - share.first_vu) < n {
                        let vu = worker.new_vu(share, id, placeholder).await?;
                        initial.push((share.index, id, vu));
                    }
                }
            }
            anyhow::Ok(())
        });
        let failed = init.is_err();
        let _ = ready.send(init);
        if failed {
            return Ok(Results::default());
        }
        let Ok(clock) = start.recv() else {
            return Ok(Results::default());
        };
        for (_, _, vu) in initial.iter_mut() {
            vu.store.data_mut().client.clock = clock;
        }
        for share in plan {
            let share = Rc::new(share);
            let mine: Vec<Vu> = {
                let mut v = Vec::new();
                let mut rest = Vec::new();
                for (s, id, vu) in initial.drain(..) {
                    if s == share.index {
                        v.push((id, vu));
                    } else {
                        rest.push((s, id, vu));
                    }
                }
                initial = rest;
                v.sort_by_key(|(id, _)| *id);
                v.into_iter().map(|(_, vu)| vu).collect()
            };
            match &share.spec.executor {
                Executor::ArrivalRate { .. } => {
                    let queue = Rc::new(Queue {
                        due: Default::default(),
                        idle: Default::default(),
                        wake: tokio::sync::Notify::new(),
                        done: Default::default(),
                    });
                    let spawned = Rc::new(std::cell::Cell::new(mine.len()));
                    for vu in mine {
                        local.spawn_local(worker.clone().arrival_vu(
                            share.clone(),
                            vu,
                            queue.clone(),
                            clock,
                        ));
                    }
                    local.spawn_local(worker.clone().dispatch(
                        share.clone(),
                        queue,
                        spawned,
                        clock,
                    ));
                }
                _ => {
                    for vu in mine {
                        let index = u64::from(vu.store.data().context.vu - share.first_vu);
                        local.spawn_local(worker.clone().looping_vu(
                            share.clone(),
                            vu,
                            index,
                            clock,
                        ));
                    }
                }
            }
        }
        rt.block_on(local);
        let results = worker.results.lock().expect("results lock").clone();
        Ok(results)
    }

    async fn new_vu(&self, share: &ScenarioShare, id: u32, clock: Clock) -> anyhow::Result<Vu> {
        let mut tags: Vec<(String, String)> = share
            .spec
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.push(("scenario".into(), share.spec.name.clone()));
        self.initialized.fetch_add(1, Relaxed);
        let env: Vec<(String, String)> = share
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Vu::new(
            &self.blueprint,
            self.results.clone(),
            clock,
            context(id, &share.spec.name, 0, 0),
            &env,
            tags,
        )
        .await
        .map_err(|e| ScenarioError::Script(format!("initializing VU {id}: {e:#}")).into())
    }

    /// Runs one iteration on `vu`; `due` is when it was scheduled (arrival-rate), else it
    /// is due now. `false`: the VU cannot go on (interrupted at the hard end, or broken).
    async fn iterate(
        &self,
        share: &ScenarioShare,
        vu: &mut Option<Vu>,
        due: Option<u64>,
        clock: Clock,
        iteration: &mut u64,
        stops: &mut Stops,
    ) -> bool {
        let Some(v) = vu.as_mut() else { return false };
        let begun = clock.now();
        let intended = due.unwrap_or(begun);
        let state = v.store.data_mut();
        state
            .client
            .lateness
            .store(begun.saturating_sub(intended), Relaxed);
        state.context.iteration = *iteration;
        state.context.iteration_in_scenario = share.counters.started.fetch_add(1, Relaxed);
        *iteration += 1;
        let now_active = self.active.fetch_add(1, Relaxed) + 1;
        self.active_peak.fetch_max(now_active, Relaxed);
        let outcome = {
            let call = v
                .exports
                .call_iteration(&mut v.store, &share.spec.exec, &self.data);
            // Polled once done only if the VU went on, which it does not: an interrupted
            // iteration ends its VU.
            tokio::select! {
                r = call => Some(r),
                _ = stops.hard.as_mut() => None,
                _ = stops.aborted.as_mut() => None,
            }
        };
        self.active.fetch_sub(1, Relaxed);
        let ended = clock.now();
        let vu_id = v.store.data().context.vu;
        let Some(result) = outcome else {
            // Interrupted mid-call: the instance's state is unknown, so the VU ends.
            self.interrupted.fetch_add(1, Relaxed);
            *vu = None;
            return false;
        };
        {
            let mut results = self.results.lock().expect("results lock");
            // Tags only select submetrics: without any, an iteration does not build them.
            let tags = if results.metrics.defs.is_empty() {
                Vec::new()
            } else {
                v.store.data().client.tags(&[])
            };
            let mut record = |name: &str, kind: MetricType, time: bool, value: f64| {
                let _ = results.metrics.add(name, kind, time, value, &tags);
            };
            let ms = ended.saturating_sub(intended) as f64 / 1e6;
            record("iterations", MetricType::Counter, false, 1.0);
            record("iteration_duration", MetricType::Trend, true, ms);
            if !matches!(result, Ok(Ok(()))) {
                record("iteration_errors", MetricType::Counter, false, 1.0);
            }
        }
        self.iterations.fetch_add(1, Relaxed);
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                log_once(&message, &format!("VU {vu_id} iteration failed: {message}"));
            }
            Err(trap) => {
                let text = trap_text(&trap);
                log_once(
                    &text,
                    &format!("VU {vu_id} trapped; it gets a fresh instance: {text}"),
                );
                let next = *iteration;
                *vu = self.new_vu(share, vu_id, clock).await.ok();
                // A replacement, not another VU.
                self.initialized.fetch_sub(1, Relaxed);
                if let Some(v) = vu.as_mut() {
                    v.store.data_mut().context.iteration = next;
                }
                return vu.is_some();
            }
        }
        v.reset_groups();
        true
    }

    /// A VU of a closed executor: loops as the executor says until its end.
    async fn looping_vu(
        self: Rc<Self>,
        share: Rc<ScenarioShare>,
        vu: Vu,
        index: u64,
        clock: Clock,
    ) {
        let spec = &share.spec;
        let begin = clock.start + spec.start_time;
        tokio::time::sleep_until(begin.into()).await;
        let end = begin + spec.executor.length();
        let mut vu = Some(vu);
        let mut iteration = 0u64;
        let mut stops = Stops::new(&share, clock, self.abort.clone());
        loop {
            if self.abort.is_set() {
                break;
            }
            let now = Instant::now();
            let go = match &spec.executor {
                Executor::ConstantVus { .. } => now < end,
                Executor::PerVuIterations { iterations, .. } => {
                    now < end && iteration < *iterations
                }
                Executor::SharedIterations { iterations, .. } => {
                    now < end && share.counters.taken.fetch_add(1, Relaxed) < *iterations
                }
                Executor::RampingVus { .. } => {
                    if now >= end {
                        false
                    } else if spec.executor.vus_at(now - begin) <= index {
                        tokio::time::sleep(IDLE_POLL).await;
                        continue;
                    } else {
                        true
                    }
                }
                Executor::ArrivalRate { .. } => false,
            };
            if !go
                || !self
                    .iterate(&share, &mut vu, None, clock, &mut iteration, &mut stops)
                    .await
            {
                break;
            }
        }
    }

    /// An arrival-rate VU: runs each due iteration it is handed until the scenario ends.
    async fn arrival_vu(
        self: Rc<Self>,
        share: Rc<ScenarioShare>,
        vu: Vu,
        queue: Rc<Queue>,
        clock: Clock,
    ) {
        let mut vu = Some(vu);
        let mut iteration = 0u64;
        let mut stops = Stops::new(&share, clock, self.abort.clone());
        loop {
            let next = queue.due.borrow_mut().pop_front();
            let Some(due) = next else {
                if queue.done.get() || self.abort.is_set() {
                    break;
                }
                queue.idle.set(queue.idle.get() + 1);
                queue.wake.notified().await;
                queue.idle.set(queue.idle.get() - 1);
                continue;
            };
            if !self
                .iterate(
                    &share,
                    &mut vu,
                    Some(due),
                    clock,
                    &mut iteration,
                    &mut stops,
                )
                .await
            {
                break;
            }
        }
    }

    /// Hands each iteration to an idle VU when it is due; with none idle, starts another
    /// VU (up to this thread's share of `maxVUs`) or drops the iteration.
    async fn dispatch(
        self: Rc<Self>,
        share: Rc<ScenarioShare>,
        queue: Rc<Queue>,
        spawned: Rc<std::cell::Cell<usize>>,
        clock: Clock,
    ) {
        let Executor::ArrivalRate {
            start_rate, stages, ..
        } = &share.spec.executor
        else {
            return;
        };
        let schedule = Schedule::staged(*start_rate, stages);
        // This thread takes iterations k ≡ thread (mod threads) of its segment's share.
        let mine = share.spec.share.split(share.thread, share.threads);
        let begin = clock.start + share.spec.start_time;
        // Due times are kept to the microsecond (tokio's timers tick in milliseconds, which
        // would put the rig's own lateness into every corrected latency).
        let mut timer = crate::drive::Timer::new(clock).ok();
        let mut n = 0u64;
        loop {
            if self.abort.is_set() {
                break;
            }
            let k = mine.global(n);
            let Some(at) = schedule.due(k) else { break };
            n += 1;
            let due_at = begin + at;
            let due_ns = (due_at - clock.start).as_nanos() as u64;
            // An iteration already due is dispatched after one turn of the VUs that are
            // ready (so an idle VU can take it), without arming the timer: at tens of
            // thousands of iterations a second, the timer's syscalls and wake-ups were
            // most of what an open-model iteration cost beyond a closed-model one.
            if clock.now() >= due_ns {
                tokio::task::yield_now().await;
            } else {
                match &mut timer {
                    Some(t) => t.sleep_until(due_ns).await,
                    None => tokio::time::sleep_until(due_at.into()).await,
                }
            }
            let queued = queue.due.borrow().len() as u64;
            if queue.idle.get() > queued {
                queue.due.borrow_mut().push_back(due_ns);
                queue.wake.notify_one();
            } else if spawned.get() < share.vu_ids.len() {
                let id = share.vu_ids[spawned.get()];
                spawned.set(spawned.get() + 1);
                queue.due.borrow_mut().push_back(due_ns);
                let worker = self.clone();
                let (s, q) = (share.clone(), queue.clone());
                tokio::task::spawn_local(async move {
                    match worker.new_vu(&s, id, clock).await {
                        Ok(vu) => worker.arrival_vu(s, vu, q, clock).await,
                        Err(e) => {
                            let text = format!("{e:#}");
                            log_once(&text, &text)
                        }
                    }
                });
            } else {
                let tags = vec![
                    ("scenario".to_owned(), share.spec.name.clone()),
                    ("group".to_owned(), String::new()),
                ];
                let _ = self.results.lock().expect("results lock").metrics.add(
                    "dropped_iterations",
                    MetricType::Counter,
                    false,
                    1.0,
                    &tags,
                );
            }
        }
        queue.done.set(true);
        queue.wake.notify_waiters();
    }
}

/// Prints `message` the first time `key` is seen (VU errors repeat every iteration, on
/// every VU).
fn log_once(key: &str, message: &str) {
    static SEEN: Mutex<Option<BTreeMap<String, u64>>> = Mutex::new(None);
    let mut seen = SEEN.lock().expect("log lock");
    let seen = seen.get_or_insert_with(BTreeMap::new);
    let key: String = key.chars().take(500).collect();
    let n = seen.entry(key).or_default();
    *n += 1;
    if *n == 1 {
        eprintln!("loadrig: {message}");
    }
}
