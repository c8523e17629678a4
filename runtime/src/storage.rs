//! Durable app storage in the apps directory.
//!
//! ```text
//! DIR/NAME.wasm, DIR/NAME.toml           the current version: what `edge serve DIR` loads
//! DIR/.edge/versions/NAME/vN/            every deployed version, immutable:
//!     app.wasm, manifest.toml, meta.json
//! ```
//!
//! Every file is written to a temporary name, synced, renamed into place, and its directory
//! synced, so a crash at any moment leaves either the old or the new file, never a torn
//! one. A deploy first stores the whole version, then makes it current by replacing
//! `NAME.toml` and then `NAME.wasm`: the `.wasm` rename is the commit point. On start-up
//! [`Storage::recover`] removes leftovers of interrupted writes and, if a crash fell
//! between the two renames, puts back the manifest that belongs to the committed `.wasm`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const TMP_PREFIX: &str = ".tmp-";

/// What is recorded about a deployed version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionMeta {
    /// `v1`, `v2`, … in deploy order, per app.
    pub version: String,
    /// SHA-256 of the component as uploaded.
    pub digest: String,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Whether the version has a manifest.
    pub has_manifest: bool,
}

impl VersionMeta {
    fn number(&self) -> u64 {
        self.version[1..].parse().unwrap_or(0)
    }
}

/// A version whose files are written and synced under a temporary name
/// ([`Storage::stage_version`]).
#[derive(Debug)]
pub struct StagedVersion {
    name: String,
    tmp: PathBuf,
    meta: VersionMeta,
    /// The app's next `NAME.wasm` and `NAME.toml`, written beside them, when staged as
    /// current.
    current: Option<(PathBuf, Option<PathBuf>)>,
}

/// The apps directory as a store of apps and their versions.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

impl Storage {
    /// Storage rooted at the apps directory `dir`.
    pub fn new(dir: &Path) -> Storage {
        Storage {
            dir: dir.to_path_buf(),
        }
    }

    /// The apps directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/NAME.wasm`.
    pub fn wasm_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// `DIR/NAME.toml`.
    pub fn manifest_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    fn versions_dir(&self, name: &str) -> PathBuf {
        self.dir.join(".edge").join("versions").join(name)
    }

    /// Every stored version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionMeta>> {
        let dir = self.versions_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", dir.display())),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if file_name.starts_with(TMP_PREFIX) {
                continue;
            }
            let meta = fs::read(path.join("meta.json"))
                .ok()
                .and_then(|m| serde_json::from_slice::<VersionMeta>(&m).ok());
            match meta {
                Some(meta) => versions.push(meta),
                None => tracing::warn!("ignoring unreadable version `{}`", path.display()),
            }
        }
        versions.sort_by_key(VersionMeta::number);
        Ok(versions)
    }

    /// The stored version `version` of `name`: component bytes and manifest text.
    pub fn read_version(&self, name: &str, version: &str) -> Result<(Vec<u8>, Option<String>)> {
        let dir = self.versions_dir(name).join(version);
        let wasm = fs::read(dir.join("app.wasm"))
            .with_context(|| format!("app `{name}` has no version `{version}`"))?;
        let manifest = match fs::read_to_string(dir.join("manifest.toml")) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok((wasm, manifest))
    }

    /// Stores a new immutable version of `name` and returns its record. Nothing else
    /// changes: the version is not current yet.
    pub fn save_version(
        &self,
        name: &str,
        wasm: &[u8],
        manifest: Option<&str>,
        digest: &str,
    ) -> Result<VersionMeta> {
        let staged = self.stage_version(name, wasm, manifest, digest, false)?;
        self.commit_version(staged)
    }

    /// The slow half of [`Storage::save_version`], which a deploy runs while it compiles:
    /// writes and syncs the version's files under a temporary name — and, with
    /// `as_current`, the app's current files too. Until [`Storage::commit_version`] it is
    /// not a version; [`Storage::discard_version`] or crash recovery removes it.
    pub fn stage_version(
        &self,
        name: &str,
        wasm: &[u8],
        manifest: Option<&str>,
        digest: &str,
        as_current: bool,
    ) -> Result<StagedVersion> {
        let parent = self.versions_dir(name);
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
        let next = self.versions(name)?.last().map_or(1, |v| v.number() + 1);
        let meta = VersionMeta {
            version: format!("v{next}"),
            digest: digest.to_string(),
            deployed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            has_manifest: manifest.is_some(),
        };
        let tmp = write_version_dir(&parent, &meta, wasm, manifest)?;
        let mut staged = StagedVersion {
            name: name.to_string(),
            tmp,
            meta,
            current: None,
        };
        if as_current {
            let wasm_tmp = tmp_beside(&self.wasm_path(name));
            let manifest_tmp = manifest.map(|_| tmp_beside(&self.manifest_path(name)));
            // Recorded before writing, so a failure below still removes them.
            staged.current = Some((wasm_tmp.clone(), manifest_tmp.clone()));
            let written =
                write_synced(&wasm_tmp, wasm).and_then(|()| match (&manifest_tmp, manifest) {
                    (Some(path), Some(m)) => write_synced(path, m.as_bytes()),
                    _ => Ok(()),
                });
            if let Err(e) = written {
                self.discard_version(staged);
                return Err(e);
            }
        }
        Ok(staged)
    }

    /// Makes a staged version a stored version (a rename: quick and atomic), and, if it was
    /// staged `as_current`, the current one: manifest first, then the component (the commit
    /// point), as [`Storage::make_current`] does.
    pub fn commit_version(&self, mut staged: StagedVersion) -> Result<VersionMeta> {
        let parent = self.versions_dir(&staged.name);
        let stored = fs::rename(&staged.tmp, parent.join(&staged.meta.version))
            .with_context(|| {
                format!(
                    "cannot store version {} of `{}`",
                    staged.meta.version, staged.name
                )
            })
            .and_then(|()| sync_dir(&parent));
        if let Err(e) = stored {
            self.discard_version(staged);
            return Err(e);
        }
        if let Some((wasm_tmp, manifest_tmp)) = staged.current.take() {
            let name = &staged.name;
            let manifest = match &manifest_tmp {
                Some(tmp) => rename(tmp, &self.manifest_path(name)),
                None => remove_if_exists(&self.manifest_path(name)),
            };
            let current = manifest
                .and_then(|()| rename(&wasm_tmp, &self.wasm_path(name)))
                .and_then(|()| sync_dir(&self.dir));
            if let Err(e) = current {
                let _ = remove_if_exists(&wasm_tmp);
                if let Some(tmp) = &manifest_tmp {
                    let _ = remove_if_exists(tmp);
                }
                return Err(e);
            }
        }
        Ok(staged.meta)
    }

    /// Stores `meta.version` of `name` as a cluster's app store numbered it, replacing a
    /// stored version of that id with other contents; a copy that is already there is left
    /// alone. Nothing else changes: the version is not current yet.
    pub fn store_version(
        &self,
        name: &str,
        meta: &VersionMeta,
        wasm: &[u8],
        manifest: Option<&str>,
    ) -> Result<()> {
        let parent = self.versions_dir(name);
        let target = parent.join(&meta.version);
        let existing = fs::read(target.join("meta.json"))
            .ok()
            .and_then(|m| serde_json::from_slice::<VersionMeta>(&m).ok());
        if existing.as_ref() == Some(meta) && target.join("app.wasm").exists() {
            return Ok(());
        }
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
        let tmp = write_version_dir(&parent, meta, wasm, manifest)?;
        let moved = remove_if_exists(&target)
            .and_then(|()| rename(&tmp, &target))
            .and_then(|()| sync_dir(&parent));
        if moved.is_err() {
            let _ = remove_if_exists(&tmp);
        }
        moved
    }

    /// The names of the apps in the directory: a current component, stored versions, or
    /// both.
    pub fn app_names(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut names = std::collections::BTreeSet::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wasm")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && !stem.starts_with(TMP_PREFIX)
            {
                names.insert(stem.to_string());
            }
        }
        if let Ok(apps) = fs::read_dir(self.dir.join(".edge").join("versions")) {
            for app in apps {
                if let Some(name) = app?.file_name().to_str() {
                    names.insert(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// Drops a staged version: the deploy it was for failed.
    pub fn discard_version(&self, staged: StagedVersion) {
        let (wasm_tmp, manifest_tmp) = staged.current.unwrap_or_default();
        for path in [Some(staged.tmp), Some(wasm_tmp), manifest_tmp]
            .into_iter()
            .flatten()
            .filter(|p| !p.as_os_str().is_empty())
        {
            if let Err(e) = remove_if_exists(&path) {
                tracing::warn!("{e:#}; crash recovery at the next start removes it");
            }
        }
    }

    /// Makes a stored version current: manifest first, then the component (the commit
    /// point).
    pub fn make_current(&self, name: &str, version: &str) -> Result<()> {
        let (wasm, manifest) = self.read_version(name, version)?;
        match manifest {
            Some(m) => write_atomic(&self.manifest_path(name), m.as_bytes())?,
            None => remove_if_exists(&self.manifest_path(name))?,
        }
        write_atomic(&self.wasm_path(name), &wasm)?;
        sync_dir(&self.dir)
    }

    /// Removes `name`: its current files and every stored version.
    pub fn delete(&self, name: &str) -> Result<()> {
        remove_if_exists(&self.wasm_path(name))?;
        remove_if_exists(&self.manifest_path(name))?;
        sync_dir(&self.dir)?;
        let versions = self.versions_dir(name);
        if versions.exists() {
            fs::remove_dir_all(&versions)
                .with_context(|| format!("cannot remove `{}`", versions.display()))?;
        }
        Ok(())
    }

    /// Keeps the newest `keep` versions of `name` (and always `current`).
    pub fn prune(&self, name: &str, keep: usize, current: &str) -> Result<()> {
        let versions = self.versions(name)?;
        let excess = versions.len().saturating_sub(keep);
        for v in versions.iter().take(excess) {
            if v.version != current {
                fs::remove_dir_all(self.versions_dir(name).join(&v.version))?;
            }
        }
        Ok(())
    }

    /// The stored version whose component is `DIR/NAME.wasm` now, if any (an app placed
    /// by hand has none).
    pub fn current_version(&self, name: &str) -> Result<Option<VersionMeta>> {
        let Ok(wasm) = fs::read(self.wasm_path(name)) else {
            return Ok(None);
        };
        let digest = hex::encode(Sha256::digest(&wasm));
        Ok(self
            .versions(name)?
            .into_iter()
            .rev()
            .find(|v| v.digest == digest))
    }

    /// Cleans up after a crash: removes temporary files and half-stored versions, and
    /// gives each deployed app the manifest of the component that is current.
    pub fn recover(&self) -> Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(TMP_PREFIX) {
                tracing::info!("removing `{}` left by an interrupted write", path.display());
                remove_if_exists(&path)?;
            }
        }
        let root = self.dir.join(".edge").join("versions");
        let Ok(apps) = fs::read_dir(&root) else {
            return Ok(());
        };
        for app in apps {
            let app_dir = app?.path();
            for entry in fs::read_dir(&app_dir)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with(TMP_PREFIX) {
                    tracing::info!(
                        "removing `{}` left by an interrupted deploy",
                        path.display()
                    );
                    fs::remove_dir_all(&path)?;
                }
            }
            let Some(name) = app_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(current) = self.current_version(name)? {
                let (_, manifest) = self.read_version(name, &current.version)?;
                let on_disk = fs::read_to_string(self.manifest_path(name)).ok();
                if on_disk != manifest {
                    tracing::warn!(
                        "app `{name}`: the manifest does not belong to version {}; restoring it",
                        current.version
                    );
                    self.make_current(name, &current.version)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a version's files (component, manifest, record) into a temporary directory in
/// `parent`, synced, and returns it; on failure nothing is left behind.
fn write_version_dir(
    parent: &Path,
    meta: &VersionMeta,
    wasm: &[u8],
    manifest: Option<&str>,
) -> Result<PathBuf> {
    let tmp = parent.join(format!(
        "{TMP_PREFIX}{}-{}",
        meta.version,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp)?;
    let written = write_synced(&tmp.join("app.wasm"), wasm)
        .and_then(|()| match manifest {
            Some(m) => write_synced(&tmp.join("manifest.toml"), m.as_bytes()),
            None => Ok(()),
        })
        .and_then(|()| write_synced(&tmp.join("meta.json"), &serde_json::to_vec_pretty(meta)?))
        .and_then(|()| sync_dir(&tmp));
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = remove_if_exists(&tmp);
            Err(e)
        }
    }
}

/// Writes `path` so that it holds either its old contents or `bytes`, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    let tmp = tmp_beside(path);
    let result = write_synced(&tmp, bytes).and_then(|()| rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// The temporary name `path` is written under before it is renamed into place; crash
/// recovery removes leftovers by their prefix.
fn tmp_beside(path: &Path) -> PathBuf {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!("{TMP_PREFIX}{file_name}-{}", std::process::id()))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("cannot replace `{}`", to.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        fs::File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory `{}`", dir.display()))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove `{}`", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_made_current_pruned_and_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let digest = |b: &[u8]| hex::encode(Sha256::digest(b));
        let v1 = s
            .save_version("app", b"one", Some("timeout = \"1s\"\n"), &digest(b"one"))
            .unwrap();
        let v2 = s
            .save_version("app", b"two", None, &digest(b"two"))
            .unwrap();
        assert_eq!((v1.version.as_str(), v2.version.as_str()), ("v1", "v2"));
        s.make_current("app", "v1").unwrap();
        assert_eq!(fs::read(s.wasm_path("app")).unwrap(), b"one");
        assert!(s.manifest_path("app").exists());
        s.make_current("app", "v2").unwrap();
        assert!(!s.manifest_path("app").exists());

        // A crash between the manifest and the component rename: v1's manifest with v2's
        // component. Recovery restores the manifest that belongs to v2 (none).
        fs::write(s.manifest_path("app"), "timeout = \"1s\"\n").unwrap();
        fs::create_dir_all(s.versions_dir("app").join(".tmp-v3-1")).unwrap();
        fs::write(dir.path().join(".tmp-app.wasm-1"), b"torn").unwrap();
        s.recover().unwrap();
        assert!(!s.manifest_path("app").exists());
        assert!(!dir.path().join(".tmp-app.wasm-1").exists());
        assert_eq!(s.versions("app").unwrap().len(), 2);

        s.save_version("app", b"three", None, &digest(b"three"))
            .unwrap();
        s.prune("app", 2, "v2").unwrap();
        let left: Vec<_> = s
            .versions("app")
            .unwrap()
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(left, ["v2", "v3"]);
        s.delete("app").unwrap();
        assert!(!s.wasm_path("app").exists());
        assert!(s.versions("app").unwrap().is_empty());
    }

    /// A cluster node writes versions numbered by the store: once, replacing a stale copy
    /// of the same id, and listed like any other.
    #[test]
    fn versions_numbered_elsewhere_are_stored_once_and_replace_stale_copies() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let meta = |digest: &[u8]| VersionMeta {
            version: "v7".into(),
            digest: hex::encode(Sha256::digest(digest)),
            deployed_at: 1,
            has_manifest: false,
        };
        s.store_version("app", &meta(b"one"), b"one", None).unwrap();
        s.store_version("app", &meta(b"one"), b"one", None).unwrap();
        s.make_current("app", "v7").unwrap();
        assert_eq!(s.current_version("app").unwrap(), Some(meta(b"one")));
        s.store_version("app", &meta(b"two"), b"two", Some("x = 1\n"))
            .unwrap();
        assert_eq!(s.read_version("app", "v7").unwrap().0, b"two");
        assert_eq!(s.versions("app").unwrap().len(), 1);
        assert!(
            s.app_names().unwrap().contains("app"),
            "an app with versions is listed"
        );
        let left: Vec<_> = fs::read_dir(s.versions_dir("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["v7"], "no temporary directory left");
    }

    /// What a deploy does while it compiles: nothing is visible until the commit, a
    /// discard leaves no trace, a commit makes the version stored and current at once.
    #[test]
    fn staged_versions_are_invisible_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let digest = |b: &[u8]| hex::encode(Sha256::digest(b));
        let listing = || {
            let mut names: Vec<String> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        s.save_version("app", b"one", None, &digest(b"one"))
            .unwrap();
        s.make_current("app", "v1").unwrap();
        let before = listing();

        let staged = s
            .stage_version("app", b"bad", Some("x = 1\n"), &digest(b"bad"), true)
            .unwrap();
        assert_eq!(s.versions("app").unwrap().len(), 1);
        assert_eq!(fs::read(s.wasm_path("app")).unwrap(), b"one");
        s.discard_version(staged);
        assert_eq!(listing(), before);
        assert_eq!(s.versions("app").unwrap().len(), 1);

        let staged = s
            .stage_version(
                "app",
                b"two",
                Some("timeout = \"2s\"\n"),
                &digest(b"two"),
                true,
            )
            .unwrap();
        let meta = s.commit_version(staged).unwrap();
        assert_eq!(meta.version, "v2");
        assert_eq!(fs::read(s.wasm_path("app")).unwrap(), b"two");
        assert_eq!(
            fs::read_to_string(s.manifest_path("app")).unwrap(),
            "timeout = \"2s\"\n"
        );
        assert_eq!(s.current_version("app").unwrap().unwrap().version, "v2");
        assert!(!listing().iter().any(|n| n.starts_with(TMP_PREFIX)));
    }
}
