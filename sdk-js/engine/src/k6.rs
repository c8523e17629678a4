//! loadrig's JavaScript virtual user: the same engine, built with the `k6` feature, as a
//! component of the `loadrig:scenario/vu-js` world (`loadrig/wit/scenario.wit`).
//!
//! `loadrig run script.js` runs `wizer-initialize` once with the script on stdin and its
//! name in `LOADRIG_JS_FILENAME`: web.js, then k6's API layer (`js/k6.js`), then the
//! script's module and everything it imports (resolved in the script's directory, which
//! loadrig preopens read-only for this step only) are evaluated — k6's init context — and
//! Wizer snapshots the heap. Every VU is an instance of that snapshot: the script's globals
//! live in the instance and persist across the VU's iterations, as in k6.

use std::cell::RefCell;
use std::collections::HashMap;

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::{
    Array, CatchResultExt, Context, Ctx, Exception, Function, IntoJs, Module, Object, Persistent,
    Runtime, TypedArray, Value,
};

use crate::{
    BuildTimeOnly, WEB_JS, describe, install_natives, read_stdin, settle, web_options, write_all,
};

wit_bindgen::generate!({
    path: "../../loadrig/wit",
    world: "loadrig:scenario/vu-js",
    // Imports borrow their arguments: a request's strings go to the host without a copy.
    ownership: Borrowing { duplicate_if_necessary: false },
});

use loadrig::scenario::{host, ws};

mod request;

/// k6's API layer, evaluated at initialization (so it is part of the snapshot).
const K6_JS: &str = include_str!("../../js/k6.js");

/// The engine of one VU: built by `wizer-initialize`, kept in the snapshot.
struct K6 {
    runtime: Runtime,
    context: Context,
    /// web.js's hooks (the event loop).
    web: Persistent<Object<'static>>,
    /// k6.js's lifecycle hooks.
    hooks: Persistent<Object<'static>>,
    /// Its `iteration` hook: what an iteration calls, and with what.
    iterate: Persistent<Function<'static>>,
    /// `options`, as JSON, read when the script ran.
    options: String,
    /// What the last iteration called: the same for every iteration of a scenario, so
    /// the hook runs only when `exec` or the setup data change.
    last: RefCell<Option<Call>>,
}

/// An iteration's call, as k6.js's `iteration` hook prepared it.
struct Call {
    exec: String,
    data: String,
    /// The script's exported function.
    function: Persistent<Function<'static>>,
    /// Its argument: the setup data, parsed.
    argument: Persistent<Value<'static>>,
}

thread_local! {
    static VU: RefCell<Option<K6>> = const { RefCell::new(None) };
    /// The source of each built-in module (`k6/http`, …), for the loader.
    static BUILTINS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

struct Vu;

/// Files `handleSummary` returns: `(name, content)`.
type Files = Vec<(String, Vec<u8>)>;

impl Guest for Vu {
    fn wizer_initialize() {
        if VU.with(|v| v.borrow().is_some()) {
            return;
        }
        let filename =
            std::env::var("LOADRIG_JS_FILENAME").unwrap_or_else(|_| String::from("script.js"));
        let source = read_stdin();
        match K6::new(&filename, source) {
            Ok(vu) => VU.with(|v| *v.borrow_mut() = Some(vu)),
            Err(message) => {
                write_all(&wasip2::cli::stderr::get_stderr(), message.as_bytes());
                std::process::abort();
            }
        }
    }

    fn options() -> String {
        VU.with(|v| v.borrow().as_ref().map(|vu| vu.options.clone()))
            .unwrap_or_else(|| String::from("{}"))
    }

    fn setup() -> Result<String, String> {
        with_vu(|vu| vu.call("setup", |_| Ok(())))
    }

    fn iteration(exec: String, data: String) -> Result<(), String> {
        with_vu(|vu| vu.iterate(exec, data))
    }

    fn teardown(data: String) -> Result<(), String> {
        with_vu(|vu| vu.call("teardown", |args| args.push(data)).map(|_| ()))
    }

    fn handle_summary(summary: String) -> Result<Option<Files>, String> {
        with_vu(|vu| vu.handle_summary(summary))
    }
}

export!(Vu);

fn with_vu<T>(f: impl FnOnce(&K6) -> Result<T, String>) -> Result<T, String> {
    VU.with(|v| match v.borrow().as_ref() {
        Some(vu) => f(vu),
        None => Err(String::from(
            "this VU engine was not initialized with a script (loadrig builds it from script.js)",
        )),
    })
}

/// Arguments collected for a hook call.
struct Args(Vec<String>);

impl Args {
    fn push(&mut self, s: String) -> Result<(), String> {
        self.0.push(s);
        Ok(())
    }
}

impl K6 {
    fn new(filename: &str, source: Vec<u8>) -> Result<K6, String> {
        let runtime = Runtime::new().map_err(|e| e.to_string())?;
        runtime.set_loader(ScriptModules, ScriptModules);
        let context = Context::full(&runtime).map_err(|e| e.to_string())?;
        super::retain_shapes(&context);
        let (web, hooks, iterate, options) = context.with(|ctx| -> Result<_, String> {
            install_natives(&ctx).map_err(|e| e.to_string())?;
            let web: Object = ctx
                .eval_with_options(WEB_JS, web_options())
                .catch(&ctx)
                .map_err(|e| format!("web.js failed: {}", describe(e)))?;
            install_k6_natives(&ctx).map_err(|e| e.to_string())?;
            let mut options = web_options();
            options.filename = Some(String::from("loadrig:k6.js"));
            let hooks: Object = ctx
                .eval_with_options(K6_JS, options)
                .catch(&ctx)
                .map_err(|e| format!("k6.js failed: {}", describe(e)))?;
            let modules: Object = hooks.get("modules").map_err(|e| e.to_string())?;
            let source_of: Function = hooks.get("moduleSource").map_err(|e| e.to_string())?;
            for name in modules.keys::<String>() {
                let name = name.map_err(|e| e.to_string())?;
                let src: String = source_of.call((name.clone(),)).map_err(|e| e.to_string())?;
                BUILTINS.with(|b| b.borrow_mut().insert(name, src));
            }
            let module = Module::declare(ctx.clone(), filename, source)
                .catch(&ctx)
                .map_err(describe)?;
            let (module, done) = module.eval().catch(&ctx).map_err(describe)?;
            settle(&ctx, &web, done).map_err(|e| format!("{filename}: {e}"))?;
            let ns = module.namespace().map_err(|e| e.to_string())?;
            let set: Function = hooks.get("setModule").map_err(|e| e.to_string())?;
            let options: String = set
                .call((ns,))
                .catch(&ctx)
                .map_err(|e| format!("{filename}: reading `options`: {}", describe(e)))?;
            let iterate: Function = hooks.get("iteration").map_err(|e| e.to_string())?;
            Ok((
                Persistent::save(&ctx, web),
                Persistent::save(&ctx, hooks),
                Persistent::save(&ctx, iterate),
                options,
            ))
        })?;
        // Every module is in the snapshot now; the script's directory is not there when the
        // VUs run, so a dynamic `import()` of something new gets an explanation instead.
        runtime.set_loader(BuildTimeOnly, BuildTimeOnly);
        super::seal_heap(&runtime, &context);
        Ok(K6 {
            runtime,
            context,
            web,
            hooks,
            iterate,
            options,
            last: RefCell::new(None),
        })
    }

    /// Calls a k6.js lifecycle hook with string arguments and waits for its promise, if it
    /// returns one; the result as a string ("" for anything else).
    fn call(
        &self,
        hook: &str,
        args: impl FnOnce(&mut Args) -> Result<(), String>,
    ) -> Result<String, String> {
        let mut a = Args(Vec::new());
        args(&mut a)?;
        self.context.with(|ctx| {
            let (web, hooks) = self.restore(&ctx)?;
            let f: Function = hooks.get(hook).map_err(|e| e.to_string())?;
            let value: Value = match a.0.len() {
                0 => f.call(()),
                1 => f.call((a.0[0].clone(),)),
                _ => f.call((a.0[0].clone(), a.0[1].clone())),
            }
            .catch(&ctx)
            .map_err(describe)?;
            let value = resolve(&ctx, &web, value)?;
            Ok(value
                .as_string()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_default())
        })
    }

    /// One iteration: the script's function for `exec` called with the setup data, both
    /// from k6.js's `iteration` hook (which checks them) the first time, then kept.
    fn iterate(&self, exec: String, data: String) -> Result<(), String> {
        self.context.with(|ctx| {
            let fresh = !self
                .last
                .borrow()
                .as_ref()
                .is_some_and(|c| c.exec == exec && c.data == data);
            if fresh {
                let hook = self
                    .iterate
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| e.to_string())?;
                let pair: Array = hook
                    .call((exec.as_str(), data.as_str()))
                    .catch(&ctx)
                    .map_err(describe)?;
                let function: Function = pair.get(0).map_err(|e| e.to_string())?;
                let argument: Value = pair.get(1).map_err(|e| e.to_string())?;
                *self.last.borrow_mut() = Some(Call {
                    exec,
                    data,
                    function: Persistent::save(&ctx, function),
                    argument: Persistent::save(&ctx, argument),
                });
            }
            let (function, argument) = {
                let last = self.last.borrow();
                let call = last.as_ref().expect("set above");
                (call.function.clone(), call.argument.clone())
            };
            let function = function.restore(&ctx).map_err(|e| e.to_string())?;
            let argument = argument.restore(&ctx).map_err(|e| e.to_string())?;
            let value: Value = function.call((argument,)).catch(&ctx).map_err(describe)?;
            if value.is_promise() {
                let web = self.web.clone().restore(&ctx).map_err(|e| e.to_string())?;
                resolve(&ctx, &web, value)?;
            }
            Ok(())
        })
    }

    fn handle_summary(&self, summary: String) -> Result<Option<Files>, String> {
        self.context.with(|ctx| {
            let (web, hooks) = self.restore(&ctx)?;
            let f: Function = hooks.get("handleSummary").map_err(|e| e.to_string())?;
            let value: Value = f.call((summary,)).catch(&ctx).map_err(describe)?;
            let value = resolve(&ctx, &web, value)?;
            if value.is_null() || value.is_undefined() {
                return Ok(None);
            }
            let flat: Array = value
                .into_array()
                .ok_or_else(|| String::from("handleSummary() must return an object of files"))?;
            let mut files = Vec::new();
            let mut i = 0;
            while i + 1 < flat.len() {
                let name: String = flat.get(i).map_err(|e| e.to_string())?;
                let bytes: TypedArray<u8> = flat.get(i + 1).map_err(|e| e.to_string())?;
                // SAFETY: copied before any JavaScript runs.
                let content = unsafe { bytes.as_bytes() }.unwrap_or_default().to_vec();
                files.push((name, content));
                i += 2;
            }
            Ok(Some(files))
        })
    }

    fn restore<'js>(&self, ctx: &Ctx<'js>) -> Result<(Object<'js>, Object<'js>), String> {
        let _ = &self.runtime;
        let web = self.web.clone().restore(ctx).map_err(|e| e.to_string())?;
        let hooks = self.hooks.clone().restore(ctx).map_err(|e| e.to_string())?;
        Ok((web, hooks))
    }
}

/// Waits for `value` if it is a promise; its settled value, or the rejection's message.
fn resolve<'js>(
    ctx: &Ctx<'js>,
    web: &Object<'js>,
    value: Value<'js>,
) -> Result<Value<'js>, String> {
    let Some(promise) = value.as_promise().cloned() else {
        return Ok(value);
    };
    settle(ctx, web, promise.clone())?;
    promise
        .result::<Value>()
        .transpose()
        .catch(ctx)
        .map_err(describe)
        .map(|v| v.unwrap_or_else(|| Value::new_undefined(ctx.clone())))
}

/// Resolves and loads the script's modules at initialization: k6's built-in modules, the
/// two jslib stand-ins, and files relative to the importing module. Nothing is fetched.
struct ScriptModules;

const JSLIB: &str = "https://jslib.k6.io/";

impl Resolver for ScriptModules {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        let fail = |why: String| Err(rquickjs::Error::new_resolving_message(base, name, why));
        if name == "k6" || name.starts_with("k6/") {
            if BUILTINS.with(|b| b.borrow().contains_key(name)) {
                return Ok(name.to_owned());
            }
            let mut known: Vec<String> = BUILTINS.with(|b| {
                b.borrow()
                    .keys()
                    .filter(|k| k.starts_with("k6"))
                    .cloned()
                    .collect()
            });
            known.sort();
            return fail(format!(
                "module `{name}` is not supported by loadrig (supported: {})",
                known.join(", ")
            ));
        }
        if let Some(rest) = name.strip_prefix(JSLIB) {
            if rest.starts_with("k6-summary/") {
                return Ok(String::from("jslib:k6-summary"));
            }
            if rest.starts_with("k6-utils/") {
                return Ok(String::from("jslib:k6-utils"));
            }
        }
        if name.starts_with("http://") || name.starts_with("https://") {
            return fail(String::from(
                "remote modules are not fetched (a load test runs offline): save it next to the script and import it by a relative path; only jslib's k6-summary and k6-utils have built-in stand-ins",
            ));
        }
        if !(name.starts_with("./") || name.starts_with("../") || name.starts_with('/')) {
            return fail(String::from(
                "loadrig resolves `k6/…` modules, jslib's k6-summary and k6-utils, and relative paths (`./lib.js`)",
            ));
        }
        Ok(join(base, name))
    }
}

/// `name` relative to the directory of `base`, normalized, without a leading `/`.
fn join(base: &str, name: &str) -> String {
    let mut parts: Vec<&str> = if name.starts_with('/') {
        Vec::new()
    } else {
        let mut b: Vec<&str> = base.split('/').collect();
        b.pop();
        b
    };
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.retain(|p| !p.is_empty() && *p != ".");
    parts.join("/")
}

impl Loader for ScriptModules {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if let Some(src) = BUILTINS.with(|b| b.borrow().get(name).cloned()) {
            return Module::declare(ctx.clone(), name, src);
        }
        let source = std::fs::read(format!("/{name}")).map_err(|e| {
            rquickjs::Error::new_loading_message(name, format!("cannot read `{name}`: {e}"))
        })?;
        Module::declare(ctx.clone(), name, source)
    }
}

/// `__k6native`: what k6.js builds the API on.
fn install_k6_natives(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let n = Object::new(ctx.clone())?;
    n.set("context", Function::new(ctx.clone(), native_context)?)?;
    n.set("env", Function::new(ctx.clone(), native_env)?)?;
    n.set("check", Function::new(ctx.clone(), native_check)?)?;
    n.set("add", Function::new(ctx.clone(), native_add)?)?;
    n.set(
        "groupEnter",
        Function::new(ctx.clone(), |name: String| host::group_enter(&name))?,
    )?;
    n.set("groupLeave", Function::new(ctx.clone(), host::group_leave)?)?;
    n.set("sleep", Function::new(ctx.clone(), host::sleep)?)?;
    n.set(
        "abort",
        Function::new(ctx.clone(), |reason: String| host::abort(&reason))?,
    )?;
    // SAFETY: a C function of this context, with the signature QuickJS calls.
    let http = unsafe {
        Value::from_raw(
            ctx.clone(),
            rquickjs::qjs::JS_NewCFunction2(
                ctx.as_raw().as_ptr(),
                Some(request::http),
                c"http".as_ptr(),
                6,
                rquickjs::qjs::JSCFunctionEnum_JS_CFUNC_generic,
                0,
            ),
        )
    };
    n.set("http", http)?;
    n.set("wsOpen", Function::new(ctx.clone(), native_ws_open)?)?;
    n.set("wsSend", Function::new(ctx.clone(), native_ws_send)?)?;
    n.set(
        "wsPing",
        Function::new(ctx.clone(), |h: u32| ws::ping(h).err())?,
    )?;
    n.set(
        "wsClose",
        Function::new(ctx.clone(), |h: u32, code: u16| ws::close(h, code))?,
    )?;
    n.set("wsDiscard", Function::new(ctx.clone(), ws::discard)?)?;
    n.set("wsNext", Function::new(ctx.clone(), native_ws_next)?)?;
    n.set("digest", Function::new(ctx.clone(), native_digest)?)?;
    n.set("hmac", Function::new(ctx.clone(), native_hmac)?)?;
    n.set("readFile", Function::new(ctx.clone(), native_read_file)?)?;
    ctx.globals().set("__k6native", n)
}

fn pairs(flat: &[String]) -> Vec<(&str, &str)> {
    flat.chunks_exact(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect()
}

fn native_context(ctx: Ctx<'_>) -> rquickjs::Result<Object<'_>> {
    let c = host::context();
    let o = Object::new(ctx)?;
    o.set("vu", c.vu)?;
    o.set("iteration", c.iteration as f64)?;
    o.set("scenario", c.scenario)?;
    o.set("iterationInScenario", c.iteration_in_scenario as f64)?;
    Ok(o)
}

fn native_env(ctx: Ctx<'_>) -> rquickjs::Result<Object<'_>> {
    let env = Object::new(ctx)?;
    for (key, value) in wasip2::cli::environment::get_environment() {
        env.set(key, value)?;
    }
    Ok(env)
}

fn native_check(name: String, ok: bool, tags: Vec<String>) {
    host::check(&name, ok, &pairs(&tags));
}

fn native_add(
    name: String,
    kind: String,
    is_time: bool,
    value: f64,
    tags: Vec<String>,
) -> Option<String> {
    let kind = match kind.as_str() {
        "counter" => host::MetricKind::Counter,
        "gauge" => host::MetricKind::Gauge,
        "rate" => host::MetricKind::Rate,
        _ => host::MetricKind::Trend,
    };
    host::add(&name, kind, is_time, value, &pairs(&tags)).err()
}

/// `wsOpen(url, headers, tags, timeout_ms)`: `[handle, status, headers]`, or
/// `[0, status, error]` when the session did not open (headers and tags NUL-packed).
fn native_ws_open<'js>(
    ctx: Ctx<'js>,
    url: String,
    headers: String,
    tags: String,
    timeout_ms: f64,
) -> rquickjs::Result<Array<'js>> {
    let out = Array::new(ctx)?;
    match ws::open(&url, &headers, &tags, timeout_ms.max(1.0)) {
        Ok(o) => {
            out.set(0, o.handle)?;
            out.set(1, o.status)?;
            out.set(2, o.headers)?;
        }
        Err(r) => {
            out.set(0, 0)?;
            out.set(1, r.status)?;
            out.set(2, r.error)?;
        }
    }
    Ok(out)
}

/// `wsSend(handle, bytes, binary)`: the error, if the message could not be sent.
fn native_ws_send(handle: u32, data: TypedArray<'_, u8>, binary: bool) -> Option<String> {
    // SAFETY: copied before any JavaScript runs.
    let bytes = unsafe { data.as_bytes() }.unwrap_or_default().to_vec();
    ws::send(handle, &bytes, binary).err()
}

/// `wsNext(handle, timeout_ms)`: `[kind, data]`, kind the index in k6.js's `WS_EVENTS`
/// (0 timeout, 1 text, 2 binary, 3 ping, 4 pong, 5 close with its code, 6 error).
fn native_ws_next<'js>(
    ctx: Ctx<'js>,
    handle: u32,
    timeout_ms: f64,
) -> rquickjs::Result<Array<'js>> {
    let out = Array::new(ctx.clone())?;
    let null = Value::new_null(ctx.clone());
    match ws::next(handle, timeout_ms) {
        ws::Event::Timeout => (out.set(0, 0)?, out.set(1, null)?),
        ws::Event::Text(t) => (out.set(0, 1)?, out.set(1, t)?),
        ws::Event::Binary(b) => (out.set(0, 2)?, out.set(1, TypedArray::<u8>::new(ctx, b)?)?),
        ws::Event::Ping => (out.set(0, 3)?, out.set(1, null)?),
        ws::Event::Pong => (out.set(0, 4)?, out.set(1, null)?),
        ws::Event::Close(code) => (out.set(0, 5)?, out.set(1, code)?),
        ws::Event::Error(e) => (out.set(0, 6)?, out.set(1, e)?),
    };
    Ok(out)
}

/// Whether headers packed `name\0value\0…` (names in lower case) hold a Set-Cookie: a
/// plain loop over the names (what `str::split` costs per part shows in profiles).
fn has_set_cookie(packed: &[u8]) -> bool {
    let mut name = 0;
    while name < packed.len() {
        let Some(len) = packed[name..].iter().position(|&b| b == 0) else {
            return false;
        };
        if &packed[name..name + len] == b"set-cookie" {
            return true;
        }
        let value = name + len + 1;
        match packed[value..].iter().position(|&b| b == 0) {
            Some(v) => name = value + v + 1,
            None => return false,
        }
    }
    false
}

fn digest_of(algo: &str, data: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest as _;
    Some(match algo {
        "md5" => md5::Md5::digest(data).to_vec(),
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        "sha512_224" => sha2::Sha512_224::digest(data).to_vec(),
        "sha512_256" => sha2::Sha512_256::digest(data).to_vec(),
        _ => return None,
    })
}

fn native_digest<'js>(
    ctx: Ctx<'js>,
    algo: String,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    // SAFETY: no JavaScript runs while the slice is alive.
    let bytes = unsafe { data.as_bytes() }.unwrap_or_default();
    match digest_of(&algo, bytes) {
        Some(d) => TypedArray::new(ctx, d),
        None => Err(Exception::throw_type(
            &ctx,
            &format!("hash algorithm {algo} is not supported"),
        )),
    }
}

fn native_hmac<'js>(
    ctx: Ctx<'js>,
    algo: String,
    key: TypedArray<'js, u8>,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    use hmac::{Hmac, Mac};
    // SAFETY: no JavaScript runs while the slices are alive.
    let key = unsafe { key.as_bytes() }.unwrap_or_default();
    let data = unsafe { data.as_bytes() }.unwrap_or_default();
    macro_rules! mac {
        ($d:ty) => {{
            let mut m = <Hmac<$d>>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }};
    }
    let out = match algo.as_str() {
        "md5" => mac!(md5::Md5),
        "sha1" => mac!(sha1::Sha1),
        "sha256" => mac!(sha2::Sha256),
        "sha384" => mac!(sha2::Sha384),
        "sha512" => mac!(sha2::Sha512),
        "sha512_224" => mac!(sha2::Sha512_224),
        "sha512_256" => mac!(sha2::Sha512_256),
        other => {
            return Err(Exception::throw_type(
                &ctx,
                &format!("hash algorithm {other} is not supported"),
            ));
        }
    };
    TypedArray::new(ctx, out)
}

/// `open()`'s native half: a file of the script's directory, read at initialization.
fn native_read_file<'js>(ctx: Ctx<'js>, path: String) -> rquickjs::Result<TypedArray<'js, u8>> {
    let rel = join("", &path);
    match std::fs::read(format!("/{rel}")) {
        Ok(bytes) => TypedArray::new(ctx, bytes),
        Err(e) => Err(Exception::throw_type(
            &ctx,
            &format!("open(\"{path}\"): {e} (paths are relative to the script's directory)"),
        )),
    }
}
