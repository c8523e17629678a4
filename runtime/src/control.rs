//! The control plane: which app versions are live, and every change to that — start-up
//! load, deploy, rollback, delete, and rescans of the apps directory (`--watch`).
//!
//! Every change builds the new app completely (validate, pre-initialize, compile, link),
//! stores it durably, and only then swaps a new routing table in. Requests already running
//! keep the version they started on; a failed change leaves everything as it was.

use crate::app::{App, FileStamp, Loader, Tier, app_files, check_name};
use crate::cluster::{Cluster, Current, StoreError};
use crate::load::{self, Validated};
use crate::loading::{Loading, Progress};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::server::Server;
use crate::storage::{Storage, VersionMeta};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Why a change was refused. The admin API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The app name is not `[a-z0-9-]{1,63}`.
    #[error("{0}")]
    BadName(String),
    /// The upload is larger than allowed.
    #[error("upload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes received.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The component or manifest is not acceptable; nothing changed.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// Another change to the same app is in progress.
    #[error("a deploy, rollback or delete of `{0}` is already in progress; retry when it is done")]
    Busy(String),
    /// No such app or version.
    #[error("{0}")]
    NotFound(String),
    /// Storage failed; the running version is unchanged.
    #[error("{0:#}")]
    Internal(anyhow::Error),
    /// Another node of the cluster changed the app since this change started.
    #[error("{0}")]
    Conflict(String),
    /// The cluster's app store cannot be reached; nothing changed.
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ControlError::Conflict(m),
            StoreError::NotFound(m) => ControlError::NotFound(m),
            StoreError::Corrupt(m) => ControlError::Internal(anyhow::anyhow!(m)),
            e @ StoreError::Unavailable(_) => ControlError::Unavailable(anyhow::anyhow!("{e}")),
        }
    }
}

/// What a deploy did and how long each stage took.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The app.
    pub name: String,
    /// The new version id.
    pub version: String,
    /// SHA-256 of the uploaded component.
    pub digest: String,
    /// Checking the component, looking up the cache and linking it against the host, in ms.
    pub validate_ms: f64,
    /// Running `wizer-initialize`, in ms, when the component exports it.
    pub preinit_ms: Option<f64>,
    /// Compiling, in ms; `None` when the code came from the cache.
    pub compile_ms: Option<f64>,
    /// Where the code came from: `compiled` (by this deploy), `cache` (the compile cache),
    /// or `live` (another app or version serving the same bytes).
    pub code: String,
    /// `optimized` (Cranelift, or the cache), or `baseline` (Winch): a deploy that missed
    /// the cache serves baseline code at once and switches to Cranelift's when it is ready.
    pub tier: String,
    /// Storing the version durably, in ms. Writing its files overlaps the compile; only
    /// the final rename and making it current come after.
    pub store_ms: f64,
    /// From upload received to serving, in ms.
    pub total_ms: f64,
    /// In a cluster: when the version committed to the app store (RFC 3339, UTC), the
    /// moment every node's propagation is measured from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
}

/// One app as `GET /apps` and `edge apps` show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AppInfo {
    /// The app.
    pub name: String,
    /// Current version id, or `null` for an app placed in the directory by hand.
    pub version: Option<String>,
    /// SHA-256 of the current component.
    pub digest: String,
    /// Exact hosts routed to it (besides `NAME.*`).
    pub hosts: Vec<String>,
    /// Path prefixes routed to it.
    pub paths: Vec<String>,
    /// When the current version was deployed (Unix seconds), if it was.
    pub deployed_at: Option<u64>,
    /// Every stored version id, oldest first.
    pub versions: Vec<String>,
    /// `optimized` (Cranelift), or `baseline` (Winch) while a fresh deploy is optimized.
    #[serde(default)]
    pub tier: String,
}

/// How [`Control::build`] compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// A deploy: the baseline tier when the cache misses.
    Quick,
    /// Cranelift (or the cache) before serving: rollbacks.
    Full,
    /// The background optimization of a baseline deploy.
    Background,
}

/// The live apps and the operations that change them.
pub struct Control {
    storage: Storage,
    loader: Loader,
    server: Arc<Server>,
    metrics: Arc<Metrics>,
    keep_versions: usize,
    max_upload: u64,
    apps: Mutex<BTreeMap<String, Arc<App>>>,
    busy: Mutex<HashSet<String>>,
    /// Files a rescan failed to load, by app, so an unchanged broken file is reported once
    /// rather than on every scan.
    failed: Mutex<BTreeMap<String, FileStamp>>,
    /// Background Cranelift compiles in flight, by digest: a rollback to such a version
    /// waits for its code rather than compiling it a second time.
    optimizing: Mutex<BTreeMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// The apps of start-up, until each is loaded.
    loading: Mutex<Option<Arc<Loading>>>,
    /// Apps installed since the routing table was last rebuilt.
    unpublished: Mutex<Vec<String>>,
    /// Wakes start-up's publisher: apps are waiting to be routable.
    publish_wanted: tokio::sync::Notify,
    /// The cluster's app store, when this node is one of a cluster: every change commits
    /// there first.
    cluster: Option<Arc<Cluster>>,
    /// Versions from the store that could not be served (corrupt, invalid), by app, so
    /// each is reported once rather than at every reconciliation.
    refused: Mutex<BTreeMap<String, VersionMeta>>,
}

/// Marks an app busy for the duration of one change.
struct BusyGuard<'a> {
    control: &'a Control,
    name: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.control.busy.lock().unwrap().remove(&self.name);
    }
}

impl Control {
    /// A control plane over `storage`, publishing to `server`.
    pub fn new(
        storage: Storage,
        loader: Loader,
        server: Arc<Server>,
        metrics: Arc<Metrics>,
        keep_versions: usize,
        max_upload: u64,
    ) -> Control {
        Control {
            storage,
            loader,
            server,
            metrics,
            keep_versions: keep_versions.max(1),
            max_upload,
            apps: Mutex::new(BTreeMap::new()),
            busy: Mutex::new(HashSet::new()),
            failed: Mutex::new(BTreeMap::new()),
            optimizing: Mutex::new(BTreeMap::new()),
            loading: Mutex::new(None),
            unpublished: Mutex::new(Vec::new()),
            publish_wanted: tokio::sync::Notify::new(),
            cluster: None,
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes this control plane a node of the cluster on `cluster`'s app store.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Control {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster's app store, if this node is one of a cluster.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Whether the node serves but cannot reach its cluster's app store.
    pub fn degraded(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.is_up())
    }

    /// The largest upload accepted, in bytes.
    pub fn max_upload(&self) -> u64 {
        self.max_upload
    }

    /// The metrics this control plane and its server record.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The database of key-value stores and secrets, if the server has one.
    pub fn state(&self) -> Option<&Arc<dyn crate::kv::Backend>> {
        self.loader.state.as_ref()
    }

    /// The state a live app's requests see: its declared stores, limits and config.
    pub fn app_state(&self, name: &str) -> Result<Arc<crate::kv::AppState>, ControlError> {
        check_name(name).map_err(|e| ControlError::BadName(e.to_string()))?;
        let apps = self.apps.lock().unwrap();
        let app = apps
            .get(name)
            .ok_or_else(|| ControlError::NotFound(format!("no app `{name}`")))?;
        app.guest.state.clone().ok_or_else(|| {
            ControlError::NotFound("this server has no key-value database".to_string())
        })
    }

    fn lock(&self, name: &str) -> Result<BusyGuard<'_>, ControlError> {
        if !self.busy.lock().unwrap().insert(name.to_string()) {
            return Err(ControlError::Busy(name.to_string()));
        }
        Ok(BusyGuard {
            control: self,
            name: name.to_string(),
        })
    }

    /// Publishes the live set as a new routing table. Called with the map locked, so the
    /// last change always wins.
    /// Swaps in a routing table of `apps`. Apps installed before it are routable from
    /// now on, so their start-up waits end here.
    fn publish(&self, apps: &BTreeMap<String, Arc<App>>) {
        self.metrics.set_app_count(apps.len());
        self.server
            .replace_apps(Router::new(apps.values().cloned()));
        let routable = std::mem::take(&mut *self.unpublished.lock().unwrap());
        for name in routable {
            self.finish_loading(&name, true);
        }
    }

    /// Makes `app` live at once.
    fn install(&self, app: App) {
        let apps = self.install_unpublished(app);
        self.publish(&apps);
    }

    /// Adds `app` to the live set, to be routable at the next [`Control::publish`]: a
    /// start-up with thousands of apps rebuilds the routing table a few times, not once per
    /// app. Returns the live set, still locked.
    fn install_unpublished(&self, app: App) -> MutexGuard<'_, BTreeMap<String, Arc<App>>> {
        let name = app.name.clone();
        self.metrics.serve_app(&name);
        let version = app.version.as_ref().map_or("-", |v| v.version.as_str());
        self.metrics.serving_since(&name, Some(version));
        let mut apps = self.apps.lock().unwrap();
        apps.insert(name.clone(), Arc::new(app));
        self.unpublished.lock().unwrap().push(name);
        apps
    }

    /// Takes an upload or a stored version through the whole load pipeline. Nothing is
    /// stored or swapped in yet.
    async fn build(
        &self,
        name: &str,
        validated: Validated,
        manifest: Option<String>,
        how: How,
    ) -> Result<App, ControlError> {
        let config = self
            .loader
            .resolve_manifest(manifest.as_deref())
            .map_err(|e| ControlError::Invalid(e.context("invalid manifest")))?;
        let name = name.to_string();
        // The same bytes already serve (under another name, or as this app's current
        // version): their code is reused, unless it is a snapshot made with another
        // manifest's environment. A deploy takes any tier; the optimized tier wants
        // Cranelift's code.
        let preinit = load::wants_preinit(&validated.bytes).map_err(ControlError::Invalid)?;
        if !preinit {
            let live = self
                .apps
                .lock()
                .unwrap()
                .values()
                .find(|a| {
                    a.digest == validated.digest && (how == How::Quick || a.tier == Tier::Optimized)
                })
                .cloned();
            if let Some(live) = live {
                let mut app = self.loader.reuse(name, config, &live);
                app.manifest_text = manifest;
                return Ok(app);
            }
        }
        // A rollback to code being optimized in the background waits for it (and its cache
        // entry) rather than compiling it a second time. A deploy does not wait: the
        // baseline tier is quicker than the rest of a Cranelift compile.
        let pending = match how {
            How::Full => self
                .optimizing
                .lock()
                .unwrap()
                .get(&validated.digest)
                .cloned(),
            How::Quick | How::Background => None,
        };
        if let Some(mut done) = pending {
            let _ = done.wait_for(|d| *d).await;
        }
        let load = match how {
            How::Quick => self.loader.load_quick(name, config, validated).await,
            How::Full => self.loader.load(name, config, validated).await,
            How::Background => {
                self.loader
                    .load_in_background(name, config, validated)
                    .await
            }
        };
        let mut app = load.map_err(ControlError::Invalid)?;
        app.manifest_text = manifest;
        Ok(app)
    }

    /// Recovers from any interrupted write and finds every app in the directory (reading
    /// only manifests), then loads them in the background, `parallel` at a time: apps
    /// whose code is in the cache first, then the others, through the baseline tier when
    /// it is on (with Cranelift's code swapped in later, as after a deploy). One bad app is
    /// reported and skipped; the others still serve. The [`Loading`] returned tracks them.
    /// Until an app is loaded, a request for it waits up to `wait`, then gets 503.
    pub fn start(
        self: &Arc<Self>,
        parallel: usize,
        wait: std::time::Duration,
    ) -> anyhow::Result<Arc<Loading>> {
        self.storage.recover()?;
        let dir = self.storage.dir();
        let mut found = Vec::new();
        for path in app_files(dir)? {
            match self.loader.read_manifest(&path) {
                Ok((name, _, config)) => found.push((path, name, config)),
                Err(e) => tracing::error!("skipping app `{}`: {e:#}", path.display()),
            }
        }
        if found.is_empty() {
            tracing::warn!(
                "no app found in `{}`: every request will get 404",
                dir.display()
            );
        }
        let loading = Arc::new(Loading::new(found.iter().map(|(_, name, config)| {
            (name.clone(), config.hosts.clone(), config.paths.clone())
        })));
        *self.loading.lock().unwrap() = Some(loading.clone());
        self.server.set_loading(Some((loading.clone(), wait)));
        let found = found
            .into_iter()
            .map(|(path, name, _)| (path, name))
            .collect();
        tokio::spawn(
            self.clone()
                .load_found(found, parallel.max(1), loading.clone()),
        );
        Ok(loading)
    }

    /// [`Control::start`]'s background part.
    async fn load_found(
        self: Arc<Self>,
        found: Vec<(PathBuf, String)>,
        parallel: usize,
        loading: Arc<Loading>,
    ) {
        let start = Instant::now();
        let publisher = tokio::spawn(self.clone().publish_while_loading());
        // `parallel` loaders share three queues, in order: apps a request waits for; apps
        // not tried yet, taken only if the cache has their code; the cache misses those
        // leave behind, compiled (by the baseline tier when it is on).
        let paths: BTreeMap<String, PathBuf> =
            found.into_iter().map(|(path, name)| (name, path)).collect();
        let untried: Mutex<std::collections::VecDeque<String>> =
            Mutex::new(paths.keys().cloned().collect());
        let misses: Mutex<std::collections::VecDeque<String>> = Mutex::default();
        let state = Arc::new((paths, untried, misses));
        let mut loaders = tokio::task::JoinSet::new();
        for _ in 0..parallel {
            let (control, loading, state) = (self.clone(), loading.clone(), state.clone());
            loaders.spawn(async move {
                let (paths, untried, misses) = &*state;
                loop {
                    let next = loading.next_wanted().map(|n| (n, false)).or_else(|| {
                        let mut untried = untried.lock().unwrap();
                        std::iter::from_fn(|| untried.pop_front())
                            .find(|n| loading.claim(n))
                            .map(|n| (n, true))
                    });
                    let next = next.or_else(|| {
                        let mut misses = misses.lock().unwrap();
                        std::iter::from_fn(|| misses.pop_front())
                            .find(|n| loading.claim(n))
                            .map(|n| (n, false))
                    });
                    let Some((name, cache_hits_only)) = next else {
                        break;
                    };
                    let path = &paths[&name];
                    if control.load_at_start(path, &name, cache_hits_only).await {
                        loading.unclaim(&name);
                        misses.lock().unwrap().push_back(name);
                    }
                }
            });
        }
        while let Some(done) = loaders.join_next().await {
            if let Err(e) = done {
                tracing::error!("a start-up loader failed: {e}");
            }
        }
        publisher.abort();
        self.publish(&self.apps.lock().unwrap());
        let progress = loading.progress();
        tracing::info!(
            apps = progress.apps,
            failed = progress.failed,
            total_ms = ms(start.elapsed()),
            "start-up: {} of {} apps loaded",
            progress.loaded,
            progress.apps
        );
        self.server.set_loading(None);
    }

    /// Start-up's publisher: rebuilds the routing table whenever loaded apps wait for it,
    /// then pauses four times as long as the rebuild took. However many apps there are,
    /// rebuilding takes at most a fifth of start-up, where a rebuild per app would make
    /// start-up quadratic in the number of apps.
    async fn publish_while_loading(self: Arc<Self>) {
        loop {
            self.publish_wanted.notified().await;
            let start = Instant::now();
            self.publish(&self.apps.lock().unwrap());
            tokio::time::sleep(start.elapsed() * 4).await;
        }
    }

    /// Loads one app found at start-up, unless a deploy got to it first. With
    /// `cache_hits_only`, an app whose code is not in the cache is left for later: `true`.
    async fn load_at_start(
        self: &Arc<Self>,
        path: &Path,
        name: &str,
        cache_hits_only: bool,
    ) -> bool {
        let _busy = loop {
            match self.lock(name) {
                Ok(busy) => break busy,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        if self.apps.lock().unwrap().contains_key(name) {
            self.finish_loading(name, true);
            return false;
        }
        let loaded = async {
            // Files are read and hashed on a blocking thread: thousands of apps in a row
            // must not starve the runtime's other tasks (the publisher, the admin API).
            let (control, file) = (self.clone(), path.to_path_buf());
            let (name, manifest, config, stamp, validated, cached) =
                tokio::task::spawn_blocking(move || {
                    let (name, manifest, config) = control.loader.read_manifest(&file)?;
                    let stamp = FileStamp::of(&file);
                    let validated = Validated::read(&file)?;
                    let cached = control.loader.is_cached(&validated, &config)?;
                    anyhow::Ok((name, manifest, config, stamp, validated, cached))
                })
                .await??;
            // Code already serving under another name is shared, as a deploy shares it.
            let live = match load::wants_preinit(&validated.bytes)? {
                true => None,
                false => self
                    .apps
                    .lock()
                    .unwrap()
                    .values()
                    .find(|a| a.digest == validated.digest && a.tier == Tier::Optimized)
                    .cloned(),
            };
            if let Some(live) = live {
                let mut app = self.loader.reuse(name, config, &live);
                app.manifest_text = manifest;
                app.stamp = Mutex::new(Some(stamp));
                app.version = self.storage.current_version(&app.name).unwrap_or(None);
                return Ok(Some((app, None)));
            }
            // A miss a request waits for is not left for later.
            let cache_hits_only = cache_hits_only && !self.is_wanted(&name);
            if cache_hits_only && !cached {
                return Ok(None);
            }
            let bytes = (!cache_hits_only).then(|| validated.bytes.clone());
            let mut app = match cache_hits_only {
                true => self.loader.load(name, config, validated).await?,
                false => self.loader.load_quick(name, config, validated).await?,
            };
            app.manifest_text = manifest;
            app.stamp = Mutex::new(Some(stamp));
            app.version = self.storage.current_version(&app.name).unwrap_or(None);
            anyhow::Ok(Some((app, bytes)))
        };
        match loaded.await {
            Ok(None) => true,
            Ok(Some((app, bytes))) => {
                log_loaded(&app);
                let later = match (app.tier, bytes) {
                    (Tier::Baseline, Some(bytes)) => {
                        Some((bytes, app.manifest_text.clone(), app.version.clone()))
                    }
                    _ => None,
                };
                drop(self.install_unpublished(app));
                self.publish_wanted.notify_one();
                if let Some((bytes, manifest, version)) = later {
                    self.optimize_later(name.to_string(), bytes, manifest, version);
                }
                false
            }
            Err(e) => {
                tracing::error!("skipping app `{}`: {e:#}", path.display());
                self.finish_loading(name, false);
                false
            }
        }
    }

    fn is_wanted(&self, name: &str) -> bool {
        self.loading
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|l| l.is_wanted(name))
    }

    fn finish_loading(&self, name: &str, ok: bool) {
        if let Some(loading) = self.loading.lock().unwrap().as_ref() {
            loading.finish(name, ok);
        }
    }

    /// How far start-up has got ([`Control::start`]).
    pub fn progress(&self) -> Option<Progress> {
        self.loading.lock().unwrap().as_ref().map(|l| l.progress())
    }

    /// Deploys `wasm` (and `manifest`) as a new version of `name`.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
        manifest: Option<String>,
    ) -> Result<DeployReport, ControlError> {
        let result = self.try_deploy(name, wasm, manifest).await;
        self.metrics.deploy(name, result.is_ok());
        match &result {
            Ok(r) => tracing::info!(
                app = %name, version = %r.version, total_ms = r.total_ms,
                "deployed `{name}` {}", r.version
            ),
            Err(e) => tracing::warn!(app = %name, "deploy of `{name}` rejected: {e}"),
        }
        result
    }

    async fn try_deploy(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
        manifest: Option<String>,
    ) -> Result<DeployReport, ControlError> {
        let start = Instant::now();
        check_name(name).map_err(|e| ControlError::BadName(e.to_string()))?;
        if wasm.len() as u64 > self.max_upload {
            return Err(ControlError::TooLarge {
                size: wasm.len() as u64,
                limit: self.max_upload,
            });
        }
        let _busy = self.lock(name)?;
        let validated = Validated::from_bytes(wasm.clone()).map_err(ControlError::Invalid)?;
        if let Some(cluster) = self.cluster.clone() {
            return self
                .deploy_to_cluster(&cluster, name, validated, wasm, manifest, start)
                .await;
        }
        // Writing and syncing the version's files does not depend on the compile, so it
        // runs meanwhile; the version only becomes one (a rename) once the code is ready.
        let stage = {
            let (storage, name, wasm, manifest, digest) = (
                self.storage.clone(),
                name.to_string(),
                wasm.clone(),
                manifest.clone(),
                validated.digest.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let start = Instant::now();
                let staged =
                    storage.stage_version(&name, &wasm, manifest.as_deref(), &digest, true);
                (staged, start.elapsed())
            })
        };
        let built = self
            .build(name, validated, manifest.clone(), How::Quick)
            .await;
        let (staged, stage_time) = stage
            .await
            .map_err(|e| ControlError::Internal(anyhow::anyhow!("the storage task failed: {e}")))?;
        let mut app = match built {
            Ok(app) => app,
            Err(e) => {
                if let Ok(staged) = staged {
                    self.storage.discard_version(staged);
                }
                return Err(e);
            }
        };
        let staged = staged.map_err(ControlError::Internal)?;
        let store_start = Instant::now();
        let meta = self
            .storage
            .commit_version(staged)
            .map_err(ControlError::Internal)?;
        if let Err(e) = self.storage.prune(name, self.keep_versions, &meta.version) {
            tracing::warn!("cannot prune old versions of `{name}`: {e:#}");
        }
        let store_ms = ms(stage_time + store_start.elapsed());
        app.version = Some(meta.clone());
        let report = deploy_report(name, &app, &meta, store_ms, None);
        let baseline = app.tier == Tier::Baseline;
        self.install(app);
        if baseline {
            self.optimize_later(name.to_string(), wasm, manifest, Some(meta));
        }
        Ok(DeployReport {
            total_ms: ms(start.elapsed()),
            ..report
        })
    }

    /// Compiles a version serving baseline code with Cranelift in the background, then
    /// swaps the optimized code in — unless the app changed meanwhile.
    fn optimize_later(
        self: &Arc<Self>,
        name: String,
        wasm: Vec<u8>,
        manifest: Option<String>,
        version: Option<VersionMeta>,
    ) {
        let control = self.clone();
        let digest = load::digest(&wasm);
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        // The same code may already be compiling for another deploy: wait for it, then
        // take its code (live under the other name, or from the cache).
        let earlier = self
            .optimizing
            .lock()
            .unwrap()
            .insert(digest.clone(), done_rx.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            if let Some(mut earlier) = earlier {
                let _ = earlier.wait_for(|d| *d).await;
            }
            let built = match Validated::from_bytes(wasm) {
                Ok(validated) => {
                    control
                        .build(&name, validated, manifest, How::Background)
                        .await
                }
                Err(e) => Err(ControlError::Invalid(e)),
            };
            {
                let mut optimizing = control.optimizing.lock().unwrap();
                if optimizing
                    .get(&digest)
                    .is_some_and(|rx| rx.same_channel(&done_rx))
                {
                    optimizing.remove(&digest);
                }
            }
            let _ = done_tx.send(true);
            let mut app = match built {
                Ok(app) => app,
                Err(e) => {
                    tracing::warn!(app = %name, "cannot optimize `{name}`: {e}; it keeps its baseline code");
                    return;
                }
            };
            let mut apps = control.apps.lock().unwrap();
            let Some(current) = apps.get(&name) else {
                return;
            };
            let id = |v: &Option<VersionMeta>| v.as_ref().map(|v| v.version.clone());
            let same = current.tier == Tier::Baseline
                && current.digest == app.digest
                && id(&current.version) == id(&version);
            let label = id(&version).unwrap_or_else(|| "(placed by hand)".into());
            if !same {
                tracing::debug!(
                    "`{name}` changed while it was being optimized; dropping that code"
                );
                return;
            }
            *app.stamp.lock().unwrap() = current.stamp.lock().unwrap().clone();
            app.version = version.clone();
            apps.insert(name.clone(), Arc::new(app));
            control.publish(&apps);
            tracing::info!(
                app = %name, version = %label,
                "optimized `{name}` {label}: Cranelift code serves from now on ({:.1} ms after it started serving)",
                ms(start.elapsed())
            );
        });
    }

    /// Makes a stored version current again: `to`, or the one before the current one.
    /// Its code comes from the cache, so nothing is recompiled.
    pub async fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<VersionMeta, ControlError> {
        let _busy = self.lock(name)?;
        if let Some(cluster) = self.cluster.clone() {
            return self.rollback_in_cluster(&cluster, name, to).await;
        }
        let versions = self
            .storage
            .versions(name)
            .map_err(ControlError::Internal)?;
        let current = self
            .apps
            .lock()
            .unwrap()
            .get(name)
            .and_then(|a| a.version.as_ref().map(|v| v.version.clone()));
        let target = rollback_target(name, &versions, current.as_deref(), to)?;
        let (wasm, manifest) = self
            .storage
            .read_version(name, &target.version)
            .map_err(ControlError::Internal)?;
        let validated = Validated::from_bytes(wasm).map_err(ControlError::Invalid)?;
        let mut app = self.build(name, validated, manifest, How::Full).await?;
        self.storage
            .make_current(name, &target.version)
            .map_err(ControlError::Internal)?;
        app.version = Some(target.clone());
        tracing::info!(
            app = %name,
            cache = if app.report.cache_hit { "hit" } else { "miss" },
            "rolled `{name}` back to {}", target.version
        );
        self.install(app);
        Ok(target.clone())
    }

    /// Removes an app: it stops serving at once and its files and versions are deleted.
    pub async fn delete(&self, name: &str) -> Result<(), ControlError> {
        check_name(name).map_err(|e| ControlError::BadName(e.to_string()))?;
        let _busy = self.lock(name)?;
        if let Some(cluster) = &self.cluster {
            let expected = cluster
                .store()
                .current(name)
                .await?
                .ok_or_else(|| ControlError::NotFound(format!("no app `{name}`")))?;
            cluster
                .store()
                .delete(name, Some(&expected.meta.version))
                .await?;
        } else if !self.apps.lock().unwrap().contains_key(name)
            && !self.storage.wasm_path(name).exists()
        {
            return Err(ControlError::NotFound(format!("no app `{name}`")));
        }
        self.remove(name).map_err(ControlError::Internal)?;
        tracing::info!(app = %name, "deleted `{name}`");
        Ok(())
    }

    /// Deletes `name`'s files and stops serving it.
    fn remove(&self, name: &str) -> anyhow::Result<()> {
        self.storage.delete(name)?;
        let mut apps = self.apps.lock().unwrap();
        if apps.remove(name).is_some() {
            self.metrics.serving_since(name, None);
            self.publish(&apps);
        }
        Ok(())
    }

    /// A cluster deploy: the version commits to the store (if the app is still at the
    /// version this deploy started from), then serves here; the other nodes follow.
    async fn deploy_to_cluster(
        self: &Arc<Self>,
        cluster: &Cluster,
        name: &str,
        validated: Validated,
        wasm: Vec<u8>,
        manifest: Option<String>,
        start: Instant,
    ) -> Result<DeployReport, ControlError> {
        let store = cluster.store();
        let expected = store.current(name).await?.map(|c| c.meta.version);
        let digest = validated.digest.clone();
        let mut app = self
            .build(name, validated, manifest.clone(), How::Quick)
            .await?;
        let store_start = Instant::now();
        let (meta, committed) = store
            .deploy(
                name,
                expected.as_deref(),
                &wasm,
                manifest.as_deref(),
                &digest,
                self.keep_versions,
            )
            .await?;
        self.store_locally(name, &meta, &wasm, manifest.as_deref())
            .await;
        app.version = Some(meta.clone());
        let report = deploy_report(
            name,
            &app,
            &meta,
            ms(store_start.elapsed()),
            Some(committed),
        );
        let baseline = app.tier == Tier::Baseline;
        self.install(app);
        self.metrics.propagated(committed);
        if baseline {
            self.optimize_later(name.to_string(), wasm, manifest, Some(meta));
        }
        Ok(DeployReport {
            total_ms: ms(start.elapsed()),
            ..report
        })
    }

    /// A cluster rollback: chooses the target among the store's versions, builds it (from
    /// this node's copy, or fetched), commits the switch, then serves it here.
    async fn rollback_in_cluster(
        &self,
        cluster: &Cluster,
        name: &str,
        to: Option<&str>,
    ) -> Result<VersionMeta, ControlError> {
        let store = cluster.store();
        let current = store.current(name).await?.ok_or_else(|| {
            ControlError::NotFound(format!(
                "app `{name}` has no deployed versions to roll back to"
            ))
        })?;
        let versions: Vec<VersionMeta> = store
            .versions(Some(name))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let target = rollback_target(name, &versions, Some(&current.meta.version), to)?.clone();
        let (wasm, manifest) = self.version_bytes(cluster, name, &target).await?;
        let validated = Validated::from_bytes(wasm.clone()).map_err(ControlError::Invalid)?;
        let mut app = self
            .build(name, validated, manifest.clone(), How::Full)
            .await?;
        let committed = store
            .rollback(name, Some(&current.meta.version), &target.version)
            .await?;
        self.store_locally(name, &target, &wasm, manifest.as_deref())
            .await;
        app.version = Some(target.clone());
        tracing::info!(app = %name, "rolled `{name}` back to {}", target.version);
        self.install(app);
        self.metrics.propagated(committed);
        Ok(target)
    }

    /// A stored version's component and manifest: this node's copy when it has one,
    /// otherwise fetched from the store (and checked against its digest).
    async fn version_bytes(
        &self,
        cluster: &Cluster,
        name: &str,
        meta: &VersionMeta,
    ) -> Result<(Vec<u8>, Option<String>), StoreError> {
        let storage = self.storage.clone();
        let (app, version) = (name.to_string(), meta.version.clone());
        let local = tokio::task::spawn_blocking(move || storage.read_version(&app, &version))
            .await
            .ok()
            .and_then(Result::ok);
        match local {
            Some((wasm, manifest)) if load::digest(&wasm) == meta.digest => Ok((wasm, manifest)),
            _ => cluster.store().fetch(name, &meta.version).await,
        }
    }

    /// Writes a version committed to the store into this node's directory and makes it
    /// current there. A failure is logged, not returned: the node serves the version from
    /// memory, and rewrites it when it next starts.
    async fn store_locally(
        &self,
        name: &str,
        meta: &VersionMeta,
        wasm: &[u8],
        manifest: Option<&str>,
    ) {
        let (storage, name, meta, wasm, manifest) = (
            self.storage.clone(),
            name.to_string(),
            meta.clone(),
            wasm.to_vec(),
            manifest.map(String::from),
        );
        let keep = self.keep_versions;
        let written = tokio::task::spawn_blocking(move || {
            storage.store_version(&name, &meta, &wasm, manifest.as_deref())?;
            storage.make_current(&name, &meta.version)?;
            storage.prune(&name, keep, &meta.version)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("cannot write the store's version to this node's directory: {e:#}")
            }
            Err(e) => tracing::warn!("the storage task failed: {e}"),
        }
    }

    /// Names of the apps this node serves.
    pub fn live_names(&self) -> Vec<String> {
        self.apps.lock().unwrap().keys().cloned().collect()
    }

    /// Brings one app in line with the cluster's store, which says it is at `stored`
    /// (`None`: deleted). A version already serving is left alone; another is taken
    /// through the load pipeline and swapped in. A version that cannot be served (corrupt
    /// in the store, invalid) is reported once and the app keeps what it serves. Fails only
    /// when the store cannot be reached.
    pub async fn apply_stored(
        self: &Arc<Self>,
        name: &str,
        stored: Option<Current>,
    ) -> Result<(), StoreError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let _busy = loop {
            match self.lock(name) {
                Ok(busy) => break busy,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        let live = self.apps.lock().unwrap().get(name).cloned();
        let Some(cur) = stored else {
            if live.is_some() || self.storage.wasm_path(name).exists() {
                if let Err(e) = self.remove(name) {
                    tracing::warn!("cannot remove `{name}` from this node's directory: {e:#}");
                }
                tracing::info!(app = %name, "`{name}` was deleted in the cluster; no longer serving it");
            }
            return Ok(());
        };
        if live
            .as_ref()
            .is_some_and(|l| l.digest == cur.meta.digest && l.version.as_ref() == Some(&cur.meta))
        {
            return Ok(());
        }
        if self.refused.lock().unwrap().get(name) == Some(&cur.meta) {
            return Ok(());
        }
        let refuse = |why: String| {
            tracing::error!(app = %name, "cannot serve {} of `{name}` from the app store: {why}; it keeps what it serves", cur.meta.version);
            self.metrics.cluster_change(false);
            self.refused
                .lock()
                .unwrap()
                .insert(name.to_string(), cur.meta.clone());
        };
        let (wasm, manifest) = match self.version_bytes(&cluster, name, &cur.meta).await {
            Ok(blob) => blob,
            Err(StoreError::Corrupt(why)) => {
                refuse(why);
                return Ok(());
            }
            // Changed again meanwhile: the next announcement brings the newer version.
            Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let built = match Validated::from_bytes(wasm.clone()) {
            Ok(validated) => {
                self.build(name, validated, manifest.clone(), How::Quick)
                    .await
            }
            Err(e) => Err(ControlError::Invalid(e)),
        };
        let mut app = match built {
            Ok(app) => app,
            Err(e) => {
                refuse(e.to_string());
                return Ok(());
            }
        };
        self.store_locally(name, &cur.meta, &wasm, manifest.as_deref())
            .await;
        app.version = Some(cur.meta.clone());
        let baseline = app.tier == Tier::Baseline;
        self.install(app);
        let lag = self.metrics.propagated(cur.committed_at);
        self.metrics.cluster_change(true);
        tracing::info!(
            app = %name, version = %cur.meta.version, lag_ms = ms(lag),
            "serving `{name}` {} from the app store ({:.1} ms after it committed)",
            cur.meta.version, ms(lag)
        );
        if baseline {
            self.optimize_later(name.to_string(), wasm, manifest, Some(cur.meta));
        }
        Ok(())
    }

    /// Every live app.    /// Every live app. In a cluster the versions kept are the store's (this node's own
    /// copies when the store cannot be reached).
    pub async fn list(&self) -> Vec<AppInfo> {
        let apps: Vec<Arc<App>> = self.apps.lock().unwrap().values().cloned().collect();
        let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let from_store = match &self.cluster {
            Some(cluster) => match cluster.store().versions(None).await {
                Ok(versions) => {
                    for (app, v) in versions {
                        stored.entry(app).or_default().push(v.version);
                    }
                    true
                }
                Err(_) => false,
            },
            None => false,
        };
        apps.iter()
            .map(|app| AppInfo {
                name: app.name.clone(),
                version: app.version.as_ref().map(|v| v.version.clone()),
                digest: app.digest.clone(),
                hosts: app.config.hosts.clone(),
                paths: app.config.paths.clone(),
                deployed_at: app.version.as_ref().map(|v| v.deployed_at),
                versions: match from_store {
                    true => stored.remove(&app.name).unwrap_or_default(),
                    false => self
                        .storage
                        .versions(&app.name)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| v.version)
                        .collect(),
                },
                tier: tier_name(app.tier).into(),
            })
            .collect()
    }

    /// Brings the live set in line with the directory: loads apps that appeared or whose
    /// component or manifest changed, drops apps whose file is gone. Changes made through
    /// this server are already live and are skipped; an app that fails to load keeps its
    /// running version.
    pub async fn rescan(&self) {
        let files = match app_files(self.storage.dir()) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("cannot rescan: {e:#}");
                return;
            }
        };
        let mut present = HashSet::new();
        for path in files {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(String::from) else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            present.insert(name.clone());
            let Ok(_busy) = self.lock(&name) else {
                continue;
            };
            let live = self.apps.lock().unwrap().get(&name).cloned();
            // Cheap check first: untouched files are not read at all.
            let stamp = FileStamp::of(&path);
            if self.failed.lock().unwrap().get(&name) == Some(&stamp) {
                continue;
            }
            if let Some(live) = &live {
                if live.stamp.lock().unwrap().as_ref() == Some(&stamp) {
                    continue;
                }
                if !changed(live, &path) {
                    // Touched but identical (our own deploy, a re-copy): remember the
                    // new stamp so the next scan is cheap again.
                    *live.stamp.lock().unwrap() = Some(stamp);
                    continue;
                }
            }
            match self.loader.load_file(&path).await {
                Ok(mut app) => {
                    self.failed.lock().unwrap().remove(&name);
                    app.version = self.storage.current_version(&name).unwrap_or(None);
                    tracing::info!(app = %name, "picked up a change to `{}`", path.display());
                    log_loaded(&app);
                    self.install(app);
                }
                // A file caught mid-copy by a non-atomic writer also lands here; the next
                // scan retries it once the copy has changed it again.
                Err(e) => {
                    tracing::warn!(
                        "cannot load changed app `{}` (the running version, if any, stays): {e:#}",
                        path.display()
                    );
                    self.failed.lock().unwrap().insert(name, stamp);
                }
            }
        }
        let mut apps = self.apps.lock().unwrap();
        let gone: Vec<String> = apps
            .keys()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        if !gone.is_empty() {
            for name in &gone {
                tracing::info!(app = %name, "`{name}.wasm` is gone; no longer serving it");
                apps.remove(name);
                self.metrics.serving_since(name, None);
            }
            self.publish(&apps);
        }
    }
}

/// The version a rollback goes to: `to`, or the one before `current`.
fn rollback_target<'a>(
    name: &str,
    versions: &'a [VersionMeta],
    current: Option<&str>,
    to: Option<&str>,
) -> Result<&'a VersionMeta, ControlError> {
    if versions.is_empty() {
        return Err(ControlError::NotFound(format!(
            "app `{name}` has no deployed versions to roll back to"
        )));
    }
    Ok(match to {
        Some(to) => versions.iter().find(|v| v.version == to).ok_or_else(|| {
            let known: Vec<_> = versions.iter().map(|v| v.version.as_str()).collect();
            ControlError::NotFound(format!(
                "app `{name}` has no version `{to}` (it has {})",
                known.join(", ")
            ))
        })?,
        None => {
            let pos = current
                .and_then(|c| versions.iter().position(|v| v.version == c))
                .unwrap_or(versions.len());
            if pos == 0 {
                return Err(ControlError::NotFound(format!(
                    "app `{name}` is at its oldest kept version; nothing to roll back to"
                )));
            }
            &versions[pos - 1]
        }
    })
}

/// A deploy's report, but for its total time.
fn deploy_report(
    name: &str,
    app: &App,
    meta: &VersionMeta,
    store_ms: f64,
    committed_at: Option<std::time::SystemTime>,
) -> DeployReport {
    let r = &app.report;
    let checks = r.total - r.preinit.unwrap_or_default() - r.compile.unwrap_or_default();
    DeployReport {
        name: name.to_string(),
        version: meta.version.clone(),
        digest: app.digest.clone(),
        validate_ms: ms(checks),
        preinit_ms: r.preinit.map(ms),
        compile_ms: r.compile.map(ms),
        code: match (r.reused, r.cache_hit) {
            (true, _) => "live",
            (false, true) => "cache",
            (false, false) => "compiled",
        }
        .into(),
        tier: tier_name(app.tier).into(),
        store_ms,
        total_ms: 0.0,
        committed_at: committed_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
    }
}

/// Whether the files behind `live` differ from what it was loaded from.
fn changed(live: &App, wasm: &std::path::Path) -> bool {
    let manifest = std::fs::read_to_string(wasm.with_extension("toml")).ok();
    if manifest != live.manifest_text {
        return true;
    }
    match std::fs::read(wasm) {
        Ok(bytes) => load::digest(&bytes) != live.digest,
        Err(_) => false,
    }
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Optimized => "optimized",
        Tier::Baseline => "baseline",
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn log_loaded(app: &App) {
    let r = &app.report;
    tracing::info!(
        app = %app.name,
        version = app.version.as_ref().map(|v| v.version.as_str()).unwrap_or("-"),
        cache = if r.cache_hit { "hit" } else { "miss" },
        preinit_ms = r.preinit.map(ms),
        compile_ms = r.compile.map(ms),
        total_ms = ms(r.total),
        "loaded app `{}` ({})",
        app.name,
        if r.cache_hit { "cache hit, not recompiled" } else { "compiled" },
    );
}
