//! Stage 2: pre-initialize a component that exports `wizer-initialize`.
//!
//! The init export runs once, here, and the resulting memory and globals are snapshotted
//! into a new component. Requests then start from that snapshot; the init export is kept
//! (Wizer's component output is otherwise invalid) but the runtime never calls it.

use crate::host::{GuestEnv, Host};
use anyhow::{Context, Result, anyhow};
use std::time::Duration;
use wasmtime::component::{Component, Instance, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

/// Runs `wizer-initialize` in `bytes` under the app's limits (`timeout` wall clock, the
/// memory limit in `env`) and returns the snapshotted component.
pub async fn preinit(
    engine: &Engine,
    linker: &Linker<Host>,
    env: &GuestEnv,
    timeout: Duration,
    bytes: &[u8],
) -> Result<Vec<u8>> {
    preinit_with(engine, linker, Host::new(env), timeout, bytes).await
}

/// [`preinit`] with a host state built by the caller (for what `wizer-initialize` reads and
/// where its output goes).
pub async fn preinit_with(
    engine: &Engine,
    linker: &Linker<Host>,
    host: Host,
    timeout: Duration,
    bytes: &[u8],
) -> Result<Vec<u8>> {
    // A snapshot may be served to other apps: it must not hold this one's state.
    let mut store = Store::new(engine, host.without_state());
    store.limiter(|host| &mut host.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.keep_init_func(true);
    let run = wizer.run_component(
        &mut store,
        bytes,
        async |store: &mut Store<Host>, component: &Component| -> wasmtime::Result<Instance> {
            linker.instantiate_async(store, component).await
        },
    );
    let (snapshot, _results) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow!("`wizer-initialize` did not finish within {timeout:?}"))?
        .map_err(anyhow::Error::from)
        .context("pre-initialization (`wizer-initialize`) failed")?;
    let (mut snapshot, before, after) =
        crate::segments::coalesce(&snapshot, crate::segments::MAX_GAP)
            .context("rewriting the snapshot's data segments")?;
    tracing::debug!("snapshot data segments: {before} coalesced into {after}");
    crate::load::mark_preinitialized(&mut snapshot);
    Ok(snapshot)
}
