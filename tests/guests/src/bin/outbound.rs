//! Fetches the URL given as `?url=...` and answers with the upstream status and body, or
//! with `error: ...` and status 502 when the call fails.

use wstd::http::{Body, Client, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let url = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("url="))
        .unwrap_or("http://127.0.0.1:9/")
        .to_string();
    let upstream = Request::get(url.as_str()).body(Body::empty())?;
    match Client::new().send(upstream).await {
        Ok(mut resp) => {
            let status = resp.status();
            let body = resp.body_mut().str_contents().await?.to_string();
            Ok(Response::new(format!("upstream {status}: {body}").into()))
        }
        Err(e) => Ok(Response::builder()
            .status(502)
            .body(format!("error: {e:?}").into())?),
    }
}
