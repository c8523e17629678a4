//! `fetch()`'s native half: one outbound request through `wasi:http/outgoing-handler`,
//! which the host allows or denies by the app's allow-list.
//!
//! Each instance serves one request, so the call blocks: the JS side wraps it in a promise.

use crate::{fields_from_flat, write_all};
use rquickjs::function::Opt;
use rquickjs::{Array, Ctx, Exception, Object, TypedArray};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// `fetch(method, scheme, authority, pathWithQuery, headers, body?)` → `{ status, headers,
/// body }`, headers flattened as `[name, value, …]`. Throws `TypeError` on a network error
/// or a denied destination, as `fetch` rejects.
pub fn native_fetch<'js>(
    ctx: Ctx<'js>,
    method: String,
    scheme: String,
    authority: String,
    path: String,
    headers: Vec<String>,
    body: Opt<TypedArray<'js, u8>>,
) -> rquickjs::Result<Object<'js>> {
    // SAFETY: copied before any JavaScript runs.
    let body = body
        .0
        .map(|b| unsafe { b.as_bytes() }.unwrap_or_default().to_vec());
    let (status, headers, body) = send(method, scheme, authority, path, &headers, body, None)
        .map_err(|message| Exception::throw_type(&ctx, &format!("fetch failed: {message}")))?;
    reply_object(&ctx, status, headers, body)
}

/// `{ status, headers, body }` for JavaScript, headers flattened as `[name, value, …]`.
pub(crate) fn reply_object<'js>(
    ctx: &Ctx<'js>,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> rquickjs::Result<Object<'js>> {
    let result = Object::new(ctx.clone())?;
    result.set("status", status)?;
    let flat = Array::new(ctx.clone())?;
    for (i, (name, value)) in headers.into_iter().enumerate() {
        flat.set(2 * i, name)?;
        flat.set(2 * i + 1, String::from_utf8_lossy(&value).into_owned())?;
    }
    result.set("headers", flat)?;
    result.set("body", TypedArray::new(ctx.clone(), body)?)?;
    Ok(result)
}

/// Status, headers and body of a response.
pub(crate) type Reply = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

/// Sends one request and reads the whole response; `timeout_ns` bounds the wait for the
/// response's first byte.
pub(crate) fn send(
    method: String,
    scheme: String,
    authority: String,
    path: String,
    headers: &[String],
    body: Option<Vec<u8>>,
    timeout_ns: Option<u64>,
) -> Result<Reply, String> {
    let request = OutgoingRequest::new(fields_from_flat(headers)?);
    let method = match method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        "TRACE" => Method::Trace,
        "CONNECT" => Method::Connect,
        _ => Method::Other(method),
    };
    let scheme = match scheme.as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("unsupported scheme `{other}`")),
    };
    request
        .set_method(&method)
        .map_err(|()| String::from("invalid method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| String::from("invalid scheme"))?;
    request
        .set_authority(Some(&authority))
        .map_err(|()| format!("invalid host `{authority}`"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| format!("invalid path `{path}`"))?;
    let outgoing_body = request.body().expect("a new request's body is available");
    let options = timeout_ns.map(|ns| {
        let o = wasip2::http::types::RequestOptions::new();
        let _ = o.set_first_byte_timeout(Some(ns));
        o
    });
    let pending = outgoing_handler::handle(request, options).map_err(|e| format!("{e:?}"))?;
    {
        let stream = outgoing_body
            .write()
            .expect("a new body's stream is available");
        if let Some(body) = body {
            write_all(&stream, &body);
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .expect("ready after the pollable fired")
        .map_err(|()| String::from("response already taken"))?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| String::from("response body already taken"))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| String::from("response body stream already taken"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!(
                        "reading the response failed: {}",
                        e.to_debug_string()
                    ));
                }
            }
        }
    }
    drop(incoming);
    Ok((status, headers, bytes))
}
