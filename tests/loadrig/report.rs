//! The HTML reports of `run`, `merge` and `compare` as a reader sees them: opened in
//! headless Chromium (`tests/report/render.mjs`), every chart laid out with its series
//! drawn, no console messages or page errors, and a full-page screenshot kept in
//! `target/report-screenshots/` for a human to look at.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{hello_server, loadrig, out, text, tmp};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Renders `html` in Chromium, screenshots it as `target/report-screenshots/{name}.png`,
/// and returns the page's charts (`{caption, width, series, empty_series, bars}`) after
/// checking that nothing went wrong on the page.
pub(crate) fn render(html: &Path, name: &str) -> Vec<Value> {
    let modules = root().join("target/npm/node_modules");
    assert!(
        modules.join("puppeteer-core").exists(),
        "puppeteer-core is missing: tests/run.sh installs it"
    );
    let shots = root().join("target/report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let o = Command::new("node")
        .arg(root().join("tests/report/render.mjs"))
        .arg(html)
        .arg(&shot)
        .env("NODE_PATH", &modules)
        .output()
        .expect("running node");
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "render.mjs failed:\n{stdout}\n{stderr}");
    let page: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(page["errors"], Value::Array(vec![]), "{name}: page errors");
    assert_eq!(
        page["console"],
        Value::Array(vec![]),
        "{name}: console output"
    );
    let png = std::fs::metadata(&shot).expect("a screenshot").len();
    assert!(
        png > 20_000,
        "{name}: a {png}-byte screenshot is a blank page"
    );
    let charts = page["charts"].as_array().cloned().unwrap_or_default();
    for chart in &charts {
        assert!(chart["width"].as_f64().unwrap() > 500.0, "{name}: {chart}");
        assert_eq!(
            chart["empty_series"], 0,
            "{name}: a series with no points: {chart}"
        );
    }
    charts
}

/// (caption, drawn series, drawn bars) of each chart.
pub(crate) fn shapes(charts: &[Value]) -> Vec<(String, u64, u64)> {
    charts
        .iter()
        .map(|c| {
            (
                c["caption"].as_str().unwrap().to_string(),
                c["series"].as_u64().unwrap(),
                c["bars"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn run_and_merge_reports_render_every_chart_in_chromium() {
    let addr = hello_server();
    let url = format!("http://{addr}/");
    let dir = tmp();
    let (a, b, m) = (
        out(&dir, "a.json"),
        out(&dir, "b.json"),
        out(&dir, "m.html"),
    );
    let run_html = out(&dir, "run.html");
    for (seg, file) in [("1/2", &a), ("2/2", &b)] {
        let mut args = vec![
            "run",
            &url,
            "-c",
            "2",
            "-d",
            "3s",
            "--segment",
            seg,
            "--json",
            file.to_str().unwrap(),
        ];
        if seg == "1/2" {
            args.extend(["--html", run_html.to_str().unwrap()]);
        }
        let o = loadrig(&args);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let o = loadrig(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--html",
        m.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));

    let expected = [
        (
            "Latency by percentile (http_req_duration, corrected and uncorrected)",
            2,
        ),
        ("Requests per second", 2),
        ("Latency over time (http_req_duration)", 3),
    ];
    for (html, name) in [(&run_html, "run"), (&m, "merge")] {
        let got = shapes(&render(html, name));
        let want: Vec<(String, u64, u64)> = expected
            .iter()
            .map(|(c, n)| (c.to_string(), *n, 0))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_websocket_report_charts_its_round_trips() {
    let dir = tmp();
    let html = out(&dir, "ws.html");
    let url = super::ws::echo_url();
    let o = loadrig(&[
        "ws",
        &url,
        "-c",
        "2",
        "-r",
        "2000",
        "-d",
        "2s",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("round trips"),
        "the headline counts round trips"
    );
    let got = shapes(&render(&html, "ws"));
    let want: Vec<(String, u64, u64)> = [
        (
            "Latency by percentile (ws_rtt, corrected and uncorrected)",
            2,
        ),
        ("Round trips per second", 2),
        ("Latency over time (ws_rtt)", 3),
    ]
    .iter()
    .map(|(c, n)| (c.to_string(), *n, 0))
    .collect();
    assert_eq!(got, want);
}
