//! The HTTP front end: accept connections (HTTP/1.1 and h2c, and HTTPS with HTTP/2 by
//! ALPN on `--listen-tls`), hold them to the connection limits, route each request to an
//! app, run it, and shut down gracefully.

use crate::app::App;
use crate::connection::{self, Activity, Watched, drive};
use crate::handle::{self, RequestError};
use crate::loading::{Loading, StillLoading};
use crate::metrics::Metrics;
use crate::router::{Routable, Router};
use crate::tls::Tls;
use anyhow::Result;
use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use hyper::body::Body;
use hyper::header::HOST;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

impl Routable for App {
    fn name(&self) -> &str {
        &self.name
    }
    fn hosts(&self) -> &[String] {
        &self.config.hosts
    }
    fn paths(&self) -> &[String] {
        &self.config.paths
    }
}

/// Default time a client has to send a request's headers (and an idle keep-alive
/// connection is kept): long enough for any real client, short enough that a slowloris
/// cannot hold file descriptors at leisure.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// Default idle time of a keep-alive connection (HTTP/1.1 or HTTP/2).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: &str = "5s";
/// Default cap on open client connections, across threads.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default HTTP/2 streams per connection.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 100;
/// Default largest header section or list a request may carry.
pub const DEFAULT_MAX_HEADER_SIZE: &str = "64KiB";
/// Default time an HTTP thread keeps polling after a request before it sleeps. Measured
/// with `loadrig compare` at half of edge's closed rate (docs/benchmarks.md, round 6):
/// 100 µs is shorter than many of the gaps its open model leaves and changed nothing;
/// 300 µs kept edge's p99 within 2× native's + 0.5 ms in 7 runs of 8 (the eighth hit a
/// stall of the whole machine). Threads whose requests come further apart than this on
/// average do not poll at all.
pub const DEFAULT_BUSY_POLL: &str = "300us";
/// How often an idle HTTP/2 connection is pinged, and how long the ping may take before
/// the connection is dropped.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What a client connection may hold and for how long.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time to send a request's headers, counted from when the connection is ready for
    /// the next request (so it also bounds an idle HTTP/1.1 keep-alive).
    pub header_read_timeout: Duration,
    /// Time a connection may sit idle, no request in flight or arriving, before it is
    /// closed gracefully.
    pub keep_alive_timeout: Duration,
    /// Open connections across threads.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// Header section (HTTP/1.1) or header list (HTTP/2) size.
    pub max_header_size: u32,
}

/// The state every connection shares.
pub struct Server {
    metrics: Arc<Metrics>,
    admission: handle::Admission,
    apps: ArcSwap<Router<App>>,
    /// The apps still loading at start-up and how long a request waits for one; `None`
    /// once every app has loaded.
    starting: ArcSwapOption<(Arc<Loading>, Duration)>,
}

impl Server {
    /// A server running `apps` (each on its own engine), with at most `max_concurrency`
    /// requests in flight, each on a fresh instance (no instances kept).
    pub fn new(max_concurrency: usize, metrics: Arc<Metrics>, apps: Router<App>) -> Arc<Server> {
        Server::with_admission(
            handle::Admission::new(
                max_concurrency,
                max_concurrency,
                crate::reuse::InstanceCache::disabled(),
            ),
            metrics,
            apps,
        )
    }

    /// A server admitting requests by `admission`: its caps across the server and per
    /// client.
    pub fn with_admission(
        admission: handle::Admission,
        metrics: Arc<Metrics>,
        apps: Router<App>,
    ) -> Arc<Server> {
        Arc::new(Server {
            metrics,
            admission,
            apps: ArcSwap::from_pointee(apps),
            starting: ArcSwapOption::empty(),
        })
    }

    /// Routes requests for the apps of `loading` to a wait of up to `wait` for them (then
    /// 503) until they are loaded; `None` ends that.
    pub fn set_loading(&self, loading: Option<(Arc<Loading>, Duration)>) {
        self.starting.store(loading.map(Arc::new));
    }

    /// Swaps in a new routing table. Requests already running keep the app version they
    /// started with; the next request sees the new table.
    pub fn replace_apps(&self, apps: Router<App>) {
        self.apps.store(Arc::new(apps));
    }

    /// The current routing table.
    pub fn apps(&self) -> Arc<Router<App>> {
        self.apps.load_full()
    }

    /// Answers one request.
    pub async fn respond<B>(&self, req: Request<B>) -> Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        crate::busy_poll::activity();
        let app = match self.route(&req).await {
            Ok(app) => app,
            Err(e) => return e.into_response(),
        };
        let start = Instant::now();
        let client = req.extensions().get::<Client>().map(|c| c.0);
        let result = handle::handle(&self.admission, client, &self.metrics, &app, req).await;
        let resp = result.unwrap_or_else(|e| {
            if let Some(kill) = e.kill() {
                self.metrics.kill(&app.name, kill);
            }
            e.into_response()
        });
        self.metrics.app_request(
            &app.meters,
            &app.name,
            resp.status().as_u16(),
            start.elapsed(),
        );
        resp
    }

    async fn route<B>(&self, req: &Request<B>) -> Result<Arc<App>, RequestError> {
        let host = match req.uri().host() {
            Some(h) => h,
            None => req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| RequestError::BadRequest("missing `Host` header".into()))?,
        };
        // One atomic load once start-up is over.
        if let Some(starting) = self.starting.load_full() {
            let (loading, wait) = starting.as_ref();
            if let Err(StillLoading(app)) = loading.wait(host, req.uri().path(), *wait).await {
                return Err(RequestError::Loading { app });
            }
        }
        self.apps
            .load()
            .route(host, req.uri().path())
            .cloned()
            .ok_or_else(|| RequestError::NoRoute {
                host: host.to_string(),
            })
    }
}

/// Serves HTTP on `threads.count` OS threads, each running its own single-threaded tokio
/// runtime with its own handle on `listener`, until `shutdown` turns `true`; then stops
/// accepting (reporting on `stopped`) and gives in-flight requests up to `grace` to finish.
///
/// Why not one multi-threaded runtime: a request's connection task and guest task then
/// live on one thread and never need a cross-thread wake-up (futex + eventfd per request).
/// Measured with `benches/serve-vs-wasmtime.sh`, this took a pinned server from ~7.7 k to
/// ~13.7 k req/s. Each connection stays on the thread that accepted it; an idle thread
/// accepts first, which spreads connections across threads.
pub fn spawn_workers(
    server: Arc<Server>,
    listeners: Listeners<'_>,
    threads: Threads,
    limits: ConnLimits,
    shutdown: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
    stopped: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<Vec<std::thread::JoinHandle<Result<()>>>> {
    let Listeners {
        http: listener,
        tls,
    } = listeners;
    listener.set_nonblocking(true)?;
    if let Some((tls_listener, _)) = &tls {
        tls_listener.set_nonblocking(true)?;
    }
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    connection::start_trimmer();
    let busy_poll = threads.busy_poll;
    (0..threads.count.max(1))
        .map(|i| {
            let listener = listener.try_clone()?;
            let (server, shutdown, stopped) = (server.clone(), shutdown.clone(), stopped.clone());
            let (limits, connections) = (limits.clone(), connections.clone());
            let tls = match &tls {
                Some((listener, tls)) => Some((listener.try_clone()?, tls.clone())),
                None => None,
            };
            let handle = std::thread::Builder::new()
                .name(format!("edge-http-{i}"))
                .spawn(move || -> Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        tokio::spawn(crate::busy_poll::poll_while_busy(busy_poll));
                        let listener = TcpListener::from_std(listener)?;
                        let tls = match tls {
                            Some((listener, tls)) => Some((TcpListener::from_std(listener)?, tls)),
                            None => None,
                        };
                        let conns = Connections {
                            limits,
                            permits: connections,
                            tls,
                        };
                        serve(server, listener, conns, shutdown, grace, stopped).await
                    })
                })?;
            Ok(handle)
        })
        .collect()
}

/// The HTTP threads of [`spawn_workers`].
#[derive(Debug, Clone, Copy)]
pub struct Threads {
    /// How many.
    pub count: usize,
    /// How long each keeps polling its sockets after a request before it sleeps
    /// ([`crate::busy_poll`]); zero sleeps at once.
    pub busy_poll: Duration,
}

/// The sockets [`spawn_workers`] serves: plain HTTP (HTTP/1.1 and h2c), and HTTPS with its
/// certificates.
pub struct Listeners<'a> {
    /// The `--listen` socket.
    pub http: &'a std::net::TcpListener,
    /// The `--listen-tls` socket and its certificates.
    pub tls: Option<(&'a std::net::TcpListener, Arc<Tls>)>,
}

/// The connection limits and the permits of the cap, shared by every thread, and this
/// thread's TLS listener.
struct Connections {
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    tls: Option<(TcpListener, Arc<Tls>)>,
}

/// hyper's connection builder with `limits` applied. The timer is what makes hyper's
/// timeouts fire at all: without one, `header_read_timeout` is silently ignored.
fn builder(limits: &ConnLimits) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((limits.max_header_size as usize).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(limits.max_header_size)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    builder
}

// The same settings for plaintext connections, which pick their protocol themselves
// (`connection::serve_plain`) to be able to park HTTP/1.1.

fn http1_builder(limits: &ConnLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((limits.max_header_size as usize).max(8192));
    builder
}

fn http2_builder(limits: &ConnLimits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(limits.max_header_size)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    builder
}

async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    conns: Connections,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
    stopped: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<()> {
    let builder = builder(&conns.limits);
    let (h1, h2) = (http1_builder(&conns.limits), http2_builder(&conns.limits));
    // Every connection task holds a clone; the channel closes when the last one ends.
    let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let keep_alive = conns.limits.keep_alive_timeout;
    loop {
        // At the cap, stop accepting: new connections wait in the listen backlog.
        let permit = match conns.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                server.metrics.connection_delayed();
                tokio::select! {
                    permit = conns.permits.clone().acquire_owned() => permit.expect("never closed"),
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        };
        let tls_accept = async {
            match &conns.tls {
                Some((listener, _)) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        let (accepted, secure) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = tls_accept => (accepted, true),
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            // Another thread took the connection first.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let open = server.metrics.connection_opened();
        let server = server.clone();
        let activity = Arc::new(Activity::new());
        let service = {
            let activity = activity.clone();
            let client = Client(peer.ip());
            hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                let server = server.clone();
                let busy = activity.request();
                if secure {
                    req.extensions_mut().insert(handle::Https);
                }
                req.extensions_mut().insert(client);
                // Boxed: parking needs an `Unpin` future (one allocation per request).
                Box::pin(async move {
                    let resp = server.respond(req).await;
                    drop(busy);
                    Ok::<_, Infallible>(resp)
                })
            })
        };
        let (open_tx, shutdown) = (open_tx.clone(), shutdown.clone());
        match (secure, &conns.tls) {
            (true, Some((_, tls))) => {
                let (acceptor, builder) = (tls.acceptor.clone(), builder.clone());
                let handshake_timeout = conns.limits.header_read_timeout;
                tokio::spawn(async move {
                    // A client that never finishes its handshake is a slowloris too.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let io = TokioIo::new(Watched::new(stream, activity.clone()));
                            let conn = builder.serve_connection(io, service);
                            let conn = std::pin::pin!(conn);
                            let closed = drive(
                                conn,
                                |c| c.graceful_shutdown(),
                                &activity,
                                keep_alive,
                                shutdown,
                            );
                            if let Err(e) = closed.await {
                                tracing::debug!(
                                    "TLS connection from {peer} ended with an error: {e}"
                                );
                            }
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                    drop((permit, open, open_tx));
                });
            }
            _ => {
                let (h1, h2) = (h1.clone(), h2.clone());
                let first_bytes = conns.limits.header_read_timeout;
                tokio::spawn(async move {
                    let closed = connection::serve_plain(
                        stream,
                        service,
                        &h1,
                        &h2,
                        activity,
                        keep_alive,
                        first_bytes,
                        shutdown,
                    );
                    if let Err(e) = closed.await {
                        tracing::debug!("connection from {peer} ended with an error: {e}");
                    }
                    drop((permit, open, open_tx));
                });
            }
        }
    }
    drop(listener);
    let _ = stopped.send(());
    let in_flight = open_tx.strong_count() - 1;
    drop(open_tx);
    if in_flight > 0 {
        tracing::info!("waiting for {in_flight} open connection(s)");
    }
    // Each connection saw `shutdown` turn and is finishing its requests.
    if tokio::time::timeout(grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("grace period of {grace:?} over; dropping remaining connections");
    }
    Ok(())
}

/// The address a request came from, as a request extension: per-client limits key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(pub std::net::IpAddr);
