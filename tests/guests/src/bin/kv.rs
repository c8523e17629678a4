//! Drives `wasi:keyvalue` and `wasi:config` from HTTP, one route per operation, so the
//! end-to-end tests exercise the host through a real component:
//!
//! | route | does |
//! |---|---|
//! | `GET/PUT/DELETE /kv/STORE/KEY` | get (404 if absent), set (body), delete |
//! | `GET /exists/STORE/KEY` | `true` or `false` |
//! | `GET /list/STORE[?cursor=N]` | the page's keys, one per line, then `cursor=N` or `cursor=` |
//! | `POST /incr/STORE/KEY?by=N` | the counter's new value |
//! | `POST /set-many/STORE` | body lines `key=value` |
//! | `GET /get-many/STORE?keys=a,b` | lines `key=value` or `key!` when absent |
//! | `POST /delete-many/STORE?keys=a,b` | |
//! | `POST /flood/STORE` | sets keys until the store refuses one; the error |
//! | `GET /config/KEY`, `GET /config` | one value (404 if absent), or every `key=value` |
//! | `GET /init` | what `wizer-initialize` got when it tried to open a store and read config |
//!
//! A store error answers 500 with the error (`no-such-store`, or the host's message).

use std::sync::OnceLock;
use wstd::http::{Body, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    inline: "package edge:test;
        world kv {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasi:keyvalue/batch@0.2.0-draft;
            import wasi:config/store@0.2.0-draft;
            export wizer-initialize: func();
        }",
    path: ["../../runtime/wit/keyvalue", "../../runtime/wit/config"],
    generate_all,
});

use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store};

static AT_INIT: OnceLock<String> = OnceLock::new();

struct Init;

impl Guest for Init {
    fn wizer_initialize() {
        let open = store::open("default").err().map(|e| describe(&e));
        let config = config::get("greeting").err().map(|e| format!("{e:?}"));
        let _ = AT_INIT.set(format!("open: {open:?}\nconfig: {config:?}"));
    }
}

export!(Init);

fn describe(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(m) => m.clone(),
    }
}

fn reply(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(body.into().into());
    *resp.status_mut() = status;
    resp
}

fn query<'a>(req: &'a Request<Body>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[wstd::http_server]
async fn main(mut req: Request<Body>) -> Result<Response<Body>, Error> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    let body = req.body_mut().contents().await?.to_vec();
    Ok(route(&req, &parts, body)
        .unwrap_or_else(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, describe(&e))))
}

fn route(
    req: &Request<Body>,
    parts: &[&str],
    body: Vec<u8>,
) -> Result<Response<Body>, store::Error> {
    let method = req.method().as_str();
    let ok = |s: String| Ok(reply(StatusCode::OK, s));
    match (method, parts) {
        ("GET", ["init"]) => ok(AT_INIT
            .get()
            .cloned()
            .unwrap_or_else(|| "init did not run".into())),
        ("GET", ["config"]) => match config::get_all() {
            Ok(all) => ok(all.iter().map(|(k, v)| format!("{k}={v}\n")).collect()),
            Err(e) => Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))),
        },
        ("GET", ["config", key]) => match config::get(key) {
            Ok(Some(v)) => ok(v),
            Ok(None) => Ok(reply(StatusCode::NOT_FOUND, "no such config key")),
            Err(e) => Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))),
        },
        (_, [op, name, rest @ ..]) => {
            let bucket = store::open(name)?;
            let key = rest.first().copied().unwrap_or("");
            match (method, *op) {
                ("GET", "kv") => match bucket.get(key)? {
                    Some(v) => Ok(Response::new(v.into())),
                    None => Ok(reply(StatusCode::NOT_FOUND, "absent")),
                },
                ("PUT", "kv") => bucket
                    .set(key, &body)
                    .map(|()| reply(StatusCode::OK, "set")),
                ("DELETE", "kv") => bucket
                    .delete(key)
                    .map(|()| reply(StatusCode::OK, "deleted")),
                ("GET", "exists") => ok(bucket.exists(key)?.to_string()),
                ("GET", "list") => {
                    let cursor = query(req, "cursor").and_then(|c| c.parse().ok());
                    let page = bucket.list_keys(cursor)?;
                    let mut out: String = page.keys.iter().map(|k| format!("{k}\n")).collect();
                    out += &format!(
                        "cursor={}",
                        page.cursor.map(|c| c.to_string()).unwrap_or_default()
                    );
                    ok(out)
                }
                ("POST", "incr") => {
                    let by = query(req, "by").and_then(|b| b.parse().ok()).unwrap_or(1);
                    ok(atomics::increment(&bucket, key, by)?.to_string())
                }
                ("POST", "set-many") => {
                    let text = String::from_utf8_lossy(&body);
                    let pairs: Vec<(String, Vec<u8>)> = text
                        .lines()
                        .filter_map(|l| l.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                        .collect();
                    batch::set_many(&bucket, &pairs).map(|()| reply(StatusCode::OK, "set"))
                }
                ("GET", "get-many") => {
                    let keys: Vec<String> = query(req, "keys")
                        .unwrap_or("")
                        .split(',')
                        .map(str::to_string)
                        .collect();
                    let got = batch::get_many(&bucket, &keys)?;
                    ok(keys
                        .iter()
                        .zip(got)
                        .map(|(k, v)| match v {
                            Some((_, v)) => format!("{k}={}\n", String::from_utf8_lossy(&v)),
                            None => format!("{k}!\n"),
                        })
                        .collect())
                }
                ("POST", "delete-many") => {
                    let keys: Vec<String> = query(req, "keys")
                        .unwrap_or("")
                        .split(',')
                        .map(str::to_string)
                        .collect();
                    batch::delete_many(&bucket, &keys).map(|()| reply(StatusCode::OK, "deleted"))
                }
                ("POST", "flood") => {
                    let value = vec![b'x'; 1000];
                    for i in 0u64.. {
                        if let Err(e) = bucket.set(&format!("flood-{i}"), &value) {
                            return ok(format!("refused after {i}: {}", describe(&e)));
                        }
                    }
                    unreachable!()
                }
                _ => Ok(reply(StatusCode::NOT_FOUND, "no such route")),
            }
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "no such route")),
    }
}
