//! A cluster of edge nodes on one app store (`edge serve --store postgres://…`).
//!
//! The store ([`postgres`]) holds every app's versions and which one is current; it is the
//! truth. Each node keeps its apps directory as a copy of it, written through the same
//! durable [`Storage`] a single node uses, and its compile cache to itself (compiled code
//! is CPU-specific). A node:
//!
//! - before it listens, makes the directory a copy of the store ([`materialize`]): writes
//!   the versions it lacks, removes apps the store no longer has;
//! - then [`follow`]s the store: `LISTEN`s for change announcements and applies each
//!   changed app; after every (re)connect, and every [`RECONCILE_EVERY`], it compares
//!   every app with the store (NOTIFY has no replay). A component is fetched only when the
//!   directory lacks it, is checked against its digest, and goes through the same load
//!   pipeline as a deploy (its compiled code usually comes from the cache);
//! - keeps serving what it has while the store is away, reporting itself degraded, and
//!   catches up when it returns.
//!
//! Deploys, rollbacks and deletes through any node's admin API commit to the store first
//! (see [`crate::control`]), then apply locally; the other nodes follow.

pub mod postgres;

pub use postgres::{Current, PgStore, StoreError};

use crate::control::Control;
use crate::loading::Loading;
use crate::storage::Storage;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a node compares every app with the store, besides after each (re)connect:
/// the safety net for an announcement lost in a network partition.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// The longest pause between attempts to reach a store that went away.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A node's link to the cluster's app store.
pub struct Cluster {
    store: PgStore,
    up: AtomicBool,
}

impl Cluster {
    /// Connects to the store at `url` and migrates its schema; fails with a clear error
    /// (the URL without its password, and the database's reason) if either cannot be done.
    pub async fn open(url: &str) -> Result<Arc<Cluster>> {
        Ok(Arc::new(Cluster {
            store: PgStore::open(url).await?,
            up: AtomicBool::new(true),
        }))
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// Whether the node is connected to the store (it serves either way).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool, control: &Control) {
        control.metrics().set_store_up(Some(up));
        if self.up.swap(up, Ordering::Relaxed) != up {
            match up {
                true => tracing::info!("reconnected to the app store {}", self.store.shown()),
                false => tracing::warn!(
                    "lost the app store {}: serving the versions this node has, deploys get \
                     503 until it returns",
                    self.store.shown()
                ),
            }
        }
    }
}

/// Makes the apps directory a copy of the store's current versions, before start-up loads
/// it: writes each current version the directory lacks (checked against its digest) and
/// removes apps the store has deleted. Nothing of the user's is lost:
///
/// - a store that has never held an app is *seeded* from the directory: each app's current
///   component and manifest becomes its `v1` (the first node of a new cluster brings its
///   apps; older local versions are not imported);
/// - an app the store has never heard of is not served, and is moved to
///   `DIR/.edge/unclaimed/NAME/` with a warning saying how to deploy it.
///
/// Returns the change log position it reflects.
pub async fn materialize(cluster: &Cluster, storage: &Storage, keep: usize) -> Result<i64> {
    storage.recover()?;
    let store = cluster.store();
    let unavailable = |e: StoreError| anyhow::anyhow!("{e}");
    let local = storage
        .app_names()
        .with_context(|| format!("cannot read `{}`", storage.dir().display()))?;
    let mut known = store.known().await.map_err(unavailable)?;
    if known.is_empty() && !local.is_empty() {
        seed(store, storage, &local, keep).await?;
        known = store.known().await.map_err(unavailable)?;
    }
    let head = store.head().await.map_err(unavailable)?;
    let current = store.all_current().await.map_err(unavailable)?;
    let mut fetched = 0;
    for (name, cur) in &current {
        let have = storage.current_version(name)?;
        if have.as_ref() == Some(&cur.meta) {
            continue;
        }
        let (wasm, manifest) = match storage.read_version(name, &cur.meta.version) {
            Ok((wasm, manifest)) if crate::load::digest(&wasm) == cur.meta.digest => {
                (wasm, manifest)
            }
            _ => match store.fetch(name, &cur.meta.version).await {
                Ok(blob) => {
                    fetched += 1;
                    blob
                }
                Err(StoreError::Corrupt(e)) => {
                    tracing::error!("{e}");
                    continue;
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            },
        };
        storage.store_version(name, &cur.meta, &wasm, manifest.as_deref())?;
        storage.make_current(name, &cur.meta.version)?;
    }
    let serving: std::collections::BTreeSet<&String> = current.iter().map(|(n, _)| n).collect();
    for name in local.iter().filter(|n| !serving.contains(n)) {
        if known.contains(name) {
            tracing::info!("`{name}` was deleted in the cluster while this node was away");
            storage.delete(name)?;
            continue;
        }
        let aside = storage.dir().join(".edge").join("unclaimed").join(name);
        std::fs::create_dir_all(&aside)?;
        for file in [storage.wasm_path(name), storage.manifest_path(name)] {
            if file.exists() {
                std::fs::rename(&file, aside.join(file.file_name().expect("a file name")))?;
            }
        }
        storage.delete(name)?;
        tracing::warn!(
            "not serving `{name}`: the cluster's app store has no such app (in a cluster the \
             directory is the node's copy of the store). Its files are in `{}`; deploy it \
             with `edge deploy`",
            aside.display()
        );
    }
    tracing::info!(
        apps = current.len(),
        fetched,
        "app store {}: {} apps, {fetched} fetched",
        store.shown(),
        current.len()
    );
    Ok(head)
}

/// Makes each app of the directory `v1` of a store that has never held an app.
async fn seed(
    store: &PgStore,
    storage: &Storage,
    names: &std::collections::BTreeSet<String>,
    keep: usize,
) -> Result<()> {
    for name in names {
        let Ok(wasm) = std::fs::read(storage.wasm_path(name)) else {
            continue;
        };
        let manifest = std::fs::read_to_string(storage.manifest_path(name)).ok();
        if let Err(e) = crate::load::Validated::from_bytes(wasm.clone()) {
            tracing::warn!("not seeding the app store with `{name}`: {e:#}");
            continue;
        }
        let digest = crate::load::digest(&wasm);
        let meta = match store
            .deploy(name, None, &wasm, manifest.as_deref(), &digest, keep)
            .await
        {
            Ok((meta, _)) => meta,
            // Another node seeded it first.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        };
        // This node's older versions were numbered by it alone: they go.
        storage.delete(name)?;
        storage.store_version(name, &meta, &wasm, manifest.as_deref())?;
        storage.make_current(name, &meta.version)?;
        tracing::info!(
            "seeded the empty app store with `{name}` from `{}` as {}",
            storage.dir().display(),
            meta.version
        );
    }
    Ok(())
}

/// Follows the store from change `seen` on, forever: see the module docs.
pub async fn follow(
    control: Arc<Control>,
    cluster: Arc<Cluster>,
    loading: Arc<Loading>,
    mut seen: i64,
) {
    // Start-up loads the directory first; changes meanwhile are caught up below.
    loading.all_done().await;
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match cluster.store().listen().await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!("cannot reach the app store: {e:#}");
                cluster.set_up(false, &control);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Listening first, then comparing: no change falls between the two.
        let mut result = reconcile(&control, &cluster).await.map(|head| {
            seen = seen.max(head);
        });
        if result.is_ok() {
            cluster.set_up(true, &control);
            backoff = Duration::from_millis(100);
        }
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        while result.is_ok() {
            tokio::select! {
                announced = listener.changes.recv() => match announced {
                    None => break,
                    Some(seq) if seq <= seen => {}
                    Some(_) => result = catch_up(&control, &cluster, &mut seen).await,
                },
                _ = tick.tick() => {
                    result = reconcile(&control, &cluster).await.map(|head| {
                        seen = seen.max(head);
                    });
                }
            }
        }
        if let Err(e) = result {
            tracing::debug!("app store query failed: {e}");
        }
        cluster.set_up(false, &control);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies every change after `seen`.
async fn catch_up(
    control: &Arc<Control>,
    cluster: &Cluster,
    seen: &mut i64,
) -> Result<(), StoreError> {
    let Some((apps, newest)) = cluster.store().changes_since(*seen).await? else {
        let head = reconcile(control, cluster).await?;
        *seen = (*seen).max(head);
        return Ok(());
    };
    for name in apps {
        let current = cluster.store().current(&name).await?;
        control.apply_stored(&name, current).await?;
    }
    *seen = (*seen).max(newest);
    Ok(())
}

/// Compares every app with the store and applies the differences; returns the change log
/// position the comparison reflects.
async fn reconcile(control: &Arc<Control>, cluster: &Cluster) -> Result<i64, StoreError> {
    let head = cluster.store().head().await?;
    let current = cluster.store().all_current().await?;
    let known: std::collections::HashSet<String> =
        current.iter().map(|(name, _)| name.clone()).collect();
    for (name, cur) in current {
        control.apply_stored(&name, Some(cur)).await?;
    }
    for name in control.live_names() {
        if !known.contains(&name) {
            control.apply_stored(&name, None).await?;
        }
    }
    Ok(head)
}
