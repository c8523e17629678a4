//! `edge serve [DIR]`: serve every app in a directory.

use crate::admin;
use crate::app::{Baseline, Loader};
use crate::compile::Cache;
use crate::config::{self, Limits};
use crate::control::Control;
use crate::engine::{Allocator, EdgeEngine};
use crate::metrics::Metrics;
use crate::prepare;
use crate::router::Router;
use crate::server::{self, Server};
use crate::storage::Storage;
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
/// Default address of the admin API: loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8081";
/// Default number of versions kept per app.
pub const DEFAULT_KEEP_VERSIONS: usize = 5;
/// Default cap on an uploaded component: JS engines with a snapshot are a few MB, so this
/// leaves ample room while bounding what a deploy can make the server buffer.
pub const DEFAULT_MAX_UPLOAD: &str = "64MiB";
/// How often the TLS certificate files are checked for changes.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Default wait of a request for an app still loading at start-up.
pub const DEFAULT_LOAD_WAIT: &str = "5s";
/// Default rescan period of `--watch`.
pub const DEFAULT_WATCH_INTERVAL: &str = "1s";

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

    /// Requests from one client address running at once; beyond it that client gets 503,
    /// so one peer cannot hold every instance slot [default: three quarters of
    /// --max-concurrency]. Behind a proxy every request comes from the proxy's address:
    /// set it to --max-concurrency there.
    #[arg(long, value_name = "N")]
    pub max_client_concurrency: Option<usize>,

    /// Instances kept between requests, across all apps: an instance whose request ended
    /// normally is reset in place (memory, tables, globals, handles: what a fresh instance
    /// starts with) and serves the app's next request without instantiating. The pool
    /// holds this many slots beyond --max-concurrency for them; the least recently kept
    /// goes first. 0: a fresh instance for every request.
    #[arg(long, value_name = "N", default_value_t = crate::reuse::DEFAULT_KEEP_INSTANCES)]
    pub keep_instances: usize,

    /// Check every reset against the instance's state right after instantiation (its
    /// globals, tables, handle tables and every byte of its memory) and drop, with an
    /// error in the log, any instance that differs. Slow: for testing edge itself.
    #[arg(long, env = "EDGE_CHECK_RESETS", value_parser = clap::builder::FalseyValueParser::new())]
    pub check_resets: bool,

    /// Largest request body accepted; larger ones get 413 (manifest: `max_body_size`).
    #[arg(long, value_name = "SIZE", default_value = config::DEFAULT_MAX_BODY_SIZE)]
    pub max_body_size: String,

    /// Add `Server-Timing: instantiate;dur=…, handle;dur=…` to every guest response (`on`),
    /// or leave the app's headers alone (`off`), for clients and test suites that expect
    /// only those (manifest: `server_timing = false`).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub server_timing: String,

    /// Where compiled code is cached [default: DIR/.edge/cache].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile every app at start-up, reading and writing no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,

    /// Compile every deploy with Cranelift before it serves. By default a deploy whose code
    /// is not in the cache serves at once from Winch, a baseline compiler several times
    /// faster than Cranelift, and switches to Cranelift's code when the background compile
    /// is done (about a quarter of a second for a small app on 2 cores).
    #[arg(long)]
    pub no_baseline: bool,

    /// Instance allocator. `auto` uses the pool and falls back to on-demand allocation
    /// when the pool's address space cannot be reserved.
    #[arg(long, value_enum, default_value = "auto")]
    pub allocator: Allocator,

    /// How long in-flight requests may run after SIGINT/SIGTERM before the server exits.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_SHUTDOWN_TIMEOUT)]
    pub shutdown_timeout: String,

    /// Address of the admin API (deploy, rollback, delete, metrics). Port 0 picks a free
    /// port (see the `admin` startup line).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    pub admin: String,

    /// File holding the admin bearer token. Without it and without `EDGE_ADMIN_TOKEN`,
    /// a token is generated into DIR/.edge/admin-token (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Deployed versions kept per app for rollback, the current one included.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP_VERSIONS)]
    pub keep_versions: usize,

    /// Largest component accepted by a deploy; larger uploads get 413.
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_MAX_UPLOAD)]
    pub max_upload_size: String,

    /// Watch DIR and pick up apps added, changed or removed by other means (another
    /// server's deploys, a copy, a sync), with the same validation and atomic swap.
    #[arg(long)]
    pub watch: bool,

    /// HTTP threads, each with its own event loop [default: the CPUs this process may use].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// How long an HTTP thread keeps polling its sockets after a request before it sleeps
    /// in the kernel (`0s`: never poll). A request that arrives meanwhile skips the
    /// wake-up, which costs a lightly loaded server most of a request's CPU and much of its
    /// tail. A thread polls only while its requests come on average within this of each
    /// other, and then uses its whole CPU; sparse traffic costs no polling.
    #[arg(long, value_name = "DURATION", env = "EDGE_BUSY_POLL", default_value = server::DEFAULT_BUSY_POLL)]
    pub busy_poll: String,

    /// How often `--watch` rescans DIR.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_WATCH_INTERVAL)]
    pub watch_interval: String,

    /// Also serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) on this address, with the
    /// certificates of --tls-cert/--tls-key and --tls-dir.
    #[arg(long, value_name = "ADDR")]
    pub listen_tls: Option<String>,

    /// The default certificate chain (PEM) for --listen-tls: for clients without SNI, or
    /// whose SNI no certificate of --tls-dir names.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A directory of HOST.crt + HOST.key pairs (PEM), chosen by SNI; `*.example.com.crt`
    /// serves one label under example.com. Changes are picked up without a restart.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,

    /// How long a guest runs before it yields its HTTP thread to other requests (after a
    /// first slice of 10 of these). Shorter keeps well-behaved apps fast beside tenants that
    /// spin; longer interrupts long-running guests less often.
    #[arg(long, value_name = "DURATION", default_value = crate::engine::DEFAULT_TIME_SLICE)]
    pub time_slice: String,

    /// Time a client has to send a whole request body, from its head; a client that drips
    /// its body gets 408 and the instance is freed.
    #[arg(long, value_name = "DURATION", default_value = config::DEFAULT_BODY_READ_TIMEOUT)]
    pub body_read_timeout: String,

    /// Time a client has to send a request's headers, counted from when the connection is
    /// ready for a request (so it also caps an idle HTTP/1.1 keep-alive). Slow or silent
    /// clients are disconnected.
    #[arg(long, value_name = "DURATION", default_value = server::DEFAULT_HEADER_READ_TIMEOUT)]
    pub header_read_timeout: String,

    /// Time a connection may sit idle (no request in flight or arriving) before it is
    /// closed: HTTP/1.1 after its last response, HTTP/2 with GOAWAY. Keep it above the idle
    /// timeout of a load balancer in front, or that balancer may reuse a closing connection.
    #[arg(long, value_name = "DURATION", default_value = server::DEFAULT_KEEP_ALIVE_TIMEOUT)]
    pub keep_alive_timeout: String,

    /// Open client connections across all threads. Beyond it new connections wait in the
    /// listen backlog until one closes (`edge_connections_delayed_total` counts them).
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_H2_MAX_STREAMS)]
    pub h2_max_streams: u32,

    /// Largest header list (HTTP/2) or header section (HTTP/1.1) a request may carry;
    /// larger ones are refused (431 on HTTP/1.1).
    #[arg(long, value_name = "SIZE", default_value = server::DEFAULT_MAX_HEADER_SIZE)]
    pub max_header_size: String,

    /// How long a request for an app that is still loading at start-up waits for it before
    /// it gets 503 with `Retry-After` (`0s`: at once). edge listens at once and loads apps in the
    /// background; `/readyz` on the admin listener says when all are loaded.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_LOAD_WAIT)]
    pub load_wait: String,

    /// Apps loaded at once at start-up [default: the CPUs this process may use].
    #[arg(long, value_name = "N")]
    pub load_parallelism: Option<usize>,

    /// The database of apps' key-value stores (`wasi:keyvalue`) and secrets: a SQLite file,
    /// created if missing [default: DIR/.edge/state.db], or `postgres://USER@HOST/DB`,
    /// which every node of a cluster can share. edge refuses to start on a file that is
    /// corrupt or locked, or a database it cannot reach.
    #[arg(long, value_name = "FILE|URL")]
    pub state: Option<String>,

    /// Make this server a node of a cluster whose apps live in PostgreSQL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`). Every node pointed at one store serves
    /// the same apps; a deploy, rollback or delete through any node's admin API reaches
    /// every node within milliseconds. DIR becomes this node's copy of the store (apps
    /// the store lacks are removed from it); --cache-dir stays node-local. edge refuses to
    /// start if it cannot reach the store; once running, it keeps serving when the store
    /// goes away and catches up when it returns.
    #[arg(long, value_name = "URL", env = "EDGE_STORE", conflicts_with = "watch")]
    pub store: Option<String>,
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
    /// Serve cache-missing deploys from the baseline tier first.
    pub baseline: bool,
    /// Instance allocator.
    pub allocator: Allocator,
    /// Grace period on shutdown.
    pub shutdown_timeout: Duration,
    /// The admin listen address.
    pub admin: SocketAddr,
    /// The admin token file, if given.
    pub admin_token_file: Option<PathBuf>,
    /// Versions kept per app.
    pub keep_versions: usize,
    /// Upload cap in bytes.
    pub max_upload: u64,
    /// Rescan period, when watching.
    pub watch: Option<Duration>,
    /// HTTP threads, and how long each polls after a request.
    pub threads: server::Threads,
    /// The state database: a SQLite file or a PostgreSQL URL.
    pub state: String,
    /// Connection-level limits.
    pub connections: server::ConnLimits,
    /// The epoch tick: how long a guest runs between yields.
    pub time_slice: Duration,
    /// The HTTPS listener and its certificates, if any.
    pub tls: Option<(SocketAddr, crate::tls::TlsFiles)>,
    /// How long a request waits for an app still loading at start-up.
    pub load_wait: Duration,
    /// Apps loaded at once at start-up.
    pub load_parallelism: usize,
    /// Requests from one client address at once.
    pub max_client_concurrency: usize,
    /// Instances kept between requests (`crate::reuse`).
    pub keep_instances: usize,
    /// Whether each reset is checked against the state after instantiation.
    pub check_resets: bool,
    /// The cluster's app store, if this node is one of a cluster.
    pub store: Option<String>,
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
            server_timing: self.server_timing == "on",
            body_read_timeout: config::parse_duration(&self.body_read_timeout)
                .context("in --body-read-timeout")?,
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
            baseline: !self.no_baseline,
            allocator: self.allocator,
            shutdown_timeout: config::parse_duration(&self.shutdown_timeout)
                .context("in --shutdown-timeout")?,
            admin: self.admin.parse().with_context(|| {
                format!(
                    "invalid admin address `{}` (expected IP:PORT, e.g. `127.0.0.1:8081`)",
                    self.admin
                )
            })?,
            admin_token_file: self.admin_token_file.clone(),
            keep_versions: self.keep_versions.max(1),
            max_upload: config::parse_size(&self.max_upload_size)
                .context("in --max-upload-size")?,
            threads: server::Threads {
                count: match self.threads {
                    Some(0) => bail!("--threads must be at least 1"),
                    Some(n) => n,
                    None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                },
                busy_poll: match config::parse_duration_or_zero(&self.busy_poll)
                    .context("in --busy-poll")?
                {
                    d if d > Duration::from_secs(1) => bail!(
                        "--busy-poll {} would keep a thread spinning long after the last \
                         request; use at most 1s",
                        self.busy_poll
                    ),
                    d => d,
                },
            },
            tls: match &self.listen_tls {
                None if self.tls_cert.is_some() || self.tls_dir.is_some() => {
                    bail!("--tls-cert and --tls-dir need --listen-tls ADDR")
                }
                None => None,
                Some(addr) => Some((
                    addr.parse().with_context(|| {
                        format!("invalid TLS listen address `{addr}` (expected IP:PORT)")
                    })?,
                    crate::tls::TlsFiles {
                        default: self.tls_cert.clone().zip(self.tls_key.clone()),
                        dir: self.tls_dir.clone(),
                    },
                )),
            },
            time_slice: config::parse_duration(&self.time_slice).context("in --time-slice")?,
            load_wait: config::parse_duration_or_zero(&self.load_wait).context("in --load-wait")?,
            max_client_concurrency: match self.max_client_concurrency {
                Some(0) => bail!("--max-client-concurrency must be at least 1"),
                Some(n) => n,
                None => self.max_concurrency.div_ceil(4) * 3,
            },
            keep_instances: self.keep_instances,
            check_resets: self.check_resets,
            load_parallelism: match self.load_parallelism {
                Some(0) => bail!("--load-parallelism must be at least 1"),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            connections: server::ConnLimits {
                header_read_timeout: config::parse_duration(&self.header_read_timeout)
                    .context("in --header-read-timeout")?,
                keep_alive_timeout: config::parse_duration(&self.keep_alive_timeout)
                    .context("in --keep-alive-timeout")?,
                max_connections: match self.max_connections {
                    0 => bail!("--max-connections must be at least 1"),
                    n => n,
                },
                h2_max_streams: match self.h2_max_streams {
                    0 => bail!("--h2-max-streams must be at least 1"),
                    n => n,
                },
                max_header_size: u32::try_from(
                    config::parse_size(&self.max_header_size).context("in --max-header-size")?,
                )
                .context("--max-header-size must be below 4GiB")?,
            },
            state: self.state.clone().unwrap_or_else(|| {
                self.dir
                    .join(".edge")
                    .join("state.db")
                    .to_string_lossy()
                    .into_owned()
            }),
            store: match &self.store {
                Some(url)
                    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") =>
                {
                    bail!(
                        "--store takes a PostgreSQL URL (`postgres://USER@HOST:PORT/DB`), not `{url}`"
                    )
                }
                store => store.clone(),
            },
            watch: match self.watch {
                true => Some(
                    config::parse_duration(&self.watch_interval).context("in --watch-interval")?,
                ),
                false => None,
            },
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

/// Binds, starts loading every app, prints the startup lines and serves until a signal.
pub async fn run(config: ServeConfig) -> Result<()> {
    // The cluster's store first: a wrong URL or password is reported before anything
    // listens.
    let cluster = match &config.store {
        Some(url) => Some(crate::cluster::Cluster::open(url).await?),
        None => None,
    };
    let slots = u32::try_from(config.limits.max_concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(LOADING_SLOTS)
        .saturating_add(u32::try_from(config.keep_instances).unwrap_or(u32::MAX));
    let engine = EdgeEngine::new(config.allocator, slots)?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on `{}`", config.listen))?;
    let addr = listener.local_addr()?;
    // Certificates are checked before anything listens for them.
    let tls = match &config.tls {
        Some((tls_addr, files)) => {
            let tls = crate::tls::Tls::load(files.clone())?;
            let listener = std::net::TcpListener::bind(tls_addr)
                .with_context(|| format!("cannot listen on `{tls_addr}` (--listen-tls)"))?;
            Some((listener, tls))
        }
        None => None,
    };
    let admin_listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("cannot listen on admin address `{}`", config.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    let (token, token_source) = admin::server_token(
        std::env::var("EDGE_ADMIN_TOKEN").ok(),
        config.admin_token_file.as_deref(),
        &config.dir,
    )?;
    let cache = match &config.cache_dir {
        Some(dir) => Some(Cache::open(dir, &engine.engine)?),
        None => None,
    };
    let baseline = match config.baseline {
        true => {
            let engine = EdgeEngine::baseline()?;
            Some(Baseline {
                linker: prepare::linker(&engine.engine)?,
                engine,
                optimizer: Arc::new(crate::engine::optimizer_pool()?),
            })
        }
        false => None,
    };
    let engines = std::iter::once(engine.engine.clone())
        .chain(baseline.as_ref().map(|b| b.engine.engine.clone()))
        .collect();
    let _ticker = crate::engine::start_ticker(engines, config.time_slice);
    let state = crate::kv::open(&config.state)?;
    let metrics = Arc::new(Metrics::default());
    let loader = Loader {
        state: Some(state),
        metrics: Some(metrics.clone()),
        linker: prepare::linker(&engine.engine)?,
        engine: engine.clone(),
        baseline,
        cache,
        defaults: config.limits.clone(),
    };
    let server = Server::with_admission(
        crate::handle::Admission::new(
            config.limits.max_concurrency,
            config.max_client_concurrency,
            crate::reuse::InstanceCache::new(
                config.keep_instances,
                config.check_resets,
                metrics.reuse(),
            ),
        ),
        metrics.clone(),
        Router::default(),
    );
    let storage = Storage::new(&config.dir);
    let mut control = Control::new(
        storage.clone(),
        loader,
        server.clone(),
        metrics.clone(),
        config.keep_versions,
        config.max_upload,
    );
    let mut following = None;
    if let Some(cluster) = cluster {
        let seen = crate::cluster::materialize(&cluster, &storage, config.keep_versions).await?;
        metrics.set_store_up(Some(true));
        control = control.with_cluster(cluster.clone());
        following = Some((cluster, seen));
    }
    let control = Arc::new(control);
    tracing::info!(
        allocator = if engine.pooling {
            "pooling"
        } else {
            "on-demand"
        },
        "loading apps from `{}`",
        config.dir.display()
    );
    // Apps load in the background: the server listens at once.
    let loading = control.start(config.load_parallelism, config.load_wait)?;
    if let Some((cluster, seen)) = following {
        tokio::spawn(crate::cluster::follow(
            control.clone(),
            cluster,
            loading.clone(),
            seen,
        ));
    }
    tokio::spawn(admin::serve(admin_listener, control.clone(), token));
    if let Some(every) = config.watch {
        let control = control.clone();
        tokio::spawn(async move {
            loading.all_done().await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                control.rescan().await;
            }
        });
    }
    let shutdown = shutdown_signal()?;
    println!("Admin API (admin) on http://{admin_addr}/ (token {token_source})");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel();
    if let Some((_, tls)) = &tls {
        tls.watch(TLS_RELOAD_INTERVAL);
    }
    let listeners = server::Listeners {
        http: &listener,
        tls: tls.as_ref().map(|(l, t)| (l, t.clone())),
    };
    let workers = server::spawn_workers(
        server,
        listeners,
        config.threads,
        config.connections.clone(),
        stop_rx,
        config.shutdown_timeout,
        stopped_tx,
    )?;
    drop(listener);
    if let Some((tls_listener, tls)) = tls {
        let tls_addr = tls_listener.local_addr()?;
        tracing::info!("TLS certificates: {}", tls.names().join(" "));
        println!("Serving HTTPS on https://{tls_addr}/");
    }
    println!("Serving HTTP on http://{addr}/");
    std::io::stdout().flush()?;
    shutdown.await;
    let _ = stop.send(true);
    for _ in 0..workers.len() {
        stopped.recv().await;
    }
    tracing::info!("shutting down: no longer accepting new connections");
    tokio::task::spawn_blocking(move || {
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(_) => anyhow::bail!("an HTTP thread panicked"),
            }
        }
        Ok(())
    })
    .await??;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGINT/SIGTERM handlers now (so a signal right after the startup line is
/// not lost to the default action) and returns a future that completes on either.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}
