//! Sleeps for `?ms=N` milliseconds (default 1000) without using the CPU, then answers
//! `slept N`. For graceful-shutdown and concurrency tests.

use std::time::Duration;
use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let ms: u64 = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    wstd::task::sleep(Duration::from_millis(ms).into()).await;
    Ok(Response::new(format!("slept {ms}").into()))
}
