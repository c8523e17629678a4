//! wasi:http conformance of the request path, against `tests/guests/src/bin/conform.rs`,
//! which uses the raw `wasi:http/types` resources: bodies streamed in both directions
//! (chunked and sized, 1 MiB), trailers both ways, early drops on either side, and guests
//! that answer badly or not at all.

use crate::support::{Apps, Edge, get, send};
use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;

/// `n` bytes that differ from chunk to chunk, so a reordered or repeated chunk shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + i / 251) % 256) as u8).collect()
}

fn serve_conform(manifest: Option<&str>) -> (Apps, Edge) {
    let apps = Apps::new();
    apps.add("conform");
    if let Some(m) = manifest {
        apps.manifest("conform", m);
    }
    let edge = Edge::start(apps.path(), &[]);
    (apps, edge)
}

/// Sends `req` on a new connection; the response with its body still streaming.
async fn open<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    try_open(addr, req).await.expect("a response head")
}

/// As [`open`], with hyper's error when no response head arrives.
async fn try_open<B>(addr: SocketAddr, req: Request<B>) -> hyper::Result<Response<Incoming>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await
}

/// The rest of a response: its body and its trailers, if any.
async fn drain(resp: Response<Incoming>) -> (Vec<u8>, Option<HeaderMap>) {
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the body arrives whole");
        match frame.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    (data, trailers)
}

#[tokio::test]
async fn a_chunked_request_is_echoed_while_it_streams_with_trailers_both_ways() {
    let (_apps, edge) = serve_conform(None);
    let sent = pattern(1 << 20);
    let (mut tx, rx) = mpsc::channel::<Chunk>(4);
    let req = Request::post("/echo")
        .header("host", "conform.localhost")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .body(StreamBody::new(rx))
        .unwrap();
    let first = Bytes::copy_from_slice(&sent[..16 * 1024]);
    tx.send(Ok(Frame::data(first))).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), open(edge.addr, req))
        .await
        .expect("the response head came while the request body was still open");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert!(resp.headers().get("content-length").is_none());
    let mut body = resp.into_body();
    // The guest echoes the first chunk before the client sends any more: the body is
    // streamed to the guest and back, not collected first.
    let mut echoed = Vec::new();
    while echoed.len() < 16 * 1024 {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("the first chunk's echo came before the rest was sent")
            .expect("more body")
            .unwrap();
        echoed.extend_from_slice(&frame.into_data().unwrap());
    }
    let rest = sent[16 * 1024..].to_vec();
    let sender = tokio::spawn(async move {
        for piece in rest.chunks(16 * 1024 + 3) {
            tx.send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
                .await
                .unwrap();
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc123".parse().unwrap());
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
    });
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame.expect("the echo arrives whole").into_data() {
            Ok(bytes) => echoed.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    sender.await.unwrap();
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "the echo differs from what was sent");
    let trailers = trailers.expect("the response has trailers");
    assert_eq!(trailers["echo-x-checksum"], "abc123", "{trailers:?}");
    assert_eq!(trailers["echo-length"], "1048576", "{trailers:?}");
}

#[tokio::test]
async fn a_sized_1_mib_request_is_echoed_whole() {
    let (_apps, edge) = serve_conform(None);
    let sent = pattern(1 << 20);
    let req = Request::post("/echo")
        .header("host", "conform.localhost")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(sent.clone())))
        .unwrap();
    let resp = open(edge.addr, req).await;
    assert_eq!(resp.status(), 200);
    let (echoed, trailers) = drain(resp).await;
    assert!(echoed == sent, "the echo of {} bytes differs", echoed.len());
    // No request trailers: the guest's only trailer is the length it read.
    let trailers = trailers.expect("the response has trailers");
    assert_eq!(trailers.len(), 1, "{trailers:?}");
    assert_eq!(trailers["echo-length"], "1048576");
}

#[tokio::test]
async fn trailers_are_not_sent_to_a_client_that_did_not_ask_for_them() {
    let (_apps, edge) = serve_conform(None);
    let req = Request::post("/echo")
        .header("host", "conform.localhost")
        .body(Full::new(Bytes::from_static(b"no te header")))
        .unwrap();
    let (echoed, trailers) = drain(open(edge.addr, req).await).await;
    assert_eq!(echoed, b"no te header");
    assert!(trailers.is_none(), "{trailers:?}");
}

#[tokio::test]
async fn a_streamed_response_reaches_the_client_chunk_by_chunk() {
    let (_apps, edge) = serve_conform(None);
    let started = Instant::now();
    let req = Request::get("/stream?chunks=4&size=1000&ms=400")
        .header("host", "conform.localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = open(edge.addr, req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(bytes) = frame.unwrap().into_data() {
            total += bytes.len();
            arrivals.push((started.elapsed(), total));
        }
    }
    assert_eq!(total, 4000);
    // The guest waits 1.2 s between its first write and its last: the first chunk must
    // have arrived long before the end, not been held back with the rest.
    let (first, _) = arrivals[0];
    let (last, _) = *arrivals.last().unwrap();
    assert!(
        last - first >= Duration::from_millis(900),
        "chunks were not streamed as written: {arrivals:?}"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_frees_the_instance() {
    let (_apps, edge) = serve_conform(Some("max_concurrency = 1\n"));
    let mut client = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    client
        .write_all(b"GET /forever?ms=20 HTTP/1.1\r\nhost: conform.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("still here") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    // The endless response holds the app's one slot …
    assert_eq!(
        get(edge.addr, "conform.localhost", "/stream?chunks=1")
            .await
            .status,
        503
    );
    drop(client);
    // … until its client is gone: then the guest's next write fails and its instance ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = get(edge.addr, "conform.localhost", "/stream?chunks=1&size=5").await;
        if resp.status == 200 {
            assert_eq!(resp.body, "01234");
            break;
        }
        assert_eq!(resp.status, 503, "{resp:?}");
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_guest_that_reads_part_of_a_large_body_answers_and_the_server_goes_on() {
    let (_apps, edge) = serve_conform(None);
    let mut client = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let body = pattern(1 << 20);
    let head = format!(
        "POST /partial HTTP/1.1\r\nhost: conform.localhost\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    // Write the body from another task: the server may answer (and stop reading) first.
    let (mut reader, mut writer) = client.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&response).contains(" of ?") {
        assert!(Instant::now() < deadline, "no answer: {response:?}");
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => response.extend_from_slice(&buf[..n]),
            other => panic!(
                "no complete answer ({other:?}): {}",
                String::from_utf8_lossy(&response)
            ),
        }
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let read: usize = text
        .split("read ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the guest says how much it read");
    assert!(read > 0 && read < 1 << 20, "{text}");
    drop(reader);
    let _ = writing.await;
    // Other requests, to this app and on new connections, are served as before.
    let resp = send(
        edge.addr,
        "POST",
        "conform.localhost",
        "/echo",
        b"after".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!((resp.status, resp.body.as_str()), (200, "after"));
}

#[tokio::test]
async fn guests_that_answer_badly_or_not_at_all_get_500_and_nothing_half_done() {
    let (_apps, edge) = serve_conform(None);
    for path in ["/none", "/error-code"] {
        let resp = get(edge.addr, "conform.localhost", path).await;
        assert_eq!(resp.status, 500, "{path}: {resp:?}");
        assert!(
            resp.body.contains("did not produce a response"),
            "{path}: {}",
            resp.body
        );
    }
    edge.expect_log("the guest returned without setting a response");
    // A body shorter than its declared length must not reach the client as complete:
    // the connection is cut before the head or within the body.
    let req = Request::get("/sized-short")
        .header("host", "conform.localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    match try_open(edge.addr, req).await {
        Err(e) => assert!(e.is_incomplete_message(), "{e:?}"),
        Ok(resp) => {
            let mut body = resp.into_body();
            let mut got = 0;
            let failed = loop {
                match body.frame().await {
                    Some(Ok(f)) => got += f.into_data().map(|d| d.len()).unwrap_or(0),
                    Some(Err(_)) => break true,
                    None => break false,
                }
            };
            assert!(
                failed,
                "a 10-byte body declared as 1000 bytes ended cleanly ({got} bytes)"
            );
        }
    }
    // The server goes on.
    assert_eq!(
        get(edge.addr, "conform.localhost", "/nowhere").await.status,
        404
    );
}
