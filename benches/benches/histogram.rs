//! loadrig's per-request recording cost: one response into every phase histogram and the
//! timeline, against a single raw HdrHistogram record; and merging two workers' results.
//!
//! `cargo bench -p edge-benches --bench histogram`
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use loadrig::record::{Results, Sample};

fn sample(i: u64) -> Sample {
    let t = i * 20_000;
    Sample {
        intended: t,
        ready: t,
        connecting: 0,
        started: t + 300,
        sent: t + 2_000,
        first_byte: t + 40_000 + (i % 97) * 300,
        ended: t + 42_000 + (i % 97) * 300,
        status: 200,
    }
}

fn bench_recording(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let mut results = Results::default();
    let mut i = 0u64;
    group.bench_function("one response (8 trends + timeline)", |b| {
        b.iter(|| {
            i += 1;
            results.record_response(black_box(&sample(i)));
        })
    });
    let mut raw = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    group.bench_function("one raw hdrhistogram record", |b| {
        b.iter(|| raw.saturating_record(black_box(i % 50_000)))
    });
    let (mut a, mut other) = (Results::default(), Results::default());
    for i in 0..100_000 {
        a.record_response(&sample(i));
        other.record_response(&sample(i + 7));
    }
    a.seal();
    other.seal();
    group.bench_function("merge two workers' results", |b| {
        b.iter(|| {
            let mut m = a.clone();
            m.merge(black_box(&other));
            m
        })
    });
    group.finish();
}

criterion_group!(benches, bench_recording);
criterion_main!(benches);
