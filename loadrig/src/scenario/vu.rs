//! One virtual user: a long-lived instance of the scenario component in its own store,
//! and the host side of the `loadrig:scenario/host` interface it imports.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::client::{CONNECT_TIMEOUT, Client, Clock, Prepared, Request};
use crate::record::Results;
use crate::summary::MetricType;

#[allow(missing_docs)]
pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "vu",
        imports: {
            "loadrig:scenario/host.sleep": async | trappable,
            "loadrig:scenario/http.send": async | trappable,
            "loadrig:scenario/ws.open": async | trappable,
            "loadrig:scenario/ws.send": async | trappable,
            "loadrig:scenario/ws.ping": async | trappable,
            "loadrig:scenario/ws.close": async | trappable,
            "loadrig:scenario/ws.next": async | trappable,
            "loadrig:scenario/ws.discard": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

pub use bindings::VuPre;
pub use bindings::loadrig::scenario::host::VuContext;
use bindings::loadrig::scenario::host::{self, MetricKind};
use bindings::loadrig::scenario::http as one_call;

/// A VU's linear memory may grow to this (a VU that allocates past it gets an allocation
/// failure inside, which fails its iteration, never the run).
pub const VU_MEMORY_LIMIT: usize = 256 << 20;

/// Set when the run must end now (`abort`, a failed `abortOnFail` threshold, `fail` in
/// setup), with the reason.
#[derive(Debug, Default)]
pub struct Abort {
    flag: AtomicBool,
    reason: Mutex<Option<String>>,
    wake: tokio::sync::Notify,
}

impl Abort {
    /// Ends the run, keeping the first reason given.
    pub fn set(&self, reason: String) {
        let mut r = self.reason.lock().expect("abort lock");
        if r.is_none() {
            *r = Some(reason);
        }
        self.flag.store(true, Relaxed);
        self.wake.notify_waiters();
    }

    /// Resolves once the run is aborted.
    pub async fn wait(&self) {
        loop {
            let woken = self.wake.notified();
            if self.is_set() {
                return;
            }
            woken.await;
        }
    }

    /// Whether the run was aborted.
    pub fn is_set(&self) -> bool {
        self.flag.load(Relaxed)
    }

    /// Why.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().expect("abort lock").clone()
    }
}

/// A VU's store data.
pub struct VuState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// The HTTP client and the VU's tags and group.
    pub client: Client,
    limits: StoreLimits,
    /// The VU's place in the run.
    pub context: VuContext,
    /// Groups entered and when.
    groups: Vec<(String, Instant)>,
    abort: Arc<Abort>,
    /// Its WebSocket sessions (`loadrig:scenario/ws`).
    pub(super) ws: super::ws::Sessions,
    /// The last bodiless `loadrig:scenario/http` request and its [`Prepared`] form: most
    /// VUs send the same few requests again and again, and a repeat is not parsed and
    /// encoded again.
    last_sent: Option<(one_call::Request, Prepared)>,
}

impl WasiView for VuState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for VuState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.client,
        }
    }
}

impl VuState {
    /// The state of the instance a JavaScript script's init code runs in, before Wizer
    /// snapshots it: WASI as the caller built it, nothing recorded.
    pub fn for_init(wasi: WasiCtx) -> VuState {
        VuState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            client: Client::new(Default::default(), Clock::new(), Vec::new()),
            limits: StoreLimitsBuilder::new()
                .memory_size(VU_MEMORY_LIMIT)
                .table_elements(1 << 20)
                .build(),
            context: VuContext {
                vu: 0,
                iteration: 0,
                scenario: String::new(),
                iteration_in_scenario: 0,
            },
            groups: Vec::new(),
            abort: Arc::new(Abort::default()),
            ws: Default::default(),
            last_sent: None,
        }
    }

    /// Enforces the VU memory limit on `store`.
    pub fn limit(store: &mut Store<VuState>) {
        store.limiter(|s| &mut s.limits);
    }

    fn results(&self) -> std::sync::MutexGuard<'_, Results> {
        self.client.results.lock().expect("results lock")
    }
}

impl host::Host for VuState {
    fn context(&mut self) -> wasmtime::Result<VuContext> {
        Ok(self.context.clone())
    }

    fn check(
        &mut self,
        name: String,
        ok: bool,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let mut tags = self.client.tags(&tags);
        tags.push(("check".into(), name.clone()));
        let group = self.client.group.clone();
        self.results().metrics.check(&group, &name, ok, &tags);
        Ok(())
    }

    fn add(
        &mut self,
        metric: String,
        kind: MetricKind,
        is_time: bool,
        value: f64,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>> {
        if !value.is_finite() {
            return Ok(Err(format!("metric `{metric}`: {value} is not a number")));
        }
        let builtin =
            crate::summary::metric_type(&metric).is_some() || RESERVED.contains(&metric.as_str());
        if builtin {
            return Ok(Err(format!(
                "`{metric}` is one of loadrig's built-in metrics; give yours another name"
            )));
        }
        if !valid_name(&metric) {
            return Ok(Err(format!(
                "metric name `{metric}` is not valid: use letters, digits and `_`, starting with a letter, at most 128 characters"
            )));
        }
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Rate => MetricType::Rate,
            MetricKind::Trend => MetricType::Trend,
        };
        let tags = self.client.tags(&tags);
        Ok(self
            .results()
            .metrics
            .add(&metric, kind, is_time, value, &tags))
    }

    fn group_enter(&mut self, name: String) -> wasmtime::Result<()> {
        let path = format!("{}::{name}", self.client.group);
        self.results().metrics.group(&path);
        self.groups.push((
            std::mem::replace(&mut self.client.group, path),
            Instant::now(),
        ));
        Ok(())
    }

    fn group_leave(&mut self) -> wasmtime::Result<()> {
        let Some((outer, entered)) = self.groups.pop() else {
            return Ok(());
        };
        let ms = entered.elapsed().as_secs_f64() * 1000.0;
        let tags = self.client.tags(&[]);
        self.client.group = outer;
        let _ = self
            .results()
            .metrics
            .add("group_duration", MetricType::Trend, true, ms, &tags);
        Ok(())
    }

    async fn sleep(&mut self, seconds: f64) -> wasmtime::Result<()> {
        if seconds.is_finite() && seconds > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(seconds.min(86_400.0))).await;
        }
        Ok(())
    }

    fn tag_next_request(&mut self, tags: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.client.next_tags = tags;
        Ok(())
    }

    fn last_timings(&mut self) -> wasmtime::Result<Option<host::Timings>> {
        Ok(self
            .client
            .last
            .lock()
            .expect("timings lock")
            .map(wit_timings))
    }

    fn abort(&mut self, reason: String) -> wasmtime::Result<()> {
        self.abort.set(reason);
        Ok(())
    }
}

/// Names a scenario may not give its own metrics (k6's built-in ones).
const RESERVED: &[&str] = &[
    "checks",
    "iteration_errors",
    "iterations",
    "iteration_duration",
    "group_duration",
    "vus",
    "vus_max",
    "dropped_iterations",
];

/// A request's phases as the WIT has them (no TLS yet).
fn wit_timings(t: super::client::Timings) -> host::Timings {
    host::Timings {
        blocked: t.blocked,
        connecting: t.connecting,
        tls_handshaking: 0.0,
        sending: t.sending,
        waiting: t.waiting,
        receiving: t.receiving,
        duration: t.duration,
    }
}

/// Splits a NUL-separated list of alternating names and values (`""`: none).
pub(super) fn pairs(packed: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut parts = packed.split('\0').filter(|_| !packed.is_empty());
    std::iter::from_fn(move || Some((parts.next()?, parts.next().unwrap_or(""))))
}

impl one_call::Host for VuState {
    async fn send(
        &mut self,
        request: one_call::Request,
    ) -> wasmtime::Result<Result<one_call::Response, String>> {
        let tags: Vec<(String, String)> = pairs(&request.tags)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut request = request;
        let body = std::mem::take(&mut request.body);
        let bodiless = body.is_empty();
        let again = self
            .last_sent
            .as_ref()
            .filter(|(last, _)| bodiless && same_request(last, &request))
            .map(|(_, prepared)| prepared.clone());
        let prepared = match again {
            Some(prepared) => prepared,
            None => match prepare(&request, body) {
                Ok(prepared) => {
                    if bodiless {
                        self.last_sent = Some((request, prepared.clone()));
                    }
                    prepared
                }
                Err(e) => return Ok(Err(e)),
            },
        };
        let sent = self.client.flight(&tags).send_prepared(prepared).await;
        Ok(match sent {
            Ok(reply) => {
                let packed = String::from_utf8(reply.headers)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                Ok(one_call::Response {
                    status: reply.status,
                    headers: packed,
                    body: reply.body,
                    timings: wit_timings(reply.timings),
                })
            }
            Err(code) => Err(format!("{code:?}")),
        })
    }
}

/// Whether `b` is request `a` again, bodies and tags aside (they are not compared).
fn same_request(a: &one_call::Request, b: &one_call::Request) -> bool {
    a.path == b.path
        && a.authority == b.authority
        && a.headers == b.headers
        && a.method == b.method
        && a.scheme == b.scheme
        && a.timeout_ms.to_bits() == b.timeout_ms.to_bits()
}

/// Parses and encodes a `loadrig:scenario/http` request with `body`; the error is what the
/// guest gets.
fn prepare(request: &one_call::Request, body: Vec<u8>) -> Result<Prepared, String> {
    let invalid = |what: &str, value: &str| format!("HttpRequestUriInvalid: {what} `{value}`");
    let Ok(method) = http::Method::from_bytes(request.method.as_bytes()) else {
        return Err(invalid("method", &request.method));
    };
    let Ok(authority) = request.authority.parse::<http::uri::Authority>() else {
        return Err(invalid("authority", &request.authority));
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in pairs(&request.headers) {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return Err(format!("HeaderError: invalid header `{name}`")),
        }
    }
    let timeout = std::time::Duration::from_secs_f64((request.timeout_ms / 1e3).max(1e-3));
    Request {
        method,
        scheme: request.scheme.clone(),
        authority,
        path: request.path.clone(),
        headers,
        body: body.into(),
        connect_timeout: CONNECT_TIMEOUT.min(timeout),
        timeout,
    }
    .prepare()
    .map_err(|code| format!("{code:?}"))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// The host's imports for VUs: WASI 0.2 (no sockets, files or host environment),
/// `wasi:http` over loadrig's client, and `loadrig:scenario/host`.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<VuState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    host::add_to_linker::<VuState, HasSelf<VuState>>(&mut linker, |s| s)?;
    one_call::add_to_linker::<VuState, HasSelf<VuState>>(&mut linker, |s| s)?;
    bindings::loadrig::scenario::ws::add_to_linker::<VuState, HasSelf<VuState>>(
        &mut linker,
        |s| s,
    )?;
    Ok(linker)
}

/// What every VU of a run is made from.
pub struct Blueprint {
    /// The pre-linked component.
    pub pre: VuPre<VuState>,
    /// `--env` and the scenario's `env`.
    pub env: Vec<(String, String)>,
    /// The run's abort flag.
    pub abort: Arc<Abort>,
}

/// A live VU.
pub struct Vu {
    /// Its store.
    pub store: Store<VuState>,
    /// Its instance's exports.
    pub exports: bindings::Vu,
}

impl Vu {
    /// Instantiates a VU recording into `results`; `context` says where it is.
    pub async fn new(
        blueprint: &Blueprint,
        results: Arc<Mutex<Results>>,
        clock: Clock,
        context: VuContext,
        extra_env: &[(String, String)],
        tags: Vec<(String, String)>,
    ) -> anyhow::Result<Vu> {
        let mut wasi = WasiCtx::builder();
        // The VU's stdout would mix with the report: both streams go to stderr.
        wasi.stdout(std::io::stderr())
            .stderr(std::io::stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut env = blueprint.env.clone();
        env.extend(extra_env.iter().cloned());
        wasi.envs(&env);
        let state = VuState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            client: Client::new(results, clock, tags),
            limits: StoreLimitsBuilder::new()
                .memory_size(VU_MEMORY_LIMIT)
                .table_elements(1 << 20)
                .build(),
            context,
            groups: Vec::new(),
            abort: blueprint.abort.clone(),
            ws: Default::default(),
            last_sent: None,
        };
        let mut store = Store::new(blueprint.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // A spinning VU yields to the others on its thread at every epoch tick; it is
        // stopped by dropping its call once its scenario's graceful stop has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        let exports = blueprint
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .context("instantiating a VU")?;
        Ok(Vu { store, exports })
    }

    /// Leaves any group an iteration left open (an exception inside `group`).
    pub fn reset_groups(&mut self) {
        let state = self.store.data_mut();
        while !state.groups.is_empty() {
            let _ = host::Host::group_leave(state);
        }
        state.client.next_tags.clear();
    }
}
