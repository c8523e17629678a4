//! `hello`: answers every request with a short greeting.
//!
//! Build: `cargo build --release` in this directory (the target is set in
//! `.cargo/config.toml`); the component lands in
//! `target/wasm/wasm32-wasip2/release/hello.wasm` at the repository root. The same logic
//! runs natively in `examples/native`.

mod app;

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .header("content-type", app::CONTENT_TYPE)
        .body(app::BODY.into())?)
}
