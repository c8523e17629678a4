//! The cluster app store on PostgreSQL: every version's component, manifest and digest,
//! each app's current pointer, and a change log whose sequence numbers `pg_notify`
//! announces on [`CHANNEL`] (payloads carry no blobs).
//!
//! Every change is one transaction that first locks the app's row (`SELECT … FOR
//! UPDATE`) and checks that the app is still at the version the change started from: of
//! two nodes changing one app at once, the first to commit wins and the other gets
//! [`StoreError::Conflict`]. Version numbers are per app and never reused, not even after
//! a delete (the app's row stays, with no current version), so `v3` names one component
//! on every node forever.

use crate::storage::VersionMeta;
use anyhow::{Context, Result};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Transaction};

/// The channel every change is announced on; the payload is its sequence number.
pub const CHANNEL: &str = "edge_app_changes";

/// How long a connection attempt may take before the store counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Change log entries older than this are pruned by later changes. A node that was away
/// longer (or whose position is older than the oldest entry) reconciles every app.
const CHANGE_LOG_KEPT: &str = "7 days";

/// The schema, one migration per entry, applied in order at start-up by whichever node
/// gets there first (under an advisory lock) and recorded in `edge_schema`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE edge_apps (
    name TEXT PRIMARY KEY,
    current INTEGER,
    last_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE edge_app_versions (
    app TEXT NOT NULL REFERENCES edge_apps (name),
    number INTEGER NOT NULL,
    digest TEXT NOT NULL,
    manifest TEXT,
    component BYTEA NOT NULL,
    deployed_at BIGINT NOT NULL,
    PRIMARY KEY (app, number)
);
CREATE TABLE edge_app_changes (
    seq BIGSERIAL PRIMARY KEY,
    app TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
"];

/// An arbitrary constant: the advisory lock appends to the change log are serialized by.
const CHANGE_LOG_LOCK: i64 = 0x6564_6765_5f6c_6f67;

/// An arbitrary constant: the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6564_6765_5f61_7070;

/// Why a change did not commit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another node changed the app since this change started.
    #[error("{0}")]
    Conflict(String),
    /// No such app or version.
    #[error("{0}")]
    NotFound(String),
    /// A stored component does not match its recorded digest.
    #[error("{0}")]
    Corrupt(String),
    /// The database cannot be reached or failed; nothing changed.
    #[error("the cluster app store is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Unavailable(db_error(e))
    }
}

/// An app's current version as the store has it (no component bytes).
#[derive(Debug, Clone)]
pub struct Current {
    /// The version's record.
    pub meta: VersionMeta,
    /// Its manifest.
    pub manifest: Option<String>,
    /// When the change that made it current committed.
    pub committed_at: SystemTime,
}

/// The cluster app store.
pub struct PgStore {
    config: Config,
    shown: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

fn db_error(e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow::anyhow!("{}: {}", db.code().code(), db.message()),
        None => anyhow::Error::new(e),
    }
}

fn meta(number: i32, digest: String, manifest: bool, at: i64) -> VersionMeta {
    VersionMeta {
        version: format!("v{number}"),
        digest,
        deployed_at: at.max(0) as u64,
        has_manifest: manifest,
    }
}

/// `v3` → 3.
fn number(version: &str) -> Option<i32> {
    version.strip_prefix('v')?.parse().ok()
}

impl PgStore {
    /// Connects to `url` and brings the schema up to date; fails, naming the database
    /// (without its password), if either cannot be done.
    pub async fn open(url: &str) -> Result<PgStore> {
        let shown = crate::kv::postgres::redact(url);
        let mut config: Config = url
            .parse()
            .with_context(|| format!("invalid app store URL `{shown}`"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(10));
        let store = PgStore {
            config,
            shown: shown.clone(),
            client: Mutex::new(None),
        };
        store
            .migrate()
            .await
            .with_context(|| format!("cannot use the cluster app store `{shown}`"))?;
        Ok(store)
    }

    /// The URL, without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    async fn connect(
        &self,
    ) -> Result<(
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        self.config.connect(NoTls).await.map_err(db_error)
    }

    /// Runs `f` on the shared connection, opening it (again) if needed.
    async fn with<R>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            let (client, connection) = self.connect().await.map_err(StoreError::Unavailable)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("app store connection closed: {e}");
                }
            });
            *slot = Some(client);
        }
        f(slot.as_mut().expect("connected above")).await
    }

    async fn migrate(&self) -> Result<()> {
        self.with(async |client| {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            // No "already exists" notices in every node's log.
            tx.batch_execute("SET LOCAL client_min_messages = warning")
                .await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS edge_schema (version INTEGER NOT NULL)")
                .await?;
            let done: i64 = tx
                .query_one("SELECT count(*) FROM edge_schema", &[])
                .await?
                .get(0);
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(done as usize) {
                tx.batch_execute(migration).await?;
                tx.execute(
                    "INSERT INTO edge_schema (version) VALUES ($1)",
                    &[&(i as i32 + 1)],
                )
                .await?;
                tracing::info!("app store: applied schema migration {}", i + 1);
            }
            tx.commit().await?;
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The newest change's sequence number (0 for none).
    pub async fn head(&self) -> Result<i64, StoreError> {
        self.with(async |c| {
            Ok(
                c.query_one("SELECT coalesce(max(seq), 0) FROM edge_app_changes", &[])
                    .await?
                    .get(0),
            )
        })
        .await
    }

    /// Apps changed after `seq`, and the newest sequence number; `None` when the log no
    /// longer reaches back to `seq` (pruned): the caller must reconcile every app.
    pub async fn changes_since(&self, seq: i64) -> Result<Option<(Vec<String>, i64)>, StoreError> {
        self.with(async |c| {
            let oldest: Option<i64> = c
                .query_one("SELECT min(seq) FROM edge_app_changes", &[])
                .await?
                .get(0);
            if oldest.is_some_and(|o| o > seq + 1) {
                return Ok(None);
            }
            let rows = c
                .query(
                    "SELECT app, max(seq) FROM edge_app_changes WHERE seq > $1 GROUP BY app",
                    &[&seq],
                )
                .await?;
            let newest = rows.iter().map(|r| r.get::<_, i64>(1)).max().unwrap_or(seq);
            Ok(Some((rows.iter().map(|r| r.get(0)).collect(), newest)))
        })
        .await
    }

    const CURRENT: &str = "
        SELECT a.name, v.number, v.digest, v.manifest, v.deployed_at,
               (SELECT max(committed_at) FROM edge_app_changes c WHERE c.app = a.name)
        FROM edge_apps a JOIN edge_app_versions v ON v.app = a.name AND v.number = a.current";

    fn current_row(row: &tokio_postgres::Row) -> (String, Current) {
        let name: String = row.get(0);
        let manifest: Option<String> = row.get(3);
        let current = Current {
            meta: meta(row.get(1), row.get(2), manifest.is_some(), row.get(4)),
            manifest,
            committed_at: row
                .get::<_, Option<SystemTime>>(5)
                .unwrap_or_else(SystemTime::now),
        };
        (name, current)
    }

    /// The current version of `name`, or `None` if the app does not exist.
    pub async fn current(&self, name: &str) -> Result<Option<Current>, StoreError> {
        let query = format!("{} WHERE a.name = $1", Self::CURRENT);
        self.with(async |c| {
            Ok(c.query_opt(&query, &[&name])
                .await?
                .map(|r| Self::current_row(&r).1))
        })
        .await
    }

    /// Every app name the store has ever held, deleted ones included.
    pub async fn known(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.with(async |c| {
            Ok(c.query("SELECT name FROM edge_apps", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
        .await
    }

    /// Every app's current version.
    pub async fn all_current(&self) -> Result<Vec<(String, Current)>, StoreError> {
        self.with(async |c| {
            Ok(c.query(Self::CURRENT, &[])
                .await?
                .iter()
                .map(Self::current_row)
                .collect())
        })
        .await
    }

    /// Every stored version of `app` (or of every app), oldest first.
    pub async fn versions(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<(String, VersionMeta)>, StoreError> {
        self.with(async |c| {
            let rows = c
                .query(
                    "SELECT app, number, digest, manifest IS NOT NULL, deployed_at
                     FROM edge_app_versions WHERE $1::TEXT IS NULL OR app = $1
                     ORDER BY app, number",
                    &[&app],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let app: String = r.get(0);
                    let m = meta(r.get(1), r.get(2), r.get(3), r.get(4));
                    (app, m)
                })
                .collect())
        })
        .await
    }

    /// The component and manifest of `version` of `name`, checked against the digest the
    /// store records for it: a blob that does not match is refused, never returned.
    pub async fn fetch(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(Vec<u8>, Option<String>), StoreError> {
        let n = number(version)
            .ok_or_else(|| StoreError::NotFound(format!("`{version}` is not a version id")))?;
        let row = self
            .with(async |c| {
                Ok(c.query_opt(
                    "SELECT component, manifest, digest FROM edge_app_versions
                     WHERE app = $1 AND number = $2",
                    &[&name, &n],
                )
                .await?)
            })
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("app `{name}` has no version `{version}`"))
            })?;
        let (wasm, manifest, digest): (Vec<u8>, Option<String>, String) =
            (row.get(0), row.get(1), row.get(2));
        let actual = crate::load::digest(&wasm);
        if actual != digest {
            return Err(StoreError::Corrupt(format!(
                "version {version} of `{name}` is corrupt in the store: its component's SHA-256 \
                 is {actual}, the store records {digest}; it is not served"
            )));
        }
        Ok((wasm, manifest))
    }

    /// Locks `name`'s row and checks it is still at `expected`; creates the row if the
    /// app is new. Returns its last version number.
    async fn lock_app(
        tx: &Transaction<'_>,
        name: &str,
        expected: Option<&str>,
    ) -> Result<i32, StoreError> {
        tx.execute(
            "INSERT INTO edge_apps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT current, last_version FROM edge_apps WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?;
        let current: Option<i32> = row.get(0);
        if current != expected.and_then(number) {
            let now = current.map_or("deleted".to_string(), |n| format!("at v{n}"));
            return Err(StoreError::Conflict(format!(
                "`{name}` was changed by another node meanwhile (it is now {now}); retry"
            )));
        }
        Ok(row.get(1))
    }

    /// Appends a change to the log, announces it and prunes old entries; returns the
    /// commit time.
    async fn log(
        tx: &Transaction<'_>,
        name: &str,
        kind: &str,
        version: Option<i32>,
    ) -> Result<SystemTime, StoreError> {
        // Sequence numbers are handed out in commit order: a change takes its number only
        // once the one before has committed, so a node that has applied change N has seen
        // every change below N and may skip announcements of them.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOG_LOCK])
            .await?;
        let row = tx
            .query_one(
                "INSERT INTO edge_app_changes (app, kind, version) VALUES ($1, $2, $3)
                 RETURNING seq, committed_at",
                &[&name, &kind, &version],
            )
            .await?;
        let seq: i64 = row.get(0);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
            .await?;
        tx.execute(
            &format!(
                "DELETE FROM edge_app_changes WHERE committed_at < now() - interval '{CHANGE_LOG_KEPT}'"
            ),
            &[],
        )
        .await?;
        Ok(row.get(1))
    }

    /// Stores a new version of `name` and makes it current, if the app is still at
    /// `expected` (`None`: no current version); keeps the newest `keep` versions.
    pub async fn deploy(
        &self,
        name: &str,
        expected: Option<&str>,
        wasm: &[u8],
        manifest: Option<&str>,
        digest: &str,
        keep: usize,
    ) -> Result<(VersionMeta, SystemTime), StoreError> {
        self.with(async |c| {
            let tx = c.transaction().await?;
            let next = Self::lock_app(&tx, name, expected).await? + 1;
            let at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            tx.execute(
                "INSERT INTO edge_app_versions (app, number, digest, manifest, component, deployed_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&name, &next, &digest, &manifest, &wasm, &at],
            )
            .await?;
            tx.execute(
                "UPDATE edge_apps SET current = $2, last_version = $2 WHERE name = $1",
                &[&name, &next],
            )
            .await?;
            tx.execute(
                "DELETE FROM edge_app_versions WHERE app = $1 AND number <= $2 AND number <> $3",
                &[&name, &(next - keep.max(1) as i32), &next],
            )
            .await?;
            let committed = Self::log(&tx, name, "deploy", Some(next)).await?;
            tx.commit().await?;
            Ok((meta(next, digest.into(), manifest.is_some(), at), committed))
        })
        .await
    }

    /// Makes the stored `version` of `name` current, if the app is still at `expected`.
    pub async fn rollback(
        &self,
        name: &str,
        expected: Option<&str>,
        version: &str,
    ) -> Result<SystemTime, StoreError> {
        let n = number(version)
            .ok_or_else(|| StoreError::NotFound(format!("`{version}` is not a version id")))?;
        self.with(async |c| {
            let tx = c.transaction().await?;
            Self::lock_app(&tx, name, expected).await?;
            let updated = tx
                .execute(
                    "UPDATE edge_apps SET current = $2 WHERE name = $1
                     AND EXISTS (SELECT 1 FROM edge_app_versions WHERE app = $1 AND number = $2)",
                    &[&name, &n],
                )
                .await?;
            if updated == 0 {
                return Err(StoreError::NotFound(format!(
                    "app `{name}` has no version `{version}`"
                )));
            }
            let committed = Self::log(&tx, name, "rollback", Some(n)).await?;
            tx.commit().await?;
            Ok(committed)
        })
        .await
    }

    /// Deletes `name` and its versions, if the app is still at `expected`. Its row stays
    /// (with no current version), so its version numbers are never reused.
    pub async fn delete(&self, name: &str, expected: Option<&str>) -> Result<(), StoreError> {
        self.with(async |c| {
            let tx = c.transaction().await?;
            Self::lock_app(&tx, name, expected).await?;
            tx.execute("DELETE FROM edge_app_versions WHERE app = $1", &[&name])
                .await?;
            tx.execute(
                "UPDATE edge_apps SET current = NULL WHERE name = $1",
                &[&name],
            )
            .await?;
            Self::log(&tx, name, "delete", None).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Opens a connection of its own that `LISTEN`s on [`CHANNEL`]. The receiver yields
    /// each announced sequence number, and ends when the connection does.
    pub async fn listen(&self) -> Result<Listener> {
        let (client, mut connection) = self.connect().await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut messages = std::pin::pin!(futures::stream::poll_fn(
                move |cx| connection.poll_message(cx)
            ));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().parse().unwrap_or(0)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("app store listener closed: {e}");
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(db_error)?;
        Ok(Listener {
            _client: client,
            changes: rx,
        })
    }
}

/// A connection listening for changes ([`PgStore::listen`]).
pub struct Listener {
    /// The connection lives as long as its client.
    _client: Client,
    /// Each announced sequence number; ends when the connection does.
    pub changes: tokio::sync::mpsc::UnboundedReceiver<i64>,
}
