use crate::support::{Apps, Edge, get};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection or `within` passes; whether it closed,
/// and what it sent.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_while_a_good_client_is_served() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start(apps.path(), &["--header-read-timeout", "1s"]);
    // 50 clients that trickle a request head and never finish it.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(edge.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-A: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let dripping = tokio::spawn(async move {
        let start = Instant::now();
        let mut closed = 0;
        for s in &mut slow {
            // One more byte each, then see whether the server has given up on them.
            let _ = s.write_all(b"a").await;
        }
        for s in &mut slow {
            let (c, _) = closed_within(s, Duration::from_secs(5)).await;
            closed += c as usize;
        }
        (closed, start.elapsed())
    });
    let t = Instant::now();
    let r = get(edge.addr, "hello.localhost", "/").await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let (closed, took) = dripping.await.unwrap();
    assert_eq!(closed, 50, "slow connections still open after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // An idle keep-alive connection goes the same way.
    let mut idle = TcpStream::connect(edge.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .await
        .unwrap();
    let (closed, head) = closed_within(&mut idle, Duration::from_secs(4)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(closed, "the idle keep-alive connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_body_gets_408_and_frees_the_instance() {
    let apps = Apps::new();
    apps.add("kv");
    let edge = Edge::start(
        apps.path(),
        &["--body-read-timeout", "1s", "--max-concurrency", "1"],
    );
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"PUT /config HTTP/1.1\r\nHost: kv.localhost\r\nContent-Length: 100\r\n\r\nab")
        .await
        .unwrap();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(b"c").await.is_err() {
                break;
            }
        }
        s
    });
    let mut s = writer.await.unwrap();
    let (_, got) = closed_within(&mut s, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request body not received within 1s"), "{got}");
    assert!(start.elapsed() < Duration::from_secs(6));
    // The one instance slot is free again.
    assert_eq!(get(edge.addr, "kv.localhost", "/config").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_new_connections_wait_and_are_counted() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start_with_token(
        apps.path(),
        &["--max-connections", "2", "--threads", "1"],
        "t",
    );
    let request = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(edge.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // The third connects (the kernel's backlog) but is not served while two are open.
    let mut third = TcpStream::connect(edge.addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    drop(held);
    drop(third);
    let r = crate::support::admin(edge.admin, "GET", "/metrics", "t", None, vec![]).await;
    let delayed: f64 = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("edge_connections_delayed_total "))
        .expect("edge_connections_delayed_total")
        .parse()
        .unwrap();
    assert!(delayed >= 1.0, "{}", r.body);
    assert!(
        r.body.lines().any(|l| l.starts_with("edge_connections ")),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_section_is_refused_with_431() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start(apps.path(), &["--max-header-size", "16KiB"]);
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    let big = "x".repeat(40 * 1024);
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (_, got) = closed_within(&mut s, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    // A normal request still works.
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.status, 200);
}
