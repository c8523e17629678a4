//! The JavaScript engine of edge's JS SDK: QuickJS-NG (through `rquickjs`) as a
//! `wasi:http/proxy` component.
//!
//! `edge build app.js` runs this component's `wizer-initialize` export once, with the app's
//! source on stdin and its file name in `EDGE_JS_FILENAME`: the Web API layer (`web.js`) and
//! the app's module are evaluated there, top-level code and all, and Wizer snapshots the
//! resulting heap. Each request then starts from that snapshot in a fresh instance and only
//! runs the handler.
//!
//! I/O goes through WASI directly, never through `std::io`: handles opened while
//! initializing would be baked into the snapshot and be stale at request time, so every
//! stream here is opened, used and dropped within one call.

// Built with the `k6` feature this is loadrig's JavaScript VU (`k6.rs`) instead of an edge
// app: the proxy-only parts below are then unused.
#![cfg_attr(feature = "k6", allow(dead_code, unused_imports))]

use rquickjs::function::Opt;
use rquickjs::loader::{FileResolver, ImportAttributes, Loader, Resolver, ScriptLoader};
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Exception, Function, Module, Object, Persistent,
    Promise, Runtime, TypedArray, Value,
};
use std::cell::RefCell;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

#[cfg(feature = "k6")]
mod k6;
mod outbound;

#[cfg(not(feature = "k6"))]
mod state;

// The app's world beyond `wasi:http/proxy`: pre-initialization, and the state the host
// gives apps (`env` in `fetch(request, env, ctx)`; see `state.rs`).
#[cfg(not(feature = "k6"))]
wit_bindgen::generate!({
    inline: "package edge:js;
        world init {
            export wizer-initialize: func();
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasi:config/store@0.2.0-draft;
        }",
    path: ["../../runtime/wit/keyvalue", "../../runtime/wit/config"],
    generate_all,
});

/// The Web API layer, evaluated at initialization (so it is part of the snapshot).
const WEB_JS: &str = include_str!("../../js/web.js");

/// Bytes asked of the request body per read.
const READ_CHUNK: u64 = 64 * 1024;

/// The engine: built by `wizer-initialize`, kept in the snapshot.
struct Engine {
    runtime: Runtime,
    context: Context,
    /// The object `web.js` evaluates to: `dispatch`, `nextTimer`, `runTimers`.
    hooks: Persistent<Object<'static>>,
    /// `hooks.dispatch`, looked up once.
    dispatch: Persistent<Function<'static>>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static EXCHANGE: RefCell<Exchange> = const { RefCell::new(Exchange::new()) };
}

/// The current request's body and response, reachable from the native functions.
struct Exchange {
    // Streams are children of their bodies: declared first, so dropped first.
    request_stream: Option<InputStream>,
    request_body: Option<IncomingBody>,
    /// The request being served: its URL and headers are read from it when the app first
    /// asks for them, not before (a handler that never looks costs no host calls).
    request: Option<IncomingRequest>,
    /// Whether the request body was taken (and, once its stream is gone, read to the end).
    body_taken: bool,
    outparam: Option<ResponseOutparam>,
    response_stream: Option<OutputStream>,
    response_body: Option<OutgoingBody>,
}

impl Exchange {
    const fn new() -> Exchange {
        Exchange {
            request_stream: None,
            request_body: None,
            request: None,
            body_taken: false,
            outparam: None,
            response_stream: None,
            response_body: None,
        }
    }
}

unsafe extern "C" {
    /// QuickJS as patched in `vendor/rquickjs-sys`: every block allocated so far becomes
    /// immortal (its reference count is never written again, it is never freed).
    fn JS_MakeHeapImmortal(rt: *mut rquickjs::qjs::JSRuntime);
    /// Same patch: until `JS_MakeHeapImmortal`, every hashed object shape is kept, each
    /// step of an object's growth included, so the snapshot holds them for instances.
    fn JS_RetainShapes(rt: *mut rquickjs::qjs::JSRuntime);
    /// wasi-libc's allocator, the engine's (for `fill_malloc_holes`).
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
}

/// The first step of initialization, once the context exists: from now until
/// `seal_heap`, QuickJS keeps the object shapes it makes (`JS_RetainShapes`), so an
/// instance started from the snapshot finds the shapes of the objects its requests make
/// (`Request`, `Response`, `Headers`, …) instead of building each again, field by field.
fn retain_shapes(context: &Context) {
    // SAFETY: the runtime is alive and idle; the call sets one flag of it.
    unsafe { JS_RetainShapes(context.get_runtime_ptr()) }
}

/// The last step of initialization, just before the snapshot: collects what it left
/// behind, so the snapshot is only live data, then makes that data immortal. An instance
/// started from the snapshot then reads its objects without writing their reference
/// counts, so it copies only the pages it really changes (vendor/README.md has the figures).
fn seal_heap(runtime: &Runtime, context: &Context) {
    runtime.run_gc();
    // SAFETY: the runtime is alive and idle (no JS is running); the call only rewrites
    // QuickJS's own allocation headers and lists.
    unsafe { JS_MakeHeapImmortal(context.get_runtime_ptr()) }
    fill_malloc_holes();
}

/// Takes, and keeps, every free byte malloc has below the current end of linear memory:
/// the holes initialization left between live blocks (freed sources, compile buffers) and
/// the rest of the heap's top. What an instance allocates after the snapshot then comes
/// from memory beyond it, rather than from those holes, where each allocation (and
/// malloc's boundary tags around it) would make the instance copy a snapshot page.
fn fill_malloc_holes() {
    let end = core::arch::wasm32::memory_size::<0>() * 65536;
    // From 64 KiB down: larger holes are taken 64 KiB at a time, and the request that no
    // longer fits grows memory by as little as malloc grows it.
    let mut size = 1 << 16;
    while size > 0 {
        loop {
            // SAFETY: plain malloc and free of wasi-libc, the engine's allocator.
            let p = unsafe { malloc(size) };
            if p.is_null() {
                break;
            }
            if p as usize + size > end {
                // From memory grown for it: nothing of this size is left below `end`.
                unsafe { free(p) };
                break;
            }
        }
        size /= 2;
    }
}

struct Init;

#[cfg(not(feature = "k6"))]
impl Guest for Init {
    fn wizer_initialize() {
        // A built app keeps this export (Wizer's component output needs it), and servers
        // pre-initialize whatever exports it: the second time, the snapshot is already here.
        if ENGINE.with(|cell| cell.borrow().is_some()) {
            return;
        }
        let filename = std::env::var("EDGE_JS_FILENAME").unwrap_or_else(|_| String::from("app.js"));
        let source = read_stdin();
        match Engine::new(&filename, source) {
            Ok(engine) => ENGINE.with(|cell| *cell.borrow_mut() = Some(engine)),
            Err(message) => {
                write_all(&wasip2::cli::stderr::get_stderr(), message.as_bytes());
                // Fails the initialization, and so the build, after the message is out.
                std::process::abort();
            }
        }
    }
}

#[cfg(not(feature = "k6"))]
export!(Init);

impl Engine {
    /// Sets up the runtime, the Web API layer and the app's module; `Err` is a message for
    /// the developer (syntax errors carry file and line).
    fn new(filename: &str, source: Vec<u8>) -> Result<Engine, String> {
        let runtime = Runtime::new().map_err(|e| e.to_string())?;
        // `import` resolves relative to the importing file, in the app's directory, which
        // `edge build` preopens read-only for initialization only.
        runtime.set_loader(
            FileResolver::default().with_pattern("{}.mjs"),
            ScriptLoader::default().with_extension("mjs"),
        );
        let context = Context::full(&runtime).map_err(|e| e.to_string())?;
        retain_shapes(&context);
        let (hooks, dispatch) = context.with(|ctx| -> Result<_, String> {
            install_natives(&ctx).map_err(|e| e.to_string())?;
            let hooks: Object = ctx
                .eval_with_options(WEB_JS, web_options())
                .catch(&ctx)
                .map_err(|e| format!("edge's web.js failed: {}", describe(e)))?;
            let module = Module::declare(ctx.clone(), filename, source)
                .catch(&ctx)
                .map_err(describe)?;
            let (module, done) = module.eval().catch(&ctx).map_err(describe)?;
            settle(&ctx, &hooks, done).map_err(|e| format!("{filename}: {e}"))?;
            let default: Value = module
                .get("default")
                .unwrap_or_else(|_| Value::new_undefined(ctx.clone()));
            let set_app: Function = hooks.get("setApp").map_err(|e| e.to_string())?;
            // The message says what is missing; edge's own stack would be noise.
            set_app
                .call::<_, ()>((default, filename))
                .catch(&ctx)
                .map_err(|e| match e {
                    CaughtError::Exception(e) => e.message().unwrap_or_default(),
                    other => describe(other),
                })?;
            let dispatch: Function = hooks.get("dispatch").map_err(|e| e.to_string())?;
            Ok((
                Persistent::save(&ctx, hooks),
                Persistent::save(&ctx, dispatch),
            ))
        })?;
        // Every module is in the snapshot now; the build's directory is not there at run
        // time, so a dynamic `import()` of something new gets an explanation instead.
        runtime.set_loader(BuildTimeOnly, BuildTimeOnly);
        seal_heap(&runtime, &context);
        Ok(Engine {
            runtime,
            context,
            hooks,
            dispatch,
        })
    }

    /// Runs the app's handler for one request; its URL and headers are read on demand
    /// (`native_url`, `native_headers`).
    fn handle(&self, method: String) {
        self.context.with(|ctx| {
            let outcome = (|| -> Result<(), String> {
                let dispatch = self
                    .dispatch
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| e.to_string())?;
                // A promise of what is left, or undefined when the response is out.
                let done: Value = dispatch.call((method,)).catch(&ctx).map_err(describe)?;
                match done.into_promise() {
                    Some(promise) => {
                        let hooks = self
                            .hooks
                            .clone()
                            .restore(&ctx)
                            .map_err(|e| e.to_string())?;
                        settle(&ctx, &hooks, promise)
                    }
                    None => {
                        while ctx.execute_pending_job() {}
                        Ok(())
                    }
                }
            })();
            if let Err(message) = outcome {
                log_error(&format!("Uncaught {message}\n"));
            }
        });
        let _ = &self.runtime;
    }
}

/// The loader after initialization: modules are resolved when the app is built.
struct BuildTimeOnly;

impl Resolver for BuildTimeOnly {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        Err(rquickjs::Error::new_resolving_message(
            base,
            name,
            "modules are resolved when the app is built: import it statically",
        ))
    }
}

impl Loader for BuildTimeOnly {
    fn load<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        Err(rquickjs::Error::new_loading_message(
            name,
            "modules are resolved when the app is built",
        ))
    }
}

fn web_options() -> rquickjs::context::EvalOptions {
    let mut options = rquickjs::context::EvalOptions::default();
    options.global = true;
    options.strict = true;
    options.filename = Some(String::from("edge:web.js"));
    options
}

/// Runs jobs and timers until `promise` settles. `Err` carries the rejection's message and
/// stack, or says nothing is left that could settle it.
fn settle<'js>(ctx: &Ctx<'js>, hooks: &Object<'js>, promise: Promise<'js>) -> Result<(), String> {
    loop {
        while ctx.execute_pending_job() {}
        match promise.state() {
            rquickjs::promise::PromiseState::Resolved => return Ok(()),
            rquickjs::promise::PromiseState::Rejected => {
                let reason = promise.result::<Value>().transpose().catch(ctx);
                return Err(match reason {
                    Ok(Some(value)) => describe(CaughtError::Value(value)),
                    Ok(None) => String::from("rejected"),
                    Err(e) => describe(e),
                });
            }
            rquickjs::promise::PromiseState::Pending => {}
        }
        let next_timer: Function = hooks.get("nextTimer").map_err(|e| e.to_string())?;
        let wait: Option<f64> = next_timer.call(()).map_err(|e| e.to_string())?;
        let Some(wait) = wait else {
            return Err(String::from(
                "the promise never settled: nothing is left to run (no pending timer or I/O)",
            ));
        };
        if wait > 0.0 {
            let nanos = (wait * 1e6) as u64;
            wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
        }
        let run_timers: Function = hooks.get("runTimers").map_err(|e| e.to_string())?;
        run_timers.call::<_, ()>(()).catch(ctx).map_err(describe)?;
    }
}

/// A caught JS error as "Name: message" followed by its stack.
fn describe(error: CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(e) => exception_text(&e),
        CaughtError::Value(value) => {
            if let Some(e) = value.as_exception() {
                return exception_text(e);
            }
            if let Some(s) = value.as_string().and_then(|s| s.to_string().ok()) {
                return s;
            }
            value
                .ctx()
                .json_stringify(value.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| format!("{:?}", value.type_of()))
        }
        CaughtError::Error(e) => e.to_string(),
    }
}

fn exception_text(e: &Exception<'_>) -> String {
    let name: Option<String> = e.get::<_, Option<String>>("name").ok().flatten();
    let message = e.message().unwrap_or_default();
    let mut text = match name {
        Some(name) if !name.is_empty() => format!("{name}: {message}"),
        _ => message,
    };
    if let Some(stack) = e.stack().filter(|s| !s.trim().is_empty()) {
        text.push('\n');
        text.push_str(stack.trim_end());
    }
    text
}

/// The `__edge` object `web.js` builds the Web APIs on.
fn install_natives(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let natives = Object::new(ctx.clone())?;
    natives.set("read", Function::new(ctx.clone(), native_read)?)?;
    natives.set("respond", Function::new(ctx.clone(), native_respond)?)?;
    natives.set("write", Function::new(ctx.clone(), native_write)?)?;
    natives.set("finish", Function::new(ctx.clone(), native_finish)?)?;
    natives.set("print", Function::new(ctx.clone(), native_print)?)?;
    natives.set("random", Function::new(ctx.clone(), native_random)?)?;
    natives.set("encode", Function::new(ctx.clone(), native_encode)?)?;
    natives.set("decode", Function::new(ctx.clone(), native_decode)?)?;
    natives.set("env", Function::new(ctx.clone(), native_env)?)?;
    natives.set("fetch", Function::new(ctx.clone(), outbound::native_fetch)?)?;
    natives.set("now", Function::new(ctx.clone(), native_now)?)?;
    natives.set("url", Function::new(ctx.clone(), native_url)?)?;
    natives.set("headers", Function::new(ctx.clone(), native_headers)?)?;
    #[cfg(not(feature = "k6"))]
    state::install(ctx, &natives)?;
    ctx.globals().set("__edge", natives)
}

/// Next chunk of the request body, `undefined` at its end.
fn native_read<'js>(ctx: Ctx<'js>) -> rquickjs::Result<Option<TypedArray<'js, u8>>> {
    let chunk = EXCHANGE.with(|cell| -> Result<Option<Vec<u8>>, String> {
        let mut exchange = cell.borrow_mut();
        if exchange.request_stream.is_none() {
            if exchange.body_taken {
                return Ok(None);
            }
            let body = match exchange.request.as_ref() {
                Some(request) => request.consume(),
                None => return Ok(None),
            };
            exchange.body_taken = true;
            let body = body.map_err(|()| String::from("the request body was already taken"))?;
            let stream = body
                .stream()
                .map_err(|()| String::from("the request body stream was already taken"))?;
            exchange.request_body = Some(body);
            exchange.request_stream = Some(stream);
        }
        let stream = exchange.request_stream.as_ref().expect("opened above");
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Ok(Some(bytes)),
                Err(StreamError::Closed) => {
                    exchange.request_stream = None;
                    exchange.request_body = None;
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!(
                        "reading the request body failed: {}",
                        e.to_debug_string()
                    ));
                }
            }
        }
    });
    match chunk {
        Ok(Some(bytes)) => Ok(Some(TypedArray::new(ctx, bytes)?)),
        Ok(None) => Ok(None),
        Err(message) => Err(Exception::throw_type(&ctx, &message)),
    }
}

/// Sends the response head: `headers` is `[name, value, name, value, …]`. With `body`, the
/// whole response: the body is written and finished in the same call (the common case of a
/// body in memory, one crossing instead of three); with `sized` as well, a `content-length`
/// is added unless the headers frame the body themselves.
fn native_respond<'js>(
    ctx: Ctx<'js>,
    status: u16,
    mut headers: Vec<String>,
    content: Opt<TypedArray<'js, u8>>,
    sized: Opt<bool>,
) -> rquickjs::Result<()> {
    // `sized`: the body is all in `content`; say its length unless the app said how the
    // body is framed (the names come lower-cased from Headers).
    if sized.0 == Some(true)
        && let Some(bytes) = &content.0
        && !headers
            .iter()
            .step_by(2)
            .any(|name| name == "content-length" || name == "transfer-encoding")
    {
        headers.push(String::from("content-length"));
        headers.push(bytes.len().to_string());
    }
    let fields = fields_from_flat(&headers).map_err(|m| Exception::throw_type(&ctx, &m))?;
    let response = OutgoingResponse::new(fields);
    response
        .set_status_code(status)
        .map_err(|()| Exception::throw_range(&ctx, &format!("invalid status {status}")))?;
    let body = response.body().expect("a new response's body is available");
    let stream = body.write().expect("a new body's stream is available");
    EXCHANGE.with(|cell| {
        let mut exchange = cell.borrow_mut();
        let Some(outparam) = exchange.outparam.take() else {
            return Err(Exception::throw_type(&ctx, "a response was already sent"));
        };
        ResponseOutparam::set(outparam, Ok(response));
        exchange.response_stream = Some(stream);
        exchange.response_body = Some(body);
        Ok(())
    })?;
    if let Some(bytes) = content.0 {
        // SAFETY: no JavaScript runs while the slice is alive.
        let bytes = unsafe { bytes.as_bytes() }.unwrap_or_default();
        EXCHANGE.with(|cell| {
            let exchange = cell.borrow();
            let stream = exchange.response_stream.as_ref().expect("opened above");
            write_all(stream, bytes)
        });
        native_finish();
    }
    Ok(())
}

/// Writes a chunk of the response body and flushes it, so streamed chunks go out as they
/// are produced.
fn native_write(ctx: Ctx<'_>, chunk: TypedArray<'_, u8>) -> rquickjs::Result<()> {
    // SAFETY: no JavaScript runs while the slice is alive.
    let bytes = unsafe { chunk.as_bytes() }.unwrap_or_default().to_vec();
    EXCHANGE.with(|cell| {
        let exchange = cell.borrow();
        let Some(stream) = exchange.response_stream.as_ref() else {
            return Err(Exception::throw_type(&ctx, "the response body is closed"));
        };
        if write_all(stream, &bytes) {
            Ok(())
        } else {
            Err(Exception::throw_type(&ctx, "the client went away"))
        }
    })
}

/// Ends the response body.
fn native_finish() {
    EXCHANGE.with(|cell| {
        let mut exchange = cell.borrow_mut();
        exchange.response_stream = None;
        if let Some(body) = exchange.response_body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    });
}

/// Writes text to stdout (`err` false) or stderr.
fn native_print(text: String, err: Opt<bool>) {
    if err.0.unwrap_or(false) {
        write_all(&wasip2::cli::stderr::get_stderr(), text.as_bytes());
    } else {
        write_all(&wasip2::cli::stdout::get_stdout(), text.as_bytes());
    }
}

/// `n` random bytes from the host.
fn native_random(ctx: Ctx<'_>, n: u32) -> rquickjs::Result<TypedArray<'_, u8>> {
    TypedArray::new(ctx, wasip2::random::random::get_random_bytes(u64::from(n)))
}

/// UTF-8 bytes of a string (lone surrogates become U+FFFD, as `TextEncoder` specifies).
fn native_encode<'js>(
    ctx: Ctx<'js>,
    text: rquickjs::String<'js>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let text = text.to_string()?;
    TypedArray::new(ctx, text.into_bytes())
}

/// Text of UTF-8 bytes; with `fatal`, invalid input throws instead of becoming U+FFFD.
fn native_decode<'js>(
    ctx: Ctx<'js>,
    bytes: TypedArray<'js, u8>,
    fatal: Opt<bool>,
) -> rquickjs::Result<rquickjs::String<'js>> {
    // SAFETY: the slice is copied or converted before any JavaScript runs.
    let raw = unsafe { bytes.as_bytes() }.unwrap_or_default();
    let text = if fatal.0.unwrap_or(false) {
        std::str::from_utf8(raw)
            .map_err(|e| {
                Exception::throw_type(&ctx, &format!("The encoded data was not valid utf-8: {e}"))
            })?
            .to_owned()
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    rquickjs::String::from_str(ctx, &text)
}

/// The app's environment variables (its manifest's `env`), read at request time.
fn native_env(ctx: Ctx<'_>) -> rquickjs::Result<Object<'_>> {
    let env = Object::new(ctx)?;
    for (key, value) in wasip2::cli::environment::get_environment() {
        env.set(key, value)?;
    }
    Ok(env)
}

/// The served request's URL, absolute (see [`request_url`]).
fn native_url(ctx: Ctx<'_>) -> rquickjs::Result<String> {
    EXCHANGE.with(|cell| match cell.borrow().request.as_ref() {
        Some(request) => Ok(request_url(request)),
        None => Err(Exception::throw_type(&ctx, "no request is being served")),
    })
}

/// The served request's headers, `[name, value, name, value, …]` in the order they came.
fn native_headers(ctx: Ctx<'_>) -> rquickjs::Result<Vec<String>> {
    EXCHANGE.with(|cell| match cell.borrow().request.as_ref() {
        Some(request) => {
            let mut flat = Vec::new();
            for (name, value) in request.headers().entries() {
                flat.push(name);
                flat.push(String::from_utf8_lossy(&value).into_owned());
            }
            Ok(flat)
        }
        None => Err(Exception::throw_type(&ctx, "no request is being served")),
    })
}

/// Milliseconds on the monotonic clock (for timers and `performance.now()`).
fn native_now() -> f64 {
    wasip2::clocks::monotonic_clock::now() as f64 / 1e6
}

pub(crate) fn fields_from_flat(flat: &[String]) -> Result<Fields, String> {
    let pairs: Vec<(String, Vec<u8>)> = flat
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone().into_bytes()))
        .collect();
    Fields::from_list(&pairs).map_err(|e| format!("invalid header: {e:?}"))
}

/// Writes all of `bytes`, waiting for the stream when it is full; `false` if it closed.
pub(crate) fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> bool {
    // Up to 4 KiB is one host call (the most `blocking-write-and-flush` takes).
    if bytes.len() <= 4096 {
        return stream.blocking_write_and_flush(bytes).is_ok();
    }
    while !bytes.is_empty() {
        let budget = match stream.check_write() {
            Ok(0) => {
                stream.subscribe().block();
                continue;
            }
            Ok(n) => n,
            Err(_) => return false,
        };
        let n = bytes.len().min(budget as usize);
        if stream.write(&bytes[..n]).is_err() {
            return false;
        }
        bytes = &bytes[n..];
    }
    stream.blocking_flush().is_ok()
}

fn log_error(text: &str) {
    write_all(&wasip2::cli::stderr::get_stderr(), text.as_bytes());
}

fn read_stdin() -> Vec<u8> {
    let stdin = wasip2::cli::stdin::get_stdin();
    let mut source = Vec::new();
    loop {
        match stdin.blocking_read(READ_CHUNK) {
            Ok(bytes) => source.extend_from_slice(&bytes),
            Err(_) => return source,
        }
    }
}

/// The request URL, absolute: scheme and authority from the request, `http` and
/// `localhost` when the host gave none.
fn request_url(request: &IncomingRequest) -> String {
    let scheme = match request.scheme() {
        Some(Scheme::Https) => String::from("https"),
        Some(Scheme::Other(other)) => other,
        _ => String::from("http"),
    };
    let authority = request
        .authority()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| String::from("localhost"));
    let path = request
        .path_with_query()
        .unwrap_or_else(|| String::from("/"));
    format!("{scheme}://{authority}{path}")
}

fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

struct Proxy;

#[cfg(not(feature = "k6"))]
impl wasip2::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, outparam: ResponseOutparam) {
        let method = method_name(request.method());
        EXCHANGE.with(|cell| {
            let mut exchange = cell.borrow_mut();
            exchange.request = Some(request);
            exchange.outparam = Some(outparam);
        });
        ENGINE.with(|cell| match cell.borrow().as_ref() {
            Some(engine) => engine.handle(method),
            None => log_error(
                "edge-js: this component was not initialized; build it with `edge build app.js`\n",
            ),
        });
        // Whatever the handler did, the client gets an answer and the body is closed.
        let outparam = EXCHANGE.with(|cell| {
            let mut exchange = cell.borrow_mut();
            exchange.response_stream = None;
            if let Some(body) = exchange.response_body.take() {
                let _ = OutgoingBody::finish(body, None);
            }
            exchange.outparam.take()
        });
        if let Some(outparam) = outparam {
            let response = OutgoingResponse::new(Fields::new());
            let _ = response.set_status_code(500);
            let body = response.body().expect("a new response's body is available");
            ResponseOutparam::set(outparam, Ok(response));
            let stream = body.write().expect("a new body's stream is available");
            write_all(&stream, b"Internal Server Error\n");
            drop(stream);
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

#[cfg(not(feature = "k6"))]
wasip2::http::proxy::export!(Proxy with_types_in wasip2);
