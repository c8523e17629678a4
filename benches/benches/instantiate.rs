//! In-process cost of one request: fresh store, instantiate the hello component, handle a
//! GET, collect the body, drop everything. Pooling allocator against on-demand; then the
//! JavaScript hello (`examples/js/hello.js`, built with `edge::js::build`) against the Rust
//! one, both pooled: the per-request price of JavaScript.
//!
//! `cargo bench -p edge-benches --bench instantiate` (unset `RUST_BACKTRACE` first: with
//! it set, wasmtime captures a backtrace on every store drop).
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use edge::engine::{Allocator, EdgeEngine};
use edge::router::Router;
use edge::server::Server;
use http_body_util::BodyExt;

mod support;
use support::{get, hello_wasm, load, loader};

/// The `edge` binary's allocator (see `edge::alloc`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_request(c: &mut Criterion) {
    let wasm = std::fs::read(hello_wasm()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("hello-request");
    for (label, allocator) in [
        ("pooling", Allocator::Pooling),
        ("on-demand", Allocator::OnDemand),
    ] {
        let engine = EdgeEngine::new(allocator, 64).unwrap();
        let _ticker = engine.start_epoch_ticker();
        let app = load(&rt, &loader(&engine, None), "hello", wasm.clone());
        let server = Server::new(64, Default::default(), Router::new([app.into()]));
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let resp = server.respond(get("hello")).await;
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }
    group.finish();
}

fn bench_js_vs_rust(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = EdgeEngine::new(Allocator::Pooling, 64).unwrap();
    let _ticker = engine.start_epoch_ticker();
    let loader = loader(&engine, None);
    let hello_js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/js/hello.js");
    let source = std::fs::read(hello_js).unwrap();
    let js = edge::js::build(&source, "hello.js", None, Default::default())
        .expect("building the JS hello (needs `bash sdk-js/setup.sh`)")
        .component;
    let rust = std::fs::read(hello_wasm()).unwrap();
    let apps =
        [("rust", rust), ("js", js)].map(|(name, bytes)| load(&rt, &loader, name, bytes).into());
    let server = Server::new(64, Default::default(), Router::new(apps));
    let mut group = c.benchmark_group("hello-request-by-language");
    for name in ["rust", "js"] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let resp = server.respond(get(name)).await;
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_request, bench_js_vs_rust);
criterion_main!(benches);
