//! `loadrig merge`: combine the JSON summaries of a split run exactly.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use crate::record::Results;
use crate::summary::{FORMAT_VERSION, SummaryDoc};

use super::{Verdict, parse_thresholds, report, usage};

/// Combine runs (e.g. the segments of a split run) into one summary. Histograms are added
/// bucket by bucket, so merged percentiles are exactly those of one run over all samples.
#[derive(Debug, Parser)]
pub struct MergeArgs {
    /// JSON summaries written by `loadrig run --json`.
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
        for path in &self.files {
            let (doc, results) = read(path).map_err(usage)?;
            merged.merge(&results);
            runs.extend(doc.loadrig.runs);
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
