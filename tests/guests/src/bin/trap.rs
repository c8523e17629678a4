//! Traps on `/trap` (a Rust panic aborts the instance); answers `ok` elsewhere.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.uri().path() == "/trap" {
        panic!("the guest was asked to trap");
    }
    Ok(Response::new("ok".into()))
}
