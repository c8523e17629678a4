//! Spins forever on `/spin` without ever yielding; answers `ok` elsewhere.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.uri().path() == "/spin" {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    Ok(Response::new("ok".into()))
}
