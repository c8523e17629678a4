//! `loadrig compare`: the same app natively and on edge, side by side.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;

use crate::compare::{self, CompareConfig, SIDES};
use crate::plan;

use super::{Verdict, usage};

/// Run the same app natively and on edge (a wasm component) side by side: the identical
/// workload against each, interleaved and repeated, at closed-model saturation and at fixed
/// open-model rates; then cold start as separate numbers. Prints metric | native | wasm |
/// wasm/native for each phase's p50/p95/p99, the request rate and bytes/s.
///
/// With no URLs it builds what it needs from the checkout (edge, the native server, the
/// app's component) and starts both servers on free loopback ports, pinned to CPU 0 with
/// the generator on CPU 1 when there are two CPUs. Cold starts come last, from servers of
/// their own started unpinned once the load servers are gone: nothing else runs then, so a
/// deploy compiles with every CPU, as it would on a server not under a load test.
#[derive(Debug, Parser)]
#[command(after_help = "Examples:\n  \
    loadrig compare native wasm                       # hello, the embedded default\n  \
    loadrig compare native wasm --app markdown --json cmp.json --html cmp.html\n  \
    loadrig compare native=http://127.0.0.1:8080 wasm=http://127.0.0.1:9090")]
pub struct CompareArgs {
    /// `native` and `wasm`, each optionally `=URL` of an already-running server.
    #[arg(default_values_t = ["native".to_owned(), "wasm".to_owned()], value_name = "SIDE[=URL]")]
    pub sides: Vec<String>,
    /// The example app: hello (a greeting), site (static pages and assets with ETags and
    /// redirects), markdown (renders a posted 6 KB document).
    #[arg(long, default_value = "hello", value_parser = ["hello", "site", "markdown"])]
    pub app: String,
    /// Length of each measured run.
    #[arg(short = 'd', long, default_value = "5s", value_name = "DURATION")]
    pub duration: String,
    /// Interleaved rounds (native, wasm, native, wasm, …) per load mode.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub rounds: usize,
    /// Connections per run.
    #[arg(short = 'c', long, default_value_t = 16, value_name = "N")]
    pub connections: u64,
    /// Open-model runs at these fractions of the slower side's closed-model rate
    /// (repeatable; `--open 0` for none).
    #[arg(long = "open", default_values_t = [0.5], value_name = "FRACTION")]
    pub open: Vec<f64>,
    /// Cold-start repetitions of each kind (0 to skip).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub cold: usize,
    /// The edge checkout to build from (default: found from the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Do not pin servers and generator to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Write the comparison as JSON (the table, cold starts, and each side's k6-shaped
    /// summary per mode).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML page with the tables and latency spectra.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Run this scenario (a k6 script or a scenario component) against each side instead of
    /// the app's single request, `--rounds` times interleaved, with `BASE_URL` set to the
    /// side's URL; its options set each run's schedule. Both sides route every path to
    /// the app (edge gets a manifest with `paths = ["/"]`).
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// With `--script`: an environment variable for its VUs, `KEY=VALUE` (repeatable).
    #[arg(
        short = 'e',
        long = "env",
        value_name = "KEY=VALUE",
        requires = "script"
    )]
    pub env: Vec<String>,
}

impl CompareArgs {
    fn validate(&self) -> anyhow::Result<CompareConfig> {
        let mut urls: [Option<String>; 2] = [None, None];
        let mut seen = [false; 2];
        for s in &self.sides {
            let (name, url) = match s.split_once('=') {
                Some((n, u)) => (n, Some(u.to_owned())),
                None => (s.as_str(), None),
            };
            let Some(i) = SIDES.iter().position(|x| *x == name) else {
                bail!("side `{s}` is not `native`, `wasm`, `native=URL` or `wasm=URL`");
            };
            if seen[i] {
                bail!("side `{name}` is given twice");
            }
            seen[i] = true;
            if let Some(u) = &url {
                crate::drive::Target::parse(u).with_context(|| format!("side `{s}`"))?;
            }
            urls[i] = url;
        }
        if !seen.iter().all(|x| *x) {
            bail!("compare needs both sides: `native` and `wasm` (each optionally =URL)");
        }
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        for f in &self.open {
            if !(0.0..=10.0).contains(f) {
                bail!("--open {f}: give a fraction of the closed rate, e.g. 0.5");
            }
        }
        let mut env = Vec::new();
        for e in &self.env {
            let (k, v) = e
                .split_once('=')
                .with_context(|| format!("--env `{e}` is not KEY=VALUE"))?;
            env.push((k.to_owned(), v.to_owned()));
        }
        if let Some(s) = &self.script
            && !s.is_file()
        {
            bail!("--script `{}`: no such file", s.display());
        }
        Ok(CompareConfig {
            script: self.script.clone(),
            env,
            app: self.app.clone(),
            urls,
            duration: plan::parse_duration(&self.duration)?,
            rounds: self.rounds,
            connections: self.connections,
            open_fractions: self.open.iter().copied().filter(|f| *f > 0.0).collect(),
            cold: self.cold,
            repo: self.repo.clone(),
            pin: !self.no_pin,
        })
    }

    /// Runs the command.
    pub fn execute(&self) -> anyhow::Result<Verdict> {
        let cfg = self.validate().map_err(usage)?;
        let c = compare::run(&cfg)?;
        print!("{}", compare::text(&c));
        if let Some(path) = &self.json {
            let body = serde_json::to_string_pretty(&compare::json(&c)).expect("serializable");
            std::fs::write(path, body + "\n")
                .with_context(|| format!("writing `{}`", path.display()))?;
        }
        if let Some(path) = &self.html {
            std::fs::write(path, compare::html(&c))
                .with_context(|| format!("writing `{}`", path.display()))?;
        }
        Ok(Verdict::Passed)
    }
}
