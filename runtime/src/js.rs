//! JavaScript apps: the embedded QuickJS-NG engine component (`sdk-js/engine`), and
//! [`build`], which pre-initializes it with an app's module.
//!
//! The engine's `wizer-initialize` reads the app's source from stdin and its file name from
//! `EDGE_JS_FILENAME`, evaluates edge's Web API layer and the module (top-level code, top-
//! level `await`, everything) and picks the fetch handler; Wizer then snapshots the heap
//! into an ordinary `wasi:http/proxy` component. Requests start from that snapshot, so no
//! JavaScript is parsed or initialized per request.

use crate::engine::{Allocator, EdgeEngine};
use crate::host::{GuestEnv, Host};
use crate::manifest::OutboundPolicy;
use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtx};

/// The engine component, built from `sdk-js/engine` by `build.rs`; empty when edge was
/// built without the toolchain it needs.
pub const ENGINE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/edge_js_engine.wasm"));

/// Most console output kept from top-level code.
const MAX_OUTPUT: usize = 1 << 20;

/// Limits for running an app's top-level code.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    /// Wall-clock limit for evaluating the module.
    pub timeout: Duration,
    /// Linear-memory cap while evaluating.
    pub memory: usize,
}

impl Default for BuildLimits {
    fn default() -> BuildLimits {
        BuildLimits {
            timeout: Duration::from_secs(30),
            memory: 256 << 20,
        }
    }
}

/// A built JavaScript app.
#[derive(Debug)]
pub struct Built {
    /// The pre-initialized `wasi:http/proxy` component.
    pub component: Vec<u8>,
    /// What top-level code wrote to stdout (`console.log`) and stderr.
    pub stdout: Vec<u8>,
    /// See `stdout`.
    pub stderr: Vec<u8>,
    /// Time to instantiate the engine, run the module and snapshot it.
    pub elapsed: Duration,
}

/// Builds the component for the JavaScript module `source`, named `filename` in stack
/// traces and errors. A syntax error, a throwing top-level, or a module without a fetch
/// handler fails with the engine's message (file and line included).
///
/// `root`, if given, is the directory `import` statements resolve in: it is readable by
/// the module while it is evaluated (at build time), and `filename` is relative to it.
pub fn build(
    source: &[u8],
    filename: &str,
    root: Option<&Path>,
    limits: BuildLimits,
) -> Result<Built> {
    if ENGINE.is_empty() {
        anyhow::bail!(
            "this edge was built without its JavaScript engine: the wasm C toolchain was \
             missing at build time. Run `bash sdk-js/setup.sh` (clang-16, llvm-16, wasi-libc, \
             the wasm32-wasip2 target), then rebuild edge"
        );
    }
    let started = Instant::now();
    let engine = EdgeEngine::new(Allocator::OnDemand, 1)?;
    let _ticker = engine.start_epoch_ticker();
    let linker = crate::prepare::linker(&engine.engine)?;
    let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
    let stderr = MemoryOutputPipe::new(MAX_OUTPUT);
    let mut wasi = WasiCtx::builder();
    wasi.stdin(MemoryInputPipe::new(source.to_vec()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .env("EDGE_JS_FILENAME", filename)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let Some(root) = root {
        wasi.preopened_dir(root, "/", FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open `{}`", root.display()))?;
    }
    let env = GuestEnv {
        app: Arc::from(filename),
        env: Vec::new(),
        memory_limit: limits.memory,
        outbound: Arc::new(OutboundPolicy::default()),
        state: None,
    };
    let host = Host::with_wasi(wasi.build(), &env);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let result = runtime.block_on(crate::preinit::preinit_with(
        &engine.engine,
        &linker,
        host,
        limits.timeout,
        ENGINE,
    ));
    let (stdout, stderr) = (stdout.contents().to_vec(), stderr.contents().to_vec());
    match result {
        Ok(component) => Ok(Built {
            component,
            stdout,
            stderr,
            elapsed: started.elapsed(),
        }),
        Err(err) => {
            let output = String::from_utf8_lossy(&stderr);
            let output = output.trim_end();
            let text = format!("{err:#}");
            if text.contains("did not finish within") || output.is_empty() {
                let err = err.context(format!("{filename}: evaluating the module failed"));
                if output.is_empty() {
                    return Err(err);
                }
                return Err(anyhow!("{err:#}\n{output}"));
            }
            // The engine explains a failure on stderr before it aborts: that is the error.
            Err(anyhow!("{output}"))
        }
    }
}
