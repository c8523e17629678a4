//! The request path: a fresh store and instance per request, run under the app's limits,
//! and the one place where every outcome becomes an HTTP status.

use crate::app::App;
use crate::host::Host;
use crate::metrics::{Kill, Metrics};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout_at;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Epoch ticks a guest runs before its first yield (3 ms at the default `--time-slice`
/// while guests run long, 30 ms on a quiet server: see [`crate::engine::start_ticker`]):
/// most requests finish within it and are never interrupted; a guest that runs longer
/// yields at every tick after it.
const FIRST_SLICE_TICKS: u64 = 3;

/// Marks a request that came over TLS: the guest sees `https` as its scheme.
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// Why a request did not get the guest's response. [`RequestError::into_response`] is the
/// only place these become HTTP.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No app matches the request.
    #[error("no app serves host `{host}`")]
    NoRoute {
        /// The Host the request named.
        host: String,
    },
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The declared body is over the app's limit.
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Declared size.
        size: u64,
        /// The app's limit.
        limit: u64,
    },
    /// The client did not send the whole body in time.
    #[error("request body not received within {after:?}")]
    BodyTimeout {
        /// The body read timeout.
        after: Duration,
    },
    /// The app is still loading at start-up, after the request waited `--load-wait`.
    #[error("the app `{app}` is still loading; retry shortly")]
    Loading {
        /// The app.
        app: String,
    },
    /// The client already holds its share of the instance slots.
    #[error("too many requests in flight from your address (at most {limit}); retry later")]
    ClientOverloaded {
        /// `--max-client-concurrency`.
        limit: usize,
    },
    /// Every instance slot (of the server or of the app) is busy.
    #[error("server overloaded: too many requests in flight, retry later")]
    Overloaded,
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, …).
    #[error("the app `{app}` failed while handling the request")]
    Trap {
        /// The app.
        app: String,
        /// What wasmtime reported, for the log only.
        detail: String,
    },
    /// The guest tried to grow its memory past the limit and failed.
    #[error("the app `{app}` exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The app.
        app: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest did not answer within the app's timeout.
    #[error("the app `{app}` did not respond within {after:?}")]
    Timeout {
        /// The app.
        app: String,
        /// The limit it ran into.
        after: Duration,
    },
    /// The guest finished without setting a response, or sent an error code.
    #[error("the app `{app}` did not produce a response: {detail}")]
    NoResponse {
        /// The app.
        app: String,
        /// Why, for the log only.
        detail: String,
    },
}

impl RequestError {
    /// Which kind of guest kill this is, if it is one.
    pub fn kill(&self) -> Option<Kill> {
        match self {
            RequestError::Trap { .. } => Some(Kill::Trap),
            RequestError::MemoryLimit { .. } => Some(Kill::MemoryLimit),
            RequestError::Timeout { .. } => Some(Kill::Timeout),
            _ => None,
        }
    }

    /// The HTTP status for this outcome.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NoRoute { .. } => StatusCode::NOT_FOUND,
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            RequestError::Overloaded
            | RequestError::ClientOverloaded { .. }
            | RequestError::Loading { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Trap { .. }
            | RequestError::MemoryLimit { .. }
            | RequestError::NoResponse { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Logs the outcome and turns it into a short plain-text response. Guest details
    /// (trap messages, backtraces) go to the log, never to the client.
    pub fn into_response(self) -> Response<HyperOutgoingBody> {
        match &self {
            RequestError::Trap { app, detail } => {
                tracing::warn!(app = %app, outcome = "trap", "guest trapped: {detail}")
            }
            RequestError::MemoryLimit { app, limit } => tracing::warn!(
                app = %app, outcome = "memory-limit",
                "guest killed: it exceeded its memory limit of {limit} bytes"
            ),
            RequestError::Timeout { app, after } => tracing::warn!(
                app = %app, outcome = "timeout", "guest killed: no response within {after:?}"
            ),
            RequestError::NoResponse { app, detail } => {
                tracing::warn!(app = %app, outcome = "no-response", "{detail}")
            }
            RequestError::Overloaded => tracing::debug!("rejected: overloaded"),
            _ => {}
        }
        let mut resp = text_response(self.status(), format!("{self}\n"));
        if matches!(
            self,
            RequestError::Overloaded
                | RequestError::ClientOverloaded { .. }
                | RequestError::Loading { .. }
        ) {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: String) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Runs `req` on an instance of `app` that no other request has changed: a fresh one, or
/// one reset in place and kept by `admission`'s cache (`crate::reuse`). `admission`
/// bounds instances across the whole server (it is sized to the instance pool) and per
/// client (`client`, when known).
pub async fn handle<B>(
    admission: &Admission,
    client: Option<IpAddr>,
    metrics: &Metrics,
    app: &Arc<App>,
    req: Request<B>,
) -> Result<Response<HyperOutgoingBody>, RequestError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = &app.config.limits;
    // One clock read for the request's deadlines and its Server-Timing start.
    let arrived = Instant::now();
    let deadline = tokio::time::Instant::from_std(arrived + limits.timeout);
    if let Some(size) = declared_length(&req)?
        && size > limits.max_body_size
    {
        return Err(RequestError::BodyTooLarge {
            size,
            limit: limits.max_body_size,
        });
    }
    let permits = admission.admit(client, app)?;

    // An instance kept from an earlier request of this app version, reset in place
    // (`crate::reuse`), or a new store for a fresh one.
    let (mut store, kept) = match admission.instances.take(app) {
        Some(kept) => (
            kept.store,
            Some((kept.instance, kept.proxy, kept.fingerprint)),
        ),
        None => (new_store(app), None),
    };
    store.set_epoch_deadline(FIRST_SLICE_TICKS);

    let limit = limits.max_body_size as usize;
    let scheme = match req.extensions().get::<Https>() {
        Some(_) => Scheme::Https,
        None => Scheme::Http,
    };
    let late = Arc::new(AtomicBool::new(false));
    let body_deadline = tokio::time::Instant::from_std(arrived + limits.body_read_timeout);
    let req = req.map(|body| BodyDeadline {
        inner: Box::pin(Limited::new(body, limit).map_err(limited_body_error)),
        sleep: Box::pin(tokio::time::sleep_until(body_deadline)),
        after: limits.body_read_timeout,
        late: late.clone(),
    });
    let body_late = || {
        late.load(Ordering::Relaxed)
            .then_some(RequestError::BodyTimeout {
                after: limits.body_read_timeout,
            })
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let mut http = store.data_mut().http();
    let incoming = http
        .new_incoming_request(scheme, req)
        .map_err(|e| RequestError::BadRequest(format!("{e:#}")))?;
    let outparam = http
        .new_response_outparam(sender)
        .expect("a fresh resource table has room");

    let fresh = kept.is_none();
    // Server-Timing's `instantiate`: none for a kept instance.
    let mut instantiated = Duration::ZERO;
    let (instance, proxy, reuse) = match kept {
        Some((instance, proxy, fingerprint)) => (instance, proxy, Some(fingerprint)),
        None => {
            let started = Instant::now();
            let instantiate = async {
                let instance = app
                    .prepared
                    .pre
                    .instance_pre()
                    .instantiate_async(&mut store)
                    .await?;
                let proxy = app.prepared.indices.load(&mut store, &instance)?;
                Ok::<_, wasmtime::Error>((instance, proxy))
            };
            let (instance, proxy) = match timeout_at(deadline, instantiate).await {
                Ok(Ok(made)) => made,
                Ok(Err(e)) => return Err(classify(app, e, store.data().limiter.exceeded)),
                Err(_) => return Err(timeout(app)),
            };
            // Recorded before any guest code runs: what a reset puts back. Instances the
            // pool did not make (the baseline tier, `--allocator on-demand`) cannot be
            // reset: their app is `unkeepable` from its load.
            let cache = &admission.instances;
            // Whether an instance can be reset depends on its app version, not on the
            // request: after one refusal, this version's instances are not tried again.
            let resettable = cache.enabled()
                && !app.unkeepable.load(Ordering::Relaxed)
                && instance
                    .prepare_reuse(&mut store)
                    .inspect_err(|e| {
                        app.unkeepable.store(true, Ordering::Relaxed);
                        tracing::info!(
                            app = %app.name,
                            "instances of this version are not kept between requests: {e:#}"
                        );
                    })
                    .is_ok();
            let reuse = resettable.then(|| {
                cache
                    .checking()
                    .then(|| Arc::from(instance.reuse_fingerprint(&mut store)))
            });
            instantiated = started.elapsed();
            (instance, proxy, reuse)
        }
    };
    // The histogram is of instantiations: a kept instance took none.
    if fresh {
        metrics.app_instantiated(&app.meters, &app.name, instantiated);
    }

    // The guest runs in its own task: after it sets the response head it goes on writing
    // the body, which hyper streams to the client meanwhile.
    let cache = reuse.map(|fingerprint| (admission.instances.clone(), app.clone(), fingerprint));
    let task = tokio::spawn(async move {
        let _permits = permits;
        let handler = proxy.wasi_http_incoming_handler();
        let result = timeout_at(
            deadline,
            handler.call_handle(&mut store, incoming, outparam),
        )
        .await;
        let exceeded = store.data().limiter.exceeded;
        // Only an instance whose guest returned normally is kept: after a trap, a kill or
        // a timeout it is dropped, whatever it left behind.
        if let (Some((cache, app, fingerprint)), Ok(Ok(())), false) = (cache, &result, exceeded) {
            let kept = crate::reuse::Kept {
                store,
                instance,
                proxy,
                fingerprint,
            };
            keep(&cache, &app, kept);
        }
        (result, exceeded)
    });

    // No timer of its own: the guest's runs out at the same deadline, and the response
    // outparam goes with the guest's host state when it does.
    let outcome = match receiver.await {
        // The guest answered after its body ran out of time: the client gets 408.
        Ok(Ok(_)) if late.load(Ordering::Relaxed) => return Err(body_late().expect("late")),
        Ok(Ok(mut resp)) => {
            if limits.server_timing {
                let handled = arrived.elapsed().saturating_sub(instantiated);
                resp.headers_mut()
                    .insert("server-timing", server_timing(instantiated, handled));
            }
            Ok(resp)
        }
        Ok(Err(code)) => Err(RequestError::NoResponse {
            app: app.name.clone(),
            detail: format!("the guest answered with error code {code:?}"),
        }),
        // The guest dropped the response outparam: it returned or trapped without answering.
        Err(_) => match task.await {
            Ok((Ok(Ok(())), _)) => Err(RequestError::NoResponse {
                app: app.name.clone(),
                detail: "the guest returned without setting a response".into(),
            }),
            Ok((Ok(Err(e)), exceeded)) => Err(classify(app, e, exceeded)),
            Ok((Err(_), _)) => Err(timeout(app)),
            Err(join) => Err(RequestError::NoResponse {
                app: app.name.clone(),
                detail: format!("the request task failed: {join}"),
            }),
        },
    };
    // Whatever the guest made of a body that stopped arriving, the client was too slow.
    match (outcome, body_late()) {
        (Err(_), Some(late)) => Err(late),
        (outcome, _) => outcome,
    }
}

/// A new store for a fresh instance of `app`, with the app's limits and scheduling.
fn new_store(app: &App) -> Store<Host> {
    // The app's own engine: Cranelift's, or Winch's while a fresh deploy is optimized.
    let mut store = Store::new(&app.engine, Host::new(&app.guest));
    store.limiter(|host| &mut host.limiter);
    // tokio's `yield_now` runs the guest again only after the runtime has looked at its
    // sockets, so requests that just became ready (a new connection, a request head, a
    // body chunk) go ahead of guests that are spinning: see `benches/fairness.sh`. Wasm
    // yields to the executor at every epoch tick, so a spinning guest holds a worker
    // thread for one tick at a time and the request's deadline can always fire.
    store.epoch_deadline_callback(|_| {
        // This guest runs long: the ticker switches to short slices for a while.
        crate::engine::hurry();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
    store
}

/// Resets the instance a request has finished with and keeps it for the app's next
/// request; drops it if it cannot be reset.
fn keep(cache: &crate::reuse::InstanceCache, app: &Arc<App>, mut kept: crate::reuse::Kept) {
    // The request's host state goes first: whatever the guest left in its resource table
    // (a body it never finished, a stream) is closed now, as a dropped store would close
    // it, and the next request gets a host state of its own.
    drop(std::mem::replace(
        kept.store.data_mut(),
        Host::new(&app.guest),
    ));
    if let Err(e) = kept.instance.reuse(&mut kept.store) {
        tracing::debug!(app = %app.name, "instance not kept: {e:#}");
        cache.dropped(false);
        return;
    }
    if let Some(expected) = &kept.fingerprint
        && kept.instance.reuse_fingerprint(&mut kept.store) != **expected
    {
        tracing::error!(
            app = %app.name,
            "a reset instance differs from its state after instantiation: dropped (--check-resets)"
        );
        cache.dropped(true);
        return;
    }
    cache.put(app, kept);
}

/// The request body as the guest reads it: the body, until its deadline; then an error
/// for the guest, and `late` set so the client gets 408 whatever the guest answers.
struct BodyDeadline<B> {
    inner: std::pin::Pin<Box<B>>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    late: Arc<AtomicBool>,
}

impl<B> Body for BodyDeadline<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if let Poll::Ready(frame) = self.inner.as_mut().poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.late.store(true, Ordering::Relaxed);
            let message = format!("request body not received within {:?}", self.after);
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                message,
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Who may take an instance slot: the server's cap (sized to the instance pool), and a
/// cap per client address, so one peer cannot hold every slot.
pub struct Admission {
    /// Instances reset in place for later requests.
    pub instances: Arc<crate::reuse::InstanceCache>,
    server: Arc<Semaphore>,
    max: usize,
    per_client: usize,
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Admission {
    /// `max` requests at once across the server, at most `per_client` of them from one
    /// address (no per-client accounting at all when `per_client >= max`), and instances
    /// kept for later requests in `instances` (the pool needs room for them beyond `max`).
    pub fn new(max: usize, per_client: usize, instances: crate::reuse::InstanceCache) -> Admission {
        Admission {
            instances: Arc::new(instances),
            server: Arc::new(Semaphore::new(max)),
            max,
            per_client: per_client.clamp(1, max.max(1)),
            clients: Arc::default(),
        }
    }

    fn per_client_enabled(&self) -> bool {
        self.per_client < self.max
    }

    /// Takes an instance slot of the server, of the client and, if the app has its own
    /// cap, of the app. Never waits: a full server answers 503 at once instead of
    /// queueing without bound.
    fn admit(&self, client: Option<IpAddr>, app: &App) -> Result<Permits, RequestError> {
        let client = match client {
            Some(ip) if self.per_client_enabled() => {
                let mut clients = self.clients.lock().unwrap();
                let n = clients.entry(ip).or_insert(0);
                if *n >= self.per_client {
                    return Err(RequestError::ClientOverloaded {
                        limit: self.per_client,
                    });
                }
                *n += 1;
                Some(ClientSlot {
                    clients: self.clients.clone(),
                    ip,
                })
            }
            _ => None,
        };
        let server = self
            .server
            .clone()
            .try_acquire_owned()
            .map_err(|_| RequestError::Overloaded)?;
        let app = match &app.permits {
            Some(p) => Some(
                p.clone()
                    .try_acquire_owned()
                    .map_err(|_| RequestError::Overloaded)?,
            ),
            None => None,
        };
        Ok(Permits {
            _server: server,
            _app: app,
            _client: client,
        })
    }
}

/// The slots one request holds until its instance is gone.
struct Permits {
    _server: OwnedSemaphorePermit,
    _app: Option<OwnedSemaphorePermit>,
    _client: Option<ClientSlot>,
}

/// One of a client's slots.
struct ClientSlot {
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap();
        if let Some(n) = clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

fn declared_length<B>(req: &Request<B>) -> Result<Option<u64>, RequestError> {
    match req.headers().get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| RequestError::BadRequest("invalid `content-length`".into())),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn limited_body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.is::<LengthLimitError>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(None);
    }
    match e.downcast::<hyper::Error>() {
        Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
        Err(e) => wasmtime_wasi_http::Error::InternalError(Some(e.to_string())),
    }
}

fn timeout(app: &App) -> RequestError {
    RequestError::Timeout {
        app: app.name.clone(),
        after: app.config.limits.timeout,
    }
}

fn classify(app: &App, err: wasmtime::Error, memory_exceeded: bool) -> RequestError {
    if memory_exceeded {
        return RequestError::MemoryLimit {
            app: app.name.clone(),
            limit: app.guest.memory_limit,
        };
    }
    let detail = match err.downcast_ref::<Trap>() {
        Some(trap) => format!("{trap}: {err:?}"),
        None => format!("{err:?}"),
    };
    RequestError::Trap {
        app: app.name.clone(),
        detail,
    }
}

fn server_timing(instantiate: Duration, handle: Duration) -> HeaderValue {
    // Milliseconds with microsecond resolution, written digit by digit into a buffer on
    // the stack: this runs on every request, and `format!` (then float formatting, before
    // that) showed up in profiles.
    let mut out = TimingText::default();
    out.push(b"instantiate;dur=");
    out.push_millis(instantiate);
    out.push(b", handle;dur=");
    out.push_millis(handle);
    HeaderValue::from_bytes(out.as_bytes()).expect("ASCII")
}

/// The Server-Timing value as it is written: two labels and two durations of at most 20
/// digits each fit.
struct TimingText {
    buf: [u8; 96],
    len: usize,
}

impl Default for TimingText {
    fn default() -> TimingText {
        TimingText {
            buf: [0; 96],
            len: 0,
        }
    }
}

impl TimingText {
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// `took` in milliseconds with three decimals (microseconds), as `12.345`.
    fn push_millis(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = micros / 1000;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
        let frac = (micros % 1000) as u16;
        self.push(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_milliseconds_with_three_decimals() {
        let value = |i: u64, h: u64| {
            server_timing(Duration::from_micros(i), Duration::from_micros(h))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(value(0, 7), "instantiate;dur=0.000, handle;dur=0.007");
        assert_eq!(
            value(5_042, 12_345_678),
            "instantiate;dur=5.042, handle;dur=12345.678"
        );
        let longest = value(u64::MAX, u64::MAX);
        assert_eq!(
            longest,
            "instantiate;dur=18446744073709551.615, handle;dur=18446744073709551.615"
        );
        // Beyond u64 microseconds the value saturates rather than wrapping.
        let huge = server_timing(Duration::MAX, Duration::ZERO);
        assert_eq!(
            huge.to_str().unwrap(),
            "instantiate;dur=18446744073709551.615, handle;dur=0.000"
        );
    }
}
