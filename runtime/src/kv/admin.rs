//! The admin API's state endpoints: operators inspect and seed apps' stores and manage
//! their secrets. Secret values go in and are never sent back, logged or listed.
//!
//! | method and path | does | success |
//! |---|---|---|
//! | `GET /apps/NAME/secrets` | the app's secret names | 200 `{"app", "secrets": [names]}` |
//! | `PUT /apps/NAME/secrets/KEY` | sets a secret; the body is its value (UTF-8) | 200 |
//! | `DELETE /apps/NAME/secrets/KEY` | removes it | 200, or 404 |
//! | `GET /apps/NAME/kv/STORE[?cursor=N]` | one page of keys | 200 `{"keys", "cursor"}` |
//! | `GET /apps/NAME/kv/STORE/KEY` | a value | 200 `{"key", "value"}` (`"base64"` instead when not UTF-8), or 404 |
//! | `PUT /apps/NAME/kv/STORE/KEY` | sets it to the body | 200 |
//! | `DELETE /apps/NAME/kv/STORE/KEY` | deletes it | 200 |
//!
//! `KEY` is percent-encoded. The store must be one the live app declares, and its limits
//! apply as they do to the guest.

use super::{KvError, MAX_SECRET_SIZE, check_secret_name};
use crate::app::check_name;
use crate::control::Control;
use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// The answer to a state request: a status and a JSON body.
pub type Reply = (StatusCode, Value);

fn err(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    (status, json!({ "error": message.to_string() }))
}

fn kv_err(e: KvError) -> Reply {
    let status = match &e {
        KvError::NoSuchStore(_) => StatusCode::NOT_FOUND,
        KvError::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
        KvError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        KvError::Unavailable(_) | KvError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    err(status, e)
}

fn decode(segment: &str) -> Result<String, Reply> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "the key is not UTF-8 once percent-decoded",
            )
        })
}

/// Whether `segments` (the path after `/`) is a state endpoint.
pub fn matches(segments: &[&str]) -> bool {
    matches!(segments, ["apps", _, "secrets" | "kv", ..])
}

/// Answers a state endpoint. `segments` is the path split on `/` (not yet decoded).
pub fn respond(
    control: &Control,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> Reply {
    let ["apps", app, kind, rest @ ..] = segments else {
        return err(StatusCode::NOT_FOUND, "no such state endpoint");
    };
    if let Err(e) = check_name(app) {
        return err(StatusCode::BAD_REQUEST, e);
    }
    let result = match *kind {
        "secrets" => secrets(control, method, app, rest, body),
        _ => kv(control, method, app, rest, query, body),
    };
    result.unwrap_or_else(|reply| reply)
}

fn secrets(
    control: &Control,
    method: &Method,
    app: &str,
    rest: &[&str],
    body: &[u8],
) -> Result<Reply, Reply> {
    let backend = control
        .state()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "this server has no state database"))?;
    match (method, rest) {
        (&Method::GET, []) => {
            let names: Vec<String> = backend
                .secrets(app)
                .map_err(kv_err)?
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            Ok((StatusCode::OK, json!({ "app": app, "secrets": names })))
        }
        (&Method::PUT, [name]) => {
            let name = decode(name)?;
            check_secret_name(&name).map_err(kv_err)?;
            if body.len() > MAX_SECRET_SIZE {
                return Err(err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a secret may hold up to {MAX_SECRET_SIZE} bytes"),
                ));
            }
            let value = std::str::from_utf8(body).map_err(|_| {
                err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "a secret's value must be UTF-8 text (wasi:config carries strings)",
                )
            })?;
            backend.secret_set(app, &name, value).map_err(kv_err)?;
            tracing::info!(app = %app, "secret `{name}` set");
            Ok((StatusCode::OK, json!({ "app": app, "secret": name })))
        }
        (&Method::DELETE, [name]) => {
            let name = decode(name)?;
            if !backend.secret_delete(app, &name).map_err(kv_err)? {
                return Err(err(
                    StatusCode::NOT_FOUND,
                    format!("app `{app}` has no secret `{name}`"),
                ));
            }
            tracing::info!(app = %app, "secret `{name}` deleted");
            Ok((StatusCode::OK, json!({ "app": app, "deleted": name })))
        }
        _ => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /apps/NAME/secrets, or PUT or DELETE /apps/NAME/secrets/KEY",
        )),
    }
}

fn kv(
    control: &Control,
    method: &Method,
    app: &str,
    rest: &[&str],
    query: &str,
    body: &[u8],
) -> Result<Reply, Reply> {
    let state = control
        .app_state(app)
        .map_err(|e| err(StatusCode::NOT_FOUND, e))?;
    let [store, key @ ..] = rest else {
        return Err(err(StatusCode::NOT_FOUND, "use /apps/NAME/kv/STORE[/KEY]"));
    };
    let store = state.open(store).map_err(kv_err)?.to_string();
    let key = match key {
        [] => None,
        parts => Some(decode(&parts.join("/"))?),
    };
    match (method, key) {
        (&Method::GET, None) => {
            let cursor = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor="))
                .filter(|c| !c.is_empty())
                .map(|c| {
                    c.parse::<u64>()
                        .map_err(|_| err(StatusCode::BAD_REQUEST, "cursor must be a number"))
                })
                .transpose()?;
            let (keys, cursor) = state.list(&store, cursor).map_err(kv_err)?;
            Ok((StatusCode::OK, json!({ "keys": keys, "cursor": cursor })))
        }
        (&Method::GET, Some(key)) => match state.get(&store, &key).map_err(kv_err)? {
            Some(value) => Ok((
                StatusCode::OK,
                match String::from_utf8(value) {
                    Ok(text) => json!({ "key": key, "value": text }),
                    Err(e) => json!({
                        "key": key,
                        "base64": base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    }),
                },
            )),
            None => Err(err(
                StatusCode::NOT_FOUND,
                format!("no key `{key}` in store `{store}` of `{app}`"),
            )),
        },
        (&Method::PUT, Some(key)) => {
            state.set(&store, &key, body).map_err(kv_err)?;
            Ok((StatusCode::OK, json!({ "key": key, "set": body.len() })))
        }
        (&Method::DELETE, Some(key)) => {
            state.delete(&store, &key).map_err(kv_err)?;
            Ok((StatusCode::OK, json!({ "deleted": key })))
        }
        _ => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /apps/NAME/kv/STORE, or GET, PUT or DELETE /apps/NAME/kv/STORE/KEY",
        )),
    }
}

/// Percent-encodes a key for a path segment.
pub fn encode_key(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The value a `GET /apps/NAME/kv/STORE/KEY` reply carries, as bytes.
pub fn reply_value(reply: &Value) -> anyhow::Result<Vec<u8>> {
    if let Some(text) = reply["value"].as_str() {
        return Ok(text.as_bytes().to_vec());
    }
    let b64 = reply["base64"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the server's reply holds no value"))?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}
