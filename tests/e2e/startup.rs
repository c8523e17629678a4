use crate::support::{Apps, Edge, get};
use std::time::{Duration, Instant};

/// Polls `host` until it answers 200, and returns the statuses seen before.
async fn until_served(edge: &Edge, host: &str, within: Duration) -> Vec<u16> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let r = get(edge.addr, host, "/").await;
        if r.status == 200 {
            return seen;
        }
        assert_eq!(r.status, 503, "{host}: {}", r.body);
        assert_eq!(
            r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
            Some("1"),
            "{host}"
        );
        assert!(r.body.contains("still loading"), "{}", r.body);
        seen.push(r.status);
        assert!(
            Instant::now() < deadline,
            "{host} never loaded:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_apps_listen_at_once_and_each_serves_when_loaded() {
    // A cache that holds hello's code, and nothing else.
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    {
        let warm = Apps::new();
        warm.add("hello");
        let _edge = Edge::start(warm.path(), &["--cache-dir", cache_dir]);
    }
    // 198 copies of hello (cache hits), a Rust guest and a JS app the cache has never seen
    // (compiled with Cranelift, so they load last and slowly), and a broken file.
    let apps = Apps::new();
    for i in 0..198 {
        apps.add_as("hello", &format!("app-{i:03}"));
    }
    apps.add("counter");
    apps.add_js("examples/js/hello.js", "js");
    apps.manifest("js", "hosts = [\"js.example.com\"]\n");
    apps.write("broken.wasm", b"not a component");
    let edge = Edge::start_listening(
        apps.path(),
        &[
            "--cache-dir",
            cache_dir,
            "--no-baseline",
            "--load-wait",
            "0s",
        ],
    );
    // Listening does not wait for loading: liveness at once, readiness later.
    let health = crate::support::admin(edge.admin, "GET", "/healthz", "", None, vec![]).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let (status, body) = edge.readyz();
    assert_eq!(status, 503, "ready before the JS app compiled? {body}");
    assert!(body.contains("\"apps\": 201"), "{body}");
    // A host no app claims is 404 at once, loading or not.
    let t = Instant::now();
    assert_eq!(get(edge.addr, "nobody.localhost", "/").await.status, 404);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The cache hits serve while the JS app (routed by its manifest's host) still loads.
    until_served(&edge, "app-000.localhost", Duration::from_secs(60)).await;
    until_served(&edge, "app-197.localhost", Duration::from_secs(60)).await;
    let js_seen = get(edge.addr, "js.example.com", "/").await;
    let (status, body) = edge.readyz();
    assert_eq!(
        (js_seen.status, status),
        (503, 503),
        "the JS app should still be compiling: {body}"
    );
    until_served(&edge, "js.example.com", Duration::from_secs(120)).await;
    until_served(&edge, "counter.localhost", Duration::from_secs(60)).await;
    // Ready: every app loaded but the broken one, which is counted and skipped.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = edge.readyz();
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "apps": 201, "loaded": 200, "failed": 1, "degraded": false})
    );
    edge.expect_log("skipping app");
    edge.expect_log("start-up: 200 of 201 apps loaded");
    // The broken app is simply absent.
    assert_eq!(get(edge.addr, "broken.localhost", "/").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_its_app_within_the_bound() {
    // With the default wait, a request sent right at start-up is answered once its app
    // is loaded, not refused; the code is not in this fresh cache, so it is compiled.
    let cache = tempfile::tempdir().unwrap();
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start_listening(
        apps.path(),
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    let r = get(edge.addr, "hello.localhost", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without a cache entry it went through the baseline tier first, as a deploy does,
    // and Cranelift's code replaced it in the background.
    edge.expect_log("optimized `hello`");
    let apps_list = crate::support::admin(
        edge.admin,
        "GET",
        "/apps",
        &std::fs::read_to_string(apps.path().join(".edge/admin-token")).unwrap(),
        None,
        vec![],
    )
    .await;
    assert!(
        apps_list.body.contains("\"tier\": \"optimized\""),
        "{}",
        apps_list.body
    );
    assert_eq!(edge.readyz().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_app_jumps_the_loading_queue() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    {
        let warm = Apps::new();
        warm.add("hello");
        let edge = Edge::start(warm.path(), &["--cache-dir", cache_dir]);
        edge.expect_log("optimized `hello`");
    }
    let apps = Apps::new();
    for i in 0..300 {
        apps.add_as("hello", &format!("app-{i:03}"));
    }
    // One loader, apps taken in name order: app-299 would be the last.
    let edge = Edge::start_listening(
        apps.path(),
        &["--cache-dir", cache_dir, "--load-parallelism", "1"],
    );
    let r = get(edge.addr, "app-299.localhost", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    while edge.readyz().0 != 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = edge.log();
    let at = |app: &str| {
        log.find(&format!("loaded app `{app}`"))
            .unwrap_or_else(|| panic!("{app} not loaded:\n{log}"))
    };
    assert!(
        at("app-299") < at("app-250"),
        "app-299 was not loaded ahead of the queue:\n{log}"
    );
}
