//! The one wasmtime [`Engine`] a server runs: Cranelift, epoch interruption, and the
//! pooling instance allocator with copy-on-write memory images.

use anyhow::{Context, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A spinning guest yields to the executor at every tick,
/// so this bounds how long one tenant can hold a worker thread before the thread looks at
/// its sockets and at other requests again: 1 ms keeps a well-behaved app's requests at a
/// few ms with 16 guests spinning on 2 threads (`benches/fairness.sh`), where 10 ms slices
/// let them wait ~50 ms. A request that finishes within a tick never sees it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// `EPOCH_TICK` as `--time-slice` spells its default.
pub const DEFAULT_TIME_SLICE: &str = "1ms";

/// Core instances a component may hold in the pool. Components made by wit-component
/// hold a few (the main module plus shims); 16 leaves room for multi-module guests.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Linear memories and tables per component instance.
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
const MAX_TABLES_PER_COMPONENT: u32 = 8;
/// Bytes of each memory slot kept resident between instances when the kernel can tell
/// which pages an instance dirtied (`PAGEMAP_SCAN`, Linux ≥ 6.7): only those pages are
/// copied back from the image, and the next instance finds them mapped instead of taking
/// a page fault each. A Rust guest's stack sits below 1 MiB and its heap just above, so
/// 8 MiB covers typical handlers; a guest that dirties more has the rest `madvise`d.
/// Measured with `benches/instantiate.rs`: see docs/benchmarks.md.
const MEMORY_KEEP_RESIDENT_SCANNED: usize = 8 << 20;
/// Without `PAGEMAP_SCAN` keep-resident means `memset` of the whole prefix on every
/// drop, so only a small prefix is worth it.
const MEMORY_KEEP_RESIDENT_BLIND: usize = 64 * 1024;
const TABLE_KEEP_RESIDENT: usize = 16 * 1024;

/// Which instance allocator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Allocator {
    /// The pooling allocator, falling back to on-demand when its address space can't be
    /// reserved (a small `ulimit -v`, a 32-bit host).
    Auto,
    /// The pooling allocator or nothing.
    Pooling,
    /// Allocate each instance from the OS on demand (slower, needs no reservation).
    OnDemand,
}

/// The engine plus what was chosen for it.
#[derive(Clone)]
pub struct EdgeEngine {
    /// The wasmtime engine shared by every app.
    pub engine: Engine,
    /// Whether instances come from the pool.
    pub pooling: bool,
    /// The cache of compiled glue code, for the baseline engine.
    pub glue: Option<Arc<GlueCache>>,
}

impl EdgeEngine {
    /// Builds the engine. `slots` is the number of instances that may exist at once.
    pub fn new(allocator: Allocator, slots: u32) -> Result<EdgeEngine> {
        match allocator {
            Allocator::OnDemand => Ok(EdgeEngine {
                engine: Engine::new(&base_config())
                    .map_err(anyhow::Error::from)
                    .context("cannot create the wasm engine")?,
                pooling: false,
                glue: None,
            }),
            Allocator::Pooling => Ok(EdgeEngine {
                engine: pooled(slots)?,
                pooling: true,
                glue: None,
            }),
            Allocator::Auto => match pooled(slots) {
                Ok(engine) => Ok(EdgeEngine {
                    engine,
                    pooling: true,
                    glue: None,
                }),
                Err(err) => {
                    tracing::warn!(
                        "pooling allocator unavailable ({err:#}); falling back to on-demand \
                         instance allocation, which is slower per request"
                    );
                    Self::new(Allocator::OnDemand, slots)
                }
            },
        }
    }

    /// The baseline-tier engine: Winch, a single-pass compiler that compiles several times
    /// faster than Cranelift into slower code. A deploy that misses the cache serves from
    /// it at once while Cranelift compiles in the background. Instances come from the OS on
    /// demand: the baseline tier lives for a fraction of a second and needs no pool.
    ///
    /// Winch still has Cranelift compile the glue around the code: an entry trampoline for
    /// every function the host may call (for a Rust app, every function in its table —
    /// 365 of the 697 in the hello example), the host-call trampolines and wasmtime's
    /// builtins. Those are short straight-line functions that optimizing cannot speed up
    /// much, so this engine compiles them with Cranelift's optimizer off: about 12 % less
    /// compile time for the hello example (`benches/compile.rs`).
    ///
    /// And it caches them: most of that glue is the same from one component to the next
    /// (a trampoline's code depends on its signature, not on which function it enters), so
    /// Cranelift's incremental cache ([`GlueCache`]) compiles each shape once per process.
    /// wasmtime 48's Winch integration refuses the cache; `vendor/wasmtime-internal-winch`
    /// is 48.0.8 with the one change that hands it to Winch's Cranelift.
    pub fn baseline() -> Result<EdgeEngine> {
        let mut config = base_config();
        config.strategy(wasmtime::Strategy::Winch);
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        let glue = Arc::new(GlueCache::default());
        config
            .enable_incremental_compilation(glue.clone())
            .map_err(anyhow::Error::from)
            .context("cannot enable the baseline engine's compile cache")?;
        Ok(EdgeEngine {
            engine: Engine::new(&config)
                .map_err(anyhow::Error::from)
                .context("cannot create the baseline (Winch) engine")?,
            pooling: false,
            glue: Some(glue),
        })
    }

    /// Starts the one epoch ticker of this engine, at [`EPOCH_TICK`]. It stops when the
    /// returned guard drops.
    pub fn start_epoch_ticker(&self) -> EpochTicker {
        self.start_epoch_ticker_every(EPOCH_TICK)
    }

    /// [`EdgeEngine::start_epoch_ticker`] with another tick (`--time-slice`).
    pub fn start_epoch_ticker_every(&self, tick: Duration) -> EpochTicker {
        start_ticker(vec![self.engine.clone()], tick)
    }
}

/// Ticks the ticker stays at full rate after a guest last ran past its first slice.
pub const HURRY_TICKS: u32 = 200;
/// While no guest runs long, the epoch advances once every this many ticks.
pub const IDLE_STRIDE: u32 = 10;

/// Set by a guest that ran past its first slice ([`hurry`]); counts down per tick.
static HURRY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Tells the ticker a guest is running long, so slices must be short for a while.
pub fn hurry() {
    HURRY.store(HURRY_TICKS, Ordering::Relaxed);
}

/// One ticker thread advancing the epoch of every engine in `engines` (one thread, not one
/// per engine: each wake-up costs the cores a context switch). It stops when the returned
/// guard drops.
///
/// The epoch advances every `tick` while guests run long, and every [`IDLE_STRIDE`] ticks
/// otherwise: a guest that runs past its first slice calls [`hurry`], and the ticker keeps
/// the short period for the next [`HURRY_TICKS`]. Waking every millisecond cost hello's
/// request rate 5 % on a pinned core even with no guest to interrupt (each wake-up
/// preempts an HTTP thread); this way only servers with long-running guests pay for short
/// slices. The price: on a quiet server a guest's first slice is [`IDLE_STRIDE`] times
/// longer (a spinner that starts there holds its thread that long once).
pub fn start_ticker(engines: Vec<Engine>, tick: Duration) -> EpochTicker {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("edge-epoch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let hurrying = HURRY.load(Ordering::Relaxed) > 0;
                let stride = if hurrying { 1 } else { IDLE_STRIDE };
                std::thread::sleep(tick * stride);
                if hurrying {
                    HURRY.fetch_sub(1, Ordering::Relaxed);
                }
                for engine in &engines {
                    engine.increment_epoch();
                }
            }
        })
        .expect("spawning the epoch thread");
    EpochTicker { stop }
}

/// The most the glue cache holds, keys and values. The glue of a typical component is a few
/// hundred entries of a few hundred bytes; past this, new shapes are compiled every time.
const GLUE_CACHE_BYTES: usize = 32 << 20;

/// Cranelift's incremental-compilation cache for the baseline engine's glue code
/// (trampolines, builtins): in memory, shared by every deploy, bounded by
/// 32 MiB. Cranelift keys an entry by a SHA-256 of the function's IR (the names it calls
/// aside) and the target flags, and fills in the function's own names when it reads one
/// back, so an entry only ever stands in for identical code.
#[derive(Debug, Default)]
pub struct GlueCache {
    inner: Mutex<GlueEntries>,
}

#[derive(Debug, Default)]
struct GlueEntries {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// What the glue cache holds and how it has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlueStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held, keys and values.
    pub bytes: usize,
    /// Functions whose code came from the cache.
    pub hits: u64,
    /// Functions Cranelift compiled (and offered to the cache).
    pub misses: u64,
}

impl GlueCache {
    /// Its contents and hit counts so far.
    pub fn stats(&self) -> GlueStats {
        let inner = self.inner.lock().unwrap();
        GlueStats {
            entries: inner.map.len(),
            bytes: inner.bytes,
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

impl wasmtime::CacheStore for GlueCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut inner = self.inner.lock().unwrap();
        let found = inner.map.get(key).map(|v| Cow::Owned(v.clone()));
        match found {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        found
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let size = key.len() + value.len();
        if inner.bytes + size > GLUE_CACHE_BYTES {
            return false;
        }
        if let Some(old) = inner.map.insert(key.to_vec(), value) {
            inner.bytes -= key.len() + old.len();
        }
        inner.bytes += size;
        true
    }
}

/// How much lower than the request path the background compiler runs: `nice` 10 gives it
/// about a tenth of a core the request path also wants (Linux CFS weights 110 vs 1024).
const OPTIMIZER_NICE: i32 = 10;

/// The thread pool that compiles code nobody is waiting for: Cranelift's optimized code for
/// an app already serving from the baseline tier. Its threads run at a lower priority
/// (`nice` +10), so requests and the next deploy's baseline compile — which run on the
/// normal-priority threads — take the cores first, and the optimization uses what is left.
/// wasmtime compiles functions in parallel with rayon, in whatever pool it is called from.
pub fn optimizer_pool() -> Result<rayon::ThreadPool> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("edge-optimize-{i}"))
        .start_handler(|_| lower_this_thread_priority(OPTIMIZER_NICE))
        .build()
        .context("cannot start the background compiler threads")
}

/// Lowers the calling thread's scheduling priority by `nice`. On Linux a "process" in
/// `setpriority(2)` is a thread, so this leaves the rest of the server alone. Failure
/// (a sandbox refusing it) only costs the priority, so it is logged, not returned.
#[allow(unsafe_code)]
fn lower_this_thread_priority(nice: i32) {
    // SAFETY: `setpriority` takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::debug!(
            "cannot lower the background compiler's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Stops the epoch ticker thread when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Copy-on-write images make a fresh instance's memory a mapping, not a copy.
    config.memory_init_cow(true);
    // `EDGE_PERFMAP=1`: guest functions by name in `perf report` (/tmp/perf-PID.map).
    if std::env::var_os("EDGE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

fn pooled(slots: u32) -> Result<Engine> {
    let slots = slots.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots.saturating_mul(2))
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .total_tables(slots.saturating_mul(MAX_TABLES_PER_COMPONENT / 2))
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .total_stacks(slots)
        // Per-app memory limits are enforced by each store's limiter, so every slot can
        // hold the largest memory a wasm32 guest can address.
        .max_memory_size(crate::config::MAX_WASM32_MEMORY as usize)
        .table_keep_resident(TABLE_KEEP_RESIDENT);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_SCANNED);
    } else {
        pool.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BLIND);
    }
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot reserve the instance pool")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;
    use wasmtime::component::Component;

    /// Three functions of one signature in a table: Winch compiles their bodies, Cranelift
    /// an entry trampoline for each, and those trampolines are the same code.
    const TABLE_OF_THREE: &str = r#"
        (component
          (core module $m
            (type $t (func (param i32) (result i32)))
            (table 3 funcref)
            (elem (i32.const 0) func $a $b $c)
            (func $a (type $t) local.get 0)
            (func $b (type $t) local.get 0 i32.const 1 i32.add)
            (func $c (type $t) local.get 0 i32.const 2 i32.mul)
            (func (export "f") (param i32) (result i32)
              local.get 0 local.get 0 call_indirect (type $t)))
          (core instance $i (instantiate $m))
          (func (export "f") (param "x" u32) (result u32) (canon lift (core func $i "f"))))
    "#;

    #[test]
    fn the_baseline_engine_compiles_each_shape_of_glue_once() {
        let baseline = EdgeEngine::baseline().unwrap();
        let glue = baseline.glue.clone().unwrap();
        Component::new(&baseline.engine, TABLE_OF_THREE).unwrap();
        let first = glue.stats();
        assert!(first.entries > 0, "{first:?}");
        assert!(
            first.hits >= 2,
            "identical trampolines were compiled apart: {first:?}"
        );
        // The same glue again, as for a second app: nothing new for Cranelift.
        Component::new(&baseline.engine, TABLE_OF_THREE).unwrap();
        let second = glue.stats();
        assert_eq!(second.entries, first.entries, "{second:?}");
        assert_eq!(second.misses, first.misses, "{second:?}");
        assert!(second.hits > first.hits, "{second:?}");
    }

    #[test]
    fn the_glue_cache_is_bounded() {
        let cache = GlueCache::default();
        assert!(cache.insert(b"a", vec![0; 1024]));
        assert!(!cache.insert(b"b", vec![0; GLUE_CACHE_BYTES]));
        assert!(cache.insert(b"a", vec![1; 16]));
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (1, 17));
        assert_eq!(cache.get(b"a").as_deref(), Some(&[1u8; 16][..]));
        assert_eq!(cache.get(b"b"), None);
    }
}
