use crate::support::{Apps, Edge, get, send};

#[tokio::test]
async fn hello_answers_200_with_server_timing() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start(apps.path(), &[]);
    let resp = get(edge.addr, "hello.localhost", "/").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, "Hello from edge!\n");
    let timing = resp.headers["server-timing"].to_str().unwrap();
    assert!(timing.contains("instantiate;dur="), "{timing}");
    assert!(timing.contains("handle;dur="), "{timing}");
    // Any domain works: the first label picks the app.
    let resp = get(edge.addr, "hello.example.com:443", "/x").await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn server_timing_can_be_turned_off_for_the_server_or_one_app() {
    let apps = Apps::new();
    apps.add("hello")
        .add_as("hello", "quiet")
        .manifest("quiet", "server_timing = false\n");
    // On by default; one app opts out in its manifest.
    let edge = Edge::start(apps.path(), &[]);
    let loud = get(edge.addr, "hello.localhost", "/").await;
    assert!(loud.headers.contains_key("server-timing"), "{loud:?}");
    let quiet = get(edge.addr, "quiet.localhost", "/").await;
    assert_eq!(quiet.status, 200);
    assert!(!quiet.headers.contains_key("server-timing"), "{quiet:?}");
    drop(edge);
    // Off for the whole server.
    let edge = Edge::start(apps.path(), &["--server-timing", "off"]);
    let resp = get(edge.addr, "hello.localhost", "/").await;
    assert_eq!(resp.status, 200);
    assert!(!resp.headers.contains_key("server-timing"), "{resp:?}");
}

#[tokio::test]
async fn a_line_written_through_several_stderr_handles_is_logged_whole() {
    let apps = Apps::new();
    apps.add("stderr");
    let edge = Edge::start(apps.path(), &[]);
    let resp = get(edge.addr, "stderr.localhost", "/").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    // As `wasmtime serve` prints it: one line, not three fragments.
    assert!(
        edge.wait_log(
            "[stderr] one line in three writes",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        edge.log()
    );
    assert!(!edge.log().contains("[stderr] in three"), "{}", edge.log());
    // The line that never got its newline is logged when the request ends.
    assert!(
        edge.wait_log(
            "[stderr] no newline at the end",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        edge.log()
    );
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let apps = Apps::new();
    apps.add("counter");
    let edge = Edge::start(apps.path(), &[]);
    for _ in 0..5 {
        assert_eq!(get(edge.addr, "counter.localhost", "/").await.body, "1");
    }
    let many = (0..16).map(|_| get(edge.addr, "counter.localhost", "/"));
    for resp in futures::future::join_all(many).await {
        assert_eq!(resp.body, "1");
    }
}

#[tokio::test]
async fn unknown_host_gets_404_naming_the_host() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start(apps.path(), &[]);
    let resp = get(edge.addr, "nope.localhost:1234", "/").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.body, "no app serves host `nope.localhost:1234`\n");
}

#[tokio::test]
async fn manifest_adds_hosts_and_path_prefixes() {
    let apps = Apps::new();
    apps.add("hello").add("counter").manifest(
        "counter",
        "hosts = [\"www.example.org\"]\npaths = [\"/count\"]\n",
    );
    let edge = Edge::start(apps.path(), &[]);
    assert_eq!(get(edge.addr, "www.example.org", "/").await.body, "1");
    assert_eq!(
        get(edge.addr, "hello.localhost", "/count/x").await.body,
        "1"
    );
    assert_eq!(
        get(edge.addr, "hello.localhost", "/counter").await.body,
        "Hello from edge!\n"
    );
}

#[tokio::test]
async fn invalid_app_files_are_reported_and_skipped() {
    let apps = Apps::new();
    apps.add("hello")
        .write("garbage.wasm", b"this is not wasm")
        .write("core.wasm", b"\0asm\x01\0\0\0")
        // A valid component that exports nothing, so no HTTP handler.
        .write("empty.wasm", b"\0asm\x0d\0\x01\0")
        .write(
            "Bad_Name.wasm",
            &std::fs::read(crate::support::guest("hello")).unwrap(),
        )
        .add("counter")
        .manifest("counter", "timeout = \"soon\"\n");
    let edge = Edge::start(apps.path(), &[]);
    // `hello` is loaded last (apps load in name order), so every skip is logged by then.
    edge.expect_log("loaded app `hello`");
    let log = edge.log();
    for (file, reason) in [
        ("garbage.wasm", "not a WebAssembly file"),
        ("core.wasm", "core WebAssembly module, not a component"),
        ("empty.wasm", "does not export `wasi:http/incoming-handler`"),
        ("Bad_Name.wasm", "must be 1 to 63 characters"),
        ("counter.toml", "invalid duration `soon`"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no log line names {file}:\n{log}"));
        assert!(line.contains(reason), "{file}: {line}");
    }
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
    assert_eq!(get(edge.addr, "garbage.localhost", "/").await.status, 404);
}

#[tokio::test]
async fn oversized_body_gets_413_before_the_guest_runs() {
    let apps = Apps::new();
    apps.add("hello")
        .add("counter")
        .manifest("counter", "max_body_size = \"1KiB\"\n");
    let edge = Edge::start(apps.path(), &["--max-body-size", "4KiB"]);
    let big = vec![b'x'; 2048];
    let resp = send(edge.addr, "POST", "counter.localhost", "/", big.clone())
        .await
        .unwrap();
    assert_eq!(resp.status, 413, "{resp:?}");
    assert!(
        resp.body.contains("exceeds the limit of 1024 bytes"),
        "{}",
        resp.body
    );
    let resp = send(edge.addr, "POST", "hello.localhost", "/", big)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let resp = send(edge.addr, "POST", "hello.localhost", "/", vec![0; 8192])
        .await
        .unwrap();
    assert_eq!(resp.status, 413);
}

#[tokio::test]
async fn beyond_max_concurrency_requests_get_503_at_once() {
    let apps = Apps::new();
    apps.add("slow").add("hello");
    let edge = Edge::start(apps.path(), &["--max-concurrency", "2"]);
    let addr = edge.addr;
    let a = tokio::spawn(async move { get(addr, "slow.localhost", "/?ms=1500").await });
    let b = tokio::spawn(async move { get(addr, "slow.localhost", "/?ms=1500").await });
    // Wait until both are admitted (they hold the two slots while they sleep).
    let mut rejected = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = get(addr, "hello.localhost", "/").await;
        if r.status == 503 {
            rejected = Some(r);
            break;
        }
    }
    let rejected = rejected.expect("a third request was never rejected");
    assert!(rejected.body.contains("overloaded"), "{}", rejected.body);
    assert_eq!(rejected.headers["retry-after"], "1");
    assert_eq!(a.await.unwrap().body, "slept 1500");
    assert_eq!(b.await.unwrap().body, "slept 1500");
    // Slots are given back.
    assert_eq!(get(addr, "hello.localhost", "/").await.status, 200);
}

#[tokio::test]
async fn an_app_at_its_own_concurrency_cap_does_not_block_others() {
    let apps = Apps::new();
    apps.add("slow")
        .add("hello")
        .manifest("slow", "max_concurrency = 1\n");
    let edge = Edge::start(apps.path(), &[]);
    let addr = edge.addr;
    let first = tokio::spawn(async move { get(addr, "slow.localhost", "/?ms=1500").await });
    let mut rejected = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if get(addr, "slow.localhost", "/?ms=1").await.status == 503 {
            rejected = true;
            break;
        }
    }
    assert!(rejected, "a second request to `slow` was never rejected");
    assert_eq!(get(addr, "hello.localhost", "/").await.status, 200);
    assert_eq!(first.await.unwrap().body, "slept 1500");
}

/// The CPU time the HTTP threads (`edge-http-N`) of process `pid` have had so far, from
/// each thread's `schedstat` (nanoseconds, unlike `stat`'s 10 ms ticks).
fn http_threads_cpu(pid: u32) -> std::time::Duration {
    let mut ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.starts_with("edge-http-") {
            let stat = std::fs::read_to_string(task.join("schedstat")).unwrap();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap();
        }
    }
    std::time::Duration::from_nanos(ns)
}

/// What the HTTP threads of `edge` run during `wait`, after `before` (a request, or
/// nothing).
async fn http_cpu_over(
    edge: &Edge,
    wait: std::time::Duration,
    before: impl std::future::Future<Output = ()>,
) -> std::time::Duration {
    let start = http_threads_cpu(edge.pid());
    before.await;
    tokio::time::sleep(wait).await;
    http_threads_cpu(edge.pid()) - start
}

#[tokio::test]
async fn an_http_thread_polls_for_the_busy_poll_window_after_a_request_then_sleeps() {
    use std::time::Duration;
    let apps = Apps::new();
    apps.add("hello");
    let window = Duration::from_millis(300);
    let edge = Edge::start(apps.path(), &["--threads", "1", "--busy-poll", "300ms"]);
    let burst = |addr| async move {
        for _ in 0..8 {
            let resp = get(addr, "hello.localhost", "/").await;
            assert_eq!(resp.status, 200, "{resp:?}");
        }
    };
    burst(edge.addr).await;
    tokio::time::sleep(window * 2).await;
    // Parked: an idle server spends nothing.
    let idle = http_cpu_over(&edge, window, async {}).await;
    // Requests close together: the thread polls for the window after the last (on this
    // shared machine, it may get only part of a CPU meanwhile)...
    let polled = http_cpu_over(&edge, window * 2, burst(edge.addr)).await;
    // ...and then sleeps again.
    let after = http_cpu_over(&edge, window, async {}).await;
    // A request after a long gap: the average gap is now above the window, so the thread
    // does not poll for it.
    tokio::time::sleep(window * 7).await;
    let sparse = http_cpu_over(&edge, window * 2, async {
        assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
    })
    .await;
    assert!(idle < Duration::from_millis(20), "idle: {idle:?}");
    assert!(polled > window / 5, "after close requests: {polled:?}");
    assert!(
        after < Duration::from_millis(20),
        "after the window: {after:?}"
    );
    assert!(
        sparse < Duration::from_millis(20),
        "after a sparse one: {sparse:?}"
    );
    drop(edge);

    // `0s`: requests cost their own CPU and no polling.
    let edge = Edge::start(apps.path(), &["--threads", "1", "--busy-poll", "0s"]);
    burst(edge.addr).await;
    let unpolled = http_cpu_over(&edge, window * 2, burst(edge.addr)).await;
    assert!(unpolled < Duration::from_millis(20), "{unpolled:?}");
    drop(edge);

    // A window long enough to spin a thread for good is refused.
    let out = crate::support::serve_to_exit(apps.path(), &["--busy-poll".as_ref(), "5s".as_ref()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--busy-poll 5s") && err.contains("at most 1s"),
        "{err}"
    );
}
