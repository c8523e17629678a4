//! Stage 3: compile a component with Cranelift, through an on-disk cache of native code.
//!
//! A cache entry is keyed by the SHA-256 of the app as uploaded (before pre-initialization,
//! so a hit skips Wizer too) and by the engine's precompile-compatibility hash, so a
//! different wasmtime or engine configuration never sees another's code. Each entry
//! carries a checksum of its contents; anything that does not verify is recompiled.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Identifies the entry format; bump it to orphan every existing entry.
const MAGIC: &[u8; 8] = b"EDGEC001";
const HEADER_LEN: usize = MAGIC.len() + 32;

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

    /// Loads the entry for `digest`, or `None` when it is missing or does not verify (the
    /// caller then recompiles and overwrites it).
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry_path(digest);
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read cache entry `{}`: {e}", path.display());
                return None;
            }
        };
        let Some(code) = verified_code(&data) else {
            tracing::warn!("cache entry `{}` is corrupt; recompiling", path.display());
            return None;
        };
        match deserialize_own_entry(engine, code) {
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

    /// Stores `component`'s native code for `digest`: written to a temporary file, synced,
    /// then renamed, so a crash never leaves a half-written entry under the real name.
    pub fn store(&self, digest: &str, component: &Component) -> Result<()> {
        let code = component.serialize().map_err(anyhow::Error::from)?;
        let path = self.entry_path(digest);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(&code))?;
            file.write_all(&code)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::from(e).context(format!("cannot write cache entry `{}`", path.display()))
        })
    }
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
    if let Some(component) = cache.and_then(|c| c.load(engine, digest)) {
        return Ok(Compiled {
            component,
            compile_time: None,
        });
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

/// Returns the native code of a cache entry whose checksum matches, else `None`.
fn verified_code(data: &[u8]) -> Option<&[u8]> {
    if data.len() < HEADER_LEN || &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (sum, code) = data[MAGIC.len()..].split_at(32);
    (Sha256::digest(code).as_slice() == sum).then_some(code)
}

/// The one place edge loads native code from disk.
///
/// # Safety
///
/// `Component::deserialize` maps its input as executable code without being able to
/// check it, so it must only ever see bytes that `Component::serialize` produced. This
/// function is only called by [`Cache::load`] on the contents of an entry that
/// [`Cache::store`] wrote (a file under our cache directory, named for the engine's
/// compatibility hash) and whose SHA-256 checksum has just been verified, so a torn or
/// tampered-with write never reaches it. wasmtime itself re-checks the engine
/// configuration and version embedded in the code.
#[allow(unsafe_code)]
fn deserialize_own_entry(engine: &Engine, code: &[u8]) -> Result<Component> {
    // SAFETY: see the function's documentation.
    unsafe { Component::deserialize(engine, code) }.map_err(anyhow::Error::from)
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
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(b"code"));
        entry.extend_from_slice(b"code");
        assert_eq!(verified_code(&entry), Some(&b"code"[..]));
        assert_eq!(verified_code(&entry[..entry.len() - 1]), None);
        assert_eq!(verified_code(b"EDGEC001"), None);
        let mut flipped = entry.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verified_code(&flipped), None);
    }
}
