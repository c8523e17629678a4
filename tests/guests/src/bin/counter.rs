//! Increments a static counter on every request and answers with its value. On a server
//! that gives each request a fresh instance the answer is always `1`.

use std::sync::atomic::{AtomicU64, Ordering};
use wstd::http::{Body, Error, Request, Response};

static COUNT: AtomicU64 = AtomicU64::new(0);

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Response::new(format!("{n}").into()))
}
