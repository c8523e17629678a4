//! k6 scripts: `loadrig run script.js` pre-initializes the embedded JavaScript VU engine
//! (QuickJS-NG with k6's API, `sdk-js/engine` built with the `k6` feature) with the script,
//! so its init code runs once, here, and every VU starts from the snapshot.
//!
//! The script's directory is readable (read-only) while its init code runs, for relative
//! imports and `open()`; the VUs see no files. The environment at init is the one the VUs
//! get (`-e KEY=VALUE`), so `__ENV` reads in top-level code work as in k6.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::ScenarioError;
use super::vu::{self, VuState};

/// The engine component, built by `build.rs`; empty when loadrig was built without the
/// C toolchain it needs.
pub const ENGINE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/loadrig_k6_engine.wasm"));

/// How long a script's init code may run.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output kept from the init code (console.log at the top level).
const MAX_OUTPUT: usize = 1 << 20;

/// Builds the snapshot for `script` with the VUs' environment `env`: a component of the
/// `loadrig:scenario/vu` world. A syntax error, a throwing init, an unsupported or remote
/// import is a script error with the engine's message (file and line included).
pub fn build(script: &Path, env: &[(String, String)]) -> anyhow::Result<Vec<u8>> {
    let script_err = |m: String| anyhow::Error::new(ScenarioError::Script(m));
    if ENGINE.is_empty() {
        return Err(script_err(String::from(
            "this loadrig was built without its JavaScript engine: the wasm C toolchain was missing at build time. Run `bash sdk-js/setup.sh` (clang-16, llvm-16, wasi-libc, the wasm32-wasip2 target), then rebuild loadrig",
        )));
    }
    let source = std::fs::read(script)
        .with_context(|| format!("reading the script `{}`", script.display()))?;
    let dir = script
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| String::from("script.js"));
    let engine = super::vu_engine(super::Memories::Unchecked)?;
    let _ticker = super::Ticker::start(&engine);
    let linker = vu::linker(&engine)?;
    let stderr = MemoryOutputPipe::new(MAX_OUTPUT);
    let mut wasi = WasiCtx::builder();
    wasi.stdin(MemoryInputPipe::new(source))
        .stdout(std::io::stderr())
        .stderr(stderr.clone())
        .env("LOADRIG_JS_FILENAME", &name)
        .envs(env)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    wasi.preopened_dir(dir, "/", FsPerms::ReadOnly)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot open the script's directory `{}`", dir.display()))?;
    let mut store = Store::new(&engine, VuState::for_init(wasi.build()));
    VuState::limit(&mut store);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.keep_init_func(true);
    // Wizer's `run_component`, step by step, so that the instrumented engine (the same
    // bytes for every script) comes from loadrig's code cache instead of a compile.
    let (cx, instrumented) = wizer
        .instrument_component(ENGINE)
        .map_err(anyhow::Error::from)
        .context("instrumenting the VU engine")?;
    let component = super::compile(&engine, &instrumented).context("compiling the VU engine")?;
    let result = rt.block_on(async {
        let run = async {
            use wasmtime::error::Context as _;
            let instance = linker.instantiate_async(&mut store, &component).await?;
            let Some(init) = instance.get_func(&mut store, wizer.get_init_func()) else {
                wasmtime::bail!("the VU engine exports no initialization function");
            };
            init.call_async(&mut store, &[], &mut [])
                .await
                .context("the initialization function trapped")?;
            let snapshot = wizer
                .snapshot_component(
                    &cx,
                    &mut wasmtime_wizer::WasmtimeWizerComponent {
                        store: &mut store,
                        instance,
                    },
                )
                .await?;
            wasmtime::Result::Ok((snapshot, ()))
        };
        tokio::time::timeout(INIT_TIMEOUT, run).await
    });
    let output = String::from_utf8_lossy(&stderr.contents())
        .trim_end()
        .to_owned();
    match result {
        Err(_) => Err(script_err(format!(
            "{name}: the init code (top-level code) did not finish within {}",
            humantime::format_duration(INIT_TIMEOUT)
        ))),
        Ok(Err(e)) if output.is_empty() => Err(script_err(format!("{name}: {e:#}"))),
        // The engine explains a failure on stderr before it aborts: that is the error.
        Ok(Err(_)) => Err(script_err(output)),
        Ok(Ok((snapshot, _))) => {
            if !output.is_empty() {
                eprintln!("{output}");
            }
            Ok(snapshot)
        }
    }
}
