//! The host side of `wasi:http/outgoing-handler` and `loadrig:scenario/http` for VUs:
//! every request a scenario sends goes through loadrig's own HTTP/1.1 client
//! ([`crate::h1`]), on the VU's own keep-alive connections, and is recorded with k6's
//! phases and tags ([`Flight::send`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::drive::Watchdog;
use crate::h1::{self, Captured};
use crate::record::{ErrorKind, Results, Sample};
use crate::summary::MetricType;

/// How long opening a connection may take unless the request says (k6 has no separate
/// connect timeout; its request `timeout` default is 60 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// A request's whole exchange may take this long unless the request says (k6's default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections a VU keeps per destination.
const KEEP_PER_DESTINATION: usize = 4;

pub use crate::drive::Clock;

/// The phases of one request, in milliseconds (k6's `res.timings`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Waiting for a connection, opening it included.
    pub blocked: f64,
    /// Opening the TCP connection.
    pub connecting: f64,
    /// Writing the request.
    pub sending: f64,
    /// Request written → first byte of the response.
    pub waiting: f64,
    /// First byte → last byte.
    pub receiving: f64,
    /// The request's duration (sending + waiting + receiving), as k6 defines it.
    pub duration: f64,
}

/// What a VU's requests share with the rest of its host state.
pub struct Client {
    /// The VU's idle connections by destination.
    pool: Arc<Mutex<HashMap<SocketAddr, Vec<h1::Conn>>>>,
    /// Host names this VU has resolved.
    resolved: Arc<Mutex<HashMap<String, SocketAddr>>>,
    /// Where this thread's samples go.
    pub results: Arc<Mutex<Results>>,
    /// The run's clock.
    pub clock: Clock,
    /// How late (ns) the current iteration started against its schedule: under an
    /// arrival-rate executor each request is measured as if it had started that much
    /// earlier, which corrects coordinated omission.
    pub lateness: Arc<AtomicU64>,
    /// Tags on every sample of this VU (the scenario's, `scenario`).
    pub base_tags: Vec<(String, String)>,
    /// The current group path (`""` at the root).
    pub group: String,
    /// Tags for the next request only.
    pub next_tags: Vec<(String, String)>,
    /// The last request's phases.
    pub last: Arc<Mutex<Option<Timings>>>,
    /// The request timeout's timer, kept from request to request (a VU makes one at a
    /// time; one made meanwhile gets its own).
    watchdog: Arc<Mutex<Option<Watchdog>>>,
    /// Whether a submetric is defined (so that requests need their tags); the run's
    /// submetrics are set before its VUs start.
    tagged: std::cell::OnceCell<bool>,
}

impl Client {
    /// A client with no connections yet.
    pub fn new(
        results: Arc<Mutex<Results>>,
        clock: Clock,
        base_tags: Vec<(String, String)>,
    ) -> Client {
        Client {
            pool: Default::default(),
            resolved: Default::default(),
            results,
            clock,
            lateness: Arc::new(AtomicU64::new(0)),
            base_tags,
            group: String::new(),
            next_tags: Vec::new(),
            last: Default::default(),
            watchdog: Default::default(),
            tagged: Default::default(),
        }
    }

    /// Every tag of a sample recorded now, plus `extra`.
    pub fn tags(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut t = self.base_tags.clone();
        t.push(("group".into(), self.group.clone()));
        for (k, v) in extra {
            match t.iter_mut().find(|(k2, _)| k2 == k) {
                Some(slot) => slot.1 = v.clone(),
                None => t.push((k.clone(), v.clone())),
            }
        }
        t
    }
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

/// One request, from either interface (`wasi:http` or `loadrig:scenario/http`).
pub struct Request {
    /// The method.
    pub method: http::Method,
    /// `http`; anything else is refused (no TLS yet).
    pub scheme: String,
    /// `host[:port]`.
    pub authority: http::uri::Authority,
    /// The path and query.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long the exchange may take.
    pub timeout: Duration,
}

/// A request ready for the wire: checked, its address parsed if it is one, encoded.
#[derive(Clone)]
pub struct Prepared {
    method: http::Method,
    authority: http::uri::Authority,
    /// The path and query.
    path: Arc<str>,
    /// The destination, when the authority is an address (no lookup needed).
    ip: Option<SocketAddr>,
    encoded: Bytes,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Request {
    /// Checks and encodes the request.
    pub fn prepare(self) -> Result<Prepared, HttpError> {
        if self.scheme != "http" {
            return Err(HttpError::InternalError(Some(format!(
                "loadrig speaks plain HTTP/1.1 only; `{}://` is not supported yet",
                self.scheme
            ))));
        }
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = self.authority.port_u16().unwrap_or(80);
        let ip = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        let encoded = h1::encode_request(
            &self.method,
            &self.path,
            self.authority.as_str(),
            &self.headers,
            &self.body,
        );
        Ok(Prepared {
            method: self.method,
            authority: self.authority,
            path: self.path.into(),
            ip,
            encoded,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
        })
    }
}

/// A response, read whole.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names as received and values, packed as [`Captured::headers`] are.
    pub headers: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Its phases.
    pub timings: Timings,
}

/// A request under way: what it needs of its VU, taken when it was made, so the exchange
/// borrows nothing.
pub struct Flight {
    pool: Arc<Mutex<HashMap<SocketAddr, Vec<h1::Conn>>>>,
    resolved: Arc<Mutex<HashMap<String, SocketAddr>>>,
    results: Arc<Mutex<Results>>,
    clock: Clock,
    lateness: u64,
    /// The request's tags; `None` when no submetric is defined, so none would be read.
    tags: Option<Vec<(String, String)>>,
    last: Arc<Mutex<Option<Timings>>>,
    called: u64,
    watchdog: Arc<Mutex<Option<Watchdog>>>,
}

impl Client {
    /// Starts a request now, tagged with the VU's tags and `extra` (the request's own).
    pub fn flight(&self, extra: &[(String, String)]) -> Flight {
        // Tags only select submetrics (`http_req_duration{name:login}`): without any, a
        // request skips building them (a dozen strings).
        let tagged = *self.tagged.get_or_init(|| {
            !self
                .results
                .lock()
                .expect("results lock")
                .metrics
                .defs
                .is_empty()
        });
        Flight {
            pool: self.pool.clone(),
            resolved: self.resolved.clone(),
            results: self.results.clone(),
            clock: self.clock,
            lateness: self.lateness.load(Relaxed),
            tags: tagged.then(|| self.tags(extra)),
            last: self.last.clone(),
            called: self.clock.now(),
            watchdog: self.watchdog.clone(),
        }
    }
}

impl Flight {
    /// Resolves, sends and reads `request` on one of the VU's connections, and records it
    /// with k6's phases and tags.
    pub async fn send(self, request: Request) -> Result<Reply, HttpError> {
        self.send_prepared(request.prepare()?).await
    }

    /// As [`Flight::send`], for a request already prepared (a VU that sends the same
    /// request again reuses its [`Prepared`]).
    pub async fn send_prepared(self, request: Prepared) -> Result<Reply, HttpError> {
        let Flight {
            pool,
            resolved,
            results,
            clock,
            lateness,
            tags,
            last,
            called,
            watchdog,
        } = self;
        let authority = &request.authority;
        // An address needs no lookup; a name is resolved once per VU (the lookup is a
        // blocking call on another thread, which would cost every request a hand-off).
        let known = request.ip.or_else(|| {
            resolved
                .lock()
                .expect("dns lock")
                .get(authority.as_str())
                .copied()
        });
        let addr = match known {
            Some(addr) => addr,
            None => {
                let port = authority.port_u16().unwrap_or(80);
                // Boxed, as the connect is: rare, and large.
                let addr = Box::pin(tokio::net::lookup_host((authority.host(), port)))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or(HttpError::DestinationNotFound)?;
                resolved
                    .lock()
                    .expect("dns lock")
                    .insert(authority.as_str().to_owned(), addr);
                addr
            }
        };
        let method = request.method.clone();
        let out = Outgoing {
            addr,
            encoded: request.encoded.clone(),
            head_only: method == http::Method::HEAD,
            connect_timeout: request.connect_timeout,
            timeout: request.timeout,
        };
        // Under an arrival-rate executor the iteration's lateness shifts every request
        // back to when it would have started on schedule.
        let intended = called.saturating_sub(lateness);
        let mut captured = Captured::default();
        let mut timer = watchdog
            .lock()
            .expect("watchdog lock")
            .take()
            .unwrap_or_else(Watchdog::new);
        // The deadline from the clock's reading at the flight's start: no other reading.
        let deadline = clock.start + Duration::from_nanos(called) + out.timeout;
        let outcome = exchange(&pool, &out, clock, &mut captured, &mut timer, deadline).await;
        *watchdog.lock().expect("watchdog lock") = Some(timer);
        let mut tags = tags.map(|mut tags| {
            let url = format!("http://{}{}", authority.as_str(), &*request.path);
            for (k, v) in [
                ("method", method.as_str().to_owned()),
                ("url", url.clone()),
                ("proto", "HTTP/1.1".to_owned()),
            ] {
                if !tags.iter().any(|(k2, _)| k2 == k) {
                    tags.push((k.into(), v));
                }
            }
            if !tags.iter().any(|(k, _)| k == "name") {
                tags.push(("name".into(), url));
            }
            tags
        });
        let mut results = results.lock().expect("results lock");
        match outcome {
            Ok((r, connecting, started, bytes, opened)) => {
                if opened {
                    results.connections_opened += 1;
                }
                let status = r.status;
                let sample = Sample {
                    intended,
                    ready: intended.max(called),
                    connecting,
                    started,
                    sent: r.sent,
                    first_byte: r.first_byte,
                    ended: r.ended,
                    status,
                };
                results.record_response(&sample);
                results.bytes_received += bytes.0;
                results.bytes_sent += bytes.1;
                for v in &r.server_timing {
                    for (name, dur) in crate::drive::server_timings(v) {
                        results.record_server_timing(&name, dur);
                    }
                }
                let expected = (200..400).contains(&status);
                if let Some(tags) = &mut tags {
                    tags.push(("status".into(), status.to_string()));
                    tags.push(("expected_response".into(), expected.to_string()));
                }
                let ms = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e6;
                let t = Timings {
                    blocked: ms(started, called),
                    connecting: connecting as f64 / 1e6,
                    sending: ms(r.sent, started),
                    waiting: ms(r.first_byte, r.sent),
                    receiving: ms(r.ended, r.first_byte),
                    duration: ms(r.ended, started),
                };
                if let Some(tags) = &tags {
                    let m = &mut results.metrics;
                    for (name, v) in [
                        ("http_req_blocked", ms(started, intended)),
                        ("http_req_connecting", t.connecting),
                        ("http_req_sending", t.sending),
                        ("http_req_waiting", t.waiting),
                        ("http_req_receiving", t.receiving),
                        ("http_req_duration", ms(r.ended, intended)),
                        ("http_req_duration_uncorrected", t.duration),
                    ] {
                        m.feed_submetrics(name, MetricType::Trend, true, v, tags);
                    }
                    m.feed_submetrics("http_reqs", MetricType::Counter, false, 1.0, tags);
                    m.feed_submetrics(
                        "http_req_failed",
                        MetricType::Rate,
                        false,
                        (!expected) as u8 as f64,
                        tags,
                    );
                }
                drop(results);
                *last.lock().expect("timings lock") = Some(t);
                Ok(Reply {
                    status,
                    headers: captured.headers,
                    body: captured.body,
                    timings: t,
                })
            }
            Err(kind) => {
                results.record_error(kind, clock.now());
                if let Some(mut tags) = tags {
                    tags.push(("status".into(), "0".into()));
                    tags.push(("expected_response".into(), "false".into()));
                    tags.push(("error_code".into(), kind.name().into()));
                    let m = &mut results.metrics;
                    m.feed_submetrics("http_reqs", MetricType::Counter, false, 1.0, &tags);
                    m.feed_submetrics("http_req_failed", MetricType::Rate, false, 1.0, &tags);
                }
                drop(results);
                *last.lock().expect("timings lock") = None;
                Err(http_error(kind))
            }
        }
    }
}

/// One exchange, ready to go.
struct Outgoing {
    addr: SocketAddr,
    encoded: Bytes,
    head_only: bool,
    connect_timeout: Duration,
    timeout: Duration,
}

impl WasiHttpHooks for Client {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let extra = std::mem::take(&mut self.next_tags);
        let flight = self.flight(&extra);
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HttpError::InternalError(Some(format!("request body: {e}"))))?
                .to_bytes();
            let uri = parts.uri;
            let opts = options.unwrap_or_default();
            let request = Request {
                method: parts.method,
                scheme: uri.scheme_str().unwrap_or("http").to_owned(),
                authority: uri
                    .authority()
                    .ok_or(HttpError::HttpRequestUriInvalid)?
                    .clone(),
                path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
                headers: parts.headers,
                body,
                connect_timeout: opts.connect_timeout.unwrap_or(CONNECT_TIMEOUT),
                timeout: opts.first_byte_timeout.unwrap_or(REQUEST_TIMEOUT),
            };
            let reply = flight.send(request).await?;
            let mut response = http::Response::builder().status(reply.status);
            for (name, value) in h1::header_pairs(&reply.headers) {
                if let (Ok(n), Ok(v)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    response = response.header(n, v);
                }
            }
            let body = Full::new(Bytes::from(reply.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = response
                .body(body)
                .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// An exchange's response, time spent connecting, when it started on the connection, the
/// bytes read and written, and whether it opened a connection.
type Exchanged = (h1::Response, u64, u64, (u64, u64), bool);

/// The exchange on a pooled or new connection.
async fn exchange(
    pool: &Mutex<HashMap<SocketAddr, Vec<h1::Conn>>>,
    out: &Outgoing,
    clock: Clock,
    captured: &mut Captured,
    watchdog: &mut Watchdog,
    deadline: std::time::Instant,
) -> Result<Exchanged, ErrorKind> {
    let mut pooled = pool
        .lock()
        .expect("pool lock")
        .get_mut(&out.addr)
        .and_then(Vec::pop);
    // A kept-alive connection the server closed meanwhile fails at once with nothing
    // read: retry that once on a new connection, as every HTTP client does.
    loop {
        let (mut conn, connecting, opened) = match pooled.take() {
            Some(conn) => (conn, 0, false),
            None => {
                let before = clock.now();
                // Boxed: the connect and its timer would otherwise make every request's
                // future (moved whole on its way into wasmtime) larger, for what few
                // requests do.
                let connect = Box::pin(tokio::time::timeout(
                    out.connect_timeout,
                    TcpStream::connect(out.addr),
                ));
                let stream = match connect.await {
                    Err(_) => return Err(ErrorKind::ConnectTimeout),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(ErrorKind::ConnectRefused);
                    }
                    Ok(Err(_)) => return Err(ErrorKind::Connect),
                    Ok(Ok(s)) => s,
                };
                let _ = stream.set_nodelay(true);
                (h1::Conn::new(stream), clock.now() - before, true)
            }
        };
        let (in0, out0) = (conn.bytes_in, conn.bytes_out);
        let started = clock.now();
        let r = {
            let work = std::pin::pin!(conn.exchange_capture(
                &out.encoded,
                out.head_only,
                || clock.now(),
                captured
            ));
            watchdog.run(work, deadline).await
        };
        match r {
            Some(Ok(resp)) => {
                let bytes = (conn.bytes_in - in0, conn.bytes_out - out0);
                give_back(pool, out.addr, conn);
                return Ok((resp, connecting, started, bytes, opened));
            }
            Some(Err(ErrorKind::Closed | ErrorKind::Reset)) if !opened && conn.bytes_in == in0 => {}
            Some(Err(e)) => return Err(e),
            None => return Err(ErrorKind::Timeout),
        }
    }
}

fn give_back(pool: &Mutex<HashMap<SocketAddr, Vec<h1::Conn>>>, addr: SocketAddr, conn: h1::Conn) {
    if !conn.reusable() {
        return;
    }
    let mut pool = pool.lock().expect("pool lock");
    let idle = pool.entry(addr).or_default();
    if idle.len() < KEEP_PER_DESTINATION {
        idle.push(conn);
    }
}

/// What the guest sees for a request that got no response.
fn http_error(kind: ErrorKind) -> HttpError {
    match kind {
        ErrorKind::ConnectRefused => HttpError::ConnectionRefused,
        ErrorKind::ConnectTimeout => HttpError::ConnectionTimeout,
        ErrorKind::Connect => HttpError::DestinationUnavailable,
        ErrorKind::Timeout => HttpError::HttpResponseTimeout,
        ErrorKind::Reset | ErrorKind::Closed => HttpError::ConnectionTerminated,
        ErrorKind::Protocol => HttpError::HttpProtocolError,
        ErrorKind::Other => HttpError::InternalError(None),
    }
}
