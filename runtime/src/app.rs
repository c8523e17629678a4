//! An app: one `NAME.wasm` (+ optional `NAME.toml`) taken through the whole load
//! pipeline, and everything a request of it needs.

use crate::compile::{self, Cache};
use crate::config::Limits;
use crate::engine::EdgeEngine;
use crate::host::{GuestEnv, Host};
use crate::kv::AppState;
use crate::load::{self, Validated};
use crate::manifest::{AppConfig, Manifest};
use crate::preinit;
use crate::prepare::{self, Prepared};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};

/// What loading needs, shared by every app of a server.
pub struct Loader {
    /// The engine all apps compile for.
    pub engine: EdgeEngine,
    /// Host imports, linked once.
    pub linker: Linker<Host>,
    /// The baseline tier for deploys that miss the cache (`None`: always Cranelift).
    pub baseline: Option<Baseline>,
    /// The compiled-code cache, if enabled.
    pub cache: Option<Cache>,
    /// Server-wide limits that manifests override.
    pub defaults: Limits,
    /// Where apps' key-value stores and secrets live (`None`: apps get no state).
    pub state: Option<Arc<dyn crate::kv::Backend>>,
    /// Where key-value operations are counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The baseline-tier engine and its linker.
pub struct Baseline {
    /// The Winch engine.
    pub engine: EdgeEngine,
    /// Host imports for it.
    pub linker: Linker<Host>,
    /// Where the optimized code of a baseline deploy is compiled: low-priority threads
    /// ([`crate::engine::optimizer_pool`]).
    pub optimizer: Arc<rayon::ThreadPool>,
}

/// Which compiler produced an app's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Cranelift: the optimized code every app ends up with.
    Optimized,
    /// Winch: served right after a deploy that missed the cache, until Cranelift is done.
    Baseline,
}

/// A loaded app version, ready to serve.
pub struct App {
    /// The engine its code was compiled for: each request's store is made on it.
    pub engine: wasmtime::Engine,
    /// Which compiler produced its code.
    pub tier: Tier,
    /// Whether its instances come from the pooling allocator: only those can be reset in
    /// place and kept between requests (`crate::reuse`).
    pub pooled: bool,
    /// The app's name (its file stem).
    pub name: String,
    /// Its validated manifest.
    pub config: AppConfig,
    /// The linked component.
    pub prepared: Prepared,
    /// Per-request store settings.
    pub guest: GuestEnv,
    /// This app's own concurrency cap, when it is below the server's.
    pub permits: Option<Arc<Semaphore>>,
    /// SHA-256 of the component as uploaded.
    pub digest: String,
    /// How loading went.
    pub report: LoadReport,
    /// The stored version this is, when it was deployed (not placed by hand).
    pub version: Option<crate::storage::VersionMeta>,
    /// The manifest text it was loaded with, to notice changes.
    pub manifest_text: Option<String>,
    /// Size and modification time of its files when it was loaded, so a rescan can skip
    /// reading files that have not been touched.
    pub stamp: std::sync::Mutex<Option<FileStamp>>,
    /// Its request metrics, looked up on its first request (see [`crate::metrics::Metrics::app_request`]).
    pub meters: std::sync::OnceLock<crate::metrics::AppMeters>,
    /// Whether instances of this version are never kept: set at load when they do not
    /// come from the pool, and once one could not be prepared for a reset in place
    /// (`crate::reuse`), so that later requests do not try again (the check can read
    /// every page the instance's start-up wrote).
    pub unkeepable: std::sync::atomic::AtomicBool,
}

/// Inode, size and modification time of an app's `.wasm` and `.toml`: a file replaced by
/// rename gets a new inode even within the mtime's granularity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp(Vec<Option<(u64, u64, std::time::SystemTime)>>);

impl FileStamp {
    /// The stamp of `DIR/NAME.wasm` and its manifest as they are now.
    pub fn of(wasm: &Path) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.ino(), m.len(), m.modified().ok()?)))
        };
        FileStamp(vec![one(wasm), one(&wasm.with_extension("toml"))])
    }
}

/// How long each stage of loading took.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// `true` when the native code came from the cache (no Wizer, no Cranelift).
    pub cache_hit: bool,
    /// `true` when the code is that of a live app loaded from the same bytes
    /// ([`Loader::reuse`]): nothing was compiled or read.
    pub reused: bool,
    /// Time spent in `wizer-initialize` and snapshotting, when it ran.
    pub preinit: Option<Duration>,
    /// Time spent in Cranelift, on a miss.
    pub compile: Option<Duration>,
    /// Time spent linking against the host and checking the exports.
    pub link: Duration,
    /// Wall time of the whole pipeline.
    pub total: Duration,
}

/// Checks an app name: `[a-z0-9-]{1,63}`, so it is a valid DNS label and a safe file name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!("app name `{name}` must be 1 to 63 characters of `a-z`, `0-9` and `-`");
    }
    Ok(())
}

impl Loader {
    /// Loads `DIR/NAME.wasm` with its manifest `DIR/NAME.toml`.
    pub async fn load_file(&self, wasm: &Path) -> Result<App> {
        let (name, manifest_text, config) = self.read_manifest(wasm)?;
        let stamp = FileStamp::of(wasm);
        let validated = Validated::read(wasm)?;
        let mut app = self.load(name, config, validated).await?;
        app.manifest_text = manifest_text;
        app.stamp = std::sync::Mutex::new(Some(stamp));
        Ok(app)
    }

    /// The app name of `DIR/NAME.wasm`, and the text and validated contents of its
    /// manifest `DIR/NAME.toml` (defaults when there is none). The component is not read.
    pub fn read_manifest(&self, wasm: &Path) -> Result<(String, Option<String>, AppConfig)> {
        let name = wasm
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the file name is not valid UTF-8")?
            .to_string();
        check_name(&name)?;
        let manifest_path = wasm.with_extension("toml");
        let manifest_text = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read `{}`", manifest_path.display()));
            }
        };
        let config = self
            .resolve_manifest(manifest_text.as_deref())
            .with_context(|| format!("invalid manifest `{}`", manifest_path.display()))?;
        Ok((name, manifest_text, config))
    }

    /// Whether the compiled code of `app` (with `config`, which a pre-initialized snapshot
    /// depends on) is in the cache, so [`Loader::load`] only has to read it.
    pub fn is_cached(&self, app: &Validated, config: &AppConfig) -> Result<bool> {
        Ok(match &self.cache {
            Some(cache) => cache.entry_path(&cache_key(app, config)?).exists(),
            None => false,
        })
    }

    /// Parses and validates manifest text (`None`: no manifest) against the defaults.
    pub fn resolve_manifest(&self, text: Option<&str>) -> Result<AppConfig> {
        let manifest = match text {
            Some(text) => Manifest::parse(text)?,
            None => Manifest::default(),
        };
        manifest.resolve(&self.defaults)
    }

    /// The load pipeline, top to bottom: compile (through the cache, pre-initializing on a
    /// miss if the component asks for it), then link.
    pub async fn load(&self, name: String, config: AppConfig, app: Validated) -> Result<App> {
        self.load_on(name, config, app, None).await
    }

    /// [`Loader::load`] for the optimized code of an app already serving from the baseline
    /// tier: nobody waits for it, so it compiles on the low-priority optimizer threads.
    pub async fn load_in_background(
        &self,
        name: String,
        config: AppConfig,
        app: Validated,
    ) -> Result<App> {
        let pool = self.baseline.as_ref().map(|b| b.optimizer.clone());
        self.load_on(name, config, app, pool).await
    }

    async fn load_on(
        &self,
        name: String,
        config: AppConfig,
        app: Validated,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Result<App> {
        let start = Instant::now();
        let guest = self.guest_env(&name, &config);
        let mut preinit_time = None;
        let cache_key = cache_key(&app, &config)?;
        let compiled = compile::compile(
            &self.engine.engine,
            self.cache.as_ref(),
            &cache_key,
            app.bytes,
            pool,
            async |bytes: Vec<u8>| {
                if !load::wants_preinit(&bytes)? {
                    return Ok(bytes);
                }
                let t = Instant::now();
                let out = preinit::preinit(
                    &self.engine.engine,
                    &self.linker,
                    &guest,
                    config.limits.timeout,
                    &bytes,
                )
                .await?;
                preinit_time = Some(t.elapsed());
                Ok(out)
            },
        )
        .await?;
        let link_start = Instant::now();
        let prepared = prepare::prepare(&self.linker, &compiled.component)?;
        let link = link_start.elapsed();
        let report = LoadReport {
            cache_hit: compiled.compile_time.is_none(),
            reused: false,
            preinit: preinit_time,
            compile: compiled.compile_time,
            link,
            total: start.elapsed(),
        };
        let code = Code {
            engine: self.engine.engine.clone(),
            tier: Tier::Optimized,
            pooled: self.engine.pooling,
            prepared,
        };
        Ok(self.assemble(name, config, code, app.digest, report))
    }

    /// An app that runs the code of `live`, which was loaded from the same bytes: a second
    /// name for the same component, or a redeploy of it, compiles nothing. Only for
    /// components that are not pre-initialized at load (that snapshot depends on the app's
    /// manifest).
    pub fn reuse(&self, name: String, config: AppConfig, live: &App) -> App {
        let start = Instant::now();
        let code = Code {
            engine: live.engine.clone(),
            tier: live.tier,
            pooled: live.pooled,
            prepared: live.prepared.clone(),
        };
        let report = LoadReport {
            cache_hit: true,
            reused: true,
            preinit: None,
            compile: None,
            link: Duration::ZERO,
            total: start.elapsed(),
        };
        self.assemble(name, config, code, live.digest.clone(), report)
    }

    /// Puts an app together around its compiled, linked code.
    fn assemble(
        &self,
        name: String,
        config: AppConfig,
        code: Code,
        digest: String,
        report: LoadReport,
    ) -> App {
        let permits = (config.limits.max_concurrency < self.defaults.max_concurrency)
            .then(|| Arc::new(Semaphore::new(config.limits.max_concurrency)));
        App {
            engine: code.engine,
            tier: code.tier,
            pooled: code.pooled,
            guest: self.guest_env(&name, &config),
            name,
            config,
            prepared: code.prepared,
            permits,
            digest,
            report,
            version: None,
            manifest_text: None,
            stamp: std::sync::Mutex::new(None),
            meters: std::sync::OnceLock::new(),
            unkeepable: std::sync::atomic::AtomicBool::new(!code.pooled),
        }
    }

    /// Like [`Loader::load`], but a component the cache has not seen (and that needs no
    /// pre-initialization) is compiled by the baseline tier, which is several times faster:
    /// the caller serves it at once and calls [`Loader::load`] in the background for the
    /// optimized code. Anything the baseline tier cannot compile goes through Cranelift.
    pub async fn load_quick(&self, name: String, config: AppConfig, app: Validated) -> Result<App> {
        let Some(baseline) = &self.baseline else {
            return self.load(name, config, app).await;
        };
        let cached = self
            .cache
            .as_ref()
            .is_some_and(|c| c.entry_path(&app.digest).exists());
        if cached || load::wants_preinit(&app.bytes)? {
            return self.load(name, config, app).await;
        }
        let start = Instant::now();
        let engine = baseline.engine.engine.clone();
        let bytes = app.bytes.clone();
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .context("the compiler thread panicked")?;
        let component = match compiled {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(
                    "baseline tier declined `{name}` ({e:#}); compiling with Cranelift"
                );
                return self.load(name, config, app).await;
            }
        };
        let compile = start.elapsed();
        let link_start = Instant::now();
        let prepared = prepare::prepare(&baseline.linker, &component)?;
        let link = link_start.elapsed();
        let code = Code {
            engine: baseline.engine.engine.clone(),
            tier: Tier::Baseline,
            pooled: baseline.engine.pooling,
            prepared,
        };
        let report = LoadReport {
            cache_hit: false,
            reused: false,
            preinit: None,
            compile: Some(compile),
            link,
            total: start.elapsed(),
        };
        Ok(self.assemble(name, config, code, app.digest, report))
    }
}

/// Compiled code linked against the host, and what it was compiled by.
struct Code {
    engine: wasmtime::Engine,
    tier: Tier,
    /// Whether `engine` makes instances from the pool.
    pooled: bool,
    prepared: Prepared,
}

/// The cache key of a component: its digest, or for one pre-initialized at load, that of
/// its snapshot ([`snapshot_key`]).
fn cache_key(app: &Validated, config: &AppConfig) -> Result<String> {
    Ok(match load::wants_preinit(&app.bytes)? {
        true => snapshot_key(&app.digest, config),
        false => app.digest.clone(),
    })
}

/// The cache key of a component pre-initialized at load. Its snapshot holds whatever
/// `wizer-initialize` made of the app's environment and outbound access, so it belongs to
/// those as much as to the bytes: another app deploying the same component with other
/// settings (or secrets) must not get this one's snapshot.
fn snapshot_key(digest: &str, config: &AppConfig) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(digest.as_bytes());
    hasher.update(format!("{:?}{:?}", config.env, config.outbound).as_bytes());
    hex::encode(hasher.finalize())
}

impl Loader {
    /// What a request's store needs to know about the app.
    fn guest_env(&self, name: &str, config: &AppConfig) -> GuestEnv {
        let app: Arc<str> = Arc::from(name);
        let state = self.state.as_ref().map(|backend| {
            Arc::new(AppState::new(
                app.clone(),
                backend.clone(),
                config.stores.clone(),
                config.store_limits.clone(),
                config.config.clone(),
                self.metrics.clone(),
            ))
        });
        let mut env = config.env.clone();
        if state.is_some() && !config.stores.is_empty() {
            // How a guest learns its stores' names (sdk-js binds each in `env`).
            env.push(("EDGE_KV_STORES".into(), config.stores.join(",")));
        }
        GuestEnv {
            app,
            env,
            memory_limit: config.limits.memory as usize,
            outbound: Arc::new(config.outbound.clone()),
            state,
        }
    }
}

/// The `NAME.wasm` files of an apps directory, sorted by name.
pub fn app_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read apps directory `{}`", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["hello", "a", "my-app-2"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "Hello", "../etc", "a.b", "a_b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
