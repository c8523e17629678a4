//! End-to-end tests of the `loadrig` binary against servers the harness starts on port 0:
//! a hyper server (hello, Server-Timing, a stall window, h2c) and raw TCP servers for what
//! hyper would never send (chunked by hand, `Connection: close`, garbage, resets).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use loadrig::record::{Results, Trend};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod compare;
mod k6;
mod report;
mod scenario;
mod ws;

/// When the hello server stops answering: from `STALL_AFTER` after its first request, for
/// `STALL_FOR`.
const STALL_AFTER: Duration = Duration::from_millis(800);
const STALL_FOR: Duration = Duration::from_millis(500);

/// A runtime the test servers live on, for the whole test binary.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A hyper server: `/` says hello with a `Server-Timing` header; `/stall` does too but
/// holds every response that arrives during the stall window until the window ends.
pub(crate) fn hello_server() -> SocketAddr {
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let first = first.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let first = first.clone();
                        async move {
                            if req.uri().path() == "/stall" {
                                let t0 = *first.lock().unwrap().get_or_insert_with(Instant::now);
                                let (from, to) = (t0 + STALL_AFTER, t0 + STALL_AFTER + STALL_FOR);
                                let now = Instant::now();
                                if now >= from && now < to {
                                    tokio::time::sleep_until(to.into()).await;
                                }
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header(
                                        "server-timing",
                                        "instantiate;dur=0.012, handle;dur=0.030",
                                    )
                                    .body(Full::new(Bytes::from_static(b"hello\n")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    })
}

/// A raw TCP server: for each request head read, writes `response`; closes after it when
/// `close` is set. `reset` answers nothing and resets every connection.
fn raw_server(response: &'static [u8], close: bool, reset: bool) -> SocketAddr {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if reset {
                                let _ = stream.set_zero_linger();
                                return;
                            }
                            if stream.write_all(response).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    })
}

pub(crate) fn loadrig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadrig"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_schema(doc: &Value) {
    let schema: Value =
        serde_json::from_str(include_str!("../../loadrig/summary.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}");
}

fn count(doc: &Value, metric: &str) -> u64 {
    doc["metrics"][metric]["values"]["count"].as_u64().unwrap()
}

fn trend(doc: &Value, metric: &str, agg: &str) -> f64 {
    doc["metrics"][metric]["values"][agg].as_f64().unwrap()
}

pub(crate) fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub(crate) fn out(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn closed_run_prints_the_summary_and_writes_json_html_that_match_the_schema() {
    let addr = hello_server();
    let dir = tmp();
    let (j, h) = (out(&dir, "run.json"), out(&dir, "run.html"));
    let o = loadrig(&[
        "run",
        &format!("http://{addr}/"),
        "-c",
        "4",
        "-n",
        "3000",
        "--json",
        j.to_str().unwrap(),
        "--html",
        h.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for metric in [
        "http_req_blocked",
        "http_req_connecting",
        "http_req_sending",
        "http_req_waiting",
        "http_req_receiving",
        "http_req_duration",
        "http_reqs",
        "data_received",
        "server_timing_instantiate",
        "loadrig_cpu",
    ] {
        assert!(stdout.contains(metric), "{metric} missing from:\n{stdout}");
    }
    assert!(
        stdout.contains("avg=") && stdout.contains("p(99)="),
        "{stdout}"
    );
    let doc = json(&j);
    check_schema(&doc);
    assert_eq!(count(&doc, "http_reqs"), 3000);
    assert_eq!(doc["loadrig"]["results"]["status"]["200"], 3000);
    assert_eq!(doc["metrics"]["http_req_failed"]["values"]["rate"], 0.0);
    // Server-Timing entries are reported in milliseconds, as sent.
    let st = trend(&doc, "server_timing_handle", "med");
    assert!((st - 0.030).abs() < 0.002, "{st}");
    // The phases add up: sending + waiting + receiving never exceeds the duration.
    let med = |m| trend(&doc, m, "med");
    assert!(med("http_req_waiting") <= med("http_req_duration"));
    assert!(trend(&doc, "http_req_duration", "min") > 0.0);
    // Bytes: 3000 responses of at least the 6-byte body each.
    assert!(count(&doc, "data_received") > 3000 * 6);
    let html = std::fs::read_to_string(&h).unwrap();
    assert!(
        html.starts_with("<!doctype html>") && html.matches("<svg").count() == 3,
        "{html}"
    );
    assert!(!html.contains("<script"), "the report is self-contained");
}

#[test]
fn the_open_model_holds_its_rate() {
    let addr = hello_server();
    let dir = tmp();
    let j = out(&dir, "open.json");
    let o = loadrig(&[
        "run",
        &format!("http://{addr}/"),
        "-c",
        "4",
        "-r",
        "2000",
        "-d",
        "2s",
        "--json",
        j.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let doc = json(&j);
    check_schema(&doc);
    // The schedule has exactly 2000/s × 2 s slots, and the run lasts about as long.
    assert_eq!(count(&doc, "http_reqs"), 4000);
    let secs = doc["state"]["testRunDurationMs"].as_f64().unwrap() / 1000.0;
    assert!((1.99..2.15).contains(&secs), "{secs}");
    assert_eq!(doc["loadrig"]["runs"][0]["model"], "open");
    assert!(stdout.contains("loadrig_late_sends"), "{stdout}");
}

#[test]
fn a_stalled_server_shows_in_the_corrected_p99_only() {
    let addr = hello_server();
    let dir = tmp();
    let j = out(&dir, "stall.json");
    let o = loadrig(&[
        "run",
        &format!("http://{addr}/stall"),
        "-c",
        "2",
        "-r",
        "1000",
        "-d",
        "3s",
        "--json",
        j.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let doc = json(&j);
    let corrected = trend(&doc, "http_req_duration", "p(99)");
    let uncorrected = trend(&doc, "http_req_duration_uncorrected", "p(99)");
    // ~500 of 3000 requests were due during the 500 ms stall: the corrected p99 sees it;
    // only the 2 requests in flight on the 2 connections waited in the uncorrected view.
    assert!(corrected >= 300.0, "corrected p99 {corrected} ms\n{stdout}");
    assert!(
        uncorrected < 100.0,
        "uncorrected p99 {uncorrected} ms\n{stdout}"
    );
    assert!(
        doc["metrics"]["loadrig_late_sends"]["values"]["count"]
            .as_u64()
            .unwrap()
            > 100
    );
}

#[test]
fn thresholds_pass_with_0_and_fail_with_99() {
    let addr = hello_server();
    let url = format!("http://{addr}/");
    let o = loadrig(&[
        "run",
        &url,
        "-n",
        "500",
        "--threshold",
        "p(99)<5s",
        "--threshold",
        "errors<1%",
        "--threshold",
        "http_reqs:count==500",
        "--threshold",
        "http_req_waiting:p(95)<5000ms",
    ]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("✓ p(99)<5s"), "{stdout}");
    let dir = tmp();
    let j = out(&dir, "t.json");
    let o = loadrig(&[
        "run",
        &url,
        "-n",
        "500",
        "--threshold",
        "p(50)<1us",
        "--threshold",
        "errors<1%",
        "--json",
        j.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(99), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("✗ p(50)<1us") && stdout.contains("✓ errors<1%"),
        "{stdout}"
    );
    assert!(stderr.contains("thresholds failed: p(50)<1us"), "{stderr}");
    let doc = json(&j);
    assert_eq!(doc["loadrig"]["thresholds"][0]["ok"], false);
    assert_eq!(doc["loadrig"]["thresholds"][1]["ok"], true);
}

#[test]
fn merged_segments_add_up_exactly() {
    let addr = hello_server();
    let url = format!("http://{addr}/");
    let dir = tmp();
    let (a, b, m) = (
        out(&dir, "a.json"),
        out(&dir, "b.json"),
        out(&dir, "m.json"),
    );
    for (seg, file) in [("1/2", &a), ("2/2", &b)] {
        let o = loadrig(&[
            "run",
            &url,
            "-c",
            "4",
            "-n",
            "1001",
            "--segment",
            seg,
            "--json",
            file.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let (da, db) = (json(&a), json(&b));
    // The segments split the 1001 requests and 4 connections between them.
    assert_eq!(count(&da, "http_reqs") + count(&db, "http_reqs"), 1001);
    assert_eq!(count(&da, "http_reqs"), 501);
    let o = loadrig(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        m.to_str().unwrap(),
        "--threshold",
        "http_reqs:count==1001",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let dm = json(&m);
    check_schema(&dm);
    assert_eq!(count(&dm, "http_reqs"), 1001);
    assert_eq!(dm["loadrig"]["runs"].as_array().unwrap().len(), 2);
    // Histograms were added bucket by bucket: identical to merging the raw results.
    let results = |d: &Value| {
        Results::from_data(&serde_json::from_value(d["loadrig"]["results"].clone()).unwrap())
            .unwrap()
    };
    let mut expected = results(&da);
    expected.merge(&results(&db));
    let merged = results(&dm);
    for t in Trend::ALL {
        assert!(merged.trend(t) == expected.trend(t), "{} differs", t.name());
        assert_eq!(merged.trend(t).len(), 1001, "{}", t.name());
    }
    let doc = loadrig::summary::SummaryDoc::new(vec![], &expected, vec![]);
    for agg in ["min", "med", "max", "p(90)", "p(95)", "p(99)"] {
        assert_eq!(
            trend(&dm, "http_req_duration", agg),
            doc.metrics["http_req_duration"]["values"][agg]
                .as_f64()
                .unwrap(),
            "{agg}"
        );
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let addr = hello_server();
    let url = format!("http://{addr}/");
    let dir = tmp();
    let junk = out(&dir, "junk.json");
    std::fs::write(&junk, "{\"not\": \"a summary\"}").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "http://not a url/"], "not a valid URL"),
        (vec!["run", "127.0.0.1:80/"], "no scheme"),
        (vec!["run", "https://127.0.0.1/"], "https is not supported"),
        (vec!["run", &url, "-d", "10"], "duration `10` is not valid"),
        (vec!["run", &url, "-r", "fast"], "rate `fast` is not valid"),
        (vec!["run", &url, "--stage", "10s"], "DURATION:RATE"),
        (vec!["run", &url, "--threshold", "p(99)"], "no comparison"),
        (
            vec!["run", &url, "--threshold", "latency:p(99)<1ms"],
            "unknown metric `latency`",
        ),
        (vec!["run", &url, "--segment", "3/2"], "1 <= i <= n"),
        (vec!["run", &url, "-H", "nocolon"], "missing `:`"),
        (vec!["run", &url, "-c", "0"], "at least 1"),
        (
            vec!["run", &url, "-r", "10", "--stage", "1s:10", "-d", "1s"],
            "use one",
        ),
        (
            vec!["run", &url, "--body-file", "/nonexistent/body"],
            "reading the body file",
        ),
        (vec!["run", &url, "--bogus"], "unexpected argument"),
        (
            vec!["run", &url, "--start-at", "tomorrow"],
            "not an RFC 3339 UTC time",
        ),
        (
            vec![
                "run",
                &url,
                "--start-at",
                "2026-12-05T10:00:00Z",
                "--start-grace",
                "x",
            ],
            "--start-grace `x`",
        ),
        (
            vec!["merge", junk.to_str().unwrap()],
            "is not a loadrig JSON summary",
        ),
        (
            vec!["merge", "/nonexistent.json"],
            "reading `/nonexistent.json`",
        ),
    ];
    for (args, msg) in cases {
        let o = loadrig(&args);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{stdout}\n{stderr}");
        assert!(
            stderr.contains(msg),
            "{args:?}: expected `{msg}` in\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Runs against `addr` and returns the JSON summary.
fn run_json(addr: SocketAddr, extra: &[&str]) -> Value {
    let dir = tmp();
    let j = out(&dir, "x.json");
    let url = format!("http://{addr}/");
    let mut args = vec!["run", url.as_str(), "--json", j.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = loadrig(&args);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc = json(&j);
    check_schema(&doc);
    doc
}

#[test]
fn failures_are_counted_by_kind_never_a_panic() {
    // Nothing listening: refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let doc = run_json(closed, &["-c", "2", "-n", "50"]);
    assert_eq!(doc["loadrig"]["results"]["errors"]["connect_refused"], 50);
    assert_eq!(doc["metrics"]["http_req_failed"]["values"]["rate"], 1.0);
    // A server that resets every connection.
    let doc = run_json(raw_server(b"", false, true), &["-c", "2", "-n", "50"]);
    let errors = &doc["loadrig"]["results"]["errors"];
    let total: u64 = errors
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 50, "{errors}");
    assert!(
        errors["reset"].as_u64().unwrap_or(0) + errors["closed"].as_u64().unwrap_or(0) == 50,
        "{errors}"
    );
    // A server that answers garbage.
    let doc = run_json(
        raw_server(b"SSH-2.0-OpenSSH\r\n\r\n", true, false),
        &["-c", "2", "-n", "50"],
    );
    assert_eq!(
        doc["loadrig"]["results"]["errors"]["protocol"], 50,
        "{}",
        doc["loadrig"]["results"]["errors"]
    );
    // 5xx responses are responses, counted as failed.
    let doc = run_json(
        raw_server(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            false,
            false,
        ),
        &["-c", "2", "-n", "50"],
    );
    assert_eq!(doc["loadrig"]["results"]["status"]["503"], 50);
    assert_eq!(doc["metrics"]["http_req_failed"]["values"]["passes"], 50);
    // A request timeout.
    let silent = raw_server(b"", false, false);
    let doc = run_json(silent, &["-c", "1", "-n", "2", "--timeout", "200ms"]);
    assert_eq!(doc["loadrig"]["results"]["errors"]["timeout"], 2);
}

#[test]
fn chunked_close_delimited_and_h2c_responses_are_read_whole() {
    // Chunked, with an extension and a trailer.
    let doc = run_json(
        raw_server(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n",
            false,
            false,
        ),
        &["-c", "2", "-n", "200"],
    );
    assert_eq!(doc["loadrig"]["results"]["status"]["200"], 200);
    assert_eq!(
        doc["loadrig"]["results"]["connections_opened"], 2,
        "kept alive"
    );
    // `Connection: close`: a new connection per request, and no errors.
    let doc = run_json(
        raw_server(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            true,
            false,
        ),
        &["-c", "2", "-n", "100"],
    );
    assert_eq!(doc["loadrig"]["results"]["status"]["200"], 100);
    assert_eq!(doc["loadrig"]["results"]["connections_opened"], 100);
    // A body delimited by closing the connection.
    let doc = run_json(
        raw_server(b"HTTP/1.1 200 OK\r\n\r\nuntil close", true, false),
        &["-c", "1", "-n", "20"],
    );
    assert_eq!(doc["loadrig"]["results"]["status"]["200"], 20);
    // HTTP/2 over cleartext against hyper.
    let doc = run_json(
        hello_server(),
        &[
            "-c", "2", "-n", "300", "--http2", "-m", "POST", "-b", "payload",
        ],
    );
    assert_eq!(doc["loadrig"]["results"]["status"]["200"], 300);
    assert_eq!(doc["loadrig"]["runs"][0]["method"], "POST");
}

#[test]
fn segments_started_at_one_time_merge_over_their_union_and_incomplete_sets_are_refused() {
    let addr = hello_server();
    let url = format!("http://{addr}/");
    let dir = tmp();
    // The segments write into one directory (created by the first to finish), as the
    // pods of the Indexed Job in deploy/kubernetes do on their shared volume.
    let segments = dir.path().join("segments");
    let (a, b, m) = (
        segments.join("segment-0.json"),
        segments.join("segment-1.json"),
        out(&dir, "m.json"),
    );
    // Both segments are launched now and told to start 1.5 s from now: the first as a
    // Job's pod is (its segment and start from the environment), the second by flags.
    let at = std::time::SystemTime::now() + std::time::Duration::from_millis(1500);
    let at_text = humantime::format_rfc3339_millis(at).to_string();
    let planned = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let children: Vec<_> = [(0, &a), (1, &b)]
        .into_iter()
        .map(|(index, file)| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadrig"));
            cmd.args(["run", &url, "-c", "2", "-r", "400", "-d", "1s"])
                .args(["--json", file.to_str().unwrap()]);
            if index == 0 {
                cmd.args(["--segment", "JOB_COMPLETION_INDEX/2"])
                    .env("JOB_COMPLETION_INDEX", "0")
                    .env("LOADRIG_START_AT", &at_text);
            } else {
                cmd.args(["--segment", "2/2", "--start-at", &at_text]);
            }
            cmd.env_remove("RUST_BACKTRACE")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let (da, db) = (json(&a), json(&b));
    for d in [&da, &db] {
        check_schema(d);
        let run = &d["loadrig"]["runs"][0];
        let recorded = run["planned_start"].as_f64().unwrap();
        assert!(
            (recorded - planned).abs() < 0.002,
            "{recorded} vs {planned}"
        );
        let started = run["started_at"].as_f64().unwrap();
        assert!(
            started >= planned - 0.001 && started < planned + 0.5,
            "started {:.3} s after --start-at",
            started - planned
        );
    }
    // Merged from the directory, as the merge Job does.
    let o = loadrig(&[
        "merge",
        segments.to_str().unwrap(),
        "--json",
        m.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(!stderr.contains("started up to"), "{stderr}");
    let dm = json(&m);
    assert_eq!(
        count(&dm, "http_reqs"),
        400,
        "the halves make the whole schedule"
    );
    // The rate is over the union of the two spans, which overlap: about one second.
    let elapsed = dm["loadrig"]["results"]["elapsed_seconds"]
        .as_f64()
        .unwrap();
    assert!((0.9..1.6).contains(&elapsed), "{elapsed}");
    let rate = dm["metrics"]["http_reqs"]["values"]["rate"]
        .as_f64()
        .unwrap();
    assert!((rate - 400.0 / elapsed).abs() < 1e-6 * rate, "{rate}");

    // A segment that is already too late does not run.
    let late = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() - std::time::Duration::from_secs(10),
    )
    .to_string();
    let skipped = out(&dir, "late.json");
    let o = loadrig(&[
        "run",
        &url,
        "-n",
        "10",
        "--start-at",
        &late,
        "--json",
        skipped.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(110), "{stderr}");
    assert!(stderr.contains("more than --start-grace"), "{stderr}");
    assert!(!skipped.exists());

    // Without the Job's variable, the segment is refused with the reason.
    let o = Command::new(env!("CARGO_BIN_EXE_loadrig"))
        .args([
            "run",
            &url,
            "-n",
            "1",
            "--segment",
            "JOB_COMPLETION_INDEX/2",
        ])
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("JOB_COMPLETION_INDEX is not set"),
        "{stderr}"
    );

    // Merges of an incomplete or repeated set of segments are refused.
    for (files, msg) in [
        (vec![&a], "segment 2/2 missing"),
        (vec![&a, &a, &b], "segment 1/2 given more than once"),
    ] {
        let mut args = vec!["merge"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        let o = loadrig(&args);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(msg), "{stderr}");
    }
    // Segments that started far apart merge, with a warning.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let o = loadrig(&[
        "run",
        &url,
        "-c",
        "2",
        "-n",
        "20",
        "--segment",
        "2/2",
        "--json",
        b.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = loadrig(&["merge", a.to_str().unwrap(), b.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("started up to"), "{stderr}");
}
