//! `loadrig compare` end to end, and the examples answering identically natively and on
//! edge (same status, the headers that matter, same body).

use std::path::Path;
use std::process::Command;

use loadrig::compare::cold::http;
use loadrig::compare::servers::{Repo, Server};
use serde_json::Value;

use super::{loadrig, text, tmp};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn compare_runs_both_sides_and_reports_a_consistent_table() {
    let dir = tmp();
    let (j, h) = (dir.path().join("cmp.json"), dir.path().join("cmp.html"));
    let o = loadrig(&[
        "compare",
        "native",
        "wasm",
        "-d",
        "1s",
        "--rounds",
        "1",
        "--cold",
        "2",
        "--repo",
        root().to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
        "--html",
        h.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "metric",
        "native",
        "wasm/native",
        "http_req_duration p(99)",
        "http_reqs rate",
        "cold start",
        "instantiation",
        "server CPU per request",
        "server CPU busy",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    let modes = doc["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 2, "closed and one open rate");
    for mode in modes {
        for row in mode["table"].as_array().unwrap() {
            if let (Some(n), Some(w), Some(r)) = (
                row["native"].as_f64(),
                row["wasm"].as_f64(),
                row["ratio"].as_f64(),
            ) {
                assert!((r - w / n).abs() < 1e-9, "{row}");
            }
        }
        let row = |metric: &str| {
            mode["table"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["metric"] == metric)
                .unwrap_or_else(|| panic!("no `{metric}` row: {mode}"))
                .clone()
        };
        // Both servers were started here, so their CPU time was read: a request costs
        // each some, and neither (pinned to one CPU, or not) used more than every CPU.
        let cpus = std::thread::available_parallelism().unwrap().get() as f64;
        for side in ["native", "wasm"] {
            let per_request = row("server CPU per request")[side].as_f64().unwrap();
            let busy = row("server CPU busy")[side].as_f64().unwrap();
            assert!(
                per_request > 0.0 && per_request < 100_000.0,
                "{side}: {per_request} µs"
            );
            assert!(busy > 0.0 && busy <= 100.0 * cpus + 5.0, "{side}: {busy} %");
        }
        // The table is computed from the same results as each side's summary.
        let row = row("http_req_duration p(99)");
        for side in ["native", "wasm"] {
            let p99 = mode[side]["metrics"]["http_req_duration"]["values"]["p(99)"]
                .as_f64()
                .unwrap();
            assert_eq!(row[side].as_f64().unwrap(), p99, "{side}");
            assert!(
                mode[side]["metrics"]["http_reqs"]["values"]["count"]
                    .as_u64()
                    .unwrap()
                    > 100,
                "{side}"
            );
            assert_eq!(
                mode[side]["metrics"]["http_req_failed"]["values"]["rate"], 0.0,
                "{side}"
            );
        }
    }
    let cold = doc["cold_start"].as_array().unwrap();
    assert_eq!(cold.len(), 5, "{cold:?}");
    for c in cold {
        let samples = c["samples_ms"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "{c}");
        assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{c}");
    }
    // The second row is the compile inside each empty-cache deploy of the first: never more
    // than the deploy → first byte it is part of.
    let samples = |i: usize| -> Vec<f64> {
        let v = cold[i]["samples_ms"].as_array().unwrap();
        v.iter().map(|s| s.as_f64().unwrap()).collect()
    };
    assert!(
        cold[1]["name"].as_str().unwrap().contains("compiling"),
        "{cold:?}"
    );
    for (deploy, compile) in samples(0).into_iter().zip(samples(1)) {
        assert!(
            compile < deploy,
            "compile {compile} ms > deploy {deploy} ms"
        );
    }
    let html = std::fs::read_to_string(&h).unwrap();
    assert!(html.contains("<table>"), "{html}");
    // In Chromium: per mode, native and wasm on one latency spectrum and one rate chart;
    // then one bar per cold-start kind.
    let charts = super::report::shapes(&super::report::render(&h, "compare"));
    let pair = |caption: &str| (caption.to_string(), 2, 0);
    let mut want = Vec::new();
    for _ in modes {
        want.push(pair("Latency by percentile (http_req_duration)"));
        want.push(pair("Requests per second over time"));
    }
    want.push((
        "Cold starts (ms): bar to the median, whisker from p90 to max".to_string(),
        0,
        5,
    ));
    assert_eq!(charts, want);
}

#[test]
fn compare_rejects_bad_sides() {
    for (args, msg) in [
        (vec!["compare", "native"], "needs both sides"),
        (vec!["compare", "native", "native"], "given twice"),
        (vec!["compare", "native", "js"], "is not `native`"),
        (vec!["compare", "native=nope", "wasm"], "no scheme"),
    ] {
        let o = loadrig(&args);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(msg), "{args:?}: {stderr}");
    }
}

/// The response parts that must match: status, headers that matter, body.
fn answer(
    base: &str,
    host: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<String>, Vec<u8>) {
    let mut headers = vec![("host", host)];
    headers.extend_from_slice(extra);
    let (status, _, raw) = http(base, method, path, &headers, body).unwrap();
    // `http` returns the body after the head; fetch the head's headers separately.
    let head = head_of(base, host, method, path, extra, body);
    (status, head, raw)
}

fn head_of(
    base: &str,
    host: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut kept: Vec<String> = head
        .lines()
        .skip(1)
        .map(|l| l.to_ascii_lowercase())
        .filter(|l| {
            [
                "content-type:",
                "etag:",
                "location:",
                "cache-control:",
                "allow:",
            ]
            .iter()
            .any(|h| l.starts_with(h))
        })
        .collect();
    kept.sort();
    kept
}

#[test]
fn examples_answer_identically_natively_and_on_edge() {
    let repo = Repo::find(Some(root())).unwrap();
    let dir = tmp();
    let apps_dir = dir.path().join("apps");
    std::fs::create_dir_all(&apps_dir).unwrap();
    let mut natives = Vec::new();
    let mut built = None;
    for app in ["hello", "site", "markdown"] {
        let b = repo.build(app).unwrap();
        std::fs::copy(&b.component, apps_dir.join(format!("{app}.wasm"))).unwrap();
        let mut cmd = Command::new(&b.native);
        cmd.args(["--app", app, "--listen", "127.0.0.1:0"]);
        natives.push((app, Server::start(cmd, None, false).unwrap()));
        built = Some(b);
    }
    let built = built.unwrap();
    let mut cmd = Command::new(&built.edge);
    cmd.arg("serve")
        .arg(&apps_dir)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("EDGE_ADMIN_TOKEN", "t");
    let edge = Server::start(cmd, None, true).unwrap();
    let sample = std::fs::read(root().join("examples/apps/assets/sample.md")).unwrap();
    let site_etag = {
        let h = head_of(&natives[1].1.url, "site.localhost", "GET", "/", &[], b"");
        h.iter()
            .find_map(|l| l.strip_prefix("etag: ").map(str::to_owned))
            .expect("an etag")
    };
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        u16,
    );
    let cases: Vec<Case> = vec![
        ("hello", "GET", "/", vec![], b"", 200),
        ("site", "GET", "/", vec![], b"", 200),
        ("site", "GET", "/about", vec![], b"", 200),
        ("site", "GET", "/assets/app.js", vec![], b"", 200),
        ("site", "HEAD", "/assets/style.css", vec![], b"", 200),
        (
            "site",
            "GET",
            "/",
            vec![("if-none-match", site_etag.as_str())],
            b"",
            304,
        ),
        ("site", "GET", "/home", vec![], b"", 301),
        ("site", "GET", "/blog", vec![], b"", 302),
        ("site", "GET", "/nope", vec![], b"", 404),
        ("site", "POST", "/", vec![], b"x", 405),
        ("markdown", "POST", "/", vec![], &sample, 200),
        ("markdown", "GET", "/", vec![], b"", 200),
        ("markdown", "POST", "/", vec![], b"\xff\xfe", 400),
        ("markdown", "DELETE", "/", vec![], b"", 405),
    ];
    for (app, method, path, extra, body, want) in cases {
        let native = &natives.iter().find(|(a, _)| *a == app).unwrap().1;
        let host = format!("{app}.localhost");
        let n = answer(&native.url, &host, method, path, &extra, body);
        let w = answer(&edge.url, &host, method, path, &extra, body);
        assert_eq!(n.0, want, "{app} {method} {path}: native status");
        assert_eq!(
            (n.0, &n.1),
            (w.0, &w.1),
            "{app} {method} {path}: status and headers differ"
        );
        assert!(
            n.2 == w.2,
            "{app} {method} {path}: bodies differ ({} vs {} bytes)",
            n.2.len(),
            w.2.len()
        );
        if app == "site" && want == 200 && method == "GET" {
            assert!(n.2.len() > 3000, "{path}: realistic sizes");
        }
    }
}

#[test]
fn compare_runs_a_script_against_both_sides() {
    let dir = tmp();
    let j = dir.path().join("script.json");
    let script = root().join("tests/k6/compare.js");
    let o = loadrig(&[
        "compare",
        "native",
        "wasm",
        "--app",
        "site",
        "--script",
        script.to_str().unwrap(),
        "--rounds",
        "2",
        "--no-pin",
        "--repo",
        root().to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("iterations rate") && stdout.contains("checks rate"),
        "{stdout}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    let mode = &doc["modes"][0];
    assert!(
        mode["mode"].as_str().unwrap().starts_with("scenario"),
        "{mode}"
    );
    for side in ["native", "wasm"] {
        let m = &mode[side]["metrics"];
        // Every check passed on both sides: edge served the site's pages and assets.
        assert_eq!(
            m["checks"]["values"]["rate"], 1.0,
            "{side}: {}",
            m["checks"]
        );
        assert!(
            m["iterations"]["values"]["count"].as_f64().unwrap() > 10.0,
            "{side}"
        );
    }
}
