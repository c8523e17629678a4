//! A visit counter on the app's key-value store (`wasi:keyvalue`), with a manifest that
//! declares it (examples/apps/visits.toml):
//!
//! - `GET /any/path`: counts the visit atomically and answers `visit N of /any/path`;
//! - `GET /stats`: every path's count as JSON, read with one batch call per page.
//!
//! Counters are `atomics.increment`, so concurrent requests on any number of threads never
//! lose a visit; edge stores them as decimal text, so `edge kv get visits default /` reads
//! them too.

use wstd::http::{Body, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    inline: "package edge:examples;
        world visits {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasi:keyvalue/batch@0.2.0-draft;
        }",
    path: "../../runtime/wit/keyvalue",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp
}

fn failure(e: store::Error) -> Response<Body> {
    let why = match e {
        store::Error::NoSuchStore => "no store `default`: declare it in visits.toml".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    };
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the visit counter is unavailable: {why}\n"),
    )
}

/// `{"path": count, …}` over every key of the store.
fn stats(bucket: &store::Bucket) -> Result<String, store::Error> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor)?;
        for entry in batch::get_many(bucket, &page.keys)?.into_iter().flatten() {
            let (path, count) = entry;
            let count = String::from_utf8_lossy(&count).into_owned();
            out.push(format!("{path:?}: {count}"));
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(format!("{{{}}}\n", out.join(", ")))
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    let bucket = match store::open("default") {
        Ok(b) => b,
        Err(e) => return Ok(failure(e)),
    };
    if path == "/stats" {
        return Ok(match stats(&bucket) {
            Ok(json) => {
                let mut resp = text(StatusCode::OK, json);
                resp.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                resp
            }
            Err(e) => failure(e),
        });
    }
    Ok(match atomics::increment(&bucket, &path, 1) {
        Ok(n) => text(StatusCode::OK, format!("visit {n} of {path}\n")),
        Err(e) => failure(e),
    })
}
