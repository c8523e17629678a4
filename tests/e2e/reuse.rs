//! Instances reset in place and kept between requests (`--keep-instances`). The `residue`
//! guest reports what it finds in its instance (a static counter, a heap block, the
//! memory's size, its data segment, its handle table) and then changes all of it, so any
//! answer but the first one's shows a reset that missed something. Every server the
//! harness starts also checks each reset byte for byte (`EDGE_CHECK_RESETS`).

use crate::support::*;

const TOKEN: &str = "reuse-test-token";

/// A counter or gauge's value in the classic exposition, 0 when absent.
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

async fn metrics(edge: &Edge) -> String {
    let m = admin(edge.admin, "GET", "/metrics", TOKEN, None, vec![]).await;
    assert_eq!(m.status, 200);
    m.body
}

/// The metrics once `done` holds of them: an instance is reset and kept by its request's
/// task after the response went out, so the counters can trail the responses a little.
async fn metrics_once(edge: &Edge, done: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        let m = metrics(edge).await;
        if done(&m) || started.elapsed().as_secs() >= 10 {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

const REUSES: &str = "edge_instance_reuses_total";
const KEPT: &str = "edge_instance_resets_total{result=\"kept\"}";
const FAILED: &str = "edge_instance_resets_total{result=\"failed\"}";
const MISMATCH: &str = "edge_instance_resets_total{result=\"mismatch\"}";

/// The answer of a fresh instance.
async fn baseline(edge: &Edge) -> String {
    let first = get(edge.addr, "residue.localhost", "/").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.body.starts_with("count=0 leaked=0 pages=") && first.body.contains("note=pristine"),
        "{}",
        first.body
    );
    first.body
}

/// Sends requests until one runs on a kept instance: until Cranelift's code replaces the
/// baseline tier's (whose instances the pool does not make, so they are never kept),
/// every request instantiates.
async fn until_kept(edge: &Edge, fresh: &str) {
    let started = std::time::Instant::now();
    while sample(&metrics(edge).await, REUSES) == 0 {
        assert!(
            started.elapsed().as_secs() < 60,
            "no request ever ran on a kept instance"
        );
        assert_eq!(get(edge.addr, "residue.localhost", "/").await.body, fresh);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_instance_shows_nothing_of_the_requests_before_it() {
    let apps = Apps::new();
    apps.add("residue");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let fresh = baseline(&edge).await;
    until_kept(&edge, &fresh).await;
    let before = metrics(&edge).await;
    for i in 0..20 {
        let r = get(edge.addr, "residue.localhost", "/").await;
        assert_eq!(r.body, fresh, "request {i} after the first");
    }
    // Concurrent requests take several instances from the cache and put them back.
    let many = (0..16).map(|_| get(edge.addr, "residue.localhost", "/"));
    for r in futures::future::join_all(many).await {
        assert_eq!(r.body, fresh);
    }
    let m = metrics_once(&edge, |m| sample(m, KEPT) - sample(&before, KEPT) >= 36).await;
    // The sequential requests ran on the instances those before them left: the reuse is
    // real, not fresh instances that would pass the test on their own.
    assert!(sample(&m, REUSES) - sample(&before, REUSES) >= 20, "{m}");
    assert!(sample(&m, KEPT) - sample(&before, KEPT) >= 36, "{m}");
    assert_eq!(sample(&m, FAILED), 0, "{m}");
    assert_eq!(sample(&m, MISMATCH), 0, "{m}");
    assert!(sample(&m, "edge_instances_kept") >= 1, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_whose_guest_trapped_or_was_killed_are_never_kept() {
    let apps = Apps::new();
    apps.add("residue")
        .add("memhog")
        .manifest("memhog", "memory_limit = \"32MiB\"\n")
        .add("spin")
        .manifest("spin", "timeout = \"300ms\"\n");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let fresh = baseline(&edge).await;
    until_kept(&edge, &fresh).await;
    let before = metrics(&edge).await;
    for _ in 0..3 {
        // It changes everything, then traps: that instance must go.
        let r = get(edge.addr, "residue.localhost", "/?trap").await;
        assert_eq!(r.status, 500);
        assert_eq!(get(edge.addr, "residue.localhost", "/").await.body, fresh);
    }
    let hog = get(edge.addr, "memhog.localhost", "/hog?mib=1024").await;
    assert_eq!(hog.status, 500, "{}", hog.body);
    assert_eq!(get(edge.addr, "spin.localhost", "/spin").await.status, 504);
    let m = metrics_once(&edge, |m| sample(m, KEPT) - sample(&before, KEPT) >= 3).await;
    // Of all those, only the residue's 3 clean requests were kept.
    assert_eq!(sample(&m, KEPT) - sample(&before, KEPT), 3, "{m}");
    assert_eq!(sample(&m, FAILED), 0, "{m}");
    assert_eq!(sample(&m, MISMATCH), 0, "{m}");
}

/// Six requests to `residue` on a server started with `args`, under which no instance is
/// kept: each answers as a fresh instance does. The server and its metrics after them.
async fn six_requests_none_kept(args: &[&str]) -> (Apps, Edge, String) {
    let apps = Apps::new();
    apps.add("residue");
    let edge = Edge::start_with_token(apps.path(), args, TOKEN);
    let fresh = baseline(&edge).await;
    for _ in 0..5 {
        assert_eq!(get(edge.addr, "residue.localhost", "/").await.body, fresh);
    }
    let m = metrics(&edge).await;
    assert_eq!(sample(&m, REUSES), 0, "{m}");
    assert_eq!(sample(&m, KEPT), 0, "{m}");
    (apps, edge, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_instances_0_gives_every_request_a_fresh_instance() {
    let (_apps, _edge, m) = six_requests_none_kept(&["--keep-instances", "0"]).await;
    assert_eq!(
        sample(
            &m,
            "edge_instantiate_duration_seconds_count{app=\"residue\"}"
        ),
        6,
        "{m}"
    );
}

/// A `wasi:http/proxy` component whose `start` function writes memory, so its instances
/// are refused a reset for a reason only instantiation shows. Its handler traps: what
/// matters here is that each request instantiates it.
const PROXY_STARTS_BY_WRITING: &str = r#"
(component
  (import "wasi:http/types@0.2.6" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))))
  (alias export $types "incoming-request" (type $request))
  (alias export $types "response-outparam" (type $outparam))
  (core module $m
    (memory (export "memory") 1)
    (func $start (i32.store (i32.const 64) (i32.const 7)))
    (start $start)
    (func (export "handle") (param i32 i32) unreachable))
  (core instance $i (instantiate $m))
  (func $handle (param "request" (own $request)) (param "response-out" (own $outparam))
    (canon lift (core func $i "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.6" (instance $handler)))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_whose_instances_cannot_be_reset_is_refused_once_not_per_request() {
    let apps = Apps::new();
    let component = wat::parse_str(PROXY_STARTS_BY_WRITING).unwrap();
    apps.write("starter.wasm", &component);
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    for _ in 0..6 {
        assert_eq!(get(edge.addr, "starter.localhost", "/").await.status, 500);
    }
    let m = metrics(&edge).await;
    let made = "edge_instantiate_duration_seconds_count{app=\"starter\"}";
    assert_eq!(sample(&m, made), 6, "{m}");
    assert_eq!(sample(&m, KEPT), 0, "{m}");
    // The log is read from the server's output as it comes: wait for the line first.
    edge.expect_log("instantiation ran code that wrote memory");
    let log = edge.log();
    let refusals = log.matches("are not kept between requests").count();
    assert_eq!(refusals, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_the_pool_does_not_make_are_never_offered_for_reset() {
    // Known at load: no request asks, so nothing is refused or logged.
    let (_apps, edge, _) = six_requests_none_kept(&["--allocator", "on-demand"]).await;
    // A refusal would be logged during the first request: a second is ample for it to
    // reach the log.
    let refused = edge.wait_log(
        "are not kept between requests",
        std::time::Duration::from_secs(1),
    );
    assert!(!refused, "{}", edge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_never_serves_on_the_old_versions_kept_instances() {
    let apps = Apps::new();
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let residue = guest("residue");
    let (ok, _, err) = cli(
        &edge,
        TOKEN,
        &["deploy", residue.to_str().unwrap(), "--name", "app"],
    );
    assert!(ok, "{err}");
    for _ in 0..3 {
        let r = get(edge.addr, "app.localhost", "/").await;
        assert!(r.body.starts_with("count=0 "), "{}", r.body);
    }
    let counter = guest("counter");
    let (ok, _, err) = cli(
        &edge,
        TOKEN,
        &["deploy", counter.to_str().unwrap(), "--name", "app"],
    );
    assert!(ok, "{err}");
    for _ in 0..3 {
        assert_eq!(get(edge.addr, "app.localhost", "/").await.body, "1");
    }
    let (ok, _, err) = cli(&edge, TOKEN, &["rollback", "app"]);
    assert!(ok, "{err}");
    let r = get(edge.addr, "app.localhost", "/").await;
    assert!(r.body.starts_with("count=0 "), "{}", r.body);
}

/// The state of a core instance that the `residue` guest cannot reach from Rust: a
/// mutable global, an active and a passive data segment (`data.drop`), a table
/// (`table.set`, `table.grow`), memory growth. `poke` reports it, then changes all of it.
const POKE: &str = r#"
(component
  (core module $m
    (memory (export "memory") 1 10)
    (table $t 2 10 funcref)
    (global $g (mut i32) (i32.const 7))
    (data (i32.const 16) "pristine")
    (data $p "passive!")
    (elem declare func $f)
    (func $f)
    (func (export "poke") (result i32)
      ;; Fails (traps) if an earlier call's `data.drop` was not undone.
      (memory.init $p (i32.const 2048) (i32.const 0) (i32.const 8))
      (i32.store (i32.const 1024) (global.get $g))
      (i32.store (i32.const 1028) (i32.load8_u (i32.const 16)))
      (i32.store (i32.const 1032) (memory.size))
      (i32.store (i32.const 1036) (table.size $t))
      (i32.store (i32.const 1040) (ref.is_null (table.get $t (i32.const 0))))
      (global.set $g (i32.add (global.get $g) (i32.const 1)))
      (i32.store8 (i32.const 16) (i32.const 88))
      (drop (memory.grow (i32.const 2)))
      (drop (table.grow $t (ref.func $f) (i32.const 3)))
      (table.set $t (i32.const 0) (ref.func $f))
      (data.drop $p)
      (i32.const 1024))
  )
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (func (export "poke") (result (tuple u32 u32 u32 u32 u32))
    (canon lift (core func $i "poke") (memory $mem)))
)
"#;

/// The same state, written by a `start` function while the component is instantiated:
/// what a reset puts back (the memory's image) would lose that write.
const STARTS_BY_WRITING: &str = r#"
(component
  (core module $m
    (memory 1)
    (func $start (i32.store (i32.const 64) (i32.const 1)))
    (start $start)
    (func (export "f") (result i32) (i32.load (i32.const 64))))
  (core instance $i (instantiate $m))
  (func (export "f") (result u32) (canon lift (core func $i "f")))
)
"#;

/// A `start` function that sets a global and writes memory only with what it holds
/// already: instantiation ran code, but left memory as its image.
const STARTS_CLEANLY: &str = r#"
(component
  (core module $m
    (memory 1)
    (data (i32.const 64) "\05")
    (global $g (mut i32) (i32.const 0))
    (func $start
      (global.set $g (i32.const 40))
      (i32.store8 (i32.const 64) (i32.const 5)))
    (start $start)
    (func (export "f") (result i32)
      (global.set $g (i32.add (global.get $g) (i32.load8_u (i32.const 64))))
      (i32.store8 (i32.const 64) (i32.const 100))
      (global.get $g)))
  (core instance $i (instantiate $m))
  (func (export "f") (result u32) (canon lift (core func $i "f")))
)
"#;

fn pooled_engine() -> wasmtime::Engine {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(2)
        .total_core_instances(4)
        .total_memories(4)
        .total_tables(4)
        .max_memory_size(64 << 16);
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(1 << 20);
    }
    let mut config = wasmtime::Config::new();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    wasmtime::Engine::new(&config).unwrap()
}

/// A store on `engine` with an instance of the component `wat` in it (no imports).
fn instantiate(
    engine: &wasmtime::Engine,
    wat: &str,
) -> (wasmtime::Store<()>, wasmtime::component::Instance) {
    use wasmtime::component::{Component, Linker};
    let component = Component::new(engine, wat).unwrap();
    let mut store = wasmtime::Store::new(engine, ());
    let instance = Linker::<()>::new(engine)
        .instantiate(&mut store, &component)
        .unwrap();
    (store, instance)
}

type Poked = ((u32, u32, u32, u32, u32),);

#[test]
fn a_reset_puts_back_globals_tables_segments_and_memory_size() {
    let (mut store, instance) = instantiate(&pooled_engine(), POKE);
    instance.prepare_reuse(&mut store).unwrap();
    let fresh_state = instance.reuse_fingerprint(&mut store);
    let poke = instance
        .get_typed_func::<(), Poked>(&mut store, "poke")
        .unwrap();
    let call = |store: &mut wasmtime::Store<()>| poke.call(store, ()).unwrap().0;
    let fresh = call(&mut store);
    // Global 7, 'p' at 16, 1 page, 2 table elements, the first null.
    assert_eq!(fresh, (7, u32::from(b'p'), 1, 2, 1));
    // Without a reset the next call sees what the first left (and would trap on the
    // dropped segment, had `poke` not used it first: it does, so this is the only call).
    assert_ne!(instance.reuse_fingerprint(&mut store), fresh_state);
    for round in 0..3 {
        instance.reuse(&mut store).unwrap();
        assert_eq!(
            instance.reuse_fingerprint(&mut store),
            fresh_state,
            "round {round}"
        );
        assert_eq!(call(&mut store), fresh, "round {round}");
    }
}

#[test]
fn an_instance_whose_start_function_wrote_memory_is_never_reset() {
    let (mut store, instance) = instantiate(&pooled_engine(), STARTS_BY_WRITING);
    let refused = instance.prepare_reuse(&mut store).unwrap_err().to_string();
    assert!(refused.contains("instantiation ran code"), "{refused}");
    // And so `reuse` refuses too, rather than reset to an image without the write.
    assert!(instance.reuse(&mut store).is_err());
    let f = instance
        .get_typed_func::<(), (u32,)>(&mut store, "f")
        .unwrap();
    assert_eq!(f.call(&mut store, ()).unwrap(), (1,));
}

#[test]
fn instances_not_from_the_pool_are_never_reset() {
    let (mut store, instance) = instantiate(&wasmtime::Engine::default(), POKE);
    let refused = instance.prepare_reuse(&mut store).unwrap_err().to_string();
    assert!(refused.contains("pooling allocator"), "{refused}");
}

#[test]
fn an_instance_whose_start_function_left_memory_as_its_image_is_reset_to_after_it() {
    if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        eprintln!("skipped: without PAGEMAP_SCAN such instances are never reset");
        return;
    }
    let (mut store, instance) = instantiate(&pooled_engine(), STARTS_CLEANLY);
    instance.prepare_reuse(&mut store).unwrap();
    let f = instance
        .get_typed_func::<(), (u32,)>(&mut store, "f")
        .unwrap();
    for round in 0..3 {
        // 40 from the start function, plus the 5 of the data segment.
        assert_eq!(f.call(&mut store, ()).unwrap(), (45,), "round {round}");
        instance.reuse(&mut store).unwrap();
    }
}

/// A memory of 640 host pages. `scribble(first, count, stride)` returns what a fresh
/// instance would make 105 (the data byte at 8, plus byte 100 of every page, all zero),
/// then writes the data byte and byte 100 of `count` pages `stride` apart from `first`.
/// `outside` writes just past the memory's end.
const SCRIBBLE: &str = r#"
(component
  (core module $m
    (memory 40 64)
    (data (i32.const 8) "i")
    (func (export "scribble") (param $first i32) (param $count i32) (param $stride i32)
      (result i32)
      (local $sum i32) (local $p i32)
      (local.set $sum (i32.load8_u (i32.const 8)))
      (block $done (loop $each
        (br_if $done (i32.ge_u (local.get $p) (i32.const 640)))
        (local.set $sum (i32.add (local.get $sum)
          (i32.load8_u (i32.add (i32.mul (local.get $p) (i32.const 4096)) (i32.const 100)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $each)))
      (i32.store8 (i32.const 8) (i32.const 0))
      (local.set $p (local.get $first))
      (block $done (loop $write
        (br_if $done (i32.eqz (local.get $count)))
        (i32.store8 (i32.add (i32.mul (local.get $p) (i32.const 4096)) (i32.const 100))
          (i32.const 1))
        (local.set $p (i32.add (local.get $p) (local.get $stride)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $write)))
      (local.get $sum))
    (func (export "outside")
      (i32.store (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))))
  (core instance $i (instantiate $m))
  (func (export "scribble") (param "first" u32) (param "count" u32) (param "stride" u32)
    (result u32)
    (canon lift (core func $i "scribble")))
  (func (export "outside") (canon lift (core func $i "outside")))
)
"#;

/// Mappings in this process (each test runs in a process of its own).
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// An instance of [`SCRIBBLE`] prepared for resets, with its state after instantiation.
struct Scribbler {
    store: wasmtime::Store<()>,
    instance: wasmtime::component::Instance,
    fresh: Vec<u8>,
    scribble: wasmtime::component::TypedFunc<(u32, u32, u32), (u32,)>,
}

impl Scribbler {
    fn new(engine: &wasmtime::Engine) -> Scribbler {
        let (mut store, instance) = instantiate(engine, SCRIBBLE);
        instance.prepare_reuse(&mut store).unwrap();
        let fresh = instance.reuse_fingerprint(&mut store);
        let scribble = instance.get_typed_func(&mut store, "scribble").unwrap();
        Scribbler {
            store,
            instance,
            fresh,
            scribble,
        }
    }

    /// One request: writes `count` pages from page `first`, `stride` apart (each must have
    /// been all zeros), then resets the instance and checks it is as instantiated. Returns
    /// the process's mapping count between the writes and the reset.
    fn request(&mut self, first: u32, count: u32, stride: u32) -> usize {
        let (sum,) = self
            .scribble
            .call(&mut self.store, (first, count, stride))
            .unwrap();
        assert_eq!(
            sum, 105,
            "scribble({first}, {count}, {stride}) found a used memory"
        );
        let written = mappings();
        self.instance.reuse(&mut self.store).unwrap();
        assert_eq!(self.instance.reuse_fingerprint(&mut self.store), self.fresh);
        written
    }
}

/// After its first reset a kept instance's memory is read-only, and the first write to
/// each page makes it writable and marks it for the next reset (`write_track` in the
/// vendored wasmtime): resets copy back those pages without a `PAGEMAP_SCAN`. Pages
/// first written long after, out-of-bounds writes, and a request that writes more pages
/// than the tracking budget (the whole slot goes back to scans) must all still leave
/// the next request a fresh memory.
#[test]
fn resets_find_the_written_pages_by_write_faults() {
    if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        eprintln!("skipped: without PAGEMAP_SCAN instances are never reset");
        return;
    }
    let engine = pooled_engine();
    let mut one = Scribbler::new(&engine);
    // The first reset scans, then arms the slot.
    one.request(0, 4, 1);
    let armed = mappings();
    // Four pages apart from each other and from the data page: each splits the slot's
    // read-only mapping (so they were made writable one by one), and the reset finds them.
    let written = one.request(10, 4, 7);
    assert!(
        written >= armed + 8,
        "{armed} mappings when armed, {written} after the writes"
    );
    // The same pages again (no faults now), then others as well.
    one.request(10, 4, 7);
    one.request(300, 3, 100);
    // A write past the memory's end is still a trap, not a tracked write.
    let outside = one
        .instance
        .get_typed_func::<(), ()>(&mut one.store, "outside")
        .unwrap();
    let trap = outside.call(&mut one.store, ()).unwrap_err();
    assert_eq!(
        trap.downcast_ref::<wasmtime::Trap>(),
        Some(&wasmtime::Trap::MemoryOutOfBounds),
        "{trap:?}"
    );
    drop(one);

    // A fresh instance in the same pool: more pages than a slot may fault one by one.
    let mut two = Scribbler::new(&engine);
    for (first, count, stride) in [(0, 1, 1), (1, 300, 2), (3, 300, 2), (5, 2, 9)] {
        two.request(first, count, stride);
    }
}
