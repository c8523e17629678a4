//! Stage 3: compile a component with Cranelift, through the on-disk cache of native code
//! (`edge-codecache`, shared with loadrig). An app's entry is keyed by the SHA-256 of the
//! app as uploaded, before pre-initialization, so a hit skips Wizer too.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The on-disk cache, shared with loadrig (the `edge-codecache` crate).
pub use edge_codecache::Cache;

/// A compiled component and where its code came from.
pub struct Compiled {
    /// The component, ready to link.
    pub component: Component,
    /// `None` on a cache hit; otherwise how long Cranelift took.
    pub compile_time: Option<Duration>,
}

/// Compiles `bytes`, or loads the result from `cache` when an entry for `digest` exists.
/// `preinit` runs only on a miss, before compiling. The compile runs its functions in
/// parallel on `pool` ([`crate::engine::optimizer_pool`]) when given, else on rayon's
/// global pool.
pub async fn compile(
    engine: &Engine,
    cache: Option<&Cache>,
    digest: &str,
    bytes: Vec<u8>,
    pool: Option<Arc<rayon::ThreadPool>>,
    preinit: impl AsyncFnOnce(Vec<u8>) -> Result<Vec<u8>>,
) -> Result<Compiled> {
    if let Some(cache) = cache {
        // Reading and checking a megabyte or so blocks: not on the async runtime.
        let (cache, engine, key) = (cache.clone(), engine.clone(), digest.to_string());
        let hit = tokio::task::spawn_blocking(move || cache.load(&engine, &key))
            .await
            .context("the cache thread panicked")?;
        if let Some(component) = hit {
            return Ok(Compiled {
                component,
                compile_time: None,
            });
        }
    }
    let bytes = preinit(bytes).await?;
    let start = Instant::now();
    let engine2 = engine.clone();
    let component = tokio::task::spawn_blocking(move || match pool {
        Some(pool) => pool.install(|| Component::new(&engine2, &bytes)),
        None => Component::new(&engine2, &bytes),
    })
    .await
    .context("the compiler thread panicked")?
    .map_err(anyhow::Error::from)
    .context("the component is invalid")?;
    let compile_time = start.elapsed();
    if let Some(cache) = cache
        && let Err(e) = cache.store(digest, &component)
    {
        tracing::warn!("{e:#}; continuing without caching");
    }
    Ok(Compiled {
        component,
        compile_time: Some(compile_time),
    })
}
