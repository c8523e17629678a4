//! The cluster [`Backend`]: PostgreSQL, so every edge node pointed at one database sees
//! the same keys and secrets (`--state postgres://…`).
//!
//! The trait is synchronous, as guest calls are; the queries run on a runtime of this
//! backend's own (one thread driving a few connections) and the caller waits for the
//! answer, as it waits for SQLite's. Every write is one transaction that first locks the
//! store's usage row (`SELECT … FOR UPDATE`), so writes to one store are serialized across
//! every node: `increment` and the store limits are exact cluster-wide.
//!
//! A connection that breaks (the database restarted, the network went away) fails the
//! operation in flight with the database's error, and is reopened on the next use.

use super::{Backend, KvError, Scope, StoreLimits, next_counter, usage_after, usage_after_delete};
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Transaction};

/// Connections per node: writes to different stores proceed in parallel on them.
const CONNECTIONS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS edge_kv (
    id BIGSERIAL PRIMARY KEY,
    app TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    UNIQUE (app, store, key)
);
CREATE INDEX IF NOT EXISTS edge_kv_pages ON edge_kv (app, store, id);
CREATE TABLE IF NOT EXISTS edge_kv_usage (
    app TEXT NOT NULL,
    store TEXT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (app, store)
);
CREATE TABLE IF NOT EXISTS edge_secrets (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, name)
);
";

/// An arbitrary constant: the advisory lock the schema is created under.
const SCHEMA_LOCK: i64 = 0x6564_6765_5f6b_7673;

/// The PostgreSQL backend.
pub struct Postgres {
    url: String,
    /// `Some` until dropped (a runtime must be shut down, not dropped, in async code).
    runtime: Option<tokio::runtime::Runtime>,
    slots: Vec<Arc<Mutex<Option<Client>>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

fn db_error(e: tokio_postgres::Error) -> KvError {
    KvError::Backend(match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("key-value database connection lost: {e}");
        }
    });
    Ok(client)
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/db`), creates the tables if needed,
    /// and fails at once, naming the database, if it cannot.
    pub fn open(url: &str) -> Result<Postgres> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("edge-kv-postgres")
            .enable_all()
            .build()
            .context("cannot start the key-value database's runtime")?;
        let slots: Vec<_> = (0..CONNECTIONS)
            .map(|_| Arc::new(Mutex::new(None)))
            .collect();
        let pg = Postgres {
            url: url.to_string(),
            runtime: Some(runtime),
            slots,
            next: AtomicUsize::new(0),
        };
        // The caller may be async itself: the first connection is made like every query,
        // on this backend's runtime, while the caller waits.
        pg.run(|slot| {
            with_client(slot, async |client| {
                // `CREATE … IF NOT EXISTS` races with itself when several nodes start at
                // once (a duplicate-key error on PostgreSQL's catalog): one at a time.
                client
                    .batch_execute(&format!(
                        "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); \
                         SET LOCAL client_min_messages = warning; {SCHEMA} COMMIT;"
                    ))
                    .await
                    .map_err(db_error)
            })
        })
        .with_context(|| format!("cannot use the key-value database `{}`", redact(url)))?;
        Ok(pg)
    }

    /// Runs `op` on a connection (reopened if it broke) and waits for its answer.
    fn run<R, F, Fut>(&self, op: F) -> Result<R, KvError>
    where
        R: Send + 'static,
        F: FnOnce(Arc<Mutex<Option<Client>>>) -> Fut,
        Fut: Future<Output = Result<R, KvError>> + Send + 'static,
    {
        let slot = self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()].clone();
        let url = self.url.clone();
        let work = op(slot.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("running until dropped");
        runtime.spawn(async move {
            let ready = {
                let mut client = slot.lock().await;
                if client.as_ref().is_none_or(Client::is_closed) {
                    *client = None;
                    match connect(&url).await {
                        Ok(c) => {
                            *client = Some(c);
                            Ok(())
                        }
                        Err(e) => Err(db_error(e)),
                    }
                } else {
                    Ok(())
                }
            };
            let out = match ready {
                Ok(()) => work.await,
                Err(e) => Err(e),
            };
            let _ = tx.send(out);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(KvError::Backend("the database task ended".into())))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs `f` with the slot's client.
async fn with_client<R>(
    slot: Arc<Mutex<Option<Client>>>,
    f: impl AsyncFnOnce(&Client) -> Result<R, KvError>,
) -> Result<R, KvError> {
    let guard = slot.lock().await;
    let client = guard
        .as_ref()
        .ok_or_else(|| KvError::Backend("no connection".into()))?;
    f(client).await
}

/// Runs `f` in a transaction on the slot's client, committing if it succeeds.
async fn transaction<R>(
    slot: Arc<Mutex<Option<Client>>>,
    f: impl AsyncFnOnce(&Transaction<'_>) -> Result<R, KvError>,
) -> Result<R, KvError> {
    let mut guard = slot.lock().await;
    let client = guard
        .as_mut()
        .ok_or_else(|| KvError::Backend("no connection".into()))?;
    let tx = client.transaction().await.map_err(db_error)?;
    let out = f(&tx).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(out)
}

/// Locks the store's usage row for this transaction and returns it.
async fn lock_usage(tx: &Transaction<'_>, app: &str, store: &str) -> Result<(u64, u64), KvError> {
    tx.execute(
        "INSERT INTO edge_kv_usage (app, store, keys, bytes) VALUES ($1, $2, 0, 0)
         ON CONFLICT (app, store) DO NOTHING",
        &[&app, &store],
    )
    .await
    .map_err(db_error)?;
    let row = tx
        .query_one(
            "SELECT keys, bytes FROM edge_kv_usage WHERE app = $1 AND store = $2 FOR UPDATE",
            &[&app, &store],
        )
        .await
        .map_err(db_error)?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}

async fn old_lengths(
    tx: &Transaction<'_>,
    app: &str,
    store: &str,
    keys: &[String],
) -> Result<Vec<Option<u64>>, KvError> {
    let rows = tx
        .query(
            "SELECT key, length(value) FROM edge_kv WHERE app = $1 AND store = $2 AND key = ANY($3)",
            &[&app, &store, &keys],
        )
        .await
        .map_err(db_error)?;
    let found: std::collections::HashMap<String, i32> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(keys
        .iter()
        .map(|k| found.get(k).map(|n| *n as u64))
        .collect())
}

async fn set_usage(
    tx: &Transaction<'_>,
    app: &str,
    store: &str,
    (keys, bytes): (u64, u64),
) -> Result<(), KvError> {
    tx.execute(
        "UPDATE edge_kv_usage SET keys = $3, bytes = $4 WHERE app = $1 AND store = $2",
        &[&app, &store, &(keys as i64), &(bytes as i64)],
    )
    .await
    .map(drop)
    .map_err(db_error)
}

/// The value at `key` inside the transaction.
async fn current(
    tx: &Transaction<'_>,
    app: &str,
    store: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, KvError> {
    let row = tx
        .query_opt(
            "SELECT value FROM edge_kv WHERE app = $1 AND store = $2 AND key = $3",
            &[&app, &store, &key],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| r.get(0)))
}

/// Writes distinct `pairs` and the store's new usage, or nothing over a limit.
async fn put(
    tx: &Transaction<'_>,
    app: &str,
    store: &str,
    keys: &[String],
    values: &[Vec<u8>],
    limits: &StoreLimits,
) -> Result<(), KvError> {
    let before = lock_usage(tx, app, store).await?;
    let old = old_lengths(tx, app, store, keys).await?;
    let pairs: Vec<(&str, &[u8])> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let after = usage_after(store, before, &pairs, &old, limits)?;
    tx.execute(
        "INSERT INTO edge_kv (app, store, key, value)
         SELECT $1, $2, k, v FROM UNNEST($3::text[], $4::bytea[]) AS t (k, v)
         ON CONFLICT (app, store, key) DO UPDATE SET value = EXCLUDED.value",
        &[&app, &store, &keys, &values],
    )
    .await
    .map_err(db_error)?;
    set_usage(tx, app, store, after).await
}

impl Backend for Postgres {
    fn get(&self, s: Scope<'_>, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (app, store, key) = (s.app.to_string(), s.store.to_string(), key.to_string());
        self.run(move |slot| {
            with_client(slot, async move |client| {
                let row = client
                    .query_opt(
                        "SELECT value FROM edge_kv WHERE app = $1 AND store = $2 AND key = $3",
                        &[&app, &store, &key],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.map(|r| r.get(0)))
            })
        })
    }

    fn exists(&self, s: Scope<'_>, key: &str) -> Result<bool, KvError> {
        Ok(self.get(s, key)?.is_some())
    }

    fn set_many(
        &self,
        s: Scope<'_>,
        pairs: &[(&str, &[u8])],
        limits: &StoreLimits,
    ) -> Result<(), KvError> {
        let (app, store, limits) = (s.app.to_string(), s.store.to_string(), limits.clone());
        let keys: Vec<String> = pairs.iter().map(|(k, _)| k.to_string()).collect();
        let values: Vec<Vec<u8>> = pairs.iter().map(|(_, v)| v.to_vec()).collect();
        self.run(move |slot| {
            transaction(slot, async move |tx| {
                put(tx, &app, &store, &keys, &values, &limits).await
            })
        })
    }

    fn delete_many(&self, s: Scope<'_>, keys: &[&str]) -> Result<(), KvError> {
        let (app, store) = (s.app.to_string(), s.store.to_string());
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        self.run(move |slot| {
            transaction(slot, async move |tx| {
                let before = lock_usage(tx, &app, &store).await?;
                let old = old_lengths(tx, &app, &store, &keys).await?;
                tx.execute(
                    "DELETE FROM edge_kv WHERE app = $1 AND store = $2 AND key = ANY($3)",
                    &[&app, &store, &keys],
                )
                .await
                .map_err(db_error)?;
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                if let Some(after) = usage_after_delete(before, &refs, &old) {
                    set_usage(tx, &app, &store, after).await?;
                }
                Ok(())
            })
        })
    }

    fn list(
        &self,
        s: Scope<'_>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let (app, store) = (s.app.to_string(), s.store.to_string());
        let after = cursor.unwrap_or(0) as i64;
        let rows: Vec<(i64, String)> = self.run(move |slot| {
            with_client(slot, async move |client| {
                let rows = client
                    .query(
                        "SELECT id, key FROM edge_kv WHERE app = $1 AND store = $2 AND id > $3
                     ORDER BY id LIMIT $4",
                        &[&app, &store, &after, &(limit as i64 + 1)],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
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
        let (app, store, key, limits) = (
            s.app.to_string(),
            s.store.to_string(),
            key.to_string(),
            limits.clone(),
        );
        self.run(move |slot| {
            transaction(slot, async move |tx| {
                // The usage lock serializes this with every other write to the store.
                lock_usage(tx, &app, &store).await?;
                let old = current(tx, &app, &store, &key).await?;
                let new = next_counter(&key, old.as_deref(), delta)?;
                let (keys, values) = ([key], [new.to_string().into_bytes()]);
                put(tx, &app, &store, &keys, &values, &limits).await?;
                Ok(new)
            })
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
        let (app, store, key, limits) = (
            s.app.to_string(),
            s.store.to_string(),
            key.to_string(),
            limits.clone(),
        );
        let (expected, value) = (expected.map(<[u8]>::to_vec), value.to_vec());
        self.run(move |slot| {
            transaction(slot, async move |tx| {
                lock_usage(tx, &app, &store).await?;
                if current(tx, &app, &store, &key).await? != expected {
                    return Ok(false);
                }
                put(tx, &app, &store, &[key], &[value], &limits).await?;
                Ok(true)
            })
        })
    }

    fn secret_set(&self, app: &str, name: &str, value: &str) -> Result<(), KvError> {
        let (app, name, value) = (app.to_string(), name.to_string(), value.to_string());
        self.run(move |slot| {
            transaction(slot, async move |tx| {
                tx.execute(
                    "INSERT INTO edge_secrets (app, name, value) VALUES ($1, $2, $3)
                     ON CONFLICT (app, name) DO UPDATE SET value = EXCLUDED.value",
                    &[&app, &name, &value],
                )
                .await
                .map(drop)
                .map_err(db_error)
            })
        })
    }

    fn secret_delete(&self, app: &str, name: &str) -> Result<bool, KvError> {
        let (app, name) = (app.to_string(), name.to_string());
        self.run(move |slot| {
            transaction(slot, async move |tx| {
                tx.execute(
                    "DELETE FROM edge_secrets WHERE app = $1 AND name = $2",
                    &[&app, &name],
                )
                .await
                .map(|n| n > 0)
                .map_err(db_error)
            })
        })
    }

    fn secrets(&self, app: &str) -> Result<Vec<(String, String)>, KvError> {
        let app = app.to_string();
        self.run(move |slot| {
            with_client(slot, async move |client| {
                let rows = client
                    .query(
                        "SELECT name, value FROM edge_secrets WHERE app = $1 ORDER BY name",
                        &[&app],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
        })
    }

    fn secret(&self, app: &str, name: &str) -> Result<Option<String>, KvError> {
        let (app, name) = (app.to_string(), name.to_string());
        self.run(move |slot| {
            with_client(slot, async move |client| {
                let row = client
                    .query_opt(
                        "SELECT value FROM edge_secrets WHERE app = $1 AND name = $2",
                        &[&app, &name],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.map(|r| r.get(0)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://edge:hunter2@db:5432/edge"),
            "postgres://edge:***@db:5432/edge"
        );
        assert_eq!(redact("postgres://edge@db/edge"), "postgres://edge@db/edge");
    }
}
