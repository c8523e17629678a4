//! What a deploy costs before the first request: compiling the hello component with
//! Cranelift or with Winch (the baseline tier) on a cache miss, against loading it from
//! edge's compile cache (a hit).
//!
//! `cargo bench -p edge-benches --bench compile`
#![allow(missing_docs)]

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use edge::compile::Cache;
use edge::engine::{Allocator, EdgeEngine};
use wasmtime::component::Component;

fn bench_compile(c: &mut Criterion) {
    let bytes = std::fs::read(support::hello_wasm()).unwrap();
    let engine = EdgeEngine::new(Allocator::OnDemand, 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), &engine.engine).unwrap();
    let component = Component::new(&engine.engine, &bytes).unwrap();
    cache.store("hello", &component).unwrap();
    let mut group = c.benchmark_group("hello-compile");
    group.sample_size(10);
    group.bench_function("cranelift (cache miss)", |b| {
        b.iter(|| Component::new(&engine.engine, &bytes).unwrap())
    });
    let winch = EdgeEngine::baseline().unwrap();
    group.bench_function("winch (baseline tier)", |b| {
        b.iter(|| Component::new(&winch.engine, &bytes).unwrap())
    });
    group.bench_function("cache hit", |b| {
        b.iter(|| cache.load(&engine.engine, "hello").expect("a cache entry"))
    });
    group.finish();
}

criterion_group!(benches, bench_compile);
criterion_main!(benches);
