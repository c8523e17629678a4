//! `native --app api`: the stand-in target for scenario examples and tests, so they run
//! against loopback with nothing from the internet. Stateful (one process), which is why
//! it is native only:
//!
//! | route | what |
//! |---|---|
//! | `POST /api/login` `{"user","password"}` | `200 {"token"}` and a `session` cookie when the password is `secret`, else 401 |
//! | `GET /api/items`, `POST /api/items` `{"name", …}` | list, create (`201` with the item and its `id`); bearer token required (401) |
//! | `GET`, `PUT`, `DELETE /api/items/ID` | read, replace, delete (404 when absent) |
//! | `GET /redirect/N` | `302` to `/redirect/N-1`; `/redirect/0` answers `200 done` |
//! | `GET /cookies/set?name=value&…` | sets those cookies, then `302` to `/cookies` |
//! | `GET /cookies/raw?h=VALUE&…` | `200` with each `h` (percent-encoded) as a `Set-Cookie` header, attributes and all |
//! | `GET /cookies`, `GET /cookies/ANY/PATH` | the cookies the client sent, as a JSON object |
//! | `GET /delay/MS` | answers after MS milliseconds (at most 10 000) |
//! | anything else | the `site` example: static pages and assets with ETags |

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

/// The API's state: tokens issued and items stored.
#[derive(Default)]
pub(crate) struct Api {
    tokens: Mutex<Vec<String>>,
    items: Mutex<BTreeMap<u64, Value>>,
    next: AtomicU64,
}

/// An answer: status, headers, body.
pub(crate) type Answer = (StatusCode, Vec<(&'static str, String)>, Bytes);

fn json_answer(status: StatusCode, v: &Value) -> Answer {
    (
        status,
        vec![("content-type", "application/json".into())],
        Bytes::from(v.to_string()),
    )
}

fn error(status: StatusCode, message: &str) -> Answer {
    json_answer(status, &json!({ "error": message }))
}

impl Api {
    /// Handles one request; `None` leaves it to the `site` example.
    pub(crate) async fn handle(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Answer> {
        if let Some(ms) = path.strip_prefix("/delay/") {
            let ms: u64 = ms.parse().unwrap_or(0).min(10_000);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            return Some(json_answer(StatusCode::OK, &json!({ "delayed_ms": ms })));
        }
        if let Some(n) = path.strip_prefix("/redirect/") {
            let n: u64 = n.parse().unwrap_or(0);
            return Some(if n == 0 {
                (
                    StatusCode::OK,
                    vec![("content-type", "text/plain".into())],
                    Bytes::from_static(b"done\n"),
                )
            } else {
                (
                    StatusCode::FOUND,
                    vec![("location", format!("/redirect/{}", n - 1))],
                    Bytes::new(),
                )
            });
        }
        if path == "/cookies/set" {
            let mut h = vec![("location", "/cookies".to_owned())];
            for pair in query.split('&').filter(|p| p.contains('=')) {
                h.push(("set-cookie", format!("{pair}; Path=/")));
            }
            return Some((StatusCode::FOUND, h, Bytes::new()));
        }
        if path == "/cookies/raw" {
            // Each `h` is a Set-Cookie value, sent as it is (attributes and all).
            let h = query
                .split('&')
                .filter_map(|p| p.strip_prefix("h="))
                .map(|v| ("set-cookie", percent_decode(v)))
                .collect();
            return Some((StatusCode::OK, h, Bytes::from_static(b"ok\n")));
        }
        if path == "/cookies" || path.starts_with("/cookies/") {
            let mut jar = serde_json::Map::new();
            for value in headers.get_all("cookie") {
                for pair in value.to_str().unwrap_or("").split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=') {
                        jar.insert(k.to_owned(), Value::String(v.to_owned()));
                    }
                }
            }
            return Some(json_answer(StatusCode::OK, &Value::Object(jar)));
        }
        if path == "/api/login" {
            if method != Method::POST {
                return Some(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST your credentials",
                ));
            }
            let creds: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if creds["password"] != "secret" || !creds["user"].is_string() {
                return Some(error(StatusCode::UNAUTHORIZED, "wrong user or password"));
            }
            let token = format!("t{}", self.next.fetch_add(1, Relaxed));
            self.tokens.lock().expect("tokens").push(token.clone());
            let mut a = json_answer(StatusCode::OK, &json!({ "token": token }));
            a.1.push(("set-cookie", format!("session={token}; Path=/; HttpOnly")));
            return Some(a);
        }
        let rest = path.strip_prefix("/api/items")?;
        let authorized = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.tokens.lock().expect("tokens").iter().any(|k| k == t));
        if !authorized {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "log in first: Authorization: Bearer TOKEN",
            ));
        }
        let mut items = self.items.lock().expect("items");
        let id = rest.strip_prefix('/').map(|s| s.parse::<u64>());
        Some(match (method.clone(), id) {
            (Method::GET, None) => {
                json_answer(StatusCode::OK, &json!(items.values().collect::<Vec<_>>()))
            }
            (Method::POST, None) => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(mut item)) => {
                    let id = self.next.fetch_add(1, Relaxed);
                    item.insert("id".into(), json!(id));
                    let item = Value::Object(item);
                    items.insert(id, item.clone());
                    json_answer(StatusCode::CREATED, &item)
                }
                _ => error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
            },
            (_, Some(Err(_))) => error(StatusCode::NOT_FOUND, "no such item"),
            (Method::GET, Some(Ok(id))) => match items.get(&id) {
                Some(item) => json_answer(StatusCode::OK, item),
                None => error(StatusCode::NOT_FOUND, "no such item"),
            },
            (Method::PUT, Some(Ok(id))) => match (
                items.contains_key(&id),
                serde_json::from_slice::<Value>(body),
            ) {
                (false, _) => error(StatusCode::NOT_FOUND, "no such item"),
                (true, Ok(Value::Object(mut item))) => {
                    item.insert("id".into(), json!(id));
                    let item = Value::Object(item);
                    items.insert(id, item.clone());
                    json_answer(StatusCode::OK, &item)
                }
                (true, _) => error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
            },
            (Method::DELETE, Some(Ok(id))) => match items.remove(&id) {
                Some(_) => (StatusCode::NO_CONTENT, Vec::new(), Bytes::new()),
                None => error(StatusCode::NOT_FOUND, "no such item"),
            },
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "not a method of this route"),
        })
    }
}

/// Decodes `%XX` escapes and `+` (a query value), keeping anything malformed as it is.
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
