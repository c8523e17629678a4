//! App state: key-value stores (`wasi:keyvalue`) and runtime config and secrets
//! (`wasi:config`) for guests.
//!
//! One [`Backend`] holds every app's data; [`sqlite`] is the embedded default (one file,
//! `DIR/.edge/state.db`), [`postgres`] the one a cluster of nodes shares. The server opens it, never a guest: a guest reaches only the
//! stores its manifest declares, through [`AppState`], which scopes every key to the app.
//! [`host`] binds the WASI interfaces to it.
//!
//! Counters (`atomics.increment`) are stored as decimal text (`b"42"`), so `get`, the CLI
//! and JavaScript read them as they would any value.

pub mod admin;
pub mod host;
pub mod postgres;
pub mod sqlite;

use crate::config;
use crate::metrics::Metrics;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keys returned by one `list-keys` page.
pub const PAGE_SIZE: usize = 1000;

/// Why a key-value or secret operation failed. The guest sees the message; it never holds
/// another app's data or a secret's value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// The manifest declares no store of that name.
    #[error(
        "no key-value store `{0}`: declare it in the app's manifest (`key_value_stores = [\"{0}\"]`)"
    )]
    NoSuchStore(String),
    /// A limit in the manifest (or its default) would be exceeded.
    #[error("{0}")]
    Limit(String),
    /// The input is not acceptable (an empty key, a counter that is not a number, …).
    #[error("{0}")]
    Invalid(String),
    /// Stores are not reachable here (during pre-initialization).
    #[error("{0}")]
    Unavailable(&'static str),
    /// The database failed.
    #[error("key-value database error: {0}")]
    Backend(String),
}

/// The one place every app's keys and secrets live. Implementations scope every operation
/// to `(app, store)`; limits on the size of one key or value are checked before a call
/// reaches them ([`AppState`]), limits on a whole store inside the write's transaction.
pub trait Backend: Send + Sync {
    /// The value at `key`, if any.
    fn get(&self, scope: Scope<'_>, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Whether `key` has a value.
    fn exists(&self, scope: Scope<'_>, key: &str) -> Result<bool, KvError>;
    /// Sets every pair (keys distinct), in one transaction, refusing all of them if the
    /// store's key-count or byte limit would be exceeded. Returns when the write is durable.
    fn set_many(
        &self,
        scope: Scope<'_>,
        pairs: &[(&str, &[u8])],
        limits: &StoreLimits,
    ) -> Result<(), KvError>;
    /// Deletes every key (distinct; absent keys are skipped), in one transaction.
    fn delete_many(&self, scope: Scope<'_>, keys: &[&str]) -> Result<(), KvError>;
    /// Up to `limit` keys after `cursor`, and the cursor of the next page if there is one.
    fn list(
        &self,
        scope: Scope<'_>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>), KvError>;
    /// Atomically adds `delta` to the counter at `key` (absent: 0); the new value.
    fn increment(
        &self,
        scope: Scope<'_>,
        key: &str,
        delta: i64,
        limits: &StoreLimits,
    ) -> Result<i64, KvError>;
    /// Atomically sets `key` to `value` if it still holds `expected` (`None`: absent);
    /// whether it did.
    fn swap(
        &self,
        scope: Scope<'_>,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        limits: &StoreLimits,
    ) -> Result<bool, KvError>;
    /// Sets an app's secret.
    fn secret_set(&self, app: &str, name: &str, value: &str) -> Result<(), KvError>;
    /// Removes an app's secret; whether it existed.
    fn secret_delete(&self, app: &str, name: &str) -> Result<bool, KvError>;
    /// An app's secrets, names and values, sorted by name.
    fn secrets(&self, app: &str) -> Result<Vec<(String, String)>, KvError>;
    /// One of an app's secrets.
    fn secret(&self, app: &str, name: &str) -> Result<Option<String>, KvError>;
}

/// Which app's which store an operation is on.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The app's name.
    pub app: &'a str,
    /// The store's name, as the app's manifest declares it.
    pub store: &'a str,
}

/// Default longest key: Cloudflare Workers KV's limit.
pub const DEFAULT_MAX_KEY_SIZE: u64 = 512;
/// Default largest value.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 1 << 20;
/// Default keys one store may hold.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;
/// Default bytes (keys plus values) one store may hold.
pub const DEFAULT_MAX_STORE_SIZE: u64 = 100 << 20;

/// What one store may hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreLimits {
    /// Longest key, in bytes of UTF-8.
    pub max_key_size: u64,
    /// Largest value, in bytes.
    pub max_value_size: u64,
    /// Keys in the store.
    pub max_keys: u64,
    /// Bytes of keys and values in the store.
    pub max_store_size: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_key_size: DEFAULT_MAX_KEY_SIZE,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_keys: DEFAULT_MAX_KEYS,
            max_store_size: DEFAULT_MAX_STORE_SIZE,
        }
    }
}

/// `[key_value_limits]` in a manifest, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// e.g. `"512B"`.
    pub max_key_size: Option<String>,
    /// e.g. `"1MiB"`.
    pub max_value_size: Option<String>,
    /// A count.
    pub max_keys: Option<u64>,
    /// e.g. `"100MiB"`.
    pub max_store_size: Option<String>,
}

impl LimitsSpec {
    /// Validates the table and fills the gaps with the defaults.
    pub fn resolve(&self) -> Result<StoreLimits> {
        let mut limits = StoreLimits::default();
        let size = |field: &str, text: &Option<String>, into: &mut u64| -> Result<()> {
            if let Some(text) = text {
                let n = config::parse_size(text)
                    .with_context(|| format!("in `key_value_limits.{field}`"))?;
                if n == 0 {
                    bail!("`key_value_limits.{field}` must be greater than zero");
                }
                *into = n;
            }
            Ok(())
        };
        size("max_key_size", &self.max_key_size, &mut limits.max_key_size)?;
        size(
            "max_value_size",
            &self.max_value_size,
            &mut limits.max_value_size,
        )?;
        size(
            "max_store_size",
            &self.max_store_size,
            &mut limits.max_store_size,
        )?;
        if let Some(n) = self.max_keys {
            if n == 0 {
                bail!("`key_value_limits.max_keys` must be greater than zero");
            }
            limits.max_keys = n;
        }
        Ok(limits)
    }
}

/// Opens the backend `--state` names: a `postgres://` URL, or a SQLite file.
pub fn open(state: &str) -> Result<Arc<dyn Backend>> {
    if state.starts_with("postgres://") || state.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::Postgres::open(state)?));
    }
    Ok(Arc::new(sqlite::Sqlite::open(std::path::Path::new(state))?))
}

/// Checks the store names a manifest declares.
pub fn check_store_names(names: &[String]) -> Result<()> {
    for (i, name) in names.iter().enumerate() {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!(
                "key-value store name `{name}` in `key_value_stores`: use 1 to 64 letters, \
                 digits, `-`, `_` or `.`"
            );
        }
        if names[..i].contains(name) {
            bail!("key-value store `{name}` is declared twice in `key_value_stores`");
        }
    }
    Ok(())
}

/// Checks a secret's name: what `wasi:config` and JavaScript's `env` can carry.
pub fn check_secret_name(name: &str) -> Result<(), KvError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(KvError::Invalid(format!(
            "secret name `{name}`: use 1 to 128 letters, digits, `-`, `_` or `.`"
        )));
    }
    Ok(())
}

/// Largest secret value.
pub const MAX_SECRET_SIZE: usize = 64 * 1024;

/// One app's view of the state: the stores its manifest declares, their limits, and its
/// config. Built once per app version; every request of the app shares it.
pub struct AppState {
    /// The app's name: the scope of its keys and secrets.
    pub app: Arc<str>,
    backend: Arc<dyn Backend>,
    stores: Vec<String>,
    limits: StoreLimits,
    config: BTreeMap<String, String>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("app", &self.app)
            .field("stores", &self.stores)
            .field("limits", &self.limits)
            .field("config", &self.config.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AppState {
    /// The state app `app` sees.
    pub fn new(
        app: Arc<str>,
        backend: Arc<dyn Backend>,
        stores: Vec<String>,
        limits: StoreLimits,
        config: BTreeMap<String, String>,
        metrics: Option<Arc<Metrics>>,
    ) -> AppState {
        AppState {
            app,
            backend,
            stores,
            limits,
            config,
            metrics,
        }
    }

    /// Counts an operation's outcome and bytes (`read` of a success) in the metrics.
    fn note<R>(
        &self,
        store: &str,
        op: &'static str,
        written: u64,
        result: Result<R, KvError>,
        read: impl FnOnce(&R) -> u64,
    ) -> Result<R, KvError> {
        if let Some(m) = &self.metrics {
            let read = result.as_ref().map_or(0, read);
            let written = if result.is_ok() { written } else { 0 };
            m.kv(&self.app, store, op, result.is_ok(), read, written);
        }
        result
    }

    /// The declared store called `name`, or [`KvError::NoSuchStore`].
    pub fn open(&self, name: &str) -> Result<&str, KvError> {
        self.stores
            .iter()
            .find(|s| *s == name)
            .map(String::as_str)
            .ok_or_else(|| KvError::NoSuchStore(name.to_string()))
    }

    fn scope<'a>(&'a self, store: &'a str) -> Scope<'a> {
        Scope {
            app: &self.app,
            store,
        }
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::Invalid("a key must not be empty".into()));
        }
        if key.contains('\0') {
            return Err(KvError::Invalid("a key must not contain NUL".into()));
        }
        if key.len() as u64 > self.limits.max_key_size {
            return Err(KvError::Limit(format!(
                "key of {} bytes is over this store's limit of {} (`key_value_limits.max_key_size`)",
                key.len(),
                self.limits.max_key_size
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() as u64 > self.limits.max_value_size {
            return Err(KvError::Limit(format!(
                "value of {} bytes is over this store's limit of {} (`key_value_limits.max_value_size`)",
                value.len(),
                self.limits.max_value_size
            )));
        }
        Ok(())
    }

    /// `get` in `store`.
    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let r = self
            .check_key(key)
            .and_then(|()| self.backend.get(self.scope(store), key));
        self.note(store, "get", 0, r, |v| {
            v.as_ref().map_or(0, |v| v.len() as u64)
        })
    }

    /// `get-many` in `store`.
    pub fn get_many(&self, store: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let r = keys
            .iter()
            .map(|k| {
                self.check_key(k)?;
                self.backend.get(self.scope(store), k)
            })
            .collect();
        self.note(store, "get_many", 0, r, |vs: &Vec<Option<Vec<u8>>>| {
            vs.iter().flatten().map(|v| v.len() as u64).sum()
        })
    }

    /// `exists` in `store`.
    pub fn exists(&self, store: &str, key: &str) -> Result<bool, KvError> {
        let r = self
            .check_key(key)
            .and_then(|()| self.backend.exists(self.scope(store), key));
        self.note(store, "exists", 0, r, |_| 0)
    }

    /// `set` in `store`.
    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.write(store, "set", &[(key, value)])
    }

    /// `set-many` in `store`: every pair is checked before any is written.
    pub fn set_many(&self, store: &str, pairs: &[(&str, &[u8])]) -> Result<(), KvError> {
        self.write(store, "set_many", pairs)
    }

    fn write(&self, store: &str, op: &'static str, pairs: &[(&str, &[u8])]) -> Result<(), KvError> {
        let r = pairs
            .iter()
            .try_for_each(|(k, v)| {
                self.check_key(k)?;
                self.check_value(v)
            })
            .and_then(|()| {
                self.backend
                    .set_many(self.scope(store), pairs, &self.limits)
            });
        let written = pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        self.note(store, op, written, r, |_| 0)
    }

    /// `delete` in `store`.
    pub fn delete(&self, store: &str, key: &str) -> Result<(), KvError> {
        self.remove(store, "delete", &[key])
    }

    /// `delete-many` in `store`.
    pub fn delete_many(&self, store: &str, keys: &[&str]) -> Result<(), KvError> {
        self.remove(store, "delete_many", keys)
    }

    fn remove(&self, store: &str, op: &'static str, keys: &[&str]) -> Result<(), KvError> {
        let r = keys
            .iter()
            .try_for_each(|k| self.check_key(k))
            .and_then(|()| {
                let keys: Vec<&str> =
                    dedup_last(&keys.iter().map(|k| (*k, ())).collect::<Vec<_>>())
                        .into_iter()
                        .map(|(k, ())| k)
                        .collect();
                self.backend.delete_many(self.scope(store), &keys)
            });
        self.note(store, op, 0, r, |_| 0)
    }

    /// One page of keys in `store`.
    pub fn list(
        &self,
        store: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let r = self.backend.list(self.scope(store), cursor, PAGE_SIZE);
        self.note(store, "list", 0, r, |(keys, _)| {
            keys.iter().map(|k| k.len() as u64).sum()
        })
    }

    /// Compare-and-swap in `store`: sets `key` to `value` if it still holds `expected`.
    pub fn swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        let r = self.check_key(key).and_then(|()| {
            self.check_value(value)?;
            self.backend
                .swap(self.scope(store), key, expected, value, &self.limits)
        });
        let written = (key.len() + value.len()) as u64;
        self.note(store, "swap", written, r, |_| 0)
    }

    /// `increment` in `store`.
    pub fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let r = self.check_key(key).and_then(|()| {
            self.backend
                .increment(self.scope(store), key, delta, &self.limits)
        });
        self.note(store, "increment", 0, r, |_| 0)
    }

    /// A config value: a secret of that name, else the manifest's `[config]` entry.
    pub fn config(&self, key: &str) -> Result<Option<String>, KvError> {
        if check_secret_name(key).is_ok()
            && let Some(secret) = self.backend.secret(&self.app, key)?
        {
            return Ok(Some(secret));
        }
        Ok(self.config.get(key).cloned())
    }

    /// Every config value the app can read, secrets over manifest entries.
    pub fn config_all(&self) -> Result<Vec<(String, String)>, KvError> {
        let mut all = self.config.clone();
        all.extend(self.backend.secrets(&self.app)?);
        Ok(all.into_iter().collect())
    }
}

/// A store's `(keys, bytes)` after writing `pairs` over keys whose values had the lengths
/// `old` (`None`: absent), or the limit it would break. Keys in `pairs` are distinct.
pub fn usage_after(
    store: &str,
    (mut keys, mut bytes): (u64, u64),
    pairs: &[(&str, &[u8])],
    old: &[Option<u64>],
    limits: &StoreLimits,
) -> Result<(u64, u64), KvError> {
    for ((key, value), old) in pairs.iter().zip(old) {
        match old {
            Some(old) => bytes = bytes.saturating_sub(key.len() as u64 + old),
            None => keys += 1,
        }
        bytes += (key.len() + value.len()) as u64;
    }
    if keys > limits.max_keys {
        return Err(KvError::Limit(format!(
            "store `{store}` is full: it may hold {} keys (`key_value_limits.max_keys`)",
            limits.max_keys
        )));
    }
    if bytes > limits.max_store_size {
        return Err(KvError::Limit(format!(
            "store `{store}` is full: it may hold {} bytes of keys and values \
             (`key_value_limits.max_store_size`)",
            limits.max_store_size
        )));
    }
    Ok((keys, bytes))
}

/// A store's `(keys, bytes)` after deleting `keys` whose values had the lengths `old`, or
/// `None` if none of them existed. Keys are distinct.
pub fn usage_after_delete(
    (mut count, mut bytes): (u64, u64),
    keys: &[&str],
    old: &[Option<u64>],
) -> Option<(u64, u64)> {
    let mut changed = false;
    for (key, old) in keys.iter().zip(old) {
        if let Some(old) = old {
            count = count.saturating_sub(1);
            bytes = bytes.saturating_sub(key.len() as u64 + old);
            changed = true;
        }
    }
    changed.then_some((count, bytes))
}

/// `pairs` with each key once, its last value winning (as writing them in order would).
fn dedup_last<'a, T: Copy>(items: &[(&'a str, T)]) -> Vec<(&'a str, T)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(&str, T)> = items
        .iter()
        .rev()
        .filter(|(k, _)| seen.insert(*k))
        .copied()
        .collect();
    out.reverse();
    out
}

/// The counter at `key` after adding `delta` to its stored text `old` (absent: 0).
pub fn next_counter(key: &str, old: Option<&[u8]>, delta: i64) -> Result<i64, KvError> {
    let old = match old {
        None => 0,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                KvError::Invalid(format!(
                    "the value at `{key}` is not a counter (decimal digits); `increment` cannot add to it"
                ))
            })?,
    };
    old.checked_add(delta)
        .ok_or_else(|| KvError::Invalid(format!("the counter at `{key}` would overflow an i64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_resolve_and_refuse_zero() {
        let spec = LimitsSpec {
            max_key_size: Some("64B".into()),
            max_keys: Some(10),
            ..Default::default()
        };
        let l = spec.resolve().unwrap();
        assert_eq!(l.max_key_size, 64);
        assert_eq!(l.max_keys, 10);
        assert_eq!(l.max_value_size, DEFAULT_MAX_VALUE_SIZE);
        let zero = LimitsSpec {
            max_keys: Some(0),
            ..Default::default()
        };
        assert!(zero.resolve().is_err());
    }

    #[test]
    fn store_names() {
        check_store_names(&["default".into(), "sessions".into()]).unwrap();
        assert!(check_store_names(&["a/b".into()]).is_err());
        assert!(check_store_names(&["x".into(), "x".into()]).is_err());
        assert!(check_store_names(&["".into()]).is_err());
    }

    #[test]
    fn counters_are_decimal_text() {
        assert_eq!(next_counter("k", Some(b"42"), 1).unwrap(), 43);
        assert_eq!(next_counter("k", None, -2).unwrap(), -2);
        assert_eq!(next_counter("k", Some(b"-1"), 1).unwrap(), 0);
        assert!(next_counter("k", Some(b"\x01\x02"), 1).is_err());
        assert!(next_counter("k", Some(b"9223372036854775807"), 1).is_err());
    }
}
