//! A Python app (`examples/python/app.py`), built with componentize-py by the same script
//! the README tells users to run, and served by edge like any other component.

use crate::support::{Apps, Edge, get, repo_root, send};
use std::process::{Command, Stdio};

/// Builds the example with `examples/python/build.sh` into `apps` as app `py`.
fn build_python_app(apps: &Apps) {
    let out = apps.path().join("py.wasm");
    let output = Command::new("bash")
        .arg(repo_root().join("examples/python/build.sh"))
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("running examples/python/build.sh");
    assert!(
        output.status.success(),
        "examples/python/build.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&out).expect("the build wrote a component");
    assert!(
        wasmparser::Parser::is_component(&bytes),
        "{} is not a component",
        out.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_builds_and_serves_every_route() {
    let apps = Apps::new();
    build_python_app(&apps);
    let edge = Edge::start(apps.path(), &[]);
    let host = "py.localhost";

    let hello = get(edge.addr, host, "/").await;
    assert_eq!(hello.status, 200, "{hello:?}");
    assert_eq!(hello.body, "Hello from edge, in Python!\n");
    assert_eq!(hello.headers["content-type"], "text/plain; charset=utf-8");

    let named = get(edge.addr, host, "/hello/W%C3%B6rld").await;
    assert_eq!(named.body, "Hello, Wörld!\n", "{named:?}");

    // A body larger than one wasi:io read or write, back byte for byte.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let echo = send(edge.addr, "POST", host, "/echo", big.clone())
        .await
        .expect("POST /echo");
    assert_eq!(echo.status, 200);
    assert_eq!(echo.headers["x-body-length"], "300000");
    assert!(echo.body.as_bytes() == big.as_slice(), "the echo differs");

    let json = get(edge.addr, host, "/json?a=1&b=2").await;
    let doc: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["path"], "/json");
    assert_eq!(doc["query"], "a=1&b=2");
    // wasi:http carries Host as the authority, not as a header.
    assert_eq!(doc["authority"], host);

    let missing = send(edge.addr, "DELETE", host, "/nope", Vec::new())
        .await
        .expect("DELETE /nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, "no route for DELETE /nope\n");

    // Each request ran in a fresh instance, and none of them trapped.
    let log = edge.log();
    assert!(!log.contains("trap"), "{log}");
}
