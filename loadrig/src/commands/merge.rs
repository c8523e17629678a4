//! `loadrig merge`: combine the JSON summaries of a split run exactly.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use std::time::Duration;

use crate::plan::Share;
use crate::record::Results;
use crate::summary::{FORMAT_VERSION, RunInfo, SummaryDoc};

use super::{Verdict, parse_thresholds, report, usage};

/// Combine runs (e.g. the segments of a split run) into one summary. Histograms are added
/// bucket by bucket, so merged percentiles are exactly those of one run over all samples;
/// rates are over the union of the runs' time spans. Segments of a split run must all be
/// there, once each; a warning says when they started far apart.
#[derive(Debug, Parser)]
pub struct MergeArgs {
    /// JSON summaries written by `loadrig run --json`, or directories of them (every
    /// `*.json` inside, as the segments of a Kubernetes Indexed Job leave on a shared
    /// volume).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Write the merged summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the merged report as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Check a threshold against the merged results (repeatable); see `loadrig run --help`.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
}

impl MergeArgs {
    /// Runs the command.
    pub fn execute(&self) -> anyhow::Result<Verdict> {
        let thresholds = parse_thresholds(&self.threshold)?;
        let mut merged = Results::default();
        let mut runs = Vec::new();
        let mut spans = Vec::new();
        for path in inputs(&self.files).map_err(usage)? {
            let (doc, results) = read(&path).map_err(usage)?;
            merged.merge(&results);
            spans.push(Span::of(&doc.loadrig.runs, &results));
            runs.extend(doc.loadrig.runs);
        }
        check_segments(&runs).map_err(usage)?;
        if let Some(union) = Span::union(&spans) {
            merged.elapsed = union;
        }
        if let Some(skew) = start_skew(&runs)
            && skew > SKEW_WARNING
        {
            eprintln!(
                "loadrig: warning: the runs started up to {:.0} ms apart; their loads only \
                 partly overlapped (start them with the same --start-at)",
                skew.as_secs_f64() * 1e3
            );
        }
        report(
            runs,
            &merged,
            &thresholds,
            self.json.as_deref(),
            self.html.as_deref(),
        )
    }
}

/// The files to merge: each file given, and the `*.json` files of each directory given,
/// in name order.
fn inputs(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in given {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read directory `{}`", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
            .collect();
        anyhow::ensure!(
            !found.is_empty(),
            "directory `{}` holds no .json summary",
            path.display()
        );
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Starts further apart than this are worth a warning: at 100 ms, a 10 s segment overlaps
/// the others by 99 %.
const SKEW_WARNING: Duration = Duration::from_millis(100);

/// When one input ran: from its first run's start, for its length (a merged input's
/// length is already its runs' union).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: f64,
    end: f64,
}

impl Span {
    fn of(runs: &[RunInfo], results: &Results) -> Option<Span> {
        let start = runs
            .iter()
            .map(|r| r.started_at)
            .filter(|t| *t > 0.0)
            .reduce(f64::min)?;
        Some(Span {
            start,
            end: start + results.elapsed.as_secs_f64(),
        })
    }

    /// From the first start to the last end, if every input says when it ran.
    fn union(spans: &[Option<Span>]) -> Option<Duration> {
        let spans: Vec<Span> = spans.iter().copied().collect::<Option<_>>()?;
        let start = spans.iter().map(|s| s.start).reduce(f64::min)?;
        let end = spans.iter().map(|s| s.end).reduce(f64::max)?;
        Duration::try_from_secs_f64(end - start).ok()
    }
}

/// The spread of the runs' actual starts.
fn start_skew(runs: &[RunInfo]) -> Option<Duration> {
    let starts = runs.iter().map(|r| r.started_at).filter(|t| *t > 0.0);
    let first = starts.clone().reduce(f64::min)?;
    let last = starts.reduce(f64::max)?;
    Duration::try_from_secs_f64(last - first).ok()
}

/// Segments of a split run (`--segment i/n`) must all be there, once each, all of the same
/// `n`; runs that were not split merge freely, but not with segments.
fn check_segments(runs: &[RunInfo]) -> anyhow::Result<()> {
    let segments: Vec<Share> = runs
        .iter()
        .filter_map(|r| r.segment.as_deref())
        .map(Share::parse_segment)
        .collect::<anyhow::Result<_>>()?;
    if segments.is_empty() {
        return Ok(());
    }
    anyhow::ensure!(
        segments.len() == runs.len(),
        "{} of the {} runs are segments of a split run and the others are not: merge the \
         segments of one run together",
        segments.len(),
        runs.len()
    );
    let n = segments[0].count;
    anyhow::ensure!(
        segments.iter().all(|s| s.count == n),
        "the segments come from splits into different numbers of parts ({}): merge the \
         segments of one run together",
        segments
            .iter()
            .map(|s| format!("{}/{}", s.index + 1, s.count))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut seen = vec![0usize; n as usize];
    for s in &segments {
        seen[s.index as usize] += 1;
    }
    let list = |pred: &dyn Fn(usize) -> bool| {
        (0..seen.len())
            .filter(|&i| pred(seen[i]))
            .map(|i| format!("{}/{n}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let twice = list(&|c| c > 1);
    anyhow::ensure!(twice.is_empty(), "segment {twice} given more than once");
    let missing = list(&|c| c == 0);
    anyhow::ensure!(
        missing.is_empty(),
        "segment {missing} missing: the merge would not be the whole run"
    );
    Ok(())
}

fn read(path: &PathBuf) -> anyhow::Result<(SummaryDoc, Results)> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading `{shown}`"))?;
    let doc: SummaryDoc = serde_json::from_str(&text)
        .with_context(|| format!("`{shown}` is not a loadrig JSON summary"))?;
    anyhow::ensure!(
        doc.loadrig.version == FORMAT_VERSION,
        "`{shown}` has format version {}, this loadrig reads {FORMAT_VERSION}",
        doc.loadrig.version
    );
    let results =
        Results::from_data(&doc.loadrig.results).with_context(|| format!("in `{shown}`"))?;
    Ok((doc, results))
}
