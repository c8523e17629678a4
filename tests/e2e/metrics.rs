//! `/metrics` as the Prometheus ecosystem reads it: OpenMetrics 1.0 when the scraper asks
//! for it (Prometheus does), the classic text format otherwise, each checked with that
//! format's reference parser (the Python client's strict OpenMetrics parser; `promtool
//! check metrics` for the classic format); every family and every series of a served app
//! present from the start; and the Grafana dashboard and Prometheus config in `deploy/`
//! checked by promtool against the metrics a real server exports.

use crate::support::{Apps, Edge, admin_with, get, repo_root};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const TOKEN: &str = "metrics-test-token";

/// What Prometheus 2.x/3.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A tool installed by `tests/run.sh`.
fn tool(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: tests/run.sh installs it",
        path.display()
    );
    path
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    tool(found)
}

/// Runs `cmd` with `stdin` written to it, and waits for its output.
fn run_with_input(mut cmd: Command, stdin: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `promtool ARGS` with `stdin`, returning (success, stdout + stderr).
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut cmd = Command::new(promtool());
    cmd.args(args);
    let out = run_with_input(cmd, stdin);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Parses an OpenMetrics exposition with the Python client's strict parser (which rejects
/// anything the specification does not allow) and returns its families as JSON:
/// `[{name, type, samples: [[name, labels, value]]}]`.
fn openmetrics_parse(body: &str) -> Result<Value, String> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = [
    {"name": f.name, "type": f.type,
     "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]
print(json.dumps(families))
"#;
    let mut cmd = Command::new(tool(repo_root().join("target/py/bin/python")));
    cmd.args(["-c", SCRIPT]);
    let out = run_with_input(cmd, body);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
}

async fn scrape(edge: &Edge, accept: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    let resp = admin_with(edge.admin, "GET", "/metrics", TOKEN, &headers, vec![]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let content_type = resp.headers["content-type"].to_str().unwrap().to_string();
    (content_type, resp.body)
}

fn value_of(families: &Value, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.as_array()?.iter().find_map(|family| {
        family["samples"].as_array()?.iter().find_map(|s| {
            let matches = s[0] == sample
                && labels.iter().all(|(k, v)| s[1][*k] == *v)
                && s[1].as_object().map(|o| o.len()) == Some(labels.len());
            matches.then(|| s[2].as_f64()).flatten()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_server_has_every_family_and_series_at_zero() {
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let (content_type, classic) = scrape(&edge, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (ok, lint) = run_promtool(&["check", "metrics"], &classic);
    assert!(ok && lint.trim().is_empty(), "promtool: {lint}\n{classic}");
    for line in [
        "edge_apps 1",
        "edge_requests_total{app=\"hello\",class=\"2xx\"} 0",
        "edge_requests_total{app=\"hello\",class=\"5xx\"} 0",
        "edge_guest_kills_total{app=\"hello\",reason=\"timeout\"} 0",
        "edge_deploys_total{app=\"hello\",result=\"ok\"} 0",
        "edge_request_duration_seconds_count{app=\"hello\"} 0",
        "edge_instantiate_duration_seconds_bucket{app=\"hello\",le=\"+Inf\"} 0",
    ] {
        assert!(
            classic.lines().any(|l| l == line),
            "no `{line}` in\n{classic}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_formats_pass_their_reference_parsers_with_the_same_numbers() {
    let apps = Apps::new();
    apps.add("hello").add("trap").add("kv").manifest(
        "kv",
        "key_value_stores = [\"default\"]\n[key_value_limits]\nmax_value_size = \"8B\"\n",
    );
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    for _ in 0..3 {
        get(edge.addr, "hello.localhost", "/").await;
    }
    get(edge.addr, "trap.localhost", "/trap").await;
    // Key-value operations: a set (key 1 byte + value 5), a get of it, a set over the limit.
    let kv = |method: &'static str, path: &'static str, body: &'static [u8]| {
        crate::support::send(edge.addr, method, "kv.localhost", path, body.to_vec())
    };
    assert_eq!(
        kv("PUT", "/kv/default/k", b"12345").await.unwrap().status,
        200
    );
    assert_eq!(kv("GET", "/kv/default/k", b"").await.unwrap().body, "12345");
    assert_eq!(
        kv("PUT", "/kv/default/k", b"123456789")
            .await
            .unwrap()
            .status,
        500
    );

    // Prometheus' own Accept header gets OpenMetrics, which the strict parser accepts.
    let (content_type, open) = scrape(&edge, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    let families = openmetrics_parse(&open).unwrap_or_else(|e| panic!("{e}\n{open}"));
    let types: BTreeSet<(String, String)> = families
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().into(),
                f["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (name, kind) in [
        ("edge_requests", "counter"),
        ("edge_request_duration_seconds", "histogram"),
        ("edge_instantiate_duration_seconds", "histogram"),
        ("edge_guest_kills", "counter"),
        ("edge_deploys", "counter"),
        ("edge_apps", "gauge"),
        ("edge_kv_operations", "counter"),
        ("edge_kv_bytes", "counter"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(
            types.contains(&(name.to_string(), kind.to_string())),
            "no {kind} {name} in {types:?}"
        );
    }
    let hello_2xx = [("app", "hello"), ("class", "2xx")];
    assert_eq!(
        value_of(&families, "edge_requests_total", &hello_2xx),
        Some(3.0)
    );
    let trap = [("app", "trap"), ("reason", "trap")];
    assert_eq!(
        value_of(&families, "edge_guest_kills_total", &trap),
        Some(1.0)
    );
    let kv_op = |op, result| {
        let labels = [
            ("app", "kv"),
            ("store", "default"),
            ("op", op),
            ("result", result),
        ];
        value_of(&families, "edge_kv_operations_total", &labels)
    };
    assert_eq!(kv_op("set", "ok"), Some(1.0));
    assert_eq!(kv_op("set", "error"), Some(1.0));
    assert_eq!(kv_op("get", "ok"), Some(1.0));
    let kv_bytes = |direction| {
        let labels = [
            ("app", "kv"),
            ("store", "default"),
            ("direction", direction),
        ];
        value_of(&families, "edge_kv_bytes_total", &labels)
    };
    assert_eq!(kv_bytes("written"), Some(6.0));
    assert_eq!(kv_bytes("read"), Some(5.0));
    let rss = value_of(&families, "process_resident_memory_bytes", &[]).unwrap();
    assert!(rss > 1e6, "resident memory {rss}");

    // Anything else gets the classic format, which promtool's linter accepts.
    for accept in [None, Some("*/*"), Some("text/plain")] {
        let (content_type, classic) = scrape(&edge, accept).await;
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let (ok, lint) = run_promtool(&["check", "metrics"], &classic);
        assert!(
            ok && lint.trim().is_empty(),
            "{accept:?}: {lint}\n{classic}"
        );
        assert!(
            classic
                .lines()
                .any(|l| l == "edge_requests_total{app=\"hello\",class=\"2xx\"} 3"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }
}

/// Every PromQL expression of the shipped Grafana dashboard, with Grafana's variables
/// replaced by what they expand to.
fn dashboard_queries() -> Vec<String> {
    let path = repo_root().join("deploy/grafana/edge.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "edge-overview");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            queries.push(
                expr.replace("$__rate_interval", "1m")
                    .replace("$job", ".*")
                    .replace("$app", ".*"),
            );
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_scrape_config_check_out_against_a_real_scrape() {
    let queries = dashboard_queries();
    // promtool parses each query as Prometheus would: as a recording rule.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules += &format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        );
    }
    let rules_path = dir.path().join("rules.yml");
    std::fs::write(&rules_path, rules).unwrap();
    let (ok, out) = run_promtool(&["check", "rules", rules_path.to_str().unwrap()], "");
    assert!(ok, "{out}");

    // Every metric a query names is one edge exports.
    let apps = Apps::new();
    apps.add("hello");
    let edge = Edge::start_with_token(apps.path(), &[], TOKEN);
    let (_, classic) = scrape(&edge, None).await;
    let exported: BTreeSet<&str> = classic
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for q in &queries {
        for (start, _) in q.match_indices("edge_").chain(q.match_indices("process_")) {
            if start > 0 && q.as_bytes()[start - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = q[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported.contains(name.as_str()),
                "`{name}` in `{q}` is not exported"
            );
        }
    }

    // The scrape config, with the token file it names.
    std::fs::copy(
        repo_root().join("deploy/prometheus/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("edge-admin-token"), TOKEN).unwrap();
    let config = dir.path().join("prometheus.yml");
    let (ok, out) = run_promtool(&["check", "config", config.to_str().unwrap()], "");
    assert!(ok, "{out}");
}
