//! The example apps' logic, shared by both builds: each `src/bin/*.rs` wraps a handler in a
//! `wasi:http` component (wstd), and `examples/native` serves the very same handlers with
//! hyper. Only the entry points differ, so `loadrig compare native wasm` measures the
//! platform, not two implementations.

use std::borrow::Cow;

pub mod hello;
pub mod markdown;
pub mod site;

/// What a handler sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The `If-None-Match` header, if any.
    pub if_none_match: Option<&'a str>,
    /// The whole body.
    pub body: &'a [u8],
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// The body.
    pub body: Cow<'static, [u8]>,
}

impl Reply {
    /// A reply with a body and its content type.
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        Reply {
            status,
            headers: vec![("content-type", Cow::Borrowed(content_type))],
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The handler of each example, by name.
pub fn handler(app: &str) -> Option<fn(&Request<'_>) -> Reply> {
    match app {
        "hello" => Some(hello::handle),
        "site" => Some(site::handle),
        "markdown" => Some(markdown::handle),
        _ => None,
    }
}

/// The example names.
pub const APPS: [&str; 3] = ["hello", "site", "markdown"];

/// The largest request body any example reads.
pub const MAX_BODY: usize = 1 << 20;

/// The wasm entry point every `src/bin/*.rs` uses: reads the request, runs `handle`,
/// writes the reply.
#[cfg(target_arch = "wasm32")]
pub async fn serve(
    mut request: wstd::http::Request<wstd::http::Body>,
    handle: fn(&Request<'_>) -> Reply,
) -> Result<wstd::http::Response<wstd::http::Body>, wstd::http::Error> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let if_none_match = request
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let too_long = request
        .body()
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64);
    let body = if too_long || method == "GET" || method == "HEAD" {
        Vec::new()
    } else {
        request.body_mut().contents().await?.to_vec()
    };
    let reply = if too_long || body.len() > MAX_BODY {
        Reply::new(
            413,
            "text/plain; charset=utf-8",
            &b"request body too large\n"[..],
        )
    } else {
        handle(&Request {
            method: &method,
            path: &path,
            if_none_match: if_none_match.as_deref(),
            body: &body,
        })
    };
    let mut response = wstd::http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value.as_ref());
    }
    let body: wstd::http::Body = match reply.body {
        Cow::Borrowed(b) => b.into(),
        Cow::Owned(b) => b.into(),
    };
    Ok(response.body(body)?)
}
