//! `loadrig run SCENARIO.wasm` end to end: the Rust example scenario (built from source
//! here) against the native stand-in API and the harness's stalling server — executors'
//! schedules, checks, groups, submetric thresholds, setup data, handleSummary, segments
//! and merge, and VUs that misbehave.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loadrig::compare::servers::Server;
use serde_json::Value;

use super::{check_schema, json, loadrig, text, tmp};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn cargo_build(dir: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet"])
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build in {}", dir.display());
}

/// The example scenario component, built once per test run.
fn scenario() -> &'static str {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        cargo_build(&root().join("examples/scenarios/rust"), &[]);
        let p = root().join("target/wasm/wasm32-wasip2/release/loadrig_scenario_example.wasm");
        assert!(p.is_file(), "{} was not built", p.display());
        p
    })
    .to_str()
    .unwrap()
}

/// `native --app api` on a free port, for the whole test process. A static is never
/// dropped, so a small shell watches this process and stops the server when it exits.
pub(super) fn api() -> String {
    static URL: OnceLock<(Server, String)> = OnceLock::new();
    URL.get_or_init(|| {
        cargo_build(root(), &["-p", "edge-native"]);
        let bin = root().join("target/release/native");
        let mut cmd = Command::new("bash");
        cmd.args([
            "-c",
            r#""$0" --app api --listen 127.0.0.1:0 & server=$!; tail --pid="$1" -f /dev/null; kill $server"#,
        ])
        .arg(bin)
        .arg(std::process::id().to_string());
        let server = Server::start(cmd, None, false).unwrap();
        let url = server.url.trim_end_matches('/').to_owned();
        (server, url)
    })
    .1
    .clone()
}

/// Runs the example scenario with `OPTIONS` set to `options` and the extra arguments.
fn run(options: &str, base: &str, extra: &[&str]) -> (i32, String, String) {
    let opt = format!("OPTIONS={options}");
    let base = format!("BASE_URL={base}");
    let mut args = vec!["run", scenario(), "-e", &base, "-e", &opt];
    args.extend_from_slice(extra);
    let o = loadrig(&args);
    let (out, err) = text(&o);
    (o.status.code().unwrap_or(-1), out, err)
}

fn run_json(options: &str, extra: &[&str]) -> (i32, Value, String) {
    let dir = tmp();
    let j = dir.path().join("s.json");
    let mut args = vec!["--json", j.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = run(options, &api(), &args);
    assert!(j.exists(), "no JSON written (exit {code})\n{out}\n{err}");
    let doc = json(&j);
    check_schema(&doc);
    (code, doc, format!("{out}\n{err}"))
}

fn metric(doc: &Value, name: &str, value: &str) -> f64 {
    doc["metrics"][name]["values"][value]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name}.{value} in {}", doc["metrics"]))
}

#[test]
fn flows_record_checks_groups_submetrics_and_setup_data() {
    let options = r#"{
      "scenarios": {
        "browse": {"executor": "per-vu-iterations", "vus": 2, "iterations": 2},
        "api": {"executor": "shared-iterations", "vus": 2, "iterations": 5, "exec": "api",
                "tags": {"flow": "crud"}}
      },
      "thresholds": {
        "http_req_duration{name:item}": ["p(95)<5000"],
        "checks": ["rate>0.99"],
        "http_reqs{flow:crud}": ["count==25"]
      }
    }"#;
    let (code, doc, log) = run_json(options, &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(metric(&doc, "iterations", "count"), 9.0, "4 browse + 5 api");
    assert_eq!(metric(&doc, "checks", "rate"), 1.0, "{log}");
    // 5 requests per api iteration: the tag of the scenario reaches its requests.
    assert_eq!(metric(&doc, "http_reqs{flow:crud}", "count"), 25.0);
    let item = &doc["metrics"]["http_req_duration{name:item}"];
    assert_eq!(item["thresholds"]["p(95)<5000"]["ok"], true, "{item}");
    assert!(metric(&doc, "http_req_duration{name:item}", "max") > 0.0);
    assert!(metric(&doc, "group_duration", "max") > 0.0);
    // root_group: checks outside groups at the root, the CRUD ones under `items`.
    let root_group = &doc["root_group"];
    assert_eq!(root_group["path"], "");
    let items = &root_group["groups"][0];
    assert_eq!(items["name"], "items");
    assert_eq!(items["path"], "::items");
    let created = items["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "created")
        .unwrap();
    assert_eq!(
        (created["passes"].as_u64(), created["fails"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(
        created["id"].as_str().unwrap().len(),
        32,
        "an MD5 id, as k6's"
    );
    // setup's token reached every api iteration (else `created` would have failed) and
    // teardown got the data.
    let teardown = root_group["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "teardown got the setup data")
        .unwrap();
    assert_eq!(teardown["passes"], 1);
    // The VU kept its state across iterations: its own counter reached 2.
    assert_eq!(metric(&doc, "vu_runs", "max"), 2.0);
    assert_eq!(metric(&doc, "pages_browsed", "count"), 4.0);
    assert!(log.contains("CHECKS") && log.contains("█ items"), "{log}");
}

#[test]
fn executors_keep_their_schedules() {
    // Arrival rate: 50 iterations/s for 2 s, VUs to spare: every iteration starts, none
    // is dropped, within a few of the schedule's 100.
    let (code, doc, log) = run_json(
        r#"{"scenarios": {"open": {"executor": "constant-arrival-rate", "rate": 50,
            "duration": "2s", "preAllocatedVUs": 2, "maxVUs": 20, "exec": "get"}}}"#,
        &[],
    );
    assert_eq!(code, 0, "{log}");
    let n = metric(&doc, "iterations", "count");
    assert!((98.0..=101.0).contains(&n), "{n} iterations\n{log}");
    assert_eq!(metric(&doc, "dropped_iterations", "count"), 0.0);
    // One VU that takes ≥ 100 ms an iteration cannot keep 50/s: the rest is dropped.
    let (_, doc, log) = run_json(
        r#"{"scenarios": {"few": {"executor": "constant-arrival-rate", "rate": 50,
            "duration": "2s", "preAllocatedVUs": 1, "maxVUs": 1}}}"#,
        &[],
    );
    let (done, dropped) = (
        metric(&doc, "iterations", "count"),
        metric(&doc, "dropped_iterations", "count"),
    );
    assert!(
        done <= 21.0 && dropped >= 75.0,
        "{done} done, {dropped} dropped\n{log}"
    );
    assert!(
        (98.0..=101.0).contains(&(done + dropped)),
        "{done} + {dropped}"
    );
    // Ramping VUs: up to 4 and back down; vus_max is the peak.
    let (code, doc, log) = run_json(
        r#"{"scenarios": {"ramp": {"executor": "ramping-vus", "startVUs": 0,
            "stages": [{"duration": "1s", "target": 4}, {"duration": "1s", "target": 0}],
            "exec": "get"}}}"#,
        &[],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(metric(&doc, "vus_max", "value"), 4.0);
    assert!(
        metric(&doc, "vus", "max") >= 3.0,
        "{}",
        doc["metrics"]["vus"]
    );
    // Ramping arrival rate from 0 to 100/s over 2 s: about 100 iterations.
    let (_, doc, log) = run_json(
        r#"{"scenarios": {"r": {"executor": "ramping-arrival-rate", "startRate": 0,
            "stages": [{"duration": "2s", "target": 100}], "preAllocatedVUs": 4,
            "maxVUs": 20, "exec": "get"}}}"#,
        &[],
    );
    let n = metric(&doc, "iterations", "count");
    assert!((97.0..=101.0).contains(&n), "{n}\n{log}");
    // Command-line overrides replace the scenarios, as in k6.
    let (code, doc, log) = run_json(
        r#"{"vus": 9, "duration": "1m"}"#,
        &["--vus", "3", "-i", "7"],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(metric(&doc, "iterations", "count"), 7.0);
    assert_eq!(metric(&doc, "vus_max", "value"), 3.0);
}

#[test]
fn thresholds_on_tags_and_checks_set_the_exit_code() {
    let (code, _, log) = run_json(
        r#"{"iterations": 2, "thresholds": {"http_req_duration{name:page}": ["max<0.001"]}}"#,
        &[],
    );
    assert_eq!(code, 99, "{log}");
    assert!(
        log.contains("✗ http_req_duration{name:page}: max<0.001"),
        "{log}"
    );
    // abortOnFail stops the run at the first evaluation, long before its 30 s.
    let t0 = Instant::now();
    let (code, doc, log) = run_json(
        r#"{"vus": 1, "duration": "30s", "thresholds": {
            "checks": [{"threshold": "rate>2", "abortOnFail": true}]}}"#,
        &[],
    );
    assert_eq!(code, 99, "{log}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{log}");
    assert!(log.contains("aborted"), "{log}");
    assert_eq!(
        doc["metrics"]["checks"]["thresholds"]["rate>2"]["ok"],
        false
    );
    // delayAbortEval holds the judgement back: the same failing threshold lets the run go
    // on for its 2 s delay, then aborts it.
    let t0 = Instant::now();
    let (code, _, log) = run_json(
        r#"{"vus": 1, "duration": "30s", "thresholds": {
            "checks": [{"threshold": "rate>2", "abortOnFail": true, "delayAbortEval": "2s"}]}}"#,
        &[],
    );
    assert_eq!(code, 99, "{log}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "aborted before its delay: {took:?}\n{log}"
    );
    assert!(took < Duration::from_secs(12), "{took:?}\n{log}");
    assert!(log.contains("aborted"), "{log}");
    // A threshold loadrig cannot parse, or a key k6 does not have, is invalid options.
    let (code, _, err) = run(r#"{"thresholds": {"checks": ["rate ~ 1"]}}"#, &api(), &[]);
    assert_eq!(code, 104, "{err}");
    let (code, _, err) = run(
        r#"{"thresholds": {"checks": [{"threshold": "rate>0", "abortOnFial": true}]}}"#,
        &api(),
        &[],
    );
    assert_eq!(code, 104, "{err}");
    assert!(
        err.contains("`abortOnFial` is not a threshold key"),
        "{err}"
    );
}

#[test]
fn handle_summary_writes_its_files_instead_of_the_report() {
    let dir = tmp();
    let file = dir.path().join("summary.json");
    let env = format!("SUMMARY_FILE={}", file.display());
    let (code, out, err) = run(r#"{"iterations": 3}"#, &api(), &["-e", &env]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("handleSummary: 3 iterations"), "{out}");
    assert!(
        !out.contains("METRICS"),
        "the default report is replaced: {out}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["metrics"]["iterations"]["values"]["count"], 3.0);
    for key in ["root_group", "options", "state", "metrics"] {
        assert!(
            doc.get(key).is_some(),
            "`{key}` missing from the handleSummary data"
        );
    }
}

#[test]
fn segments_of_a_scenario_merge_into_the_whole_run() {
    let dir = tmp();
    let options = r#"{"scenarios": {"s": {"executor": "shared-iterations", "vus": 2,
        "iterations": 8, "exec": "api"}}}"#;
    let mut files = Vec::new();
    for seg in ["1/2", "2/2"] {
        let f = dir.path().join(format!("seg{}.json", &seg[..1]));
        let (code, out, err) = run(
            options,
            &api(),
            &["--segment", seg, "--json", f.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{out}{err}");
        files.push(f);
    }
    let merged = dir.path().join("all.json");
    let o = loadrig(&[
        "merge",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let doc = json(&merged);
    check_schema(&doc);
    assert_eq!(metric(&doc, "iterations", "count"), 8.0);
    assert_eq!(
        metric(&doc, "http_reqs", "count"),
        8.0 * 5.0 + 2.0,
        "+ a login per segment"
    );
    let items = &doc["root_group"]["groups"][0];
    let created = items["checks"].as_array().unwrap()[0].clone();
    assert_eq!(
        (created["name"].as_str(), created["passes"].as_u64()),
        (Some("created"), Some(8))
    );
}

#[test]
fn misbehaving_vus_are_contained() {
    let base = api();
    // A VU in an infinite loop is interrupted at the end of its graceful stop.
    let t0 = Instant::now();
    let (code, out, err) = run(
        r#"{"scenarios": {"s": {"executor": "constant-vus", "vus": 2, "duration": "1s",
            "gracefulStop": "300ms", "exec": "hostile_spin"}}}"#,
        &base,
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert!(err.contains("2 iteration(s) were interrupted"), "{err}");
    // A trap ends that iteration; the VU gets a fresh instance and goes on.
    let (code, out, err) = run(
        r#"{"scenarios": {"s": {"executor": "per-vu-iterations", "vus": 2, "iterations": 3,
            "exec": "hostile_trap"}}}"#,
        &base,
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("trapped; it gets a fresh instance"), "{err}");
    assert!(
        out.contains("iteration_errors") && out.contains(": 6 "),
        "{out}"
    );
    // An iteration that returns an error is counted, logged once per distinct message.
    let (code, out, err) = run(
        r#"{"scenarios": {"s": {"executor": "per-vu-iterations", "vus": 1, "iterations": 3,
            "exec": "hostile_error"}}}"#,
        &base,
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.matches("iteration 0 threw").count(), 1, "{err}");
    // A memory bomb hits the VU's limit, not the machine's.
    let (code, out, err) = run(
        r#"{"scenarios": {"s": {"executor": "per-vu-iterations", "vus": 1, "iterations": 2,
            "exec": "hostile_memory"}}}"#,
        &base,
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("trapped"), "{err}");
    // abort() ends the run with k6's exit code, and the summary is still printed.
    let (code, out, err) = run(
        r#"{"scenarios": {"s": {"executor": "constant-vus", "vus": 1, "duration": "20s",
            "exec": "hostile_abort"}}}"#,
        &base,
        &[],
    );
    assert_eq!(code, 108, "{out}{err}");
    assert!(
        out.contains("METRICS") && err.contains("the scenario called abort"),
        "{err}"
    );
    // An exec function the scenario does not have fails each iteration with its name.
    let (_, _, err) = run(
        r#"{"scenarios": {"s": {"executor": "shared-iterations", "exec": "nope"}}}"#,
        &base,
        &[],
    );
    assert!(err.contains("no exec function `nope`"), "{err}");
}

#[test]
fn bad_scenarios_get_k6s_exit_codes_and_the_reason() {
    let base = api();
    let dir = tmp();
    // setup() failing aborts: 108.
    let (code, _, err) = run(r#"{"iterations": 1}"#, &base, &["-e", "SETUP_FAILS=1"]);
    assert_eq!(code, 108, "{err}");
    assert!(
        err.contains("setup() failed: setup was told to fail"),
        "{err}"
    );
    // Invalid options: 104, naming the option.
    for (options, needle) in [
        (r#"{"vu": 1}"#, "option `vu` is not supported"),
        (
            r#"{"scenarios": {"x": {"executor": "warp"}}}"#,
            "executor `warp` is not supported",
        ),
        (
            r#"{"scenarios": {"x": {"executor": "constant-vus", "vus": 1}}}"#,
            "`duration` is required",
        ),
        ("not json", "not valid JSON"),
    ] {
        let (code, _, err) = run(options, &base, &[]);
        assert_eq!(code, 104, "{options}: {err}");
        assert!(err.contains(needle), "{options}: {err}");
    }
    // Not a scenario: 107 with the reason.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"hello").unwrap();
    let o = loadrig(&["run", core.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(107));
    assert!(
        text(&o).1.contains("core WebAssembly module"),
        "{:?}",
        text(&o)
    );
    let o = loadrig(&["run", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(107));
    assert!(text(&o).1.contains("not a WebAssembly component"));
    // A component that is not a scenario (an edge app) is refused with the world's name.
    let hello = root().join("target/wasm/wasm32-wasip2/release/hello.wasm");
    cargo_build(&root().join("examples/apps"), &["--bin", "hello"]);
    let o = loadrig(&["run", hello.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(107), "{:?}", text(&o));
    assert!(text(&o).1.contains("loadrig:scenario"), "{:?}", text(&o));
    // Flags that belong to URL runs: 2.
    let o = loadrig(&["run", scenario(), "-r", "100"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("applies to a URL run"));
}

#[test]
fn the_open_model_keeps_its_schedule_through_a_stall() {
    // The harness's server stalls every response for 500 ms, 800 ms after the first
    // request: iterations still start on schedule (new VUs take over from stuck ones), so
    // the stall shows in the latencies instead of thinning the load (a closed model would
    // send almost nothing during it).
    let addr: SocketAddr = super::hello_server();
    let dir = tmp();
    let j = dir.path().join("s.json");
    let (code, out, err) = run(
        r#"{"scenarios": {"s": {"executor": "constant-arrival-rate", "rate": 100,
            "duration": "2s", "preAllocatedVUs": 5, "maxVUs": 100, "exec": "get"}}}"#,
        &format!("http://{addr}"),
        &["-e", "PATH_TO_GET=/stall", "--json", j.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc = json(&j);
    let n = metric(&doc, "iterations", "count");
    assert!((197.0..=201.0).contains(&n), "{n}\n{out}");
    assert_eq!(metric(&doc, "dropped_iterations", "count"), 0.0);
    // VUs were added as the stuck ones piled up, and `vus_max` says how many.
    let vus_max = metric(&doc, "vus_max", "value");
    assert!((10.0..=100.0).contains(&vus_max), "vus_max {vus_max}");
    let p99 = metric(&doc, "http_req_duration", "p(99)");
    assert!(p99 >= 200.0, "the stall must show: p99 {p99} ms\n{out}");
    let med = metric(&doc, "http_req_duration", "med");
    assert!(
        med < 100.0,
        "most requests were not in the stall: med {med} ms"
    );
    assert!(metric(&doc, "iteration_duration", "max") >= 200.0);
}

/// Past `LOADRIG_UNCHECKED_VUS` VUs (24 576 unless set), VUs run on bounds-checked
/// memories: the same results, the same memory limit, and a note that says so.
#[test]
fn many_vus_run_on_bounds_checked_memories() {
    let base = api();
    let run = |exec: &str, bound: &str| {
        let options = format!(
            r#"{{"scenarios": {{"s": {{"executor": "per-vu-iterations", "vus": 3, "iterations": 2, "exec": "{exec}"}}}}}}"#
        );
        let o = Command::new(env!("CARGO_BIN_EXE_loadrig"))
            .args(["run", scenario(), "-e", &format!("BASE_URL={base}")])
            .args(["-e", &format!("OPTIONS={options}"), "-e", "PATH_TO_GET=/"])
            .env("LOADRIG_UNCHECKED_VUS", bound)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let (out, err) = text(&o);
        (o.status.code().unwrap_or(-1), out, err)
    };
    let note = "this run has 3 VUs; above 2, loadrig bounds-checks";
    let (code, out, err) = run("get", "2");
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(note), "{err}");
    assert!(out.contains("✓ get is 200  100.00% — ✓ 6 / ✗ 0"), "{out}");
    // The VU memory limit holds there too.
    let (code, out, err) = run("hostile_memory", "2");
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(note) && err.contains("trapped"), "{err}");
    // Within the bound, no note.
    let (code, out, err) = run("get", "3");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("bounds-checks"), "{err}");
}
