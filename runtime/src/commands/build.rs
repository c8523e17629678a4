//! `edge build app.js`: a JavaScript app into a `wasi:http/proxy` component.

use crate::js::{self, BuildLimits};
use crate::{config, storage};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Build a JavaScript app into a component that `edge serve` and `edge deploy` take.
///
/// The app is an ES module whose default export has a `fetch(request, env, ctx)` method,
/// or a script that calls `addEventListener("fetch", …)`. Its top-level code runs here,
/// once, and the engine's heap is snapshotted (Wizer): requests start from the snapshot,
/// so nothing is parsed or initialized per request. `console` output of top-level code is
/// printed here.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The app's JavaScript module. `import "./other.js"` resolves next to it, at build
    /// time: the component holds every module, and nothing is read at run time.
    pub input: PathBuf,

    /// Where to write the component [default: INPUT with the extension `.wasm`].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Longest the top-level code may run.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub init_timeout: String,

    /// Most memory the top-level code may use.
    #[arg(long, default_value = "256MiB", value_name = "SIZE")]
    pub init_memory: String,
}

impl BuildArgs {
    /// Builds, writes the component atomically, and reports size and time.
    pub fn execute(self) -> Result<()> {
        let limits = BuildLimits {
            timeout: config::parse_duration(&self.init_timeout).context("in --init-timeout")?,
            memory: config::parse_memory_limit(&self.init_memory).context("in --init-memory")?
                as usize,
        };
        let source = std::fs::read(&self.input)
            .with_context(|| format!("cannot read `{}`", self.input.display()))?;
        let filename = self
            .input
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("app.js")
            .to_string();
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| self.input.with_extension("wasm"));
        if output == self.input {
            anyhow::bail!("the output would overwrite the input; pass -o");
        }
        let root = match self.input.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let built = js::build(&source, &filename, Some(&root), limits)?;
        let mut err = std::io::stderr().lock();
        for (stream, bytes) in [("stdout", &built.stdout), ("stderr", &built.stderr)] {
            for line in String::from_utf8_lossy(bytes).lines() {
                let _ = writeln!(err, "[{filename} {stream}] {line}");
            }
        }
        let output = if output.parent().is_none_or(|p| p.as_os_str().is_empty()) {
            Path::new(".").join(output)
        } else {
            output
        };
        storage::write_atomic(&output, &built.component)?;
        let _ = writeln!(
            err,
            "built {} ({:.1} MiB) from {filename} in {:.2?}: top-level code ran once, here",
            output.display(),
            built.component.len() as f64 / (1 << 20) as f64,
            built.elapsed,
        );
        Ok(())
    }
}
