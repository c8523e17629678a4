//! wasi:http conformance: the incoming-request and response paths, exercised through the
//! raw `wasi:http/types` resources (no SDK in between), one route per behaviour:
//!
//! - `/echo`: streams the request body back as it arrives (a chunked response), then
//!   answers the request's trailers as the response's trailers, each name prefixed with
//!   `echo-`, and adds `echo-length` (the bytes it read) as a trailer too; its head
//!   announces them (`trailer:`), as HTTP/1.1 needs.
//! - `/stream?chunks=N&size=S&ms=D`: N chunks of S bytes (`0123…` repeating), flushed one
//!   by one, D milliseconds apart; no content-length, so the response is chunked.
//! - `/forever?ms=D`: writes a chunk every D milliseconds until the write fails (the
//!   client went away), then returns.
//! - `/partial`: reads one chunk of the request body, drops the rest unread, and answers
//!   `read N of ?` at once.
//! - `/sized-short`: declares `content-length: 1000`, writes 10 bytes and finishes: the
//!   host must not pass that off as a complete response.
//! - `/none`: returns without setting a response.
//! - `/error-code`: answers with an error code instead of a response.
//! - anything else: 404.
//!
//! `no_main`: a wasi:http component exports `handle`, not a command's `run`.
#![no_main]

use wasip2::clocks::monotonic_clock::subscribe_duration;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, OutputStream,
    ResponseOutparam,
};
use wasip2::io::streams::StreamError;

struct Conform;

wasip2::http::proxy::export!(Conform);

impl Guest for Conform {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str, default: u64| -> u64 {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(default)
        };
        match path {
            "/echo" => echo(request, out),
            "/stream" => {
                let (body, stream) = start(out, 200, &[]);
                let size = param("size", 16) as usize;
                let chunk: Vec<u8> = (0..size).map(|i| b'0' + (i % 10) as u8).collect();
                for i in 0..param("chunks", 4) {
                    if i > 0 {
                        pause(param("ms", 0));
                    }
                    write(&stream, &chunk).expect("the client reads the stream");
                }
                drop(stream);
                OutgoingBody::finish(body, None).expect("finish");
            }
            "/forever" => {
                let (body, stream) = start(out, 200, &[]);
                while write(&stream, b"still here\n").is_ok() {
                    pause(param("ms", 10));
                }
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
            }
            "/partial" => {
                let body = request.consume().expect("consume the body once");
                let input = body.stream().expect("the body's stream");
                let first = input.blocking_read(64 * 1024).unwrap_or_default();
                drop(input);
                drop(body);
                let text = format!("read {} of ?", first.len());
                let (body, stream) = start(out, 200, &[]);
                write(&stream, text.as_bytes()).expect("write");
                drop(stream);
                OutgoingBody::finish(body, None).expect("finish");
            }
            "/sized-short" => {
                let (body, stream) = start(out, 200, &[("content-length", b"1000")]);
                // Writing fewer bytes than declared: the host may refuse the write that
                // would end the body short, or the finish; either way no 1000-byte body.
                let _ = write(&stream, b"0123456789");
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
            }
            "/none" => drop(out),
            "/error-code" => ResponseOutparam::set(out, Err(ErrorCode::ConnectionRefused)),
            _ => {
                let (body, stream) = start(out, 404, &[]);
                write(&stream, b"no such route\n").expect("write");
                drop(stream);
                OutgoingBody::finish(body, None).expect("finish");
            }
        }
    }
}

/// Streams the request body back, then its trailers (and the length read) as trailers.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    // HTTP/1.1 sends only trailers the head announced (`trailer: a, b`): announce the
    // echoes of those the request announced, and the length.
    let mut announced: Vec<String> = request
        .headers()
        .get("trailer")
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|n| format!("echo-{}", n.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    announced.push(String::from("echo-length"));
    let announced = announced.join(", ");
    let incoming = request.consume().expect("consume the body once");
    let input = incoming.stream().expect("the body's stream");
    let (body, stream) = start(out, 200, &[("trailer", announced.as_bytes())]);
    let mut length = 0u64;
    loop {
        match input.blocking_read(16 * 1024) {
            Ok(bytes) => {
                length += bytes.len() as u64;
                write(&stream, &bytes).expect("the client reads the echo");
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                panic!("reading the request body failed: {}", e.to_debug_string())
            }
        }
    }
    drop(input);
    let future = IncomingBody::finish(incoming);
    future.subscribe().block();
    let trailers = future
        .get()
        .expect("ready")
        .expect("first get")
        .expect("the request's trailers");
    let mut echoed: Vec<(String, Vec<u8>)> = trailers
        .map(|t| t.entries())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (format!("echo-{name}"), value))
        .collect();
    echoed.push((String::from("echo-length"), length.to_string().into_bytes()));
    let trailers = Fields::from_list(&echoed).expect("valid trailers");
    drop(stream);
    OutgoingBody::finish(body, Some(trailers)).expect("finish with trailers");
}

/// Sets the response head and returns its body and the body's stream.
fn start(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, &[u8])],
) -> (OutgoingBody, OutputStream) {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    let response = OutgoingResponse::new(Fields::from_list(&list).expect("valid headers"));
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the body's stream, once");
    (body, stream)
}

/// Writes all of `bytes` and flushes, in pieces the stream accepts.
fn write(stream: &OutputStream, bytes: &[u8]) -> Result<(), StreamError> {
    for piece in bytes.chunks(4096) {
        stream.blocking_write_and_flush(piece)?;
    }
    Ok(())
}

fn pause(ms: u64) {
    if ms > 0 {
        subscribe_duration(ms * 1_000_000).block();
    }
}
