//! Stage 3: compile a component with Cranelift, through an on-disk cache of native code.
//!
//! A cache entry is keyed by the SHA-256 of the app as uploaded (before pre-initialization,
//! so a hit skips Wizer too) and by the engine's precompile-compatibility hash, so a
//! different wasmtime or engine configuration never sees another's code.
//!
//! An entry is two files: `DIGEST-ENGINE.cwasm`, exactly what `Component::serialize`
//! wrote, and `DIGEST-ENGINE.sum`, a magic number and the SHA-256 of the `.cwasm`; anything
//! that does not verify is recompiled. The `.cwasm` holds nothing else so that wasmtime can
//! map it straight from the file: an idle app's code then costs page cache, shared and
//! reclaimable, instead of an anonymous copy of the whole file per app (about 1 MiB for a
//! hello; see docs/benchmarks.md).

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Starts every `.sum` file; bump it to orphan every existing entry.
const MAGIC: &[u8; 8] = b"EDGEC002";

/// A compiled component and where its code came from.
pub struct Compiled {
    /// The component, ready to link.
    pub component: Component,
    /// `None` on a cache hit; otherwise how long Cranelift took.
    pub compile_time: Option<Duration>,
}

/// The on-disk cache of compiled components.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    engine_key: String,
}

impl Cache {
    /// Opens (creating it if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Cache> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache directory `{}`", dir.display()))?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Cache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    /// The entry for the app whose uploaded bytes have `digest`.
    pub fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The checksum file beside [`Cache::entry_path`].
    fn sum_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.sum", self.engine_key))
    }

    /// Loads the entry for `digest`, or `None` when it is missing or does not verify (the
    /// caller then recompiles and overwrites it).
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry_path(digest);
        // Read (not mapped) for the check, so checking leaves nothing resident in this
        // process: only the pages wasmtime touches once the file is mapped count.
        let (code, sum) = match (std::fs::read(&path), std::fs::read(self.sum_path(digest))) {
            (Ok(code), Ok(sum)) => (code, sum),
            (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                if path.exists() {
                    tracing::warn!(
                        "cache entry `{}` has no checksum; recompiling",
                        path.display()
                    );
                }
                return None;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot read cache entry `{}`: {e}", path.display());
                return None;
            }
        };
        if !verifies(&code, &sum) {
            tracing::warn!("cache entry `{}` is corrupt; recompiling", path.display());
            return None;
        }
        drop(code);
        match deserialize_own_entry(engine, &path) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(
                    "cache entry `{}` is stale or unusable ({e:#}); recompiling",
                    path.display()
                );
                None
            }
        }
    }

    /// Stores `component`'s native code for `digest`. Each file is written to a temporary
    /// name, synced, then renamed, so a crash never leaves a half-written file under the
    /// real name, and a file once named is never written again (mapped code stays as it
    /// was checked); a crash between the two renames leaves an entry that does not
    /// verify, which is recompiled.
    pub fn store(&self, digest: &str, component: &Component) -> Result<()> {
        let code = component.serialize().map_err(anyhow::Error::from)?;
        let mut sum = MAGIC.to_vec();
        sum.extend_from_slice(&Sha256::digest(&code));
        let path = self.entry_path(digest);
        write_atomically(&path, &code)
            .and_then(|()| write_atomically(&self.sum_path(digest), &sum))
            .map_err(|e| {
                anyhow::Error::from(e)
                    .context(format!("cannot write cache entry `{}`", path.display()))
            })
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
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

/// Whether `sum` (a `.sum` file) is the checksum of `code`.
fn verifies(code: &[u8], sum: &[u8]) -> bool {
    sum.len() == MAGIC.len() + 32
        && &sum[..MAGIC.len()] == MAGIC
        && Sha256::digest(code).as_slice() == &sum[MAGIC.len()..]
}

/// The one place edge loads native code from disk.
///
/// # Safety
///
/// `Component::deserialize_file` maps `path` as executable code without being able to
/// check it, so it must only ever see bytes that `Component::serialize` produced, and the
/// file must not change while the component lives (its pages are read lazily). This
/// function is only called by [`Cache::load`] on an entry that [`Cache::store`] wrote (a
/// file under our cache directory, named for the engine's compatibility hash) whose
/// SHA-256 checksum has just been verified, so a torn or tampered-with write never reaches
/// it; and edge never writes a named entry in place (it renames a new file over it, which
/// leaves the mapped one as it was). The cache directory must be writable by edge alone,
/// as the code in it runs inside edge. wasmtime itself re-checks the engine configuration
/// and version embedded in the code.
#[allow(unsafe_code)]
fn deserialize_own_entry(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: see the function's documentation.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

/// Feeds `Hash` output into SHA-256, giving a key that is stable across processes
/// (unlike `DefaultHasher`, whose algorithm may change between Rust releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 state is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_rejects_torn_and_foreign_entries() {
        let mut sum = MAGIC.to_vec();
        sum.extend_from_slice(&Sha256::digest(b"code"));
        assert!(verifies(b"code", &sum));
        assert!(!verifies(b"cod", &sum));
        assert!(!verifies(b"codf", &sum));
        assert!(!verifies(b"code", &sum[..sum.len() - 1]));
        let mut old = sum.clone();
        old[..MAGIC.len()].copy_from_slice(b"EDGEC001");
        assert!(!verifies(b"code", &old));
    }
}
