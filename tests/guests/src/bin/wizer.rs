//! Exports `wizer-initialize`, which does expensive set-up once. The handler reports how
//! many times set-up ran in this instance's memory: `1` when the server pre-initialized
//! the component (the snapshot carries the result), `0` when it did not — and the
//! `GREETING` environment variable as set-up saw it, if it was set: the snapshot belongs
//! to the app whose manifest gave it.

use std::sync::atomic::{AtomicU32, Ordering};
use wstd::http::{Body, Error, Request, Response};

wit_bindgen::generate!({
    inline: "package edge:test; world init { export wizer-initialize: func(); }",
});

static INIT_RUNS: AtomicU32 = AtomicU32::new(0);
static TABLE_SUM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static GREETING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

struct Init;

impl Guest for Init {
    fn wizer_initialize() {
        let sum: u64 = (1..=1000u64).map(|i| i * i).sum();
        TABLE_SUM.store(sum, Ordering::SeqCst);
        INIT_RUNS.fetch_add(1, Ordering::SeqCst);
        if let Ok(greeting) = std::env::var("GREETING") {
            let _ = GREETING.set(greeting);
        }
    }
}

export!(Init);

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let runs = INIT_RUNS.load(Ordering::SeqCst);
    let sum = TABLE_SUM.load(Ordering::SeqCst);
    let greeting = GREETING
        .get()
        .map(|g| format!(" greeting={g}"))
        .unwrap_or_default();
    Ok(Response::new(
        format!("init-runs={runs} sum={sum}{greeting}").into(),
    ))
}
