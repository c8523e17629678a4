use crate::support::{Apps, Edge, Resp, cli, cli_with_stdin, get, send};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "state-test-token";

async fn call(edge: &Edge, method: &str, host: &str, path: &str, body: &[u8]) -> Resp {
    send(edge.addr, method, host, path, body.to_vec())
        .await
        .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"))
}

/// `tasks` concurrent clients, spread over `nodes`, each incrementing app `app`'s counter
/// `n` in store `default` `each` times: every value they were handed, sorted.
async fn increment_from(nodes: &[std::net::SocketAddr], tasks: usize, each: usize) -> Vec<u64> {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let addr = nodes[i % nodes.len()];
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..each {
                    let r = send(addr, "POST", "app.localhost", "/incr/default/n", vec![])
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200, "{r:?}");
                    seen.push(r.body.parse::<u64>().unwrap());
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    all
}

/// `tasks` clients spread over `nodes`, client *i* appending letter *i* to the key `log`
/// `each` times through the kv2 guest's compare-and-swap loop: the swaps that lost a race.
async fn append_from(
    nodes: &[std::net::SocketAddr],
    host: &'static str,
    tasks: u8,
    each: usize,
) -> u64 {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let addr = nodes[i as usize % nodes.len()];
            tokio::spawn(async move {
                let path = format!("/append/default/log?c={}", (b'a' + i) as char);
                let mut retries = 0u64;
                for _ in 0..each {
                    let r = send(addr, "POST", host, &path, vec![]).await.unwrap();
                    assert_eq!(r.status, 200, "{r:?}");
                    retries += r.body.parse::<u64>().unwrap();
                }
                retries
            })
        })
        .collect();
    let mut retries = 0;
    for h in handles {
        retries += h.await.unwrap();
    }
    retries
}

/// `log` holds `each` of each of the first `tasks` letters, and nothing else.
fn check_log(log: &str, tasks: u8, each: usize) {
    assert_eq!(log.len(), tasks as usize * each, "{log}");
    for c in b'a'..b'a' + tasks {
        assert_eq!(log.bytes().filter(|b| *b == c).count(), each, "{log}");
    }
}

/// Every key of store `default` through the guest's `/list` route, page by page: the keys
/// in the order they came, and how many pages.
async fn list_all(edge: &Edge, host: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, String::new());
    loop {
        let path = match cursor.as_str() {
            "" => "/list/default".to_string(),
            c => format!("/list/default?cursor={c}"),
        };
        let r = call(edge, "GET", host, &path, b"").await;
        let (keys, next) = r.body.rsplit_once("cursor=").unwrap();
        seen.extend(keys.lines().map(str::to_string));
        pages += 1;
        if next.is_empty() {
            return (seen, pages);
        }
        cursor = next.to_string();
    }
}

/// An apps directory with the kv guest as `app`, declaring `stores`.
fn kv_app(name: &str, manifest: &str) -> Apps {
    let apps = Apps::new();
    apps.add_as("kv", name).manifest(name, manifest);
    apps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_delete_exists_list_and_batch() {
    let apps = kv_app("app", r#"key_value_stores = ["default", "other"]"#);
    let edge = Edge::start(apps.path(), &[]);
    let h = "app.localhost";
    assert_eq!(
        call(&edge, "GET", h, "/kv/default/k", b"").await.status,
        404
    );
    let r = call(&edge, "PUT", h, "/kv/default/k", b"v1").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(call(&edge, "GET", h, "/kv/default/k", b"").await.body, "v1");
    call(&edge, "PUT", h, "/kv/default/k", b"v2").await;
    assert_eq!(call(&edge, "GET", h, "/kv/default/k", b"").await.body, "v2");
    // Stores of one app are apart too.
    assert_eq!(call(&edge, "GET", h, "/kv/other/k", b"").await.status, 404);
    assert_eq!(
        call(&edge, "GET", h, "/exists/default/k", b"").await.body,
        "true"
    );
    call(&edge, "DELETE", h, "/kv/default/k", b"").await;
    assert_eq!(
        call(&edge, "GET", h, "/exists/default/k", b"").await.body,
        "false"
    );

    // 2 500 keys come back in pages of 1 000 that follow the cursor, each key once.
    let lines: String = (0..2500).map(|i| format!("key-{i:04}=v{i}\n")).collect();
    let r = call(&edge, "POST", h, "/set-many/default", lines.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (seen, pages) = list_all(&edge, h).await;
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 2500);
    assert_eq!(seen.len(), 2500);

    let r = call(
        &edge,
        "GET",
        h,
        "/get-many/default?keys=key-0001,absent,key-2499",
        b"",
    )
    .await;
    assert_eq!(r.body, "key-0001=v1\nabsent!\nkey-2499=v2499\n");
    call(
        &edge,
        "POST",
        h,
        "/delete-many/default?keys=key-0001,key-2499,absent",
        b"",
    )
    .await;
    let r = call(
        &edge,
        "GET",
        h,
        "/get-many/default?keys=key-0001,key-0002,key-2499",
        b"",
    )
    .await;
    assert_eq!(r.body, "key-0001!\nkey-0002=v2\nkey-2499!\n");

    // An undeclared store fails inside the guest, with the WIT error for it.
    let r = call(&edge, "GET", h, "/kv/undeclared/k", b"").await;
    assert_eq!((r.status, r.body.as_str()), (500, "no-such-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_16_concurrent_requests_lose_no_update() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    let edge = Edge::start(apps.path(), &[]);
    let addr = edge.addr;
    let all = increment_from(&[addr], 16, 25).await;
    // Every increment returned a distinct value: none was lost or applied twice.
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    let r = call(&edge, "GET", "app.localhost", "/kv/default/n", b"").await;
    assert_eq!(r.body, "400");
    // A value that is not a counter is refused, and left as it was.
    call(&edge, "PUT", "app.localhost", "/kv/default/t", b"text").await;
    let r = call(&edge, "POST", "app.localhost", "/incr/default/t", b"").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("not a counter"), "{}", r.body);
    assert_eq!(
        call(&edge, "GET", "app.localhost", "/kv/default/t", b"")
            .await
            .body,
        "text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_with_the_same_store_name_never_see_each_others_keys() {
    let apps = Apps::new();
    for name in ["a", "b"] {
        apps.add_as("kv", name)
            .manifest(name, r#"key_value_stores = ["default"]"#);
    }
    // `c` declares no store at all.
    apps.add_as("kv", "c");
    let edge = Edge::start(apps.path(), &[]);
    call(&edge, "PUT", "a.localhost", "/kv/default/secret", b"of a").await;
    assert_eq!(
        call(&edge, "GET", "b.localhost", "/kv/default/secret", b"")
            .await
            .status,
        404
    );
    let r = call(&edge, "GET", "b.localhost", "/list/default", b"").await;
    assert_eq!(r.body, "cursor=");
    call(&edge, "PUT", "b.localhost", "/kv/default/secret", b"of b").await;
    assert_eq!(
        call(&edge, "GET", "a.localhost", "/kv/default/secret", b"")
            .await
            .body,
        "of a"
    );
    let r = call(&edge, "GET", "c.localhost", "/kv/default/secret", b"").await;
    assert_eq!((r.status, r.body.as_str()), (500, "no-such-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_stop_a_guest_inside_the_guest_and_spare_everyone_else() {
    let apps = Apps::new();
    apps.add_as("kv", "small").manifest(
        "small",
        r#"
key_value_stores = ["default"]
[key_value_limits]
max_key_size = "16B"
max_value_size = "2KiB"
max_keys = 50
"#,
    );
    apps.add_as("kv", "bytes").manifest(
        "bytes",
        r#"
key_value_stores = ["default"]
[key_value_limits]
max_store_size = "20KiB"
"#,
    );
    apps.add_as("kv", "other")
        .manifest("other", r#"key_value_stores = ["default"]"#);
    let edge = Edge::start(apps.path(), &[]);
    let long_key = format!("/kv/default/{}", "k".repeat(17));
    let r = call(&edge, "PUT", "small.localhost", &long_key, b"v").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("max_key_size"), "{}", r.body);
    let r = call(
        &edge,
        "PUT",
        "small.localhost",
        "/kv/default/big",
        &[b'x'; 2049],
    )
    .await;
    assert!(r.body.contains("max_value_size"), "{}", r.body);
    // A guest looping on `set` is stopped by its own store's limits.
    let r = call(&edge, "POST", "small.localhost", "/flood/default", b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("refused after 50: "), "{}", r.body);
    assert!(r.body.contains("max_keys"), "{}", r.body);
    let r = call(&edge, "POST", "bytes.localhost", "/flood/default", b"").await;
    assert!(r.body.starts_with("refused after 20: "), "{}", r.body);
    assert!(r.body.contains("max_store_size"), "{}", r.body);
    // Overwriting within the limit still works; a refused write left nothing behind.
    let r = call(&edge, "PUT", "small.localhost", "/kv/default/flood-0", b"y").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(
        &edge,
        "GET",
        "small.localhost",
        "/exists/default/flood-50",
        b"",
    )
    .await;
    assert_eq!(r.body, "false");
    // The other app is untouched.
    let r = call(&edge, "PUT", "other.localhost", "/kv/default/k", b"fine").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        call(&edge, "GET", "other.localhost", "/kv/default/k", b"")
            .await
            .body,
        "fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_kill_9_and_restart() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    let edge = Edge::start(apps.path(), &[]);
    for i in 0..20 {
        let r = call(
            &edge,
            "PUT",
            "app.localhost",
            &format!("/kv/default/k{i}"),
            format!("v{i}").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = call(&edge, "POST", "app.localhost", "/incr/default/n?by=7", b"").await;
    assert_eq!(r.body, "7");
    // Killed right after the last acknowledgement: no clean shutdown, no checkpoint.
    let status = Command::new("kill")
        .args(["-9", &edge.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(edge);
    let edge = Edge::start(apps.path(), &[]);
    for i in 0..20 {
        let r = call(
            &edge,
            "GET",
            "app.localhost",
            &format!("/kv/default/k{i}"),
            b"",
        )
        .await;
        assert_eq!(r.body, format!("v{i}"));
    }
    assert_eq!(
        call(&edge, "GET", "app.localhost", "/kv/default/n", b"")
            .await
            .body,
        "7"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_initialization_sees_no_store_and_no_config() {
    let apps = kv_app(
        "app",
        "key_value_stores = [\"default\"]\n[config]\ngreeting = \"hi\"\n",
    );
    let edge = Edge::start(apps.path(), &[]);
    let r = get(edge.addr, "app.localhost", "/init").await;
    assert!(
        r.body.contains("not available during pre-initialization"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("hi\""), "{}", r.body);
    // While handling a request, both are there.
    assert_eq!(
        get(edge.addr, "app.localhost", "/config/greeting")
            .await
            .body,
        "hi"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_from_the_manifest_and_secrets_from_the_cli() {
    let apps = Apps::new();
    apps.add_as("kv", "app").manifest(
        "app",
        "key_value_stores = [\"default\"]\n[config]\ngreeting = \"hello\"\nmode = \"test\"\n",
    );
    apps.add_as("kv", "other");
    let edge = Edge::start_with_token(
        apps.path(),
        &["--watch", "--watch-interval", "100ms"],
        TOKEN,
    );
    let h = "app.localhost";
    assert_eq!(get(edge.addr, h, "/config/greeting").await.body, "hello");
    assert_eq!(get(edge.addr, h, "/config/api_key").await.status, 404);

    // `edge secret set` reads the value from stdin; the next request sees it.
    let secret = "s3cr3t-value-42";
    let (ok, _, err) = cli_with_stdin(
        &edge,
        TOKEN,
        &["secret", "set", "app", "api_key"],
        &format!("{secret}\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(get(edge.addr, h, "/config/api_key").await.body, secret);
    // A secret of the same name as a manifest entry wins.
    let all = get(edge.addr, h, "/config").await.body;
    assert_eq!(
        all,
        format!("api_key={secret}\ngreeting=hello\nmode=test\n")
    );
    // Another app does not see it.
    assert_eq!(
        get(edge.addr, "other.localhost", "/config/api_key")
            .await
            .status,
        404
    );
    assert_eq!(get(edge.addr, "other.localhost", "/config").await.body, "");

    let (ok, stdout, _) = cli(&edge, TOKEN, &["secret", "list", "app"]);
    assert!(ok);
    assert_eq!(stdout, "api_key\n");
    let (_, apps_json, _) = cli(&edge, TOKEN, &["apps", "--json"]);
    assert!(!apps_json.contains(secret));
    // Nothing of the value reaches the log or a listing.
    assert!(!edge.log().contains(secret), "{}", edge.log());
    let r =
        crate::support::admin(edge.admin, "GET", "/apps/app/secrets", TOKEN, None, vec![]).await;
    assert!(!r.body.contains(secret));
    // A value that is not UTF-8 is refused, and the secret keeps its value.
    let r = crate::support::admin(
        edge.admin,
        "PUT",
        "/apps/app/secrets/api_key",
        TOKEN,
        None,
        vec![0xff, 0xfe],
    )
    .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(get(edge.addr, h, "/config/api_key").await.body, secret);
    // A wrong token changes nothing.
    let r = crate::support::admin(
        edge.admin,
        "PUT",
        "/apps/app/secrets/api_key",
        "wrong",
        None,
        b"x".to_vec(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(get(edge.addr, h, "/config/api_key").await.body, secret);

    // A manifest change takes effect without a deploy (the directory is watched).
    apps.manifest(
        "app",
        "key_value_stores = [\"default\"]\n[config]\ngreeting = \"bonjour\"\n",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get(edge.addr, h, "/config/greeting").await.body != "bonjour" {
        assert!(
            std::time::Instant::now() < deadline,
            "the manifest change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (ok, _, _) = cli(&edge, TOKEN, &["secret", "delete", "app", "api_key"]);
    assert!(ok);
    assert_eq!(get(edge.addr, h, "/config/api_key").await.status, 404);
    let (ok, _, err) = cli(&edge, TOKEN, &["secret", "delete", "app", "api_key"]);
    assert!(!ok);
    assert!(err.contains("no secret `api_key`"), "{err}");
    let (ok, _, err) = cli(&edge, TOKEN, &["secret", "list", "Bad_Name"]);
    assert!(!ok && err.contains("app name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_and_seed_stores_with_edge_kv() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    // A key with a slash travels percent-encoded and arrives whole.
    let (ok, _, err) = cli(
        &edge,
        TOKEN,
        &["kv", "set", "app", "default", "dir/file.txt", "seeded"],
    );
    assert!(ok, "{err}");
    let r = call(
        &edge,
        "GET",
        "app.localhost",
        "/get-many/default?keys=dir/file.txt",
        b"",
    )
    .await;
    assert_eq!(r.body, "dir/file.txt=seeded\n");
    call(
        &edge,
        "PUT",
        "app.localhost",
        "/kv/default/from-guest",
        b"hello",
    )
    .await;
    let (ok, out, _) = cli(&edge, TOKEN, &["kv", "get", "app", "default", "from-guest"]);
    assert!(ok);
    assert_eq!(out, "hello");
    let (ok, out, _) = cli(&edge, TOKEN, &["kv", "list", "app", "default"]);
    assert!(ok);
    assert_eq!(out, "dir/file.txt\nfrom-guest\n");
    let (ok, _, _) = cli(
        &edge,
        TOKEN,
        &["kv", "delete", "app", "default", "from-guest"],
    );
    assert!(ok);
    let (ok, _, err) = cli(&edge, TOKEN, &["kv", "get", "app", "default", "from-guest"]);
    assert!(!ok && err.contains("no key `from-guest`"), "{err}");
    let (ok, _, err) = cli(&edge, TOKEN, &["kv", "list", "app", "nope"]);
    assert!(!ok && err.contains("no key-value store `nope`"), "{err}");
    let (ok, _, err) = cli(&edge, TOKEN, &["kv", "list", "ghost", "default"]);
    assert!(!ok && err.contains("no app `ghost`"), "{err}");
}

/// Runs `edge serve` on `state` to its exit (it should refuse to start).
fn serve_on_state(apps: &Apps, state: impl AsRef<std::ffi::OsStr>) -> std::process::Output {
    crate::support::serve_to_exit(apps.path(), &["--state".as_ref(), state.as_ref()])
}

#[test]
fn a_corrupt_or_foreign_state_file_stops_the_server_before_it_serves() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    // Not a database at all.
    let state = apps.path().join("state.db");
    std::fs::write(&state, vec![0x5a; 16 * 1024]).unwrap();
    let out = serve_on_state(&apps, &state);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a usable SQLite database"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Serving HTTP"));
    assert_eq!(
        std::fs::read(&state).unwrap(),
        vec![0x5a; 16 * 1024],
        "the file was changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_damaged_inside_is_refused_rather_than_served() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    let state = apps.path().join("damaged.db");
    {
        let edge = Edge::start(apps.path(), &["--state", state.to_str().unwrap()]);
        let lines: String = (0..3000)
            .map(|i| format!("key-{i:05}={}\n", "v".repeat(200)))
            .collect();
        let r = call(
            &edge,
            "POST",
            "app.localhost",
            "/set-many/default",
            lines.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Fold the WAL into the main file (as a clean shutdown or a checkpoint would), then
    // scribble over a page in the middle of it.
    let status = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(status.success());
    let mut bytes = std::fs::read(&state).unwrap();
    assert!(
        bytes.len() > 64 * 4096,
        "the database is only {} bytes",
        bytes.len()
    );
    let page = 4096;
    let mid = (bytes.len() / page / 2) * page;
    bytes[mid + 8..mid + page].fill(0xa5);
    std::fs::write(&state, bytes).unwrap();
    let out = serve_on_state(&apps, &state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "it served from a damaged database: {err}"
    );
    assert!(
        err.contains("corrupt") || err.contains("malformed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visits_example_counts_every_visit() {
    let apps = Apps::new();
    let manifest =
        std::fs::read_to_string(crate::support::repo_root().join("examples/apps/visits.toml"))
            .unwrap();
    apps.add("visits").manifest("visits", &manifest);
    let edge = Edge::start(apps.path(), &[]);
    let addr = edge.addr;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let path = if i % 2 == 0 { "/a" } else { "/b/c" };
                for _ in 0..5 {
                    let r = send(addr, "GET", "visits.localhost", path, vec![])
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200, "{r:?}");
                    assert!(r.body.starts_with("visit "), "{}", r.body);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let r = get(addr, "visits.localhost", "/a").await;
    assert_eq!(r.body, "visit 21 of /a\n");
    let r = get(addr, "visits.localhost", "/stats").await;
    assert_eq!(r.headers["content-type"], "application/json");
    let stats: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(stats, serde_json::json!({"/a": 21, "/b/c": 20}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_reads_stores_config_and_secrets_through_env() {
    let apps = Apps::new();
    apps.add_js("tests/js/kv.js", "kvjs");
    apps.manifest(
        "kvjs",
        "key_value_stores = [\"default\", \"sessions\"]\n\
         [key_value_limits]\nmax_value_size = \"4KiB\"\n\
         [env]\nGREETING = \"from env\"\n[config]\ngreeting = \"from config\"\n",
    );
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let r = get(edge.addr, "kvjs.localhost", "/check").await;
    assert_eq!(r.status, 200, "{r:?}\n{}", edge.log());
    let r: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let expect = serde_json::json!({
        "text": "héllo",
        "textType": "héllo",
        "json": {"a": [1, 2]},
        "arrayBuffer": [0, 255, 7],
        "stream": "héllo",
        "missing": null,
        "deleted": null,
        "counter": [1, 42, "42"],
        "sessions": ["session doc", 2],
        "pages": [[10, false, "user:00"], [10, false, "user:10"], [5, true, "user:20"]],
        "cursorIsString": true,
        "all": 28,
        "badType": "TypeError: KV get: unknown type \"blob\" (use \"text\", \"json\", \"arrayBuffer\" or \"stream\")",
        "expiration": "TypeError: KV put: expiration is not supported by edge's stores",
        "badValue": "TypeError: KV put: the value must be a string, an ArrayBuffer, a typed array or a ReadableStream",
        "tooBig": "Error: KV put in `default`: value of 5000 bytes is over this store's limit of 4096 (`key_value_limits.max_value_size`)",
        "notCounter": "Error: KV increment in `default`: the value at `doc` is not a counter (decimal digits); `increment` cannot add to it",
        "config": ["from config", "from env", null],
        "hasStoresVar": false,
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&r[k], v, "{k}");
    }
    // A secret set now is in `env` on the next request, without a redeploy.
    let put = crate::support::admin(
        edge.admin,
        "PUT",
        "/apps/kvjs/secrets/token",
        TOKEN,
        None,
        b"t0ps3cret".to_vec(),
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    let env: serde_json::Value =
        serde_json::from_str(&get(edge.addr, "kvjs.localhost", "/env").await.body).unwrap();
    assert_eq!(env["token"], "t0ps3cret");
    assert_eq!(env["KV"], "[object KVNamespace]");
    assert_eq!(env["sessions"], "[object KVNamespace]");
    assert_eq!(env["default"], "[object KVNamespace]");
    let ops: serde_json::Value =
        serde_json::from_str(&get(edge.addr, "kvjs.localhost", "/env-object").await.body).unwrap();
    for check in ["has", "set", "deleted", "defined", "spread", "frozen"] {
        assert_eq!(ops[check], true, "env {check}: {ops}");
    }
    assert!(!edge.log().contains("t0ps3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_url_shortener_example() {
    let apps = Apps::new();
    apps.add_js("examples/js/shortener.js", "short");
    let manifest =
        std::fs::read_to_string(crate::support::repo_root().join("examples/js/shortener.toml"))
            .unwrap();
    apps.manifest("short", &manifest);
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let h = "short.localhost";
    let r = call(
        &edge,
        "POST",
        h,
        "/api/links",
        br#"{"url": "https://example.com/a?b=c", "slug": "ex"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let link: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(link["url"], "https://example.com/a?b=c");
    assert_eq!(link["short"], "http://short.localhost/ex");
    let r = call(
        &edge,
        "POST",
        h,
        "/api/links",
        br#"{"url": "https://example.org/", "slug": "ex"}"#,
    )
    .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = call(
        &edge,
        "POST",
        h,
        "/api/links",
        br#"{"url": "ftp://example.org/"}"#,
    )
    .await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = call(&edge, "POST", h, "/api/links", b"not json").await;
    assert_eq!(r.status, 400, "{r:?}");
    for _ in 0..3 {
        let r = get(edge.addr, h, "/ex").await;
        assert_eq!(r.status, 302);
        assert_eq!(r.headers["location"], "https://example.com/a?b=c");
    }
    let r = get(edge.addr, h, "/api/links/ex").await;
    let shown: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(shown["visits"], 3);
    // 120 more links: the list comes in pages of 100 that follow the cursor.
    for i in 0..120 {
        let body = format!(r#"{{"url": "https://example.net/{i}"}}"#);
        let r = call(&edge, "POST", h, "/api/links", body.as_bytes()).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let page1: serde_json::Value =
        serde_json::from_str(&get(edge.addr, h, "/api/links").await.body).unwrap();
    assert_eq!(page1["links"].as_array().unwrap().len(), 100);
    let cursor = page1["cursor"].as_str().unwrap();
    let path = format!("/api/links?cursor={}", crate::support::percent(cursor));
    let page2: serde_json::Value =
        serde_json::from_str(&get(edge.addr, h, &path).await.body).unwrap();
    assert_eq!(page2["links"].as_array().unwrap().len(), 21);
    assert!(page2["cursor"].is_null());
    // Deleting needs the ADMIN_TOKEN secret; set it, and the next request honours it.
    let r = call(&edge, "DELETE", h, "/api/links/ex", b"").await;
    assert_eq!(r.status, 401);
    let (ok, _, err) = cli_with_stdin(
        &edge,
        TOKEN,
        &["secret", "set", "short", "ADMIN_TOKEN"],
        "letmein\n",
    );
    assert!(ok, "{err}");
    let r = send(edge.addr, "DELETE", h, "/api/links/ex", vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 401, "no bearer token");
    let r = crate::support::send_with(
        edge.addr,
        "DELETE",
        h,
        "/api/links/ex",
        &[("authorization", "Bearer letmein")],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(get(edge.addr, h, "/ex").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgresql_share_keys_counters_secrets_and_limits() {
    let mut pg = crate::support::Postgres::start();
    let url = pg.url();
    let manifest = "key_value_stores = [\"default\"]\n[key_value_limits]\nmax_keys = 100\n";
    let (a_apps, b_apps) = (kv_app("app", manifest), kv_app("app", manifest));
    a_apps.add("hello");
    for apps in [&a_apps, &b_apps] {
        apps.add_as("kv2", "cas").manifest("cas", manifest);
    }
    let a = Edge::start_with_token(a_apps.path(), &["--state", &url], TOKEN);
    let b = Edge::start_with_token(b_apps.path(), &["--state", &url], TOKEN);
    let h = "app.localhost";
    let r = call(&a, "PUT", h, "/kv/default/greeting", b"from a").await;
    assert_eq!(r.status, 200, "{r:?}\n{}", a.log());
    assert_eq!(
        call(&b, "GET", h, "/kv/default/greeting", b"").await.body,
        "from a"
    );
    call(&b, "DELETE", h, "/kv/default/greeting", b"").await;
    assert_eq!(
        call(&a, "GET", h, "/kv/default/greeting", b"").await.status,
        404
    );

    // Increments from both nodes at once: every value handed out once, none lost.
    let all = increment_from(&[a.addr, b.addr], 16, 20).await;
    assert_eq!(all, (1..=320).collect::<Vec<u64>>());

    // A store's limit holds across nodes: a floods it, then b has no room left.
    let r = call(&a, "POST", h, "/flood/default", b"").await;
    assert!(r.body.starts_with("refused after 99: "), "{}", r.body);
    let r = call(&b, "PUT", h, "/kv/default/one-more", b"x").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("max_keys"), "{}", r.body);

    // Compare-and-swap from both nodes at once loses no append.
    append_from(&[a.addr, b.addr], "cas.localhost", 8, 5).await;
    check_log(
        &call(&b, "GET", "cas.localhost", "/kv/default/log", b"")
            .await
            .body,
        8,
        5,
    );

    // A secret set through node a is read by the guest on node b.
    let put = crate::support::admin(
        a.admin,
        "PUT",
        "/apps/app/secrets/token",
        TOKEN,
        None,
        b"shared".to_vec(),
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(get(b.addr, h, "/config/token").await.body, "shared");

    // The database goes away: state calls fail with the database's error, everything else
    // serves; when it is back, so is every key.
    pg.stop();
    let r = call(&a, "GET", h, "/kv/default/n", b"").await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.body.contains("key-value database error"), "{}", r.body);
    assert_eq!(get(a.addr, "hello.localhost", "/").await.status, 200);
    pg.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(&a, "GET", h, "/kv/default/n", b"").await;
        if r.status == 200 {
            assert_eq!(r.body, "320");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no reconnect: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(call(&b, "GET", h, "/kv/default/n", b"").await.body, "320");
}

#[test]
fn an_unreachable_postgresql_stops_the_server_before_it_serves() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = serve_on_state(&apps, format!("postgres://edge:pw@127.0.0.1:{port}/edge"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot use the key-value database `postgres://edge:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("pw@"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_draft2_interface_counts_down_swaps_atomically_and_pages_by_string_cursor() {
    let apps = Apps::new();
    apps.add_as("kv2", "app")
        .manifest("app", r#"key_value_stores = ["default"]"#);
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let h = "app.localhost";
    assert_eq!(
        call(&edge, "POST", h, "/incr/default/n?by=2", b"")
            .await
            .body,
        "2"
    );
    let r = call(&edge, "POST", h, "/incr/default/n?by=-5", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "-3"));
    // Stored as text, whichever version wrote it.
    let (ok, out, _) = cli(&edge, TOKEN, &["kv", "get", "app", "default", "n"]);
    assert!(ok);
    assert_eq!(out, "-3");

    // 16 clients each append one letter 10 times through compare-and-swap: no append is
    // lost, however many swaps lost a race and retried.
    let retries = append_from(&[edge.addr], "app.localhost", 16, 10).await;
    let log = call(&edge, "GET", h, "/kv/default/log", b"").await.body;
    check_log(&log, 16, 10);
    eprintln!("{retries} swaps lost a race and were retried");

    // Pages by string cursor: 1 200 keys seeded through the admin API, plus `n` and `log`.
    for i in 0..1200 {
        let path = format!("/apps/app/kv/default/k{i}");
        let r = crate::support::admin(edge.admin, "PUT", &path, TOKEN, None, b"v".to_vec()).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let (seen, pages) = list_all(&edge, h).await;
    assert_eq!((seen.len(), pages), (1202, 2));
    let r = call(&edge, "GET", h, "/list/default?cursor=not-a-cursor", b"").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("not a cursor"), "{}", r.body);
}

#[test]
fn a_state_file_another_process_holds_locked_stops_the_server() {
    let apps = kv_app("app", r#"key_value_stores = ["default"]"#);
    let state = apps.path().join("locked.db");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\n\
             c=sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('PRAGMA journal_mode=WAL')\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(60)",
        ])
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = serve_on_state(&apps, &state);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is another process holding it locked?"),
        "{err}"
    );
}
