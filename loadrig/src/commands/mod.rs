//! The subcommands, one file each: a clap struct and `execute`.

pub mod compare;
pub mod merge;
pub mod run;
pub mod script;
pub mod ws;

use std::path::Path;

use anyhow::Context;

use crate::record::Results;
use crate::summary::{RunInfo, SummaryDoc, ThresholdResult};
use crate::threshold::Threshold;

/// Bad input from the user (flags, thresholds, files to merge): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Marks an error as the user's input being wrong.
pub fn usage(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Usage(format!("{e:#}")))
}

/// Whether every threshold held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// All thresholds held (or there were none).
    Passed,
    /// At least one threshold failed: exit code 99.
    ThresholdsFailed,
    /// A scenario run was aborted (`abort()` in a VU): exit code 108, as k6's.
    Aborted,
}

/// Parses `--threshold` flags.
pub fn parse_thresholds(raw: &[String]) -> anyhow::Result<Vec<Threshold>> {
    raw.iter()
        .map(|t| Threshold::parse(t))
        .collect::<anyhow::Result<_>>()
        .map_err(usage)
}

/// Prints the summary, writes the requested files, and judges the thresholds: the common
/// end of `run` and `merge`.
pub fn report(
    runs: Vec<RunInfo>,
    results: &Results,
    thresholds: &[Threshold],
    json: Option<&Path>,
    html: Option<&Path>,
) -> anyhow::Result<Verdict> {
    let checked: Vec<ThresholdResult> = thresholds.iter().map(|t| t.check(results)).collect();
    write_and_judge(&runs, results, &checked, json, html, true)
}

/// Prints the text summary (unless a scenario's `handleSummary` took over), writes the
/// JSON and HTML files asked for, and says whether the thresholds held.
pub fn write_and_judge(
    runs: &[RunInfo],
    results: &Results,
    checked: &[ThresholdResult],
    json: Option<&Path>,
    html: Option<&Path>,
    text: bool,
) -> anyhow::Result<Verdict> {
    if text {
        print!("{}", crate::report::text(runs, results, checked));
    }
    if let Some(path) = json {
        let doc = SummaryDoc::new(runs.to_vec(), results, checked.to_vec());
        let body = serde_json::to_string_pretty(&doc).expect("serializable");
        create_parent(path)?;
        std::fs::write(path, body + "\n")
            .with_context(|| format!("writing the JSON summary to `{}`", path.display()))?;
    }
    if let Some(path) = html {
        create_parent(path)?;
        std::fs::write(path, crate::report::html(runs, results, checked))
            .with_context(|| format!("writing the HTML report to `{}`", path.display()))?;
    }
    let failed: Vec<&str> = checked
        .iter()
        .filter(|t| !t.ok)
        .map(|t| t.threshold.as_str())
        .collect();
    if failed.is_empty() {
        Ok(Verdict::Passed)
    } else {
        eprintln!("loadrig: thresholds failed: {}", failed.join(", "));
        Ok(Verdict::ThresholdsFailed)
    }
}

/// Creates the directory `path` is to be written in, if missing: a run's results are not
/// lost at its end for want of a directory (the Job's pods write into `segments/` of a
/// fresh volume).
fn create_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the directory `{}`", dir.display())),
        _ => Ok(()),
    }
}
