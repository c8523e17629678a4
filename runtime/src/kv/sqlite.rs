//! The embedded [`Backend`]: one SQLite file in WAL mode.
//!
//! Writes go through one connection, each in an `IMMEDIATE` transaction, so a
//! read-modify-write (`increment`, the store limits) is atomic across every request of the
//! process, and across processes by SQLite's file lock. Reads use a small pool of their
//! own connections, which WAL lets run beside the writer.
//!
//! Durability: `synchronous = NORMAL`. A committed transaction is in the WAL file before
//! the call returns, so it survives the server being killed (`kill -9`); a power loss may
//! take the last transactions since the previous checkpoint.

use super::{Backend, KvError, Scope, StoreLimits, next_counter, usage_after, usage_after_delete};
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Read connections: one per HTTP thread is plenty on small machines.
const READERS: usize = 4;
/// How long a write waits for another process's write to finish before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The schema version this code reads and writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (app, store, key)
);
CREATE INDEX IF NOT EXISTS kv_pages ON kv (app, store, id);
CREATE TABLE IF NOT EXISTS kv_usage (
    app TEXT NOT NULL,
    store TEXT NOT NULL,
    keys INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (app, store)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secrets (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, name)
) WITHOUT ROWID;
";

/// The SQLite backend.
pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

fn db_error(e: rusqlite::Error) -> KvError {
    KvError::Backend(e.to_string())
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`, checks its integrity and schema,
    /// and refuses to start on a file that is corrupt, not a database, locked or newer
    /// than this build.
    pub fn open(path: &Path) -> Result<Sqlite> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let writer = connect(path, false)?;
        let check: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(anyhow::Error::from)
            .with_context(|| format!("`{}` is not a usable SQLite database", path.display()))?;
        if check != "ok" {
            bail!(
                "the key-value database `{}` is corrupt ({check}); edge will not serve from \
                 it. Restore it from a backup or move it away to start empty",
                path.display()
            );
        }
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(anyhow::Error::from)?;
        if version > SCHEMA_VERSION {
            bail!(
                "the key-value database `{}` has schema version {version}, newer than this \
                 edge ({SCHEMA_VERSION}); upgrade edge",
                path.display()
            );
        }
        writer
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "cannot set up the key-value database `{}` (is another process holding \
                     it locked?)",
                    path.display()
                )
            })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // It holds secrets: readable by the server's user only.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict `{}` to its owner", path.display()))?;
        }
        let readers = (0..READERS)
            .map(|_| connect(path, true).map(Mutex::new))
            .collect::<Result<_>>()?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, KvError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        let guard = (0..n)
            .find_map(|i| self.readers[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.readers[start % n]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        f(&guard).map_err(db_error)
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_error)?;
        Ok(out)
    }
}

fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the key-value database `{}`", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(anyhow::Error::from)
            .with_context(|| format!("`{}` is not a usable SQLite database", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("cannot put `{}` in WAL mode (got `{mode}`)", path.display());
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

/// The store's key count and bytes, as the writer sees them inside its transaction.
fn usage(tx: &rusqlite::Transaction<'_>, s: Scope<'_>) -> Result<(u64, u64), KvError> {
    tx.prepare_cached("SELECT keys, bytes FROM kv_usage WHERE app = ?1 AND store = ?2")
        .and_then(|mut st| {
            st.query_row(params![s.app, s.store], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .optional()
        })
        .map(|u| u.unwrap_or((0, 0)))
        .map_err(db_error)
}

fn set_usage(
    tx: &rusqlite::Transaction<'_>,
    s: Scope<'_>,
    keys: u64,
    bytes: u64,
) -> Result<(), KvError> {
    tx.prepare_cached(
        "INSERT INTO kv_usage (app, store, keys, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app, store) DO UPDATE SET keys = excluded.keys, bytes = excluded.bytes",
    )
    .and_then(|mut st| st.execute(params![s.app, s.store, keys as i64, bytes as i64]))
    .map(drop)
    .map_err(db_error)
}

/// The value at `key` as the writer sees it inside its transaction.
fn current(
    tx: &rusqlite::Transaction<'_>,
    s: Scope<'_>,
    key: &str,
) -> Result<Option<Vec<u8>>, KvError> {
    tx.prepare_cached("SELECT value FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
        .and_then(|mut st| {
            st.query_row(params![s.app, s.store, key], |r| r.get(0))
                .optional()
        })
        .map_err(db_error)
}

/// The stored length of the value at `key`, if any.
fn old_len(
    tx: &rusqlite::Transaction<'_>,
    s: Scope<'_>,
    key: &str,
) -> Result<Option<u64>, KvError> {
    tx.prepare_cached("SELECT length(value) FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
        .and_then(|mut st| {
            st.query_row(params![s.app, s.store, key], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|n| n.map(|n| n as u64))
        .map_err(db_error)
}

/// Writes `pairs` and the new usage, or nothing if a store limit would be exceeded.
fn put(
    tx: &rusqlite::Transaction<'_>,
    s: Scope<'_>,
    pairs: &[(&str, &[u8])],
    limits: &StoreLimits,
) -> Result<(), KvError> {
    let before = usage(tx, s)?;
    let mut old = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        old.push(old_len(tx, s, key)?);
        tx.prepare_cached(
            "INSERT INTO kv (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut st| st.execute(params![s.app, s.store, key, value]))
        .map_err(db_error)?;
    }
    let (keys, bytes) = usage_after(s.store, before, pairs, &old, limits)?;
    set_usage(tx, s, keys, bytes)
}

impl Backend for Sqlite {
    fn get(&self, s: Scope<'_>, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")?
                .query_row(params![s.app, s.store, key], |r| r.get(0))
                .optional()
        })
    }

    fn exists(&self, s: Scope<'_>, key: &str) -> Result<bool, KvError> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")?
                .exists(params![s.app, s.store, key])
        })
    }

    fn set_many(
        &self,
        s: Scope<'_>,
        pairs: &[(&str, &[u8])],
        limits: &StoreLimits,
    ) -> Result<(), KvError> {
        self.write(|tx| put(tx, s, pairs, limits))
    }

    fn delete_many(&self, s: Scope<'_>, keys: &[&str]) -> Result<(), KvError> {
        self.write(|tx| {
            let before = usage(tx, s)?;
            let mut old = Vec::with_capacity(keys.len());
            for key in keys {
                old.push(old_len(tx, s, key)?);
                tx.prepare_cached("DELETE FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                    .and_then(|mut st| st.execute(params![s.app, s.store, key]))
                    .map_err(db_error)?;
            }
            if let Some((count, bytes)) = usage_after_delete(before, keys, &old) {
                set_usage(tx, s, count, bytes)?;
            }
            Ok(())
        })
    }

    fn list(
        &self,
        s: Scope<'_>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let after = cursor.unwrap_or(0) as i64;
        let rows: Vec<(i64, String)> = self.read(|c| {
            c.prepare_cached(
                "SELECT id, key FROM kv WHERE app = ?1 AND store = ?2 AND id > ?3
                 ORDER BY id LIMIT ?4",
            )?
            .query_map(params![s.app, s.store, after, limit as i64 + 1], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })?;
        let more = rows.len() > limit;
        let page: Vec<(i64, String)> = rows.into_iter().take(limit).collect();
        let next = more
            .then(|| page.last().map(|(id, _)| *id as u64))
            .flatten();
        Ok((page.into_iter().map(|(_, k)| k).collect(), next))
    }

    fn increment(
        &self,
        s: Scope<'_>,
        key: &str,
        delta: i64,
        limits: &StoreLimits,
    ) -> Result<i64, KvError> {
        self.write(|tx| {
            let new = next_counter(key, current(tx, s, key)?.as_deref(), delta)?;
            put(tx, s, &[(key, new.to_string().as_bytes())], limits)?;
            Ok(new)
        })
    }

    fn swap(
        &self,
        s: Scope<'_>,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        limits: &StoreLimits,
    ) -> Result<bool, KvError> {
        self.write(|tx| {
            if current(tx, s, key)?.as_deref() != expected {
                return Ok(false);
            }
            put(tx, s, &[(key, value)], limits)?;
            Ok(true)
        })
    }

    fn secret_set(&self, app: &str, name: &str, value: &str) -> Result<(), KvError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO secrets (app, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app, name) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut st| st.execute(params![app, name, value]))
            .map(drop)
            .map_err(db_error)
        })
    }

    fn secret_delete(&self, app: &str, name: &str) -> Result<bool, KvError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM secrets WHERE app = ?1 AND name = ?2")
                .and_then(|mut st| st.execute(params![app, name]))
                .map(|n| n > 0)
                .map_err(db_error)
        })
    }

    fn secrets(&self, app: &str) -> Result<Vec<(String, String)>, KvError> {
        self.read(|c| {
            c.prepare_cached("SELECT name, value FROM secrets WHERE app = ?1 ORDER BY name")?
                .query_map(params![app], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    fn secret(&self, app: &str, name: &str) -> Result<Option<String>, KvError> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM secrets WHERE app = ?1 AND name = ?2")?
                .query_row(params![app, name], |r| r.get(0))
                .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(store: &str) -> Scope<'_> {
        Scope { app: "a", store }
    }

    #[test]
    fn set_get_delete_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("state.db")).unwrap();
        let limits = StoreLimits::default();
        db.set_many(scope("s"), &[("k", b"v1")], &limits).unwrap();
        db.set_many(scope("s"), &[("k", b"v22")], &limits).unwrap();
        assert_eq!(
            db.get(scope("s"), "k").unwrap().as_deref(),
            Some(&b"v22"[..])
        );
        assert_eq!(db.get(scope("t"), "k").unwrap(), None);
        let tx_usage = {
            let mut c = db.writer.lock().unwrap();
            let tx = c.transaction().unwrap();
            usage(&tx, scope("s")).unwrap()
        };
        assert_eq!(tx_usage, (1, 4));
        db.delete_many(scope("s"), &["k", "absent"]).unwrap();
        assert!(!db.exists(scope("s"), "k").unwrap());
    }

    #[test]
    fn limits_refuse_the_whole_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("state.db")).unwrap();
        let limits = StoreLimits {
            max_keys: 2,
            ..Default::default()
        };
        let err = db
            .set_many(
                scope("s"),
                &[("a", b"1"), ("b", b"2"), ("c", b"3")],
                &limits,
            )
            .unwrap_err();
        assert!(matches!(err, KvError::Limit(_)), "{err}");
        assert_eq!(db.get(scope("s"), "a").unwrap(), None);
        db.set_many(scope("s"), &[("a", b"1"), ("b", b"2")], &limits)
            .unwrap();
        // Overwriting an existing key adds no key.
        db.set_many(scope("s"), &[("a", b"9")], &limits).unwrap();
    }

    #[test]
    fn pages_follow_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("state.db")).unwrap();
        let limits = StoreLimits::default();
        for i in 0..5 {
            let k = format!("k{i}");
            db.set_many(scope("s"), &[(&k, b"x")], &limits).unwrap();
        }
        let (p1, c1) = db.list(scope("s"), None, 2).unwrap();
        let (p2, c2) = db.list(scope("s"), c1, 2).unwrap();
        let (p3, c3) = db.list(scope("s"), c2, 2).unwrap();
        assert_eq!([p1, p2, p3].concat(), ["k0", "k1", "k2", "k3", "k4"]);
        assert!(c1.is_some() && c2.is_some() && c3.is_none());
    }

    #[test]
    fn increment_counts_and_refuses_non_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("state.db")).unwrap();
        let limits = StoreLimits::default();
        assert_eq!(db.increment(scope("s"), "n", 2, &limits).unwrap(), 2);
        assert_eq!(db.increment(scope("s"), "n", 3, &limits).unwrap(), 5);
        assert_eq!(db.get(scope("s"), "n").unwrap().as_deref(), Some(&b"5"[..]));
        db.set_many(scope("s"), &[("t", b"text")], &limits).unwrap();
        assert!(matches!(
            db.increment(scope("s"), "t", 1, &limits),
            Err(KvError::Invalid(_))
        ));
    }

    #[test]
    fn swap_writes_only_over_what_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("state.db")).unwrap();
        let limits = StoreLimits::default();
        assert!(db.swap(scope("s"), "k", None, b"one", &limits).unwrap());
        assert!(!db.swap(scope("s"), "k", None, b"two", &limits).unwrap());
        assert!(
            !db.swap(scope("s"), "k", Some(b"two"), b"three", &limits)
                .unwrap()
        );
        assert!(
            db.swap(scope("s"), "k", Some(b"one"), b"three", &limits)
                .unwrap()
        );
        assert_eq!(
            db.get(scope("s"), "k").unwrap().as_deref(),
            Some(&b"three"[..])
        );
    }

    #[test]
    fn a_corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = Sqlite::open(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a usable SQLite database"),
            "{err:#}"
        );
    }
}
