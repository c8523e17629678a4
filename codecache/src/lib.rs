//! The on-disk cache of compiled WebAssembly components that edge (`edge serve
//! --cache-dir`) and loadrig (k6 scripts' VU engine and snapshots) share.
//!
//! A cache entry is keyed by a digest the caller chooses (edge: the SHA-256 of the app as
//! uploaded, before pre-initialization, so a hit skips Wizer too; loadrig: of the
//! component it compiles) and by the engine's precompile-compatibility hash, so a
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
use wasmtime::Engine;
use wasmtime::component::Component;

/// Starts every `.sum` file; bump it to orphan every existing entry.
const MAGIC: &[u8; 8] = b"EDGEC002";

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

    /// The component for `bytes` (whose digest is `digest`): loaded from the cache, or
    /// compiled and stored. A cache that cannot be written only costs the next run a
    /// compile. A hit refreshes the entry's modification time, which [`Cache::prune`]
    /// keeps the newest by.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Component> {
        if let Some(component) = self.load(engine, digest) {
            let _ = std::fs::File::options()
                .append(true)
                .open(self.entry_path(digest))
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(component);
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.store(digest, &component) {
            tracing::warn!("{e:#}; continuing without caching");
        }
        Ok(component)
    }

    /// Deletes all but the `keep` most recently written entries of this engine. Mapped
    /// code of a deleted entry stays valid in the processes using it.
    pub fn prune(&self, keep: usize) -> Result<()> {
        let suffix = format!("-{}.cwasm", self.engine_key);
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, path) in entries.into_iter().skip(keep) {
            let _ = std::fs::remove_file(path.with_extension("sum"));
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }
}

/// The hex SHA-256 of `bytes`: a cache key for content.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// Whether `sum` (a `.sum` file) is the checksum of `code`.
fn verifies(code: &[u8], sum: &[u8]) -> bool {
    sum.len() == MAGIC.len() + 32
        && &sum[..MAGIC.len()] == MAGIC
        && Sha256::digest(code).as_slice() == &sum[MAGIC.len()..]
}

/// The one place edge and loadrig load native code from disk.
///
/// # Safety
///
/// `Component::deserialize_file` maps `path` as executable code without being able to
/// check it, so it must only ever see bytes that `Component::serialize` produced, and the
/// file must not change while the component lives (its pages are read lazily). This
/// function is only called by [`Cache::load`] on an entry that [`Cache::store`] wrote (a
/// file under our cache directory, named for the engine's compatibility hash) whose
/// SHA-256 checksum has just been verified, so a torn or tampered-with write never reaches
/// it; and no named entry is ever written in place (a new file is renamed over it, which
/// leaves the mapped one as it was). The cache directory must be writable by its user alone,
/// as the code in it runs inside edge or loadrig. wasmtime itself re-checks the engine configuration
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

    #[test]
    fn prune_keeps_the_newest_entries_of_this_engine_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), &Engine::default()).unwrap();
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for i in 0..5u64 {
            let path = cache.entry_path(&format!("d{i}"));
            std::fs::write(&path, b"x").unwrap();
            std::fs::write(path.with_extension("sum"), b"y").unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(t0 + std::time::Duration::from_secs(i))
                .unwrap();
        }
        let foreign = dir.path().join("d9-0123456789abcdef.cwasm");
        std::fs::write(&foreign, b"another engine's").unwrap();
        cache.prune(2).unwrap();
        for i in 0..5 {
            let path = cache.entry_path(&format!("d{i}"));
            assert_eq!(path.exists(), i >= 3, "{}", path.display());
            assert_eq!(path.with_extension("sum").exists(), i >= 3);
        }
        assert!(foreign.exists());
    }

    #[test]
    fn digest_is_the_hex_sha256() {
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
