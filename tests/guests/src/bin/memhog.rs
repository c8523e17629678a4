//! On `/hog?mib=N` allocates and touches N MiB (default 1024); answers `ok` elsewhere.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.uri().path() == "/hog" {
        let mib: usize = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("mib="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let mut chunks = Vec::new();
        for _ in 0..mib {
            chunks.push(vec![1u8; 1 << 20]);
        }
        let total: usize = chunks.iter().map(|c| c[c.len() - 1] as usize).sum();
        return Ok(Response::new(format!("allocated {total} MiB").into()));
    }
    Ok(Response::new("ok".into()))
}
