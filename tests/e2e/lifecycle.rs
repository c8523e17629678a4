use crate::support::{Apps, Edge, get};
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_restart_loads_compiled_code_from_the_cache() {
    let apps = Apps::new();
    apps.add("hello");
    let cache = apps.path().join(".edge").join("cache");
    let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
    edge.expect_log("loaded app `hello` (compiled)");
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
    // A cache miss at start-up serves from the baseline tier at once; Cranelift's code,
    // which is what the cache keeps, follows in the background.
    edge.expect_log("optimized `hello`");
    drop(edge);
    // The code (what wasmtime maps) and its checksum beside it.
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].with_extension("sum").exists());

    let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
    edge.expect_log("loaded app `hello` (cache hit, not recompiled)");
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
    drop(edge);

    // A corrupt entry is never trusted: it is recompiled and rewritten.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
    edge.expect_log("is corrupt; recompiling");
    edge.expect_log("loaded app `hello` (compiled)");
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
    drop(edge);

    // A truncated one too.
    std::fs::write(&entries[0], &bytes[..100]).unwrap();
    let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
    edge.expect_log("is corrupt; recompiling");
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
}

#[tokio::test]
async fn the_default_cache_lives_in_the_apps_directory() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start(
        apps.path(),
        &[
            "--cache-dir",
            &apps.path().join(".edge/cache").to_string_lossy(),
        ],
    );
    edge.expect_log("optimized `hello`");
    drop(edge);
    // Without --cache-dir the server uses DIR/.edge/cache, which the run above filled.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    cmd.arg("serve")
        .arg(apps.path())
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    let edge = Edge::spawn(cmd);
    edge.expect_log("cache hit");
}

#[tokio::test]
async fn wizer_preinitializes_once_at_load_and_never_per_request() {
    let apps = Apps::new();
    apps.add("wizer");
    let cache = apps.path().join("cache");
    let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
    edge.expect_log("preinit_ms=");
    for _ in 0..3 {
        let resp = get(edge.addr, "wizer.localhost", "/").await;
        assert_eq!(resp.body, "init-runs=1 sum=333833500", "{resp:?}");
    }
    drop(edge);
    // The pre-initialized code is what the cache holds: a restart neither re-runs Wizer
    // nor loses its snapshot.
    let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
    edge.expect_log("cache hit");
    assert!(!edge.log().contains("preinit_ms="), "{}", edge.log());
    let resp = get(edge.addr, "wizer.localhost", "/").await;
    assert_eq!(resp.body, "init-runs=1 sum=333833500");
}

/// A snapshot holds what set-up made of the app's manifest (its environment here), so
/// two apps of the same component with different manifests must each get their own, also
/// when they share a cache: a tenant's secrets never reach another's snapshot.
#[tokio::test]
async fn a_snapshot_belongs_to_its_apps_manifest_not_just_its_bytes() {
    let apps = Apps::new();
    apps.add_as("wizer", "first").add_as("wizer", "second");
    apps.manifest("first", "[env]\nGREETING = \"first\"\n");
    apps.manifest("second", "[env]\nGREETING = \"second\"\n");
    let cache = apps.path().join("cache");
    for _ in 0..2 {
        // The second start loads both snapshots from the cache.
        let edge = Edge::start(apps.path(), &["--cache-dir", cache.to_str().unwrap()]);
        for name in ["first", "second"] {
            let resp = get(edge.addr, &format!("{name}.localhost"), "/").await;
            assert_eq!(
                resp.body,
                format!("init-runs=1 sum=333833500 greeting={name}"),
                "{}",
                edge.log()
            );
        }
    }
}

#[tokio::test]
async fn without_address_space_for_the_pool_it_falls_back_to_on_demand() {
    let apps = Apps::new();
    apps.add("hello");
    // 16 GiB of virtual memory cannot hold a pool of 4 GiB memory slots.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 16777216 && exec \"$0\" serve \"$1\" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --no-cache")
        .arg(env!("CARGO_BIN_EXE_edge"))
        .arg(apps.path());
    let edge = Edge::spawn(cmd);
    edge.expect_log("falling back to on-demand");
    edge.expect_log("allocator=\"on-demand\"");
    for _ in 0..3 {
        assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let apps = Apps::new();
    apps.add("slow");
    let mut edge = Edge::start(apps.path(), &[]);
    let addr = edge.addr;
    let in_flight = tokio::spawn(async move { get(addr, "slow.localhost", "/?ms=1000").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.signal("TERM");
    edge.expect_log("no longer accepting");
    // New connections are refused once the listener is closed.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting after SIGTERM");
    let resp = in_flight.await.unwrap();
    assert_eq!((resp.status, resp.body.as_str()), (200, "slept 1000"));
    let status = edge.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let apps = Apps::new();
    apps.add("slow");
    let mut edge = Edge::start(apps.path(), &["--shutdown-timeout", "500ms"]);
    let addr = edge.addr;
    let _stuck = tokio::spawn(async move {
        crate::support::send(addr, "GET", "slow.localhost", "/?ms=20000", vec![]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    edge.signal("INT");
    let status = edge.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    edge.expect_log("grace period");
}

#[test]
fn bad_flags_fail_before_listening_with_a_clear_message() {
    let apps = Apps::new();
    for (flag, value, needle) in [
        ("--memory-limit", "lots", "invalid size `lots`"),
        ("--timeout", "0s", "must be greater than zero"),
        (
            "--listen",
            "localhost",
            "invalid listen address `localhost`",
        ),
        ("--max-concurrency", "0", "at least 1"),
        (
            "--max-client-concurrency",
            "0",
            "--max-client-concurrency must be at least 1",
        ),
        (
            "--load-parallelism",
            "0",
            "--load-parallelism must be at least 1",
        ),
        ("--load-wait", "soon", "in --load-wait"),
        (
            "--keep-alive-timeout",
            "0s",
            "in --keep-alive-timeout: duration `0s` must be greater than zero",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edge"))
            .arg("serve")
            .arg(apps.path())
            .args([flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{flag} {value}: {err}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["serve", "/definitely/not/here"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn the_allocator_is_set_up_before_anything_is_allocated() {
    // mimalloc prints its options as it initializes when asked to: the loader must have run
    // `edge::alloc::configure` before that, or the first arena stays eagerly committed.
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("option 'arena_eager_commit': 0"), "{log}");
    assert!(log.contains("option 'purge_delay': 10"), "{log}");
    // The environment still decides where it speaks.
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .env("MIMALLOC_PURGE_DELAY", "250")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("option 'purge_delay': 250"), "{log}");
}
