//! What the host gives each request's [`Store`](wasmtime::Store): WASI with nothing of the
//! host's (no preopened directories, no inherited environment, no sockets), `wasi:http`
//! with an outbound allow-list, `wasi:keyvalue` and `wasi:config` on the app's own state,
//! a memory limiter, and guest output routed to the log.

use crate::kv::AppState;
use crate::kv::host::KvView;
use crate::manifest::OutboundPolicy;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// Table elements a guest may grow a table to. Generous for real code, yet it stops a
/// table bomb long before host memory is at risk.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Per-app facts every request of that app needs to build its store; built once at load.
#[derive(Debug)]
pub struct GuestEnv {
    /// The app's name, used to prefix guest output in the log.
    pub app: Arc<str>,
    /// Environment variables from the manifest.
    pub env: Vec<(String, String)>,
    /// Linear-memory cap in bytes.
    pub memory_limit: usize,
    /// Outbound HTTP allow-list.
    pub outbound: Arc<OutboundPolicy>,
    /// The app's key-value stores and config (`None` where the server has no state).
    pub state: Option<Arc<AppState>>,
}

/// The data of one request's store.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    /// What `wasi:keyvalue` and `wasi:config` answer from; `None` during pre-initialization
    /// and where the server has no state database.
    state: Option<Arc<AppState>>,
    /// Set while the component is pre-initialized: state calls then fail loudly.
    preinit: bool,
    /// Enforces the memory limit and remembers whether the guest ran into it.
    pub limiter: MemoryLimiter,
}

impl Host {
    /// A fresh host state for one request of the app described by `env`.
    pub fn new(env: &GuestEnv) -> Host {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestLog::new(&env.app, "stdout"))
            .stderr(GuestLog::new(&env.app, "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !env.env.is_empty() {
            wasi.envs(&env.env);
        }
        Host::with_wasi(wasi.build(), env)
    }

    /// A host state with a WASI context built by the caller (`edge build` gives the JS
    /// engine its source on stdin and captures its output), the rest as for a request.
    pub fn with_wasi(wasi: WasiCtx, env: &GuestEnv) -> Host {
        Host {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                policy: env.outbound.clone(),
                app: env.app.clone(),
            },
            state: env.state.clone(),
            preinit: false,
            limiter: MemoryLimiter {
                limit: env.memory_limit,
                exceeded: false,
            },
        }
    }
}

impl Host {
    /// This host state with no access to the app's stores, config or secrets: what a
    /// component sees while it is pre-initialized (see [`crate::kv::host`]).
    pub fn without_state(mut self) -> Host {
        self.state = None;
        self.preinit = true;
        self
    }

    /// The view `wasi:keyvalue` and `wasi:config` work through.
    pub fn kv(&mut self) -> KvView<'_> {
        KvView {
            state: self.state.as_ref(),
            preinit: self.preinit,
            table: &mut self.table,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps a store's linear memory and records when a guest asked for more.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    /// Set once a grow was refused for exceeding the limit.
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// `wasi:http` hooks that send a request only where the app's manifest allows it.
struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    app: Arc<str>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    // wasmtime-wasi-http's defaults, without the closure its `is_forbidden_header` builds
    // (and allocates) for every header a request or response carries.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        static FILTER: std::sync::LazyLock<wasmtime_wasi_http::ForbiddenHeaderFilter> =
            std::sync::LazyLock::new(|| {
                Arc::new(|name| wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name))
            });
        FILTER.clone()
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or("");
        if !self.policy.allows(scheme, host, uri.port_u16()) {
            tracing::warn!(
                app = %self.app,
                "denied outbound request to `{scheme}://{}`: not in the app's `allowed_outbound_hosts`",
                uri.authority().map(|a| a.as_str()).unwrap_or(host)
            );
            // Take (and discard) whatever body the guest streams before failing, so the
            // guest sees `HttpRequestDenied` when it awaits the response rather than a
            // broken body stream while it writes.
            return Box::new(async move {
                let mut body = request.into_body();
                while let Some(Ok(_)) = body.frame().await {}
                Err(HttpError::HttpRequestDenied)
            });
        }
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Guest stdout or stderr, written to the server log line by line, prefixed with the app.
///
/// A guest may write one line through several `get-stderr` handles (Rust's std and wstd
/// take a new one per write): the partial line lives with the request's stream, not with a
/// handle, so it is logged whole once its newline comes, or when the request ends.
#[derive(Clone)]
struct GuestLog {
    app: Arc<str>,
    stream: &'static str,
    pending: Arc<Pending>,
}

/// The current partial line of one request's stream; logged when the last handle and the
/// request's store are gone.
struct Pending {
    app: Arc<str>,
    stream: &'static str,
    buf: std::sync::Mutex<Vec<u8>>,
}

impl GuestLog {
    fn new(app: &Arc<str>, stream: &'static str) -> GuestLog {
        GuestLog {
            app: app.clone(),
            stream,
            pending: Arc::new(Pending {
                app: app.clone(),
                stream,
                buf: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }
}

fn emit(app: &str, stream: &'static str, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches(['\r', '\n']);
    tracing::info!(target: "edge::guest", stream = stream, "[{app}] {line}");
}

impl Drop for Pending {
    fn drop(&mut self) {
        let buf = std::mem::take(self.buf.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !buf.is_empty() {
            emit(&self.app, self.stream, &buf);
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { log: self.clone() })
    }
}

/// Longest partial line kept before it is logged anyway, so a guest that never writes a
/// newline cannot grow host memory.
const MAX_LINE: usize = 16 * 1024;

struct LineWriter {
    log: GuestLog,
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let log = &self.log;
        let mut buf = log.pending.buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Bytes = buf.drain(..=end).collect();
            emit(&log.app, log.stream, &line);
        }
        if buf.len() > MAX_LINE {
            let line = std::mem::take(&mut *buf);
            emit(&log.app, log.stream, &line);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
