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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_keep_alive_timeout_and_busy_ones_do_not() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let apps = Apps::new();
    apps.add("hello");
    apps.add("slow");
    // The header-read timeout is far off, so only the keep-alive timer can close them.
    let edge = Edge::start(
        apps.path(),
        &["--keep-alive-timeout", "1s", "--header-read-timeout", "60s"],
    );

    // HTTP/1.1: idle after its response, closed about a second later.
    let mut idle = TcpStream::connect(edge.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (closed, head) = closed_within(&mut idle, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(closed, "the idle keep-alive connection stayed open");
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );

    // A request running longer than the timeout is not idleness: it is answered, on a
    // connection that then goes idle and closes.
    let mut busy = TcpStream::connect(edge.addr).await.unwrap();
    busy.write_all(b"GET /?ms=2500 HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
        .await
        .unwrap();
    let (closed, got) = closed_within(&mut busy, Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("slept 2500"), "{got}");
    assert!(closed);

    // HTTP/2 (h2c with prior knowledge): the idle connection gets GOAWAY and ends.
    let stream = TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("http://hello.localhost:{}/", edge.addr.port()))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the idle HTTP/2 connection stayed open")
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert!(
        sender.ready().await.is_err(),
        "the connection still takes requests"
    );
}

/// A connection from `ip` (any loopback address) to `to`.
async fn connect_from(ip: &str, to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_every_instance_slot() {
    let apps = Apps::new();
    apps.add("slow");
    apps.add("hello");
    let edge = Edge::start(
        apps.path(),
        &["--max-concurrency", "8", "--max-client-concurrency", "3"],
    );
    // 127.0.0.2 starts three slow requests: its share.
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", edge.addr).await;
        s.write_all(b"GET /?ms=3000 HTTP/1.1\r\nHost: slow.localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        hogs.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its fourth is refused at once, with the reason and Retry-After…
    let mut fourth = connect_from("127.0.0.2", edge.addr).await;
    fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, got) = closed_within(&mut fourth, Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.to_ascii_lowercase().contains("retry-after: 1"), "{got}");
    assert!(
        got.contains("too many requests in flight from your address (at most 3)"),
        "{got}"
    );
    // …while another address is served.
    let mut other = connect_from("127.0.0.3", edge.addr).await;
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, got) = closed_within(&mut other, Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The slow requests finish, and their slots come back to their client.
    for s in &mut hogs {
        let (_, got) = closed_within(s, Duration::from_secs(6)).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    let mut again = connect_from("127.0.0.2", edge.addr).await;
    again
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, got) = closed_within(&mut again, Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_keep_alive_connection_serves_its_next_requests() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start(apps.path(), &["--keep-alive-timeout", "30s"]);
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    // Reads `n` responses (hello's are chunked) from the connection.
    async fn responses(s: &mut TcpStream, n: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&got)
            .matches("\r\n0\r\n\r\n")
            .count()
            < n
        {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("no response")
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }
    async fn response(s: &mut TcpStream) -> String {
        responses(s, 1).await
    }
    s.write_all(request).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle past the parking point (1 s): the same connection still serves…
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(request).await.unwrap();
    let got = response(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("Hello from edge!"), "{got}");
    // …a request that arrives in pieces after parking…
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"st: hello.localhost\r\n\r\n").await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // …and two pipelined in one write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(&[&request[..], &request[..]].concat())
        .await
        .unwrap();
    let both = responses(&mut s, 2).await;
    assert_eq!(both.matches("HTTP/1.1 200").count(), 2, "{both}");
    // A request, with the start of the next behind it in the same write: the connection
    // parks holding those bytes, and the next connection reads them first.
    s.write_all(&[&request[..], b"GET / HTTP/1.1\r\nHost: hel"].concat())
        .await
        .unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"lo.localhost\r\n\r\n").await.unwrap();
    let got = response(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        !got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
}
