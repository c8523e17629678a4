//! Runs N hello requests in process, the way the `instantiate` bench does, for a profiler
//! to count: `benches/callgrind.sh` runs it under `valgrind --tool=callgrind` at two values
//! of N and takes the difference, so start-up and loading drop out and what is left is
//! the instructions of N requests.
//!
//!   cargo run --release -p edge-benches --example requests -- 1000 [pooling|on-demand] [APP.wasm]
//!
//! APP.wasm is another component to serve instead of the hello example (the JS hello, built
//! with `edge build examples/js/hello.js`, to count the JavaScript request).
#![allow(missing_docs)]

use edge::engine::{Allocator, EdgeEngine};
use edge::router::Router;
use edge::server::Server;
use http_body_util::BodyExt;

#[path = "../benches/support/mod.rs"]
mod support;

/// The `edge` binary's allocator (see `edge::alloc`), so the count is the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    edge::alloc::configure();
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse().expect("N: a number of requests"))
        .unwrap_or(1000);
    let allocator = match args.next().as_deref() {
        None | Some("pooling") => Allocator::Pooling,
        Some("on-demand") => Allocator::OnDemand,
        Some(other) => panic!("allocator `{other}`: pooling or on-demand"),
    };
    let wasm = match args.next() {
        Some(path) => std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        None => std::fs::read(support::hello_wasm()).unwrap(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = EdgeEngine::new(allocator, 16).unwrap();
    let _ticker = engine.start_epoch_ticker();
    // Compiled once, then loaded: a profile of two runs must not differ by a compile.
    let cache = edge::compile::Cache::open(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/requests-cache"),
        &engine.engine,
    )
    .unwrap();
    let app = support::load(&rt, &support::loader(&engine, Some(cache)), "hello", wasm);
    let server = Server::new(16, Default::default(), Router::new([app.into()]));
    rt.block_on(async {
        for _ in 0..n {
            let resp = server.respond(support::get("hello")).await;
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap();
        }
    });
    println!("{n} requests");
}
