//! JavaScript apps: `edge build` (errors at build time, top-level code run once) and the
//! Web APIs of `sdk-js` as a served app sees them (`tests/js/webapi.js`).

use crate::support::{Apps, Edge, edge_build, get, repo_root, send, send_with, upstream};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn json_of(edge: &Edge, path: &str) -> Value {
    let resp = get(edge.addr, "webapi.localhost", path).await;
    assert_eq!(resp.status, 200, "{path}: {resp:?}");
    serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", resp.body))
}

/// One server for the Web API tests: the conformance app with an env var and one allowed
/// upstream, and the listener-style app.
async fn webapi_server() -> (Apps, Edge, std::net::SocketAddr) {
    let up = upstream().await;
    let apps = Apps::new();
    let printed = apps.add_js("tests/js/webapi.js", "webapi");
    // Top-level code ran here, at build time: its console output is the build's.
    assert!(
        printed.contains("[webapi.js stdout] top-level ran"),
        "{printed}"
    );
    assert!(printed.contains("top-level code ran once"), "{printed}");
    apps.add_js("tests/js/listener.js", "listener");
    apps.manifest(
        "webapi",
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n[env]\nGREETING = \"hello from the manifest\"\n",
            up.port()
        ),
    );
    let edge = Edge::start(apps.path(), &[]);
    (apps, edge, up)
}

#[test]
fn syntax_errors_are_reported_at_build_time_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.wasm");
    let (ok, stderr) = edge_build(&repo_root().join("tests/js/syntax-error.js"), &out);
    assert!(!ok, "a syntax error must fail the build");
    assert!(stderr.contains("SyntaxError"), "{stderr}");
    assert!(stderr.contains("syntax-error.js:3"), "{stderr}");
    assert!(!out.exists(), "no component is written for a broken app");
}

#[test]
fn a_module_without_a_handler_or_with_a_throwing_top_level_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "nohandler.js",
            "export const x = 1;\n",
            "has no fetch handler",
        ),
        (
            "throws.js",
            "const a = 1;\nthrow new RangeError(\"bad config\");\n",
            "RangeError: bad config",
        ),
        (
            "function.js",
            "export default function (request) { return new Response(\"x\"); }\n",
            "export an object with a fetch method",
        ),
    ];
    for (file, source, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, source).unwrap();
        let (ok, stderr) = edge_build(&path, &dir.path().join("out.wasm"));
        assert!(!ok, "{file} must fail the build");
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
    let (ok, stderr) = edge_build(&dir.path().join("missing.js"), &dir.path().join("o.wasm"));
    assert!(!ok && stderr.contains("cannot read"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_apis_behave_as_in_browsers() {
    let (_apps, edge, _up) = webapi_server().await;

    let headers = json_of(&edge, "/headers").await;
    assert_eq!(headers["contentType"], "text/plain");
    assert_eq!(headers["multi"], "a, b");
    assert_eq!(headers["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(headers["trimmed"], "padded value");
    assert_eq!(headers["has"], json!([true, false]));
    assert_eq!(headers["missing"], Value::Null);
    assert_eq!(headers["errors"], json!(["TypeError", "TypeError"]));
    assert_eq!(
        headers["entries"],
        json!([
            ["content-type", "text/plain"],
            ["set-cookie", "a=1"],
            ["set-cookie", "b=2"],
            ["x-multi", "a, b"],
            ["x-trim", "padded value"]
        ])
    );

    let url = json_of(&edge, "/url").await;
    assert_eq!(
        url["href"],
        "https://user:pw@example.com/a/c%20d?q=1&r=a+b&s=t+u#frag"
    );
    assert_eq!(url["origin"], "https://example.com");
    assert_eq!(url["host"], "example.com");
    assert_eq!(url["port"], "");
    assert_eq!(url["pathname"], "/a/c%20d");
    assert_eq!(url["hash"], "#frag");
    assert_eq!(url["username"], "user");
    assert_eq!(url["q"], "1");
    assert_eq!(url["r"], "a b");
    assert_eq!(url["rel"], "http://h.test/p/x/y?z");
    assert_eq!(url["port8080"], "8080");
    assert_eq!(url["defaultPort"], "http://a.test/p?q=1");
    assert_eq!(url["dots"], "/y/z");
    assert_eq!(url["emptyQuery"], "https://a.test/p?");
    assert_eq!(url["noPath"], "https://a.test/");
    assert_eq!(url["unicodePath"], "/%C3%A9");
    assert_eq!(url["canParse"], json!([true, false]));
    assert_eq!(
        url["invalid"],
        json!(["TypeError", "TypeError", "TypeError"])
    );

    let search = json_of(&edge, "/search").await;
    assert_eq!(search["all"], json!(["1", "3"]));
    assert_eq!(search["sp"], "x y");
    assert_eq!(search["enc"], "&=");
    assert_eq!(search["has"], false);
    assert_eq!(search["string"], "a=1&a=3&sp=x+y&enc=%26%3D&new=v+w%26");
    assert_eq!(search["sorted"], "a=2&z=1");
    assert_eq!(search["size"], 5);
    assert_eq!(search["fromPairs"], "k=v");

    let text = json_of(&edge, "/text").await;
    let expected: Vec<u8> = "héllo €𝄞".as_bytes().to_vec();
    assert_eq!(text["bytes"], json!(expected));
    assert_eq!(text["roundTrip"], "héllo €𝄞");
    assert_eq!(text["streamed"], "€");
    assert_eq!(text["lossy"], "a\u{FFFD}b");
    assert_eq!(text["fatal"], "TypeError");
    assert_eq!(text["encodeInto"], json!({"read": 2, "written": 4}));
    assert_eq!(text["btoa"], "aGkh");
    assert_eq!(text["atob"], "hi!");

    // Randomness comes from the host per request, never from the snapshot.
    let (a, b) = (
        json_of(&edge, "/random").await,
        json_of(&edge, "/random").await,
    );
    assert_eq!(a["hex"].as_str().unwrap().len(), 32);
    assert_ne!(a["hex"], b["hex"]);
    assert_ne!(
        a["math"], b["math"],
        "Math.random must not replay the snapshot's seed"
    );
    assert_ne!(a["uuid"], b["uuid"]);
    assert_eq!(a["uuid"].as_str().unwrap().as_bytes()[14], b'4');
    assert_eq!(a["quota"], "QuotaExceededError");

    let env = get(edge.addr, "webapi.localhost", "/env").await;
    assert_eq!(env.body, "GREETING=hello from the manifest");

    let timers = json_of(&edge, "/timers").await;
    assert_eq!(
        timers,
        json!({"order": ["microtask", "timeout 0", "timeout 20"], "waited": true})
    );

    let redirect = get(edge.addr, "webapi.localhost", "/redirect").await;
    assert_eq!(redirect.status, 307);
    assert_eq!(
        redirect.headers["location"],
        "https://example.com/elsewhere"
    );
    let clone = get(edge.addr, "webapi.localhost", "/clone").await;
    assert_eq!(clone.body, "twice twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_as_text_json_bytes_and_streams() {
    let (_apps, edge, _up) = webapi_server().await;
    let host = "webapi.localhost";

    let echo = send(edge.addr, "POST", host, "/echo?x=1", b"plain body".to_vec())
        .await
        .unwrap();
    let echo: Value = serde_json::from_str(&echo.body).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["url"], "http://webapi.localhost/echo?x=1");
    assert_eq!(echo["text"], "plain body");
    assert_eq!(echo["used"], true);

    // Headers asked for only after the body was read, and a copy of the request.
    let late = send_with(
        edge.addr,
        "POST",
        host,
        "/late?y=2",
        &[("x-late", "after the body"), ("x-other", "1")],
        b"first".to_vec(),
    )
    .await
    .unwrap();
    let late: Value = serde_json::from_str(&late.body).unwrap();
    assert_eq!(late["text"], "first");
    assert_eq!(late["late"], "after the body");
    assert_eq!(late["names"], json!(["x-late", "x-other"]));
    assert_eq!(late["url"], "http://webapi.localhost/late?y=2");
    assert_eq!(late["copied"], "after the body");

    let json = send(
        edge.addr,
        "POST",
        host,
        "/json",
        br#"{"n": 21, "s": "x"}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(json.status, 201);
    assert_eq!(json.headers["content-type"], "application/json");
    assert_eq!(json.headers["x-kind"], "json");
    let json: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(
        json,
        json!({"received": {"n": 21, "s": "x"}, "doubled": 42})
    );

    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let sum: u32 = bytes.iter().map(|&b| u32::from(b)).sum();
    let resp = send(edge.addr, "POST", host, "/bytes", bytes)
        .await
        .unwrap();
    assert_eq!(resp.body, format!("1000 {sum}"));

    // A body larger than one host read arrives as several stream chunks.
    let big = vec![b'x'; 300 * 1024];
    let resp = send(edge.addr, "POST", host, "/stream-in", big)
        .await
        .unwrap();
    assert!(resp.body.starts_with("307200 bytes in "), "{}", resp.body);
    let chunks: u32 = resp.body.split(' ').nth(3).unwrap().parse().unwrap();
    assert!(chunks >= 2, "{}", resp.body);

    // A streamed response goes out chunk by chunk: the first line arrives well before the
    // last one is produced (two 150 ms waits later).
    let stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let req = hyper::Request::builder()
        .uri("/stream-out")
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = String::new();
    let mut first_at = None;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.unwrap().into_data() {
            first_at.get_or_insert_with(|| started.elapsed());
            received.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let total = started.elapsed();
    assert_eq!(received, "chunk 1\nchunk 2\nchunk 3\n");
    let first_at = first_at.unwrap();
    assert!(
        total >= Duration::from_millis(300) && first_at + Duration::from_millis(200) <= total,
        "first chunk after {first_at:?}, all after {total:?}: not streamed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_state_top_level_and_outbound_fetch() {
    let (_apps, edge, up) = webapi_server().await;
    let host = "webapi.localhost";

    // A thrown exception: 500 for the client, message and JS stack in the server log, and
    // the next request is served normally.
    let thrown = get(edge.addr, host, "/throw").await;
    assert_eq!(thrown.status, 500);
    assert!(
        !thrown.body.contains("boom"),
        "no internals leak: {}",
        thrown.body
    );
    edge.expect_log("Error: boom from the handler");
    edge.expect_log("webapi.js:");
    let rejected = get(edge.addr, host, "/reject").await;
    assert_eq!(rejected.status, 500);
    edge.expect_log("TypeError: rejected on purpose");
    let wrong = get(edge.addr, host, "/not-a-response").await;
    assert_eq!(wrong.status, 500);
    edge.expect_log("must return a Response");

    // Each request starts from the snapshot: state written by one is invisible to the next.
    for _ in 0..3 {
        assert_eq!(get(edge.addr, host, "/state").await.body, "counter=1");
    }
    // Top-level code ran once, at build time, never per request.
    let top = json_of(&edge, "/toplevel").await;
    assert_eq!(top["topLevelRuns"], 1);
    assert_eq!(top["squares"], 998001);
    let again = json_of(&edge, "/toplevel").await;
    assert_eq!(top["builtAt"], again["builtAt"], "top-level code re-ran");
    assert!(
        !edge.log().contains("top-level ran"),
        "top-level code ran in the server"
    );

    // console goes to the server log, formatted, prefixed with the app.
    get(edge.addr, host, "/console").await;
    edge.expect_log("[webapi] logged object { a: 1, nested: { b: [ 1, 2 ] } }");
    edge.expect_log("[webapi] logged error n=42");

    // fetch() reaches an allowed host and is denied elsewhere, like any app's outbound call.
    let allowed = get(
        edge.addr,
        host,
        &format!("/fetch?to=http://127.0.0.1:{}/", up.port()),
    )
    .await;
    assert_eq!(allowed.body, "upstream 200: upstream says hi");
    let denied = get(edge.addr, host, "/fetch?to=http://127.0.0.1:1/").await;
    assert_eq!(denied.status, 502);
    assert!(
        denied
            .body
            .starts_with("fetch rejected: TypeError: fetch failed")
            && denied.body.contains("HttpRequestDenied"),
        "{}",
        denied.body
    );

    // The service-worker style.
    let listener = get(edge.addr, "listener.localhost", "/path?q=1").await;
    assert_eq!(listener.status, 200);
    assert_eq!(listener.body, "GET /path?q=1 via listener");
    assert_eq!(listener.headers["x-style"], "listener");
    edge.expect_log("[listener] waitUntil ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_examples_build_and_answer() {
    let apps = Apps::new();
    for name in ["hello", "api", "markdown"] {
        apps.add_js(&format!("examples/js/{name}.js"), name);
    }
    let edge = Edge::start(apps.path(), &[]);

    let hello = get(edge.addr, "hello.localhost", "/").await;
    assert_eq!(hello.status, 200);
    assert_eq!(hello.body, "Hello from edge!\n");
    assert_eq!(hello.headers["content-type"], "text/plain; charset=utf-8");
    // A body in memory is sent with its length (added by the engine's host side).
    assert_eq!(hello.headers["content-length"], "17");

    let list = get(
        edge.addr,
        "api.localhost",
        "/api/books?author=le+guin&sort=year&limit=2",
    )
    .await;
    let list: Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(list["total"], 3);
    let ids: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 1]);
    let missing = get(edge.addr, "api.localhost", "/api/books/99").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.headers["content-type"], "application/problem+json");
    let bad_sort = get(edge.addr, "api.localhost", "/api/books?sort=price").await;
    assert_eq!(bad_sort.status, 400);
    let created = send_json(
        &edge,
        r#"{"title":"Dune","author":"Frank Herbert","year":1965}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.headers["location"], "/api/books/8");
    let invalid = send_json(&edge, r#"{"title":""}"#).await;
    assert_eq!(invalid.status, 422);
    assert!(
        invalid.body.contains("title: a non-empty string"),
        "{}",
        invalid.body
    );
    let malformed = send_json(&edge, "{not json").await;
    assert_eq!(malformed.status, 400);
    // A POST cannot change what the next request sees: each starts from the snapshot.
    let after = get(edge.addr, "api.localhost", "/api/books").await;
    let after: Value = serde_json::from_str(&after.body).unwrap();
    assert_eq!(after["total"], 7);

    let sample = get(edge.addr, "markdown.localhost", "/").await;
    assert_eq!(sample.status, 200);
    for fragment in [
        "<h1>edge</h1>",
        "<em>multitenant</em>",
        "<strong>every request</strong>",
        "<a href=\"https://example.com/edge\">the README</a>",
        "<blockquote>",
        "<li>hot deploys with rollback</li>",
        "<pre><code class=\"language-sh\">edge build app.js -o app.wasm",
        "<hr>",
    ] {
        assert!(
            sample.body.contains(fragment),
            "missing {fragment}: {}",
            sample.body
        );
    }
    let posted = send(
        edge.addr,
        "POST",
        "markdown.localhost",
        "/",
        b"## Posted\n\n<script> & `x < y`\n".to_vec(),
    )
    .await
    .unwrap();
    assert!(posted.body.contains("<h2>Posted</h2>"), "{}", posted.body);
    assert!(
        posted
            .body
            .contains("<p>&lt;script&gt; &amp; <code>x &lt; y</code></p>"),
        "{}",
        posted.body
    );
}

async fn send_json(edge: &Edge, body: &str) -> crate::support::Resp {
    let stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/api/books")
        .header("host", "api.localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    crate::support::Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_is_held_to_the_apps_limits() {
    let apps = Apps::new();
    apps.add_js("tests/js/hostile.js", "hostile");
    apps.manifest("hostile", "timeout = \"1s\"\nmemory_limit = \"64MiB\"\n");
    let edge = Edge::start(apps.path(), &[]);
    let host = "hostile.localhost";

    let started = Instant::now();
    let spin = get(edge.addr, host, "/spin").await;
    assert_eq!(spin.status, 504, "{spin:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(edge.addr, host, "/").await.body, "fine");

    let hog = get(edge.addr, host, "/hog").await;
    assert_eq!(hog.status, 500, "{hog:?}");
    assert_eq!(get(edge.addr, host, "/").await.body, "fine");

    // QuickJS runs out of memory gracefully: an exception, in the log.
    edge.expect_log("[hostile] Uncaught InternalError: out of memory");

    // Unbounded recursion exhausts the wasm call stack (QuickJS's own stack check cannot
    // see the wasm stack): a trap that ends this request only.
    let recurse = get(edge.addr, host, "/recurse").await;
    assert_eq!(recurse.status, 500, "{recurse:?}");
    edge.expect_log("call stack exhausted");
    assert_eq!(get(edge.addr, host, "/").await.body, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_resolved_at_build_time() {
    let apps = Apps::new();
    apps.add_js("tests/js/modules/app.js", "modules");
    let edge = Edge::start(apps.path(), &[]);
    let resp = get(edge.addr, "modules.localhost", "/").await;
    assert_eq!((resp.status, resp.body.as_str()), (200, "hello modules!\n"));
    // Nothing is read at run time: a dynamic import is refused with the reason.
    let dynamic = get(edge.addr, "modules.localhost", "/dynamic").await;
    assert_eq!(dynamic.status, 500);
    assert!(
        dynamic
            .body
            .contains("modules are resolved when the app is built"),
        "{}",
        dynamic.body
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.js");
    std::fs::write(
        &broken,
        "import { x } from \"./absent.js\";\nexport default { fetch() {} };\n",
    )
    .unwrap();
    let (ok, stderr) = edge_build(&broken, &dir.path().join("broken.wasm"));
    assert!(!ok);
    assert!(
        stderr.contains("Error resolving module './absent.js' from 'broken.js'"),
        "{stderr}"
    );
}

/// The engine makes what initialization built immortal before the snapshot (QuickJS as
/// patched in `vendor/rquickjs-sys`): each request still changes those objects as a plain
/// engine would — properties added and deleted, strings appended, arrays and maps grown,
/// the last reference to one dropped, cycles holding them collected, objects built along
/// the shapes initialization kept, and those shapes' init-time objects changed — and, in
/// its fresh instance, sees the snapshot as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_built_at_initialization_change_as_usual_and_every_request_starts_clean() {
    let apps = Apps::new();
    apps.add_js("tests/js/snapshot.js", "snapshot");
    // The 20 000-key dictionary built at initialization keeps a few of its shapes, not
    // one per step (3.9 MiB built; a copy per step made it 110 MiB).
    let built = std::fs::metadata(apps.path().join("snapshot.wasm"))
        .unwrap()
        .len();
    assert!(built < 8 << 20, "snapshot.js built to {built} bytes");
    let edge = Edge::start(apps.path(), &[]);
    let expected = json!({
        "greeting": "hello, snapshot snapshot snapshot !",
        "greetingLength": 34,
        "table": [["b", 2], ["c", 3]],
        "weak": "config",
        "count": [1, 2],
        "prior": true,
        "odd": 10000,
        "config": { "list": [1, 2, 3, 4], "nested": { "deep": "xy" }, "extra": "added" },
        "wide": 39,
        "points": [3, 7, 11],
        "shapes": {
            "grown": [["a", 10], ["c", 30], ["d", 40]],
            "steps": [["a", 1], ["b", 2], ["c", 3], ["d", 4]],
            "frozen": true,
            "refused": true,
            "sibling": [1, false],
            "twin": [7, true, false],
            "fresh": ["new", 2],
            "dict": [20000, 0, 19999],
        },
    });
    for round in 0..3 {
        let resp = get(edge.addr, "snapshot.localhost", "/").await;
        assert_eq!(resp.status, 200, "round {round}: {resp:?}");
        let got: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(got, expected, "round {round}");
    }
}

/// A pooled slot keeps its memory image mapped between requests and resets only the
/// pages a request wrote, found by `PAGEMAP_SCAN`, which costs per page present. The
/// kernel's fault-around would map 16 image pages for each one read, so nearly all the
/// JS engine's image became present (229 of 258 pages) though a request reads about
/// 96; edge turns fault-around off for pooled images (vendor/wasmtime, `edge patch`
/// in `disable_fault_around`). Skipped where the kernel has no `PAGEMAP_SCAN` or no
/// userfaultfd for edge to use.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_slots_map_only_the_image_pages_requests_read() {
    if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        eprintln!("skipped: no PAGEMAP_SCAN on this kernel");
        return;
    }
    // edge's probe is the syscall itself; without `unsafe` here, look for the kernel's
    // userfaultfd support, and skip under a seccomp filter (which may refuse it).
    if !std::path::Path::new("/proc/sys/vm/unprivileged_userfaultfd").exists() {
        eprintln!("skipped: no userfaultfd in this kernel");
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status
        .lines()
        .any(|l| l.starts_with("Seccomp:") && !l.ends_with('0'))
    {
        eprintln!("skipped: a seccomp filter may refuse userfaultfd here");
        return;
    }

    let apps = Apps::new();
    apps.add_js("examples/js/hello.js", "hello");
    // Cranelift code (or the cache's) from the first request: the baseline tier's
    // instances map no image.
    let edge = Edge::start_without_reset_checks(apps.path(), &["--no-baseline"]);
    for _ in 0..40 {
        let resp = get(edge.addr, "hello.localhost", "/").await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    // Each pooled slot's image mapping (a memfd, or the cache's `.cwasm`): how much of
    // it is present. A kept instance's slot is read-only but for the pages requests
    // write (`write_track` in the vendored wasmtime), so its mapping is several
    // neighbouring ones (`rw-p` and `r--p`, the file's offsets running on): one image.
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", edge.pid())).unwrap();
    // (first line, start, end, next file offset, writable piece seen, KiB present)
    let mut groups: Vec<(String, u64, u64, u64, bool, u64)> = Vec::new();
    let mut current = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let (start, end) = fields[0].split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            let offset = u64::from_str_radix(fields[2], 16).unwrap();
            let image = line.contains("wasm-memory-image") || line.contains(".cwasm");
            current = image && (fields[1] == "rw-p" || fields[1] == "r--p");
            if !current {
                continue;
            }
            let writable = fields[1] == "rw-p";
            match groups.last_mut() {
                Some(group)
                    if group.2 == start
                        && group.3 == offset
                        && group.0.split_whitespace().last() == line.split_whitespace().last() =>
                {
                    group.2 = end;
                    group.3 = offset + (end - start);
                    group.4 |= writable;
                }
                _ => groups.push((
                    line.to_string(),
                    start,
                    end,
                    offset + (end - start),
                    writable,
                    0,
                )),
            }
        } else if let (true, Some(&"Rss:")) = (current, fields.first()) {
            groups.last_mut().unwrap().5 += fields[1].parse::<u64>().unwrap();
        }
    }
    // A slot's image has a writable piece; the code's read-only mappings have none.
    let images: Vec<(String, u64, u64)> = groups
        .into_iter()
        .filter(|g| g.4 && g.5 > 0)
        .map(|(name, start, end, _, _, rss)| (name, (end - start) / 1024, rss))
        .collect();
    assert!(
        !images.is_empty(),
        "no pooled image mapping has pages:\n{smaps}"
    );
    for (name, size, rss) in &images {
        assert!(
            *rss * 2 <= *size,
            "{rss} of {size} KiB of an image present after 40 hello requests (fault-around \
             on?): {name}"
        );
    }
}
