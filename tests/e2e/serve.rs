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
