//! Routing one request among 1000 apps: by the first Host label, by an exact host from a
//! manifest, by a path prefix, and a miss.
//!
//! `cargo bench -p edge-benches --bench routing`
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use edge::router::{Routable, Router};

struct App {
    name: String,
    hosts: Vec<String>,
    paths: Vec<String>,
}

impl Routable for App {
    fn name(&self) -> &str {
        &self.name
    }
    fn hosts(&self) -> &[String] {
        &self.hosts
    }
    fn paths(&self) -> &[String] {
        &self.paths
    }
}

fn bench_routing(c: &mut Criterion) {
    let apps = (0..1000).map(|i| {
        Arc::new(App {
            name: format!("app-{i:04}"),
            hosts: vec![format!("www.customer-{i}.example")],
            paths: vec![format!("/api/v{i}")],
        })
    });
    let router = Router::new(apps);
    let mut group = c.benchmark_group("route-1000-apps");
    for (label, host, path) in [
        ("host label", "app-0500.localhost:8080", "/"),
        ("exact host", "www.customer-500.example", "/"),
        ("path prefix", "127.0.0.1:8080", "/api/v500/users"),
        ("miss", "nobody.localhost", "/"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| router.route(black_box(host), black_box(path)).is_some())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
