//! `loadrig ws` end to end: the real binary against the `native` example's `/ws` echo, a
//! stalling echo the harness runs, and raw TCP servers that get WebSocket wrong on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::scenario::api;
use super::{check_schema, json, loadrig, out, runtime, text, tmp};

/// When the stalling echo holds its replies: from `STALL_AFTER` after its first message,
/// for `STALL_FOR`.
const STALL_AFTER: Duration = Duration::from_millis(600);
const STALL_FOR: Duration = Duration::from_millis(500);

/// The native example's echo endpoint.
pub(super) fn echo_url() -> String {
    format!("{}/ws", api().replacen("http://", "ws://", 1))
}

/// An echo server (tokio-tungstenite) that, during its stall window, holds every reply
/// until the window ends.
fn stalling_echo() -> SocketAddr {
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let first = first.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if !(m.is_text() || m.is_binary()) {
                            continue;
                        }
                        let t0 = *first.lock().unwrap().get_or_insert_with(Instant::now);
                        let (from, to) = (t0 + STALL_AFTER, t0 + STALL_AFTER + STALL_FOR);
                        let now = Instant::now();
                        if now >= from && now < to {
                            tokio::time::sleep_until(to.into()).await;
                        }
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    })
}

/// How a raw server gets WebSocket wrong.
#[derive(Clone, Copy)]
enum Bad {
    /// Plain HTTP answers.
    Status(&'static [u8]),
    /// Not HTTP at all.
    Garbage,
    /// Closes the connection after reading the upgrade request.
    HangUp,
    /// Never answers the upgrade.
    Silent,
    /// Upgrades, then sends these bytes after a moment (a close frame, a bad frame).
    ThenSends(&'static [u8]),
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn bad_server(bad: Bad) -> SocketAddr {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut stream).await else {
                        return;
                    };
                    match bad {
                        Bad::Status(r) => {
                            let _ = stream.write_all(r).await;
                        }
                        Bad::Garbage => {
                            let _ = stream.write_all(b"SSH-2.0-not-http\r\n\r\n").await;
                        }
                        Bad::HangUp => return,
                        Bad::Silent => {}
                        Bad::ThenSends(bytes) => {
                            let key = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("sec-websocket-key")
                                        .then(|| v.trim().to_owned())
                                })
                                .unwrap_or_default();
                            let reply = format!(
                                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                                 connection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                                derive_accept_key(key.as_bytes())
                            );
                            let _ = stream.write_all(reply.as_bytes()).await;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let _ = stream.write_all(bytes).await;
                        }
                    }
                    // Hold the connection until the client goes.
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        addr
    })
}

/// Runs `loadrig ws` with `--json`; returns the exit code, the summary and the output.
fn ws_json(url: &str, extra: &[&str]) -> (i32, Value, String) {
    let dir = tmp();
    let j = out(&dir, "ws.json");
    let mut args = vec!["ws", url, "--json", j.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = loadrig(&args);
    let (stdout, stderr) = text(&o);
    let log = format!("{stdout}\n{stderr}");
    assert!(j.exists(), "no JSON written\n{log}");
    let doc = json(&j);
    check_schema(&doc);
    (o.status.code().unwrap_or(-1), doc, log)
}

fn count(doc: &Value, name: &str) -> u64 {
    doc["metrics"][name]["values"]["count"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name} count in {}", doc["metrics"])) as u64
}

fn value(doc: &Value, name: &str, agg: &str) -> f64 {
    doc["metrics"][name]["values"][agg]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name}.{agg} in {}", doc["metrics"]))
}

/// How many samples a trend holds (k6's summary shows none; the histograms do).
fn samples(doc: &Value, name: &str) -> u64 {
    let data = serde_json::from_value(doc["loadrig"]["results"].clone()).unwrap();
    let r = loadrig::record::Results::from_data(&data).unwrap();
    let m = r
        .metrics
        .metrics
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"));
    m.value("count", 1.0).unwrap() as u64
}

/// Every message of an echo run is answered: sent = received = round trips.
fn assert_exact_echo(doc: &Value, log: &str) {
    let sent = count(doc, "ws_msgs_sent");
    assert!(sent > 100, "too few messages: {log}");
    assert_eq!(count(doc, "ws_msgs_received"), sent, "{log}");
    assert_eq!(samples(doc, "ws_rtt"), sent, "{log}");
    assert_eq!(count(doc, "ws_errors"), 0, "{log}");
}

#[test]
fn echo_round_trips_are_counted_exactly_for_text_and_binary() {
    let url = echo_url();
    let (code, doc, log) = ws_json(&url, &["-c", "4", "-d", "1s", "--in-flight", "3"]);
    assert_eq!(code, 0, "{log}");
    assert_exact_echo(&doc, &log);
    assert_eq!(count(&doc, "ws_sessions"), 4, "{log}");
    assert_eq!(count(&doc, "ws_closes{code:1000}"), 4, "{log}");
    assert_eq!(samples(&doc, "ws_connecting"), 4, "{log}");
    // Each session spans the run, less the moment its connection waited to be scheduled
    // (the run's clock starts first): 999.94 ms was seen on a loaded machine.
    assert!(value(&doc, "ws_session_duration", "min") >= 990.0, "{log}");
    assert!(count(&doc, "data_sent") > 0 && count(&doc, "data_received") > 0);
    assert!(log.contains("messages sent"), "{log}");
    assert!(
        !log.contains("http_reqs"),
        "HTTP lines in a WebSocket summary: {log}"
    );
    let (code, doc, log) = ws_json(
        &url,
        &[
            "-c",
            "2",
            "-d",
            "500ms",
            "--binary",
            "--message-size",
            "3000",
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_exact_echo(&doc, &log);
    // 3000-byte payloads both ways (plus framing).
    assert!(count(&doc, "data_sent") >= 3000 * count(&doc, "ws_msgs_sent"));
}

#[test]
fn pings_are_answered_with_pongs() {
    let (code, doc, log) = ws_json(&echo_url(), &["-c", "2", "-d", "500ms", "--ping"]);
    assert_eq!(code, 0, "{log}");
    let pings = count(&doc, "ws_pings");
    assert!(pings > 100, "{log}");
    assert_eq!(samples(&doc, "ws_ping"), pings, "{log}");
    assert_eq!(
        count(&doc, "ws_msgs_sent"),
        0,
        "pings are not messages: {log}"
    );
    assert!(log.contains("pongs"), "{log}");
}

#[test]
fn without_replies_the_rates_are_measured() {
    let (code, doc, log) = ws_json(
        &echo_url(),
        &[
            "-c",
            "1",
            "-d",
            "500ms",
            "--expect-reply",
            "off",
            "--in-flight",
            "8",
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(count(&doc, "ws_msgs_sent") > 1000, "{log}");
    assert!(count(&doc, "ws_msgs_received") > 0, "{log}");
    assert!(
        doc["metrics"].get("ws_rtt").is_none(),
        "no round trips without replies"
    );
}

#[test]
fn the_open_model_keeps_its_schedule_and_corrects_for_a_stall() {
    let url = format!("ws://{}/", stalling_echo());
    // One message in flight at a time: during the stall the due messages wait, which
    // only the corrected round trip shows.
    let (code, doc, log) = ws_json(
        &url,
        &["-c", "1", "-r", "1000", "-d", "2s", "--in-flight", "1"],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        count(&doc, "ws_msgs_sent"),
        2000,
        "every due message is sent: {log}"
    );
    assert_exact_echo(&doc, &log);
    let corrected = value(&doc, "ws_rtt", "p(90)");
    let uncorrected = value(&doc, "ws_rtt_uncorrected", "p(90)");
    assert!(
        corrected > 100.0,
        "the stall is hidden: p90 {corrected} ms\n{log}"
    );
    assert!(
        uncorrected < 50.0,
        "uncorrected p90 {uncorrected} ms\n{log}"
    );
    assert!(value(&doc, "ws_rtt_uncorrected", "max") >= 400.0, "{log}");
    assert!(count(&doc, "loadrig_late_sends") > 300, "{log}");
}

#[test]
fn bad_servers_are_counted_by_kind_never_a_hang() {
    // Nothing listens on port 1. (A port bound and released here was handed to one of the
    // servers below by the next bind, which then answered the "refused" case.)
    let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let cases: Vec<(SocketAddr, &str)> = vec![
        (closed, "ws_errors{kind:connect_refused}"),
        (
            bad_server(Bad::Status(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            )),
            "ws_errors{kind:handshake_status_200}",
        ),
        (
            bad_server(Bad::Status(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            )),
            "ws_errors{kind:handshake_status_404}",
        ),
        (
            bad_server(Bad::Garbage),
            "ws_errors{kind:handshake_invalid}",
        ),
        (bad_server(Bad::HangUp), "ws_errors{kind:handshake_closed}"),
        (bad_server(Bad::Silent), "ws_errors{kind:handshake_timeout}"),
        // A close frame with 1001 (going away) mid-run.
        (
            bad_server(Bad::ThenSends(b"\x88\x02\x03\xe9")),
            "ws_closes{code:1001}",
        ),
        // A binary frame claiming a terabyte.
        (
            bad_server(Bad::ThenSends(b"\x82\x7f\x00\x00\x01\x00\x00\x00\x00\x00")),
            "ws_errors{kind:oversized}",
        ),
        // Reserved bits set.
        (
            bad_server(Bad::ThenSends(b"\xf2\x00")),
            "ws_errors{kind:protocol}",
        ),
    ];
    for (addr, expect) in cases {
        let t0 = Instant::now();
        let (code, doc, log) = ws_json(
            &format!("ws://{addr}/"),
            &["-c", "2", "-d", "600ms", "--connect-timeout", "300ms"],
        );
        assert_eq!(code, 0, "{expect}: {log}");
        assert!(count(&doc, expect) >= 2, "{expect}: {log}");
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{expect} took {:?}",
            t0.elapsed()
        );
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn thresholds_hold_or_exit_99() {
    let url = echo_url();
    let (code, doc, log) = ws_json(
        &url,
        &[
            "-c",
            "2",
            "-d",
            "300ms",
            "--threshold",
            "p(99)<10s",
            "--threshold",
            "ws_errors:count<1",
            "--threshold",
            "ws_errors{kind:timeout}:count<1",
            "--threshold",
            "ws_connecting:max<5s",
        ],
    );
    assert_eq!(code, 0, "{log}");
    let th = &doc["metrics"]["ws_rtt"]["thresholds"]["p(99)<10s"]["ok"];
    assert_eq!(
        th, true,
        "a bare aggregate is on ws_rtt: {}",
        doc["metrics"]["ws_rtt"]
    );
    let (code, _, log) = ws_json(
        &url,
        &["-c", "1", "-d", "300ms", "--threshold", "p(50)<1us"],
    );
    assert_eq!(code, 99, "{log}");
    assert!(log.contains("thresholds failed"), "{log}");
}

#[test]
fn segments_merge_into_the_whole_schedule() {
    let url = echo_url();
    let dir = tmp();
    let mut files = Vec::new();
    for seg in ["1/2", "2/2"] {
        let f = out(&dir, &format!("seg{}.json", &seg[..1]));
        let o = loadrig(&[
            "ws",
            &url,
            "-c",
            "4",
            "-r",
            "2000",
            "-d",
            "1s",
            "--segment",
            seg,
            "--json",
            f.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        files.push(f);
    }
    let merged = out(&dir, "merged.json");
    let o = loadrig(&[
        "merge",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let (a, b, m) = (json(&files[0]), json(&files[1]), json(&merged));
    check_schema(&m);
    assert_eq!(
        count(&m, "ws_msgs_sent"),
        2000,
        "the halves make the whole schedule"
    );
    for name in ["ws_msgs_sent", "ws_msgs_received", "ws_sessions"] {
        assert_eq!(count(&m, name), count(&a, name) + count(&b, name), "{name}");
    }
    assert_eq!(
        samples(&m, "ws_rtt"),
        samples(&a, "ws_rtt") + samples(&b, "ws_rtt")
    );
    let max = value(&a, "ws_rtt", "max").max(value(&b, "ws_rtt", "max"));
    assert!((value(&m, "ws_rtt", "max") - max).abs() < 1e-9);
}

#[test]
fn bad_flags_exit_2_with_the_reason() {
    for (args, msg) in [
        (vec!["wss://127.0.0.1:1/"], "wss:// is not supported yet"),
        (vec!["http://127.0.0.1:1/"], "write ws://"),
        (vec!["ws://127.0.0.1:1/", "--in-flight", "0"], "--in-flight"),
        (vec!["ws://127.0.0.1:1/", "-c", "0"], "--connections"),
        (
            vec!["ws://127.0.0.1:1/", "--ping", "--message", "x"],
            "cannot be used",
        ),
        (
            vec!["ws://127.0.0.1:1/", "--max-message-size", "lots"],
            "--max-message-size",
        ),
        (
            vec!["ws://127.0.0.1:1/", "--threshold", "nope<1"],
            "unknown metric",
        ),
    ] {
        let mut full = vec!["ws"];
        full.extend(args);
        let o = loadrig(&full);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(stderr.contains(msg), "{full:?}: {stderr}");
    }
}

/// Lets an upgrade through only with `x-token: secret`, else 401 (the signature is
/// tungstenite's `Callback`, whose error is a whole response).
#[allow(clippy::result_large_err)]
fn auth(
    req: &tokio_tungstenite::tungstenite::handshake::server::Request,
    resp: tokio_tungstenite::tungstenite::handshake::server::Response,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::server::Response,
    tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
> {
    if req.headers().get("x-token").is_some_and(|v| v == "secret") {
        Ok(resp)
    } else {
        let mut e = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(None);
        *e.status_mut() = http::StatusCode::UNAUTHORIZED;
        Err(e)
    }
}

/// An echo that refuses the upgrade with 401 unless it carries `x-token: secret`.
fn token_echo() -> SocketAddr {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, auth).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    })
}

#[test]
fn headers_reach_the_upgrade_request() {
    let url = format!("ws://{}/", token_echo());
    let (code, doc, log) = ws_json(&url, &["-c", "2", "-d", "300ms", "-H", "X-Token: secret"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(count(&doc, "ws_sessions"), 2, "{log}");
    assert_exact_echo(&doc, &log);
    let (_, doc, log) = ws_json(&url, &["-c", "2", "-d", "300ms"]);
    assert_eq!(count(&doc, "ws_sessions"), 0, "{log}");
    assert!(
        count(&doc, "ws_errors{kind:handshake_status_401}") >= 2,
        "{log}"
    );
}

#[test]
fn the_connect_rate_spreads_the_opens_and_stages_ramp_the_messages() {
    // 5 connections at 10/s open 100 ms apart; the message phase starts after the last,
    // so the first session is about 400 ms longer than the last.
    let (code, doc, log) = ws_json(
        &echo_url(),
        &["-c", "5", "--connect-rate", "10", "-d", "200ms"],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(count(&doc, "ws_sessions"), 5, "{log}");
    let spread =
        value(&doc, "ws_session_duration", "max") - value(&doc, "ws_session_duration", "min");
    assert!(
        spread >= 300.0,
        "sessions differ by only {spread} ms: {log}"
    );
    // A ramp from 0 to 1000 msg/s over 1 s is due 500 messages, exactly.
    let (code, doc, log) = ws_json(&echo_url(), &["-c", "2", "--stage", "1s:1000"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(count(&doc, "ws_msgs_sent"), 500, "{log}");
    assert_exact_echo(&doc, &log);
}
