//! `loadrig run script.js` end to end: k6 scripts (tests/k6, examples/scenarios) against
//! the native stand-in API — every supported API item, the example scripts, handleSummary,
//! and the script errors and hostile VUs k6 users hit, with k6's exit codes.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::scenario::api;
use super::{check_schema, json, loadrig, text, tmp};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn script(name: &str) -> String {
    root().join(name).to_str().unwrap().to_owned()
}

/// Runs `script` with BASE_URL set to the stand-in API: exit code, stdout, stderr.
fn run(name: &str, extra: &[&str]) -> (i32, String, String) {
    let base = format!("BASE_URL={}", api());
    let path = script(name);
    let mut args = vec!["run", path.as_str(), "-e", base.as_str()];
    args.extend_from_slice(extra);
    let o = loadrig(&args);
    let (out, err) = text(&o);
    (o.status.code().unwrap_or(-1), out, err)
}

/// Every check of a `root_group`, with its group path.
fn checks(group: &Value, out: &mut Vec<(String, String, u64, u64)>) {
    for c in group["checks"].as_array().unwrap() {
        out.push((
            group["path"].as_str().unwrap().to_owned(),
            c["name"].as_str().unwrap().to_owned(),
            c["passes"].as_u64().unwrap(),
            c["fails"].as_u64().unwrap(),
        ));
    }
    for g in group["groups"].as_array().unwrap() {
        checks(g, out);
    }
}

#[test]
fn every_supported_k6_api_item_behaves_as_in_k6() {
    let dir = tmp();
    let j = dir.path().join("api.json");
    let (code, out, err) = run(
        "tests/k6/api.js",
        &["-e", "EXTRA=yes", "--json", j.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let doc = json(&j);
    check_schema(&doc);
    let mut all = Vec::new();
    checks(&doc["root_group"], &mut all);
    let failed: Vec<_> = all.iter().filter(|c| c.3 > 0 || c.2 == 0).collect();
    assert!(
        failed.is_empty(),
        "checks that failed or never ran: {failed:#?}\n{out}\n{err}"
    );
    // Every row of the table ran: a check that silently disappears fails here.
    assert_eq!(all.len(), 60, "checks that ran:\n{all:#?}");
    let groups: Vec<&str> = all.iter().map(|c| c.0.as_str()).collect();
    assert!(
        groups.contains(&"::http") && groups.contains(&"::http::nested"),
        "{groups:?}"
    );
    let m = &doc["metrics"];
    assert_eq!(m["my_counter"]["values"]["count"], 4.0);
    assert_eq!(m["my_counter"]["thresholds"]["count==4"]["ok"], true);
    assert_eq!(m["my_gauge"]["values"]["max"], 2.0);
    assert_eq!(m["my_rate"]["values"]["rate"], 0.5);
    assert_eq!(m["my_trend"]["contains"], "time");
    assert!((m["my_trend"]["values"]["avg"].as_f64().unwrap() - 12.5).abs() < 0.05);
    assert_eq!(m["iterations"]["values"]["count"], 4.0);
    assert!(
        m["http_req_duration{name:named}"]["values"]["max"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // The stand-in API saw the VUs' requests through loadrig's client, phases and all.
    assert!(m["http_reqs"]["values"]["count"].as_f64().unwrap() >= 4.0 * 20.0);
    assert!(m["http_req_waiting"]["values"]["max"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_example_scripts_run_against_the_stand_in_api() {
    for (name, extra) in [
        ("examples/scenarios/site.js", vec!["-d", "2s", "--vus", "2"]),
        ("examples/scenarios/api-crud.js", vec![]),
    ] {
        let (code, out, err) = run(name, &extra);
        assert_eq!(code, 0, "{name}\n{out}\n{err}");
        let failing = out
            .lines()
            .filter(|l| l.trim_start().starts_with('✗'))
            .count();
        assert!(out.contains("checks") && failing == 0, "{name}\n{out}");
    }
    // The open-model example, shortened: its arrival-rate scenarios keep the schedule.
    let dir = tmp();
    let j = dir.path().join("open.json");
    let (code, out, err) = run(
        "examples/scenarios/open-model.js",
        &["--json", j.to_str().unwrap()],
    );
    assert!(code == 0 || code == 99, "{out}\n{err}");
    let doc = json(&j);
    let iterations = doc["metrics"]["iterations"]["values"]["count"]
        .as_f64()
        .unwrap();
    let dropped = doc["metrics"]["dropped_iterations"]["values"]["count"]
        .as_f64()
        .unwrap();
    // 200/s for 10 s, then 200→1000 in 2 s, 1000 for 3 s, 1000→0 in 2 s: 6 200 due.
    let due = 2000.0 + 1200.0 + 3000.0 + 1000.0;
    assert!(
        (iterations + dropped - due).abs() <= due * 0.01,
        "{iterations} + {dropped} of {due}\n{out}"
    );
}

#[test]
fn handle_summary_and_text_summary_write_the_files_they_return() {
    let dir = tmp();
    let file = dir.path().join("out.json");
    let out_env = format!("OUT={}", file.display());
    let (code, out, err) = run("tests/k6/summary.js", &["-e", &out_env]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("✓ home is 200") && out.contains("http_req_duration"),
        "{out}"
    );
    assert!(
        !out.contains("METRICS"),
        "loadrig's own report is replaced: {out}"
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["iterations"], 3.0);
    assert_eq!(written["root"]["checks"][0]["passes"], 3);
}

#[test]
fn script_errors_name_the_file_and_line_with_k6s_exit_codes() {
    for (name, code, needles) in [
        (
            "tests/k6/syntax.js",
            107,
            vec!["SyntaxError", "syntax.js:4"],
        ),
        (
            "tests/k6/init_throws.js",
            107,
            vec!["init_throws.js:2", "JSON"],
        ),
        ("tests/k6/no_default.js", 107, vec!["no default export"]),
        (
            "tests/k6/remote.js",
            107,
            vec![
                "https://example.com/lib.js",
                "remote modules are not fetched",
            ],
        ),
        (
            "tests/k6/unsupported.js",
            107,
            vec!["`k6/net/grpc` is not supported"],
        ),
        (
            "tests/k6/setup_throws.js",
            108,
            vec!["setup() failed", "no credentials", "setup_throws.js:4"],
        ),
        ("tests/k6/missing.js", 1, vec!["missing.js"]),
    ] {
        let (got, out, err) = run(name, &[]);
        assert_eq!(got, code, "{name}\n{out}\n{err}");
        for n in needles {
            assert!(err.contains(n), "{name}: `{n}` missing from:\n{err}");
        }
    }
}

#[test]
fn hostile_vus_are_contained_and_the_run_goes_on() {
    let hostile = |kind: &str| {
        let t0 = Instant::now();
        let env = format!("HOSTILE={kind}");
        // Only the spinning VU is meant to meet the scenario's end; the others get time.
        let max = if kind == "spin" { "MAX=1s" } else { "MAX=60s" };
        let (code, out, err) = run("tests/k6/hostile.js", &["-e", &env, "-e", max]);
        assert_eq!(code, 0, "{kind}\n{out}\n{err}");
        (t0.elapsed(), out, err)
    };
    // `while (true) {}` is interrupted at the end of maxDuration + gracefulStop (2 s here;
    // the bound only has to tell that from a run that never ends, on a loaded machine
    // that also compiles the engine first).
    let (took, _, err) = hostile("spin");
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert!(err.contains("2 iteration(s) were interrupted"), "{err}");
    // An exception fails its iteration, logged once however many VUs and iterations.
    let (_, out, err) = hostile("throw");
    assert_eq!(err.matches("iteration went wrong").count(), 1, "{err}");
    assert!(
        out.contains("iteration_errors") && out.contains("iterations............: 6"),
        "{out}"
    );
    // A memory bomb is QuickJS's out-of-memory inside the VU, not the machine's.
    let (_, _, err) = hostile("memory");
    assert!(err.contains("out of memory"), "{err}");
    // Unbounded recursion exhausts the wasm stack: a trap, and a fresh instance.
    let (_, out, err) = hostile("recursion");
    assert!(err.contains("trapped; it gets a fresh instance"), "{err}");
    assert!(out.contains("iterations............: 6"), "{out}");
}

#[test]
fn k6s_html_reporter_renders_our_summaries() {
    // k6-html-reporter (npm; tests/run.sh installs it into target/npm) reads k6's
    // handleSummary data: it needs `root_group` and per-metric `thresholds`.
    let reporter = root().join("target/npm/node_modules/k6-html-reporter");
    assert!(
        reporter.is_dir(),
        "k6-html-reporter is not installed: run `bash tests/run.sh`, or `npm install --prefix target/npm k6-html-reporter@1.0.5`"
    );
    let dir = tmp();
    let script_json = dir.path().join("script.json");
    let (code, out, err) = run(
        "tests/k6/api.js",
        &["-e", "EXTRA=yes", "--json", script_json.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let url_json = dir.path().join("url.json");
    let o = loadrig(&[
        "run",
        &format!("{}/", api()),
        "-d",
        "1s",
        "--threshold",
        "p(99)<1s",
        "--json",
        url_json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    for (json, needles) in [
        (
            &script_json,
            vec![
                "my_counter",
                "count==4",
                "state persists across iterations",
                "All thresholds were met",
            ],
        ),
        (
            &url_json,
            vec![
                "http_req_duration",
                "p(99)&lt;1s",
                "All thresholds were met",
            ],
        ),
    ] {
        let out_dir = dir.path().join(json.file_stem().unwrap());
        let script = format!(
            "require({:?}).generateSummaryReport({{ jsonFile: {:?}, output: {:?} }})",
            reporter.to_str().unwrap(),
            json.to_str().unwrap(),
            out_dir.to_str().unwrap()
        );
        let o = std::process::Command::new("node")
            .args(["-e", &script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "the reporter failed on {}: {:?}",
            json.display(),
            text(&o)
        );
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        for n in needles {
            assert!(
                html.contains(n),
                "`{n}` missing from the report of {}",
                json.display()
            );
        }
    }
}

#[test]
fn k6_ws_sessions_echo_ping_time_out_and_record_k6_metrics() {
    let dir = tmp();
    let j = dir.path().join("ws.json");
    let (code, out, err) = run("tests/k6/ws.js", &["--json", j.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc = json(&j);
    check_schema(&doc);
    let mut all = Vec::new();
    checks(&doc["root_group"], &mut all);
    assert_eq!(all.len(), 9, "{all:#?}");
    assert!(all.iter().all(|c| c.3 == 0 && c.2 == 4), "{all:#?}\n{out}");
    let m = &doc["metrics"];
    let count = |name: &str| m[name]["values"]["count"].as_f64().unwrap_or(-1.0);
    assert_eq!(count("ws_sessions"), 4.0, "{m}");
    // 2 texts, 1 binary and at least 3 ticks per session, every one echoed.
    assert!(count("ws_msgs_sent") >= 24.0, "{m}");
    assert_eq!(count("ws_msgs_received"), count("ws_msgs_sent"), "{m}");
    assert_eq!(
        m["ws_msgs_sent{flow:echo}"]["thresholds"]["count>=20"]["ok"],
        true
    );
    assert!(m["ws_ping"]["values"]["max"].as_f64().unwrap() > 0.0);
    // Each session closes itself after 150 ms.
    let session = m["ws_session_duration"]["values"]["min"].as_f64().unwrap();
    assert!((140.0..2000.0).contains(&session), "{session} ms");
    assert!(m["ws_connecting"]["values"]["max"].as_f64().unwrap() > 0.0);
}

/// The `.cwasm` entries in a code cache directory.
fn cache_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
    found
}

#[test]
fn the_vu_engine_is_compiled_once_and_a_corrupt_cache_entry_is_recompiled() {
    let dir = tmp();
    let cache = dir.path().join("cache");
    let js = dir.path().join("one.js");
    std::fs::write(&js, "export default function () {}\n").unwrap();
    let run = |cache_dir: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_loadrig"))
            .args([
                "run",
                js.to_str().unwrap(),
                "--vus",
                "1",
                "-i",
                "2",
                "--no-progress",
            ])
            .env("LOADRIG_CACHE_DIR", cache_dir)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
        assert!(out.contains("iterations") && out.contains(" 2 "), "{out}");
    };
    // The first run compiles the engine and keeps it; a snapshot (different every run)
    // is never kept.
    run(&cache);
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let engine = entries[0].clone();
    let code = std::fs::read(&engine).unwrap();
    let sum_path = engine.with_extension("sum");
    let sum = std::fs::read(&sum_path).unwrap();
    // The second run loads it: nothing new is written.
    run(&cache);
    assert_eq!(cache_entries(&cache), vec![engine.clone()]);
    assert_eq!(std::fs::read(&sum_path).unwrap(), sum);
    // A corrupt entry fails its checksum: it is recompiled and rewritten, and the run
    // goes on as if there were no cache.
    let mut bad = code.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&engine, &bad).unwrap();
    run(&cache);
    let now = std::fs::read(&engine).unwrap();
    assert_ne!(now, bad, "the corrupt entry was kept");
    assert_eq!(now.len(), code.len(), "the entry was not rewritten whole");
    // The rewritten entry verifies: the next run loads it as it is.
    let sum = std::fs::read(&sum_path).unwrap();
    run(&cache);
    assert_eq!(std::fs::read(&engine).unwrap(), now);
    assert_eq!(std::fs::read(&sum_path).unwrap(), sum);
    // An empty LOADRIG_CACHE_DIR turns the cache off.
    run(Path::new(""));
}
