use crate::support::{Apps, Edge, admin, cli, get, guest};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789";

fn path(name: &str) -> String {
    guest(name).to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_then_serve_list_rollback_delete() {
    let apps = Apps::new();
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    assert_eq!(get(edge.addr, "app.localhost", "/").await.status, 404);

    let (ok, out, err) = cli(&edge, TOKEN, &["deploy", &path("counter"), "--name", "app"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("deployed `app` v1 (sha256 "), "{out}");
    assert!(
        out.contains("validate ") && out.contains("compile "),
        "{out}"
    );
    assert_eq!(get(edge.addr, "app.localhost", "/").await.body, "1");
    // Durably stored where a restart finds it.
    assert!(apps.path().join("app.wasm").exists());

    let (ok, out, err) = cli(&edge, TOKEN, &["deploy", &path("hello"), "--name", "app"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("deployed `app` v2"), "{out}");
    assert_eq!(
        get(edge.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );

    let (ok, out, _) = cli(&edge, TOKEN, &["apps"]);
    assert!(ok);
    let line = out.lines().find(|l| l.starts_with("app ")).expect(&out);
    assert!(line.contains(" v2 ") && line.contains("app.*"), "{line}");

    // Rollback: instant, from the cache, no recompilation.
    let (ok, out, err) = cli(&edge, TOKEN, &["rollback", "app"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "`app` is now at v1");
    assert_eq!(get(edge.addr, "app.localhost", "/").await.body, "1");
    edge.expect_log("rolled `app` back to v1");
    assert!(edge.log().contains("cache=\"hit\""), "{}", edge.log());
    let (ok, _, _) = cli(&edge, TOKEN, &["rollback", "app", "--to", "v2"]);
    assert!(ok);
    assert_eq!(
        get(edge.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
    let (ok, _, err) = cli(&edge, TOKEN, &["rollback", "app", "--to", "v9"]);
    assert!(!ok);
    assert!(err.contains("has no version `v9` (it has v1, v2)"), "{err}");

    // A restart comes back at the current version.
    drop(edge);
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    assert_eq!(
        get(edge.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );

    let (ok, out, _) = cli(&edge, TOKEN, &["delete", "app"]);
    assert!(ok);
    assert_eq!(out.trim(), "deleted `app`");
    assert_eq!(get(edge.addr, "app.localhost", "/").await.status, 404);
    assert!(!apps.path().join("app.wasm").exists());
    let (ok, _, err) = cli(&edge, TOKEN, &["delete", "app"]);
    assert!(!ok && err.contains("no app `app`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_deploys_with_its_component() {
    let apps = Apps::new();
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let work = tempfile::tempdir().unwrap();
    let wasm = work.path().join("site.wasm");
    std::fs::copy(guest("counter"), &wasm).unwrap();
    std::fs::write(
        work.path().join("site.toml"),
        "hosts = [\"www.site.test\"]\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&edge, TOKEN, &["deploy", wasm.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(get(edge.addr, "www.site.test", "/").await.body, "1");
    assert_eq!(
        std::fs::read_to_string(apps.path().join("site.toml")).unwrap(),
        "hosts = [\"www.site.test\"]\n"
    );
    // An invalid manifest is refused and changes nothing.
    std::fs::write(work.path().join("bad.toml"), "timeout = \"never\"\n").unwrap();
    let (ok, _, err) = cli(
        &edge,
        TOKEN,
        &[
            "deploy",
            wasm.to_str().unwrap(),
            "--manifest",
            work.path().join("bad.toml").to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("invalid manifest") && err.contains("`never`") && err.contains("422"),
        "{err}"
    );
    assert_eq!(get(edge.addr, "www.site.test", "/").await.body, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_under_load_fails_no_request() {
    let apps = Apps::new();
    apps.add_as("counter", "app");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let addr = edge.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok_count, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok_count, failures) = (stop.clone(), ok_count.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match crate::support::send(addr, "GET", "app.localhost", "/", vec![]).await {
                    Ok(r)
                        if r.status == 200 && (r.body == "1" || r.body == "Hello from edge!\n") =>
                    {
                        ok_count.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed request: {other:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, _, err) = tokio::task::spawn_blocking({
        let edge_admin = edge.admin;
        move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
                .args(["deploy", &path("hello"), "--name", "app", "--server"])
                .arg(format!("http://{edge_admin}"))
                .env("EDGE_ADMIN_TOKEN", TOKEN)
                .output()
                .unwrap();
            (
                out.status.success(),
                (),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        ok_count.load(Ordering::Relaxed) > 20,
        "too little load: {ok_count:?}"
    );
    assert_eq!(
        get(addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_precisely_and_change_nothing() {
    let apps = Apps::new();
    apps.add_as("counter", "app");
    let edge = Edge::start_with_token(apps.path(), &["--max-upload-size", "600KiB"], TOKEN);
    let snapshot = || {
        let mut files: Vec<_> = walk(apps.path());
        files.sort();
        files
    };
    let before = snapshot();
    let hello = std::fs::read(guest("hello")).unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "/apps/app",
            TOKEN,
            b"not wasm at all".to_vec(),
            422,
            "not a WebAssembly file",
        ),
        (
            "/apps/app",
            TOKEN,
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "core WebAssembly module",
        ),
        (
            "/apps/app",
            TOKEN,
            b"\0asm\x0d\0\x01\0".to_vec(),
            422,
            "does not export `wasi:http/incoming-handler`",
        ),
        (
            "/apps/app",
            TOKEN,
            vec![0; 650 * 1024],
            413,
            "exceeds the limit of 614400 bytes",
        ),
        (
            "/apps/Bad_Name",
            TOKEN,
            hello.clone(),
            400,
            "must be 1 to 63 characters",
        ),
        (
            "/apps/..%2F..%2Fetc",
            TOKEN,
            hello.clone(),
            400,
            "must be 1 to 63 characters",
        ),
        (
            "/apps/app",
            "",
            b"x".to_vec(),
            401,
            "missing or invalid admin token",
        ),
        (
            "/apps/app",
            "wrong-token",
            b"x".to_vec(),
            401,
            "missing or invalid admin token",
        ),
    ];
    for (path, token, body, status, message) in cases {
        let r = admin(
            edge.admin,
            "PUT",
            path,
            token,
            Some("application/wasm"),
            body,
        )
        .await;
        assert_eq!(r.status, status, "{path} {token}: {}", r.body);
        assert!(r.body.contains(message), "{path}: {}", r.body);
        assert_eq!(get(edge.addr, "app.localhost", "/").await.body, "1");
    }
    for (method, path) in [
        ("GET", "/apps"),
        ("GET", "/metrics"),
        ("DELETE", "/apps/app"),
    ] {
        let r = admin(edge.admin, method, path, "nope", None, vec![]).await;
        assert_eq!(r.status, 401, "{method} {path}");
    }
    assert_eq!(
        snapshot(),
        before,
        "a refused deploy changed the apps directory"
    );
    let (ok, _, err) = cli(&edge, "wrong", &["apps"]);
    assert!(!ok && err.contains("401"), "{err}");

    // Two deploys of one app at once: one wins, the other is told to retry.
    let wizer = std::fs::read(guest("wizer")).unwrap();
    let (a, b) = tokio::join!(
        admin(edge.admin, "PUT", "/apps/app", TOKEN, None, wizer.clone()),
        admin(edge.admin, "PUT", "/apps/app", TOKEN, None, wizer.clone()),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.body, b.body);
    let busy = if a.status == 409 { a.body } else { b.body };
    assert!(busy.contains("already in progress"), "{busy}");
}

fn walk(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if name.contains("/.edge/cache") || name.ends_with("admin-token") {
            continue;
        }
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_deploy_leaves_the_last_complete_version() {
    let apps = Apps::new();
    apps.add_as("counter", "app");
    let wizer = std::fs::read(guest("wizer")).unwrap();
    // Kill at several points of a deploy that pre-initializes and compiles (no cache, so
    // it takes a while), then restart: the app must serve a complete version every time.
    for delay_ms in [5u64, 60, 250, 600] {
        let edge = Edge::start_with_token(apps.path(), &["--no-cache"], TOKEN);
        let admin_addr = edge.admin;
        let body = wizer.clone();
        let deploy = tokio::spawn(async move {
            crate::support::send_admin_raw(admin_addr, TOKEN, "/apps/app", body).await
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let status = std::process::Command::new("kill")
            .args(["-9", &edge.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = deploy.await;
        drop(edge);
        let edge = Edge::start_with_token(apps.path(), &["--no-cache"], TOKEN);
        let r = get(edge.addr, "app.localhost", "/").await;
        assert_eq!(
            r.status,
            200,
            "after a kill at {delay_ms} ms: {r:?}\n{}",
            edge.log()
        );
        assert!(
            r.body == "1" || r.body == "init-runs=1 sum=333833500",
            "after a kill at {delay_ms} ms: {}",
            r.body
        );
        let leftovers: Vec<_> = walk(apps.path())
            .into_iter()
            .filter(|(n, _)| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files survived recovery");
    }
}

#[tokio::test]
async fn without_a_token_the_server_generates_a_private_one() {
    use std::os::unix::fs::PermissionsExt;
    let apps = Apps::new();
    apps.add("hello");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge"));
    cmd.arg("serve")
        .arg(apps.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--no-cache",
        ])
        .env_remove("EDGE_ADMIN_TOKEN");
    let edge = Edge::spawn(cmd);
    let token_path = apps.path().join(".edge/admin-token");
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert_eq!(token.trim().len(), 64);
    // The CLI finds it through --apps-dir.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .args([
            "apps",
            "--server",
            &format!("http://{}", edge.admin),
            "--apps-dir",
        ])
        .arg(apps.path())
        .env_remove("EDGE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
    let r = admin(edge.admin, "GET", "/apps", token.trim(), None, vec![]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_picks_up_changes_made_by_another_server() {
    let apps = Apps::new();
    apps.add_as("counter", "app");
    let watcher = Edge::start_with_token(
        apps.path(),
        &["--watch", "--watch-interval", "100ms"],
        TOKEN,
    );
    let deployer = Edge::start_with_token(apps.path(), &[], TOKEN);
    assert_eq!(get(watcher.addr, "app.localhost", "/").await.body, "1");
    let (ok, _, err) = cli(
        &deployer,
        TOKEN,
        &["deploy", &path("hello"), "--name", "app"],
    );
    assert!(ok, "{err}");
    let wait_for = |host: &'static str, want: Box<dyn Fn(&crate::support::Resp) -> bool + Send>| {
        let addr = watcher.addr;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = get(addr, host, "/").await;
                if want(&r) {
                    return;
                }
                assert!(Instant::now() < deadline, "watcher never caught up: {r:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(
        "app.localhost",
        Box::new(|r| r.body == "Hello from edge!\n"),
    )
    .await;
    // Later scans see the files unchanged and do not reload the app again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let reloads = watcher.log().matches("picked up a change to").count();
    assert_eq!(reloads, 1, "{}", watcher.log());
    // A new app copied in, and a broken one: the broken one is refused, the rest serve.
    apps.add("slow").write("broken.wasm", b"garbage");
    wait_for("slow.localhost", Box::new(|r| r.status == 200)).await;
    watcher.expect_log("broken.wasm");
    // An unchanged broken file is reported once, not on every scan.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        watcher.log().matches("broken.wasm").count(),
        1,
        "{}",
        watcher.log()
    );
    // Removed by other means: no longer served.
    std::fs::remove_file(apps.path().join("slow.wasm")).unwrap();
    wait_for("slow.localhost", Box::new(|r| r.status == 404)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_kills_and_deploys() {
    let apps = Apps::new();
    apps.add("hello").add("trap");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    for _ in 0..3 {
        get(edge.addr, "hello.localhost", "/").await;
    }
    get(edge.addr, "trap.localhost", "/trap").await;
    get(edge.addr, "trap.localhost", "/").await;
    admin(
        edge.admin,
        "PUT",
        "/apps/hello",
        TOKEN,
        None,
        b"junk".to_vec(),
    )
    .await;
    let (ok, _, _) = cli(&edge, TOKEN, &["deploy", &path("hello")]);
    assert!(ok);
    let m = admin(edge.admin, "GET", "/metrics", TOKEN, None, vec![]).await;
    assert_eq!(m.status, 200);
    assert_eq!(
        m.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for line in [
        "edge_requests_total{app=\"hello\",class=\"2xx\"} 3",
        "edge_requests_total{app=\"trap\",class=\"5xx\"} 1",
        "edge_requests_total{app=\"trap\",class=\"2xx\"} 1",
        "edge_guest_kills_total{app=\"trap\",reason=\"trap\"} 1",
        "edge_deploys_total{app=\"hello\",result=\"ok\"} 1",
        "edge_deploys_total{app=\"hello\",result=\"rejected\"} 1",
        "edge_request_duration_seconds_count{app=\"hello\"} 3",
        "edge_instantiate_duration_seconds_count{app=\"trap\"} 2",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "missing `{line}` in:\n{}",
            m.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_the_version_they_started_on() {
    let apps = Apps::new();
    apps.add_as("slow", "app");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let addr = edge.addr;
    let in_flight = tokio::spawn(async move { get(addr, "app.localhost", "/?ms=1500").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = admin(
        edge.admin,
        "PUT",
        "/apps/app",
        TOKEN,
        Some("application/wasm"),
        std::fs::read(guest("hello")).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"version\": \"v1\""), "{}", r.body);
    // The next request gets the new version while the old one is still running.
    assert_eq!(
        get(addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
    assert!(!in_flight.is_finished());
    assert_eq!(in_flight.await.unwrap().body, "slept 1500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_deploy_serves_baseline_code_at_once_then_optimized_code() {
    let apps = Apps::new();
    let cache = apps.path().join("own-cache");
    let cache = cache.to_str().unwrap();
    let edge = Edge::start_with_token(apps.path(), &["--cache-dir", cache], TOKEN);
    let (ok, out, err) = cli(&edge, TOKEN, &["deploy", &path("hello"), "--name", "app"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("(baseline tier; optimizing in the background)"),
        "{out}"
    );
    assert_eq!(
        get(edge.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
    edge.expect_log("optimized `app` v1: Cranelift code serves from now on");
    assert_eq!(
        get(edge.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
    // Winch's instances are never kept (the pool does not make them): known when the
    // version loads, so no request asks and nothing is logged.
    let log = edge.log();
    assert!(!log.contains("are not kept between requests"), "{log}");
    // The optimized code went to the cache: a rollback target or a restart compiles nothing.
    drop(edge);
    let edge = Edge::start_with_token(apps.path(), &["--cache-dir", cache], TOKEN);
    edge.expect_log("loaded app `app` (cache hit, not recompiled)");
    drop(edge);

    // `--no-baseline`: Cranelift compiles before the deploy answers.
    let other = apps.path().join("other-cache");
    let edge = Edge::start_with_token(
        apps.path(),
        &["--cache-dir", other.to_str().unwrap(), "--no-baseline"],
        TOKEN,
    );
    let (ok, out, err) = cli(&edge, TOKEN, &["deploy", &path("counter"), "--name", "c"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("compile ") && !out.contains("baseline"),
        "{out}"
    );
    assert_eq!(get(edge.addr, "c.localhost", "/").await.body, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_code_is_held_to_the_same_limits() {
    // Each deploy misses its own empty cache, so the first requests run Winch's code; the
    // kills must hold there exactly as for Cranelift's.
    let apps = Apps::new();
    apps.manifest("spin", "timeout = \"1s\"\n");
    apps.manifest("memhog", "memory_limit = \"16MiB\"\n");
    let cache = apps.path().join("own-cache");
    let edge = Edge::start_with_token(
        apps.path(),
        &["--cache-dir", cache.to_str().unwrap()],
        TOKEN,
    );
    // Each request goes out right after its deploy answers, while Cranelift is still
    // compiling in the background (hundreds of milliseconds): it runs Winch's code.
    for (guest_name, route, want) in [
        ("spin", "/spin", 504),
        ("memhog", "/hog?mib=64", 500),
        ("trap", "/trap", 500),
    ] {
        let manifest = apps.path().join(format!("{guest_name}.toml"));
        let mut args = vec!["deploy".to_string(), path(guest_name)];
        if manifest.exists() {
            args.extend(["--manifest".into(), manifest.to_string_lossy().into_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = cli(&edge, TOKEN, &args);
        assert!(ok, "{err}");
        assert!(out.contains("baseline tier"), "{out}");
        let started = Instant::now();
        let resp = get(edge.addr, &format!("{guest_name}.localhost"), route).await;
        assert_eq!(resp.status, want, "{guest_name}: {}", resp.body);
        assert!(started.elapsed() < Duration::from_secs(5), "{guest_name}");
    }
    edge.expect_log("memory-limit");
}

/// Code already serving is reused: the same bytes under a second name compile nothing,
/// whichever tier is live, and each app keeps its own manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_under_another_name_reuse_the_live_code() {
    let apps = Apps::new();
    let edge = Edge::start_with_token(apps.path(), &["--no-cache"], TOKEN);
    let counter = std::fs::read(guest("counter")).unwrap();
    let deploy = async |name: &str| {
        let r = admin(
            edge.admin,
            "PUT",
            &format!("/apps/{name}"),
            TOKEN,
            None,
            counter.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()
    };
    let first = deploy("first").await;
    assert!(first["compile_ms"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(first["code"], "compiled", "{first}");
    let second = deploy("second").await;
    assert!(second["compile_ms"].is_null(), "{second}");
    assert_eq!(second["code"], "live", "{second}");
    assert_eq!(second["digest"], first["digest"]);
    for name in ["first", "second"] {
        assert_eq!(
            get(edge.addr, &format!("{name}.localhost"), "/").await.body,
            "1"
        );
    }
    // Once optimized code serves, a third name takes that.
    edge.expect_log("optimized `first` v1");
    edge.expect_log("optimized `second` v1");
    let third = deploy("third").await;
    assert!(third["compile_ms"].is_null(), "{third}");
    assert_eq!(third["tier"], "optimized", "{third}");
    assert_eq!(get(edge.addr, "third.localhost", "/").await.body, "1");
    let (ok, out, err) = cli(
        &edge,
        TOKEN,
        &["deploy", &path("counter"), "--name", "fourth"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("the same bytes already serve"), "{out}");
}
