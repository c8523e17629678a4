//! Writes one stderr line in three writes, each through a new `get-stderr` handle (as
//! Rust's std and wstd do), then a line that never gets its newline; answers `ok`.

use wasip2::cli::stderr::get_stderr;
use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    for part in [
        &b"one line "[..],
        b"in three ",
        b"writes\n",
        b"no newline at the end",
    ] {
        let _ = get_stderr().blocking_write_and_flush(part);
    }
    Ok(Response::new("ok".into()))
}
