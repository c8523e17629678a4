//! A loadrig scenario written in Rust: a component exporting `loadrig:scenario/vu`
//! (`loadrig/wit/scenario.wit`). loadrig keeps one instance per virtual user, so the
//! `thread_local!` state below lives across a VU's iterations, like a k6 VU's globals.
//!
//! HTTP goes through `wstd` (the standard `wasi:http/outgoing-handler` import), which
//! loadrig serves with its own client: each request is measured with k6's phases.
//!
//! ```sh
//! cargo build --release                         # in this directory → target/wasm/…/loadrig_scenario_example.wasm
//! native --app api --listen 127.0.0.1:8090 &    # the stand-in API (examples/native)
//! loadrig run target/wasm/wasm32-wasip2/release/loadrig_scenario_example.wasm -e BASE_URL=http://127.0.0.1:8090
//! ```
//!
//! Exec functions: `default` (browse the site: a page, its assets, a redirect chain),
//! `api` (log-in token from `setup`, a JSON CRUD flow in groups), `get` (one GET of
//! `PATH_TO_GET`, the trivial script of benchmarks). The options come from the
//! `OPTIONS` environment variable when it is set (`-e OPTIONS='{"vus":2,"iterations":4}'`),
//! so the same component runs under any executor. The `hostile_*` functions misbehave on
//! purpose: loadrig's tests use them to check that a VU that spins, traps, throws,
//! allocates without end or aborts the run is handled.

use std::cell::Cell;

use serde_json::{Value, json};
use wstd::http::{Body, Client, Request};

wit_bindgen::generate!({
    path: "../../../loadrig/wit",
    world: "vu",
});

use loadrig::scenario::host::{self, MetricKind};

/// The options when `OPTIONS` is not set: both flows side by side, with thresholds on the
/// login submetric and on the checks.
const DEFAULT_OPTIONS: &str = r#"{
  "scenarios": {
    "browse": { "executor": "constant-vus", "vus": 2, "duration": "5s" },
    "api": { "executor": "constant-arrival-rate", "rate": 20, "timeUnit": "1s",
             "duration": "5s", "preAllocatedVUs": 2, "maxVUs": 10, "exec": "api" }
  },
  "thresholds": {
    "http_req_duration{name:item}": ["p(95)<500"],
    "checks": ["rate>0.99"]
  }
}"#;

thread_local! {
    /// Iterations this VU has run: state kept across iterations.
    static RUNS: Cell<u64> = const { Cell::new(0) };
}

fn base_url() -> String {
    std::env::var("BASE_URL").unwrap_or_else(|_| "http://127.0.0.1:8090".into())
}

/// A response as a scenario reads it.
struct Reply {
    status: u16,
    body: String,
    location: Option<String>,
}

/// Sends a request, tagged `name` (so URLs with ids group under one name).
fn send(
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
    name: &str,
) -> Result<Reply, String> {
    host::tag_next_request(&[("name".to_string(), name.to_string())]);
    let url = format!("{}{path}", base_url());
    wstd::runtime::block_on(async {
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => req
                .header("content-type", "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        }
        .map_err(|e| format!("building {method} {url}: {e}"))?;
        let mut resp = Client::new()
            .send(req)
            .await
            .map_err(|e| format!("{method} {url}: {e:?}"))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .body_mut()
            .str_contents()
            .await
            .map_err(|e| format!("reading {url}: {e:?}"))?
            .to_owned();
        Ok(Reply {
            status,
            body,
            location,
        })
    })
}

fn check(name: &str, ok: bool) -> bool {
    host::check(name, ok, &[]);
    ok
}

/// The static site: a page, its assets, and a chain of redirects followed by hand.
fn browse() -> Result<(), String> {
    let page = send("GET", "/", None, None, "page")?;
    check("page is 200", page.status == 200);
    check("page has a title", page.body.contains("<title>"));
    for asset in ["/assets/style.css", "/assets/app.js", "/assets/logo.svg"] {
        let r = send("GET", asset, None, None, "asset")?;
        check("asset is 200", r.status == 200);
    }
    let mut path = "/redirect/3".to_string();
    let mut hops = 0;
    loop {
        let r = send("GET", &path, None, None, "redirect")?;
        match r.location {
            Some(next) if (300..400).contains(&r.status) && hops < 10 => {
                path = next;
                hops += 1;
            }
            _ => {
                check("redirects end in 200", r.status == 200 && hops == 3);
                break;
            }
        }
    }
    RUNS.set(RUNS.get() + 1);
    host::add("pages_browsed", MetricKind::Counter, false, 1.0, &[])?;
    host::add("vu_runs", MetricKind::Gauge, false, RUNS.get() as f64, &[])?;
    host::sleep(0.1);
    Ok(())
}

/// A JSON CRUD flow with the token `setup` got.
fn api(token: &str) -> Result<(), String> {
    host::group_enter("items");
    let created = send(
        "POST",
        "/api/items",
        Some(json!({"name": "widget", "vu": host::context().vu})),
        Some(token),
        "items",
    )?;
    check("created", created.status == 201);
    let id = serde_json::from_str::<Value>(&created.body)
        .ok()
        .and_then(|v| v["id"].as_u64())
        .ok_or_else(|| format!("no id in `{}`", created.body))?;
    let path = format!("/api/items/{id}");
    let read = send("GET", &path, None, Some(token), "item")?;
    check(
        "read back",
        read.status == 200 && read.body.contains("widget"),
    );
    let put = send(
        "PUT",
        &path,
        Some(json!({"name": "gadget"})),
        Some(token),
        "item",
    )?;
    check("updated", put.status == 200);
    let del = send("DELETE", &path, None, Some(token), "item")?;
    check("deleted", del.status == 204);
    host::group_leave();
    let unauthorized = send("GET", "/api/items", None, None, "items")?;
    check("no token is 401", unauthorized.status == 401);
    Ok(())
}

struct Scenario;

impl Guest for Scenario {
    fn options() -> String {
        std::env::var("OPTIONS").unwrap_or_else(|_| DEFAULT_OPTIONS.into())
    }

    fn setup() -> Result<String, String> {
        if std::env::var("SETUP_FAILS").is_ok() {
            return Err("setup was told to fail".into());
        }
        let r = send(
            "POST",
            "/api/login",
            Some(json!({"user": "alice", "password": "secret"})),
            None,
            "login",
        )?;
        if r.status == 401 {
            return Err(format!("login refused: {}", r.body));
        }
        // A target without the API (a plain site): the flows that need no token still run.
        let token = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_owned));
        Ok(json!({ "token": token }).to_string())
    }

    fn iteration(exec: String, data: String) -> Result<(), String> {
        let data: Value = serde_json::from_str(&data).map_err(|e| format!("setup data: {e}"))?;
        let token = data["token"].as_str().unwrap_or_default();
        match exec.as_str() {
            "default" => browse(),
            "get" => {
                let path = std::env::var("PATH_TO_GET").unwrap_or_else(|_| "/".into());
                let r = send("GET", &path, None, None, "get")?;
                check("get is 200", r.status == 200);
                Ok(())
            }
            "api" => api(token),
            "hostile_spin" => loop {
                std::hint::black_box(RUNS.get());
            },
            "hostile_trap" => panic!("a VU that traps"),
            "hostile_error" => Err(format!("iteration {} threw", host::context().iteration)),
            "hostile_memory" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1; 16 << 20]);
                }
            }
            "hostile_abort" => {
                host::abort("the scenario called abort");
                Ok(())
            }
            other => Err(format!("no exec function `{other}`")),
        }
    }

    fn teardown(data: String) -> Result<(), String> {
        let ok = serde_json::from_str::<Value>(&data).is_ok_and(|v| v.get("token").is_some());
        check("teardown got the setup data", ok);
        Ok(())
    }

    fn handle_summary(summary: String) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        let Ok(path) = std::env::var("SUMMARY_FILE") else {
            return Ok(None);
        };
        let doc: Value = serde_json::from_str(&summary).map_err(|e| e.to_string())?;
        let iterations = doc["metrics"]["iterations"]["values"]["count"]
            .as_f64()
            .unwrap_or(0.0);
        Ok(Some(vec![
            (path, summary.into_bytes()),
            (
                "stdout".into(),
                format!("handleSummary: {iterations} iterations\n").into_bytes(),
            ),
        ]))
    }
}

export!(Scenario);
