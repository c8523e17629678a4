//! `edge serve [DIR]`: serve every app in a directory.

use crate::app::{App, Loader, app_files};
use crate::compile::Cache;
use crate::config::{self, Limits};
use crate::engine::{Allocator, EdgeEngine};
use crate::prepare;
use crate::router::Router;
use crate::server::{self, Server};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default address of the HTTP listener: loopback, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default time in-flight requests get to finish after SIGINT/SIGTERM.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "10s";
/// Instance slots kept beyond `--max-concurrency` for loading work (Wizer runs an
/// instance), so loading never competes with requests for the pool.
const LOADING_SLOTS: u32 = 4;

/// Serve every app in DIR over HTTP, each request in a fresh WebAssembly instance.
///
/// Each app is `DIR/NAME.wasm` (a `wasi:http/proxy` component) with an optional manifest
/// `DIR/NAME.toml`. A request goes to the app named by the first label of its Host
/// (`hello.localhost:8080` → `hello`), or to an app whose manifest lists its host or a
/// prefix of its path. Once listening, edge prints `Serving HTTP on http://IP:PORT/`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the apps.
    #[arg(default_value = "./apps")]
    pub dir: PathBuf,

    /// Address to listen on. Port 0 picks a free port (see the startup line).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// Linear-memory limit of each request's instance (manifest: `memory_limit`).
    #[arg(long, value_name = "SIZE", default_value = config::DEFAULT_MEMORY_LIMIT)]
    pub memory_limit: String,

    /// Wall-clock limit of each request, body included; over it the client gets 504
    /// (manifest: `timeout`).
    #[arg(long, value_name = "DURATION", default_value = config::DEFAULT_TIMEOUT)]
    pub timeout: String,

    /// Requests running at once across all apps; beyond it requests get 503 immediately.
    /// Also sizes the instance pool (manifest `max_concurrency` caps one app lower).
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: usize,

    /// Largest request body accepted; larger ones get 413 (manifest: `max_body_size`).
    #[arg(long, value_name = "SIZE", default_value = config::DEFAULT_MAX_BODY_SIZE)]
    pub max_body_size: String,

    /// Where compiled code is cached [default: DIR/.edge/cache].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile every app at start-up, reading and writing no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,

    /// Instance allocator. `auto` uses the pool and falls back to on-demand allocation
    /// when the pool's address space cannot be reserved.
    #[arg(long, value_enum, default_value = "auto")]
    pub allocator: Allocator,

    /// How long in-flight requests may run after SIGINT/SIGTERM before the server exits.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_SHUTDOWN_TIMEOUT)]
    pub shutdown_timeout: String,
}

/// `serve`'s validated configuration: every error is found before anything is bound.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The apps directory.
    pub dir: PathBuf,
    /// The listen address.
    pub listen: SocketAddr,
    /// Server-wide limits.
    pub limits: Limits,
    /// The cache directory, or `None` for no cache.
    pub cache_dir: Option<PathBuf>,
    /// Instance allocator.
    pub allocator: Allocator,
    /// Grace period on shutdown.
    pub shutdown_timeout: Duration,
}

impl ServeArgs {
    /// Checks every flag.
    pub fn validate(&self) -> Result<ServeConfig> {
        if !self.dir.is_dir() {
            bail!(
                "apps directory `{}` does not exist or is not a directory",
                self.dir.display()
            );
        }
        let listen = self.listen.parse().with_context(|| {
            format!(
                "invalid listen address `{}` (expected IP:PORT, e.g. `127.0.0.1:8080`)",
                self.listen
            )
        })?;
        let limits = Limits {
            memory: config::parse_memory_limit(&self.memory_limit).context("in --memory-limit")?,
            timeout: config::parse_duration(&self.timeout).context("in --timeout")?,
            max_concurrency: config::check_concurrency(self.max_concurrency)
                .context("in --max-concurrency")?,
            max_body_size: config::parse_size(&self.max_body_size).context("in --max-body-size")?,
        };
        let cache_dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => Some(self.dir.join(".edge").join("cache")),
        };
        Ok(ServeConfig {
            dir: self.dir.clone(),
            listen,
            limits,
            cache_dir,
            allocator: self.allocator,
            shutdown_timeout: config::parse_duration(&self.shutdown_timeout)
                .context("in --shutdown-timeout")?,
        })
    }

    /// Runs the server until SIGINT or SIGTERM.
    pub fn execute(self) -> Result<()> {
        crate::commands::init_logging();
        let config = self.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(run(config))
    }
}

/// Loads every app, binds, prints the startup line and serves until a signal.
pub async fn run(config: ServeConfig) -> Result<()> {
    let slots = u32::try_from(config.limits.max_concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(LOADING_SLOTS);
    let engine = EdgeEngine::new(config.allocator, slots)?;
    let _ticker = engine.start_epoch_ticker();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", config.listen))?;
    let addr = listener.local_addr()?;
    let cache = match &config.cache_dir {
        Some(dir) => Some(Cache::open(dir, &engine.engine)?),
        None => None,
    };
    let loader = Loader {
        linker: prepare::linker(&engine.engine)?,
        engine: engine.clone(),
        cache,
        defaults: config.limits.clone(),
    };
    tracing::info!(
        allocator = if engine.pooling {
            "pooling"
        } else {
            "on-demand"
        },
        "loading apps from `{}`",
        config.dir.display()
    );
    let apps = load_all(&loader, &config).await?;
    for app in &apps {
        tracing::info!(app = %app.name, "serving at http://{}.localhost:{}/", app.name, addr.port());
    }
    let server = Server::new(
        engine.engine.clone(),
        config.limits.max_concurrency,
        Router::new(apps),
    );
    println!("Serving HTTP on http://{addr}/");
    std::io::stdout().flush()?;
    server::serve(server, listener, shutdown_signal(), config.shutdown_timeout).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Loads each `NAME.wasm` in the directory. One bad app is reported and skipped; the
/// others still serve.
async fn load_all(loader: &Loader, config: &ServeConfig) -> Result<Vec<Arc<App>>> {
    let mut apps = Vec::new();
    for path in app_files(&config.dir)? {
        match loader.load_file(&path).await {
            Ok(app) => {
                let r = &app.report;
                tracing::info!(
                    app = %app.name,
                    cache = if r.cache_hit { "hit" } else { "miss" },
                    preinit_ms = r.preinit.map(|d| d.as_secs_f64() * 1e3),
                    compile_ms = r.compile.map(|d| d.as_secs_f64() * 1e3),
                    total_ms = r.total.as_secs_f64() * 1e3,
                    "loaded app `{}` ({})",
                    app.name,
                    if r.cache_hit { "cache hit, not recompiled" } else { "compiled" },
                );
                apps.push(Arc::new(app));
            }
            Err(e) => tracing::error!("skipping app `{}`: {e:#}", path.display()),
        }
    }
    if apps.is_empty() {
        tracing::warn!(
            "no app loaded from `{}`: every request will get 404",
            config.dir.display()
        );
    }
    Ok(apps)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
