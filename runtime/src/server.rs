//! The HTTP front end: accept connections (HTTP/1.1 and h2c), route each request to an
//! app, run it, and shut down gracefully.

use crate::app::App;
use crate::handle::{self, RequestError};
use crate::metrics::Metrics;
use crate::router::{Routable, Router};
use anyhow::Result;
use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::body::Body;
use hyper::header::HOST;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime::Engine;
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

/// The state every connection shares.
pub struct Server {
    engine: Engine,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    apps: ArcSwap<Router<App>>,
}

impl Server {
    /// A server running `apps` on `engine`, with at most `max_concurrency` requests in
    /// flight.
    pub fn new(
        engine: Engine,
        max_concurrency: usize,
        metrics: Arc<Metrics>,
        apps: Router<App>,
    ) -> Arc<Server> {
        Arc::new(Server {
            engine,
            metrics,
            permits: Arc::new(Semaphore::new(max_concurrency)),
            apps: ArcSwap::from_pointee(apps),
        })
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
        let app = match self.route(&req) {
            Ok(app) => app,
            Err(e) => return e.into_response(),
        };
        let start = Instant::now();
        let result = handle::handle(&self.engine, &self.permits, &self.metrics, &app, req).await;
        let resp = result.unwrap_or_else(|e| {
            if let Some(kill) = e.kill() {
                self.metrics.kill(&app.name, kill);
            }
            e.into_response()
        });
        self.metrics
            .request(&app.name, resp.status().as_u16(), start.elapsed());
        resp
    }

    fn route<B>(&self, req: &Request<B>) -> Result<Arc<App>, RequestError> {
        let host = match req.uri().host() {
            Some(h) => h,
            None => req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| RequestError::BadRequest("missing `Host` header".into()))?,
        };
        self.apps
            .load()
            .route(host, req.uri().path())
            .cloned()
            .ok_or_else(|| RequestError::NoRoute {
                host: host.to_string(),
            })
    }
}

/// Serves connections from `listener` until `shutdown` completes, then stops accepting
/// and gives in-flight requests up to `grace` to finish.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<()> {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.respond(req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer} ended with an error: {e}");
            }
        });
    }
    drop(listener);
    let in_flight = graceful.count();
    tracing::info!("shutting down: no longer accepting; {in_flight} connection(s) open");
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("grace period of {grace:?} over; dropping remaining connections"),
    }
    Ok(())
}
