//! `wasi:keyvalue@0.2.0-draft2` from HTTP (the proposal's head, as Spin 3 guests import
//! it): signed counters, compare-and-swap, string cursors.
//!
//! | route | does |
//! |---|---|
//! | `GET /kv/STORE/KEY` | the value (404 if absent) |
//! | `POST /incr/STORE/KEY?by=N` | `increment` by N (may be negative); the new value |
//! | `POST /append/STORE/KEY?c=X` | appends X with a CAS loop; how many swaps failed first |
//! | `GET /list/STORE[?cursor=S]` | the page's keys, one per line, then `cursor=S` or `cursor=` |
//!
//! A store error answers 500 with the error.

use wstd::http::{Body, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    inline: "package edge:test;
        world kv2 {
            import wasi:keyvalue/store@0.2.0-draft2;
            import wasi:keyvalue/atomics@0.2.0-draft2;
        }",
    path: "../../runtime/wit/keyvalue-draft2",
    generate_all,
});

use wasi::keyvalue::{atomics, store};

fn reply(status: StatusCode, body: impl Into<Vec<u8>>) -> Response<Body> {
    let mut resp = Response::new(body.into().into());
    *resp.status_mut() = status;
    resp
}

fn describe(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(m) => m.clone(),
    }
}

fn query<'a>(req: &'a Request<Body>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    Ok(route(&req, &parts)
        .unwrap_or_else(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, describe(&e))))
}

fn route(req: &Request<Body>, parts: &[&str]) -> Result<Response<Body>, store::Error> {
    let [op, name, rest @ ..] = parts else {
        return Ok(reply(StatusCode::NOT_FOUND, "no such route"));
    };
    let bucket = store::open(name)?;
    let key = rest.first().copied().unwrap_or("");
    let ok = |s: String| Ok(reply(StatusCode::OK, s));
    match (req.method().as_str(), *op) {
        ("GET", "kv") => match bucket.get(key)? {
            Some(v) => Ok(reply(StatusCode::OK, v)),
            None => Ok(reply(StatusCode::NOT_FOUND, "absent")),
        },
        ("POST", "incr") => {
            let by = query(req, "by").and_then(|b| b.parse().ok()).unwrap_or(1);
            ok(atomics::increment(&bucket, key, by)?.to_string())
        }
        ("POST", "append") => {
            let c = query(req, "c").unwrap_or("x").as_bytes().to_vec();
            let mut cas = atomics::Cas::new(&bucket, key)?;
            let mut failed = 0;
            loop {
                let mut value = cas.current()?.unwrap_or_default();
                value.extend_from_slice(&c);
                match atomics::swap(cas, &value) {
                    Ok(()) => return ok(failed.to_string()),
                    Err(atomics::CasError::CasFailed(fresh)) => {
                        failed += 1;
                        cas = fresh;
                    }
                    Err(atomics::CasError::StoreError(e)) => return Err(e),
                }
            }
        }
        ("GET", "list") => {
            let cursor = query(req, "cursor").map(str::to_string);
            let page = bucket.list_keys(cursor.as_deref())?;
            let mut out: String = page.keys.iter().map(|k| format!("{k}\n")).collect();
            out += &format!("cursor={}", page.cursor.unwrap_or_default());
            ok(out)
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "no such route")),
    }
}
