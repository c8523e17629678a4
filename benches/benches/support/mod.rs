//! Shared by the benches: the components they measure, built from source, and the
//! in-process server set-up of the request benches. Not every bench uses every helper.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use edge::app::Loader;
use edge::config::Limits;
use edge::engine::EdgeEngine;
use edge::load::Validated;
use edge::manifest::Manifest;
use http_body_util::Empty;

/// Builds `examples/apps` for wasm32-wasip2 (a no-op when it is up to date).
pub(crate) fn hello_wasm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/wasm");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(root.join("examples/apps"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo");
    assert!(status.success(), "building examples/apps failed");
    target.join("wasm32-wasip2/release/hello.wasm")
}

/// A loader for `engine`: default limits, no state, no metrics, `cache` if given.
pub(crate) fn loader(engine: &EdgeEngine, cache: Option<edge::compile::Cache>) -> Loader {
    Loader {
        linker: edge::prepare::linker(&engine.engine).unwrap(),
        engine: engine.clone(),
        baseline: None,
        cache,
        defaults: Limits::default(),
        state: None,
        metrics: None,
    }
}

/// Loads `bytes` as the app `name` with the default manifest.
pub(crate) fn load(
    rt: &tokio::runtime::Runtime,
    loader: &Loader,
    name: &str,
    bytes: Vec<u8>,
) -> edge::app::App {
    rt.block_on(loader.load(
        name.into(),
        Manifest::default().resolve(&Limits::default()).unwrap(),
        Validated::from_bytes(bytes).unwrap(),
    ))
    .unwrap()
}

/// `GET /` for the app `app` (`Host: APP.localhost`).
pub(crate) fn get(app: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::builder()
        .uri("/")
        .header("host", format!("{app}.localhost"))
        .body(Empty::<Bytes>::new())
        .unwrap()
}
