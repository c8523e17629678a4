//! `loadrig run SCENARIO`: a scenario component's VUs on the executors its options name,
//! then the same report, thresholds and JSON as a URL run.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};

use crate::plan;
use crate::scenario::{self, ScenarioError, Settings, options::Overrides};
use crate::summary::{RunInfo, SummaryDoc};
use crate::threshold::Threshold;

use super::run::RunArgs;
use super::{Verdict, parse_thresholds, usage};

/// Whether `loadrig run`'s argument names a scenario rather than a URL.
pub fn is_scenario(arg: &str) -> bool {
    !arg.contains("://")
        && (arg.ends_with(".wasm") || arg.ends_with(".js") || Path::new(arg).is_file())
}

fn overrides(args: &RunArgs) -> anyhow::Result<(Overrides, Vec<(String, String)>)> {
    let url_only = [
        ("-r/--rate", args.rate.is_some()),
        ("-n/--requests", args.requests.is_some()),
        ("-H/--header", !args.headers.is_empty()),
        ("-b/--body", args.body.is_some() || args.body_file.is_some()),
        ("--http2", args.http2),
        ("--max-connections", args.max_connections.is_some()),
    ];
    for (flag, set) in url_only {
        if set {
            bail!(
                "{flag} applies to a URL run; a scenario's requests and schedule come from the scenario"
            );
        }
    }
    let stages = args
        .stages
        .iter()
        .map(|s| {
            let st = plan::parse_stage(s)
                .with_context(|| format!("--stage `{s}` is DURATION:VUS for a scenario"))?;
            Ok((st.duration, st.target.round() as u64))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .with_context(|| format!("--env `{e}` is not KEY=VALUE"))?;
        if k.is_empty() {
            bail!("--env `{e}` has no name");
        }
        env.push((k.to_owned(), v.to_owned()));
    }
    if args.vus == Some(0) {
        bail!("--vus must be at least 1");
    }
    if args.iterations == Some(0) {
        bail!("--iterations must be at least 1");
    }
    Ok((
        Overrides {
            vus: args.vus,
            duration: args
                .duration
                .as_deref()
                .map(plan::parse_duration)
                .transpose()?,
            iterations: args.iterations,
            stages,
        },
        env,
    ))
}

/// Runs the scenario `args.url` names.
pub fn execute(args: &RunArgs) -> anyhow::Result<Verdict> {
    let (overrides, env) = overrides(args).map_err(usage)?;
    let share = args
        .segment
        .as_deref()
        .map(plan::Share::parse_segment)
        .transpose()
        .map_err(usage)?;
    let extra_thresholds = parse_thresholds(&args.threshold)?;
    let threads = match args.threads {
        Some(0) => return Err(usage(anyhow::anyhow!("--threads must be at least 1"))),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let path = Path::new(&args.url);
    let loaded = if args.url.ends_with(".js") {
        let snapshot = scenario::js::build(path, &env)?;
        scenario::load_bytes(&snapshot, &args.url)?
    } else {
        scenario::load(path)?
    };
    let settings = Settings {
        overrides,
        share,
        env,
        threads,
    };
    // The scenario is loaded and checked; its VUs start at the wall-clock time asked for.
    let start = args.start.validate().map_err(usage)?;
    let planned_start = start.map(|s| s.wait(true)).transpose()?;
    let started_at = crate::start::now();
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let mut finished = scenario::run(&loaded, &settings, |p| {
        if show {
            eprint!(
                "\r\x1b[2K  {:.1}s/{:.0}s  {} VUs active  {} iterations",
                p.elapsed.as_secs_f64(),
                p.length.as_secs_f64(),
                p.active_vus,
                p.iterations
            );
            let _ = std::io::stderr().flush();
        }
    })?;
    if show {
        eprint!("\r\x1b[2K");
    }
    let mut thresholds: Vec<Threshold> = Vec::new();
    for t in &finished.options.thresholds {
        thresholds.push(
            Threshold::parse_k6(&t.metric, &t.expr)
                .map_err(|e| ScenarioError::Options(format!("invalid threshold: {e:#}")))?,
        );
    }
    thresholds.extend(extra_thresholds);
    let scenarios: Vec<String> = finished
        .options
        .scenarios
        .iter()
        .map(|s| {
            format!(
                "{} ({}, {} VUs max)",
                s.name,
                s.executor.name(),
                s.executor.max_vus()
            )
        })
        .collect();
    let info = RunInfo {
        url: args.url.clone(),
        method: "scenario".into(),
        model: scenarios.join(", "),
        connections: finished
            .options
            .scenarios
            .iter()
            .map(|s| s.executor.max_vus())
            .sum(),
        rate: None,
        stages: Vec::new(),
        segment: share.map(|s| s.segment_text()),
        started_at,
        planned_start,
    };
    if finished.interrupted > 0 {
        eprintln!(
            "loadrig: {} iteration(s) were interrupted at the end of their scenario's gracefulStop",
            finished.interrupted
        );
    }
    let results = finished.results.clone();
    let checked: Vec<_> = thresholds.iter().map(|t| t.check(&results)).collect();
    let doc = SummaryDoc::new(vec![info.clone()], &results, checked.clone());
    let json = serde_json::to_string(&doc).expect("serializable");
    let files = finished.handle_summary(&json)?;
    let replaced = files.is_some();
    for (name, content) in files.unwrap_or_default() {
        match name.as_str() {
            "stdout" => std::io::stdout().write_all(&content)?,
            "stderr" => std::io::stderr().write_all(&content)?,
            path => std::fs::write(path, &content)
                .with_context(|| format!("writing `{path}` (from handleSummary)"))?,
        }
    }
    // The files handleSummary returned replace loadrig's text report, as in k6.
    let verdict = super::write_and_judge(
        &[info],
        &results,
        &checked,
        args.json.as_deref(),
        args.html.as_deref(),
        !replaced,
    )?;
    if let Some(reason) = &finished.aborted {
        eprintln!("loadrig: the run was aborted: {reason}");
        if !reason.contains("(abortOnFail)") {
            return Ok(Verdict::Aborted);
        }
    }
    Ok(verdict)
}
