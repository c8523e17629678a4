//! The natives behind `env` in `fetch(request, env, ctx)`: the app's key-value stores
//! (`wasi:keyvalue`) and its config and secrets (`wasi:config`). `web.js` wraps them in
//! Cloudflare-style bindings (`env.KV.get(key, {type})`, `put`, `delete`, `list`).
//!
//! Stores are opened on first use and kept for the request (each request is a fresh
//! instance, so nothing outlives it). Nothing here runs at initialization: the host gives
//! no state to a component being pre-initialized.

use crate::wasi::config::store as config;
use crate::wasi::keyvalue::{atomics, store};
use rquickjs::{Ctx, Exception, Function, Object, TypedArray, Value};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static BUCKETS: RefCell<HashMap<String, store::Bucket>> = RefCell::new(HashMap::new());
}

/// Adds the state natives to `__edge`.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, natives: &Object<'js>) -> rquickjs::Result<()> {
    natives.set("kvGet", Function::new(ctx.clone(), kv_get)?)?;
    natives.set("kvSet", Function::new(ctx.clone(), kv_set)?)?;
    natives.set("kvDelete", Function::new(ctx.clone(), kv_delete)?)?;
    natives.set("kvList", Function::new(ctx.clone(), kv_list)?)?;
    natives.set("kvIncrement", Function::new(ctx.clone(), kv_increment)?)?;
    natives.set("config", Function::new(ctx.clone(), config_all)?)?;
    Ok(())
}

fn message(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store: declare it in the app's manifest \
            (`key_value_stores`)"
            .into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m.clone(),
    }
}

/// Runs `f` on the open store `name`, opening it first if needed; a failure becomes a JS
/// `Error` naming the operation.
fn with_bucket<R>(
    ctx: &Ctx<'_>,
    name: &str,
    op: &str,
    f: impl FnOnce(&store::Bucket) -> Result<R, store::Error>,
) -> rquickjs::Result<R> {
    let result = BUCKETS.with(|cell| {
        let mut buckets = cell.borrow_mut();
        if !buckets.contains_key(name) {
            let bucket = store::open(name)?;
            buckets.insert(name.to_string(), bucket);
        }
        f(&buckets[name])
    });
    result.map_err(|e| {
        Exception::throw_message(ctx, &format!("KV {op} in `{name}`: {}", message(&e)))
    })
}

fn kv_get<'js>(
    ctx: Ctx<'js>,
    name: String,
    key: String,
) -> rquickjs::Result<Option<TypedArray<'js, u8>>> {
    match with_bucket(&ctx, &name, "get", |b| b.get(&key))? {
        Some(bytes) => Ok(Some(TypedArray::new(ctx, bytes)?)),
        None => Ok(None),
    }
}

fn kv_set(
    ctx: Ctx<'_>,
    name: String,
    key: String,
    value: TypedArray<'_, u8>,
) -> rquickjs::Result<()> {
    // SAFETY: the bytes are copied before any JavaScript runs.
    let bytes = unsafe { value.as_bytes() }.unwrap_or_default().to_vec();
    with_bucket(&ctx, &name, "put", |b| b.set(&key, &bytes))
}

fn kv_delete(ctx: Ctx<'_>, name: String, key: String) -> rquickjs::Result<()> {
    with_bucket(&ctx, &name, "delete", |b| b.delete(&key))
}

/// One page of keys: `[cursor or -1, key, key, …]` (the host's cursor fits in an f64:
/// it is a row number).
fn kv_list(ctx: Ctx<'_>, name: String, cursor: f64) -> rquickjs::Result<Vec<Value<'_>>> {
    let cursor = (cursor >= 0.0).then_some(cursor as u64);
    let page = with_bucket(&ctx, &name, "list", |b| b.list_keys(cursor))?;
    let mut out = Vec::with_capacity(page.keys.len() + 1);
    out.push(Value::new_float(
        ctx.clone(),
        page.cursor.map_or(-1.0, |c| c as f64),
    ));
    for key in page.keys {
        out.push(rquickjs::String::from_str(ctx.clone(), &key)?.into_value());
    }
    Ok(out)
}

fn kv_increment(ctx: Ctx<'_>, name: String, key: String, delta: f64) -> rquickjs::Result<f64> {
    if !(delta >= 0.0 && delta.fract() == 0.0 && delta <= 9_007_199_254_740_991.0) {
        return Err(Exception::throw_range(
            &ctx,
            "KV increment: the delta must be a non-negative safe integer",
        ));
    }
    let value = with_bucket(&ctx, &name, "increment", |b| {
        atomics::increment(b, &key, delta as u64)
    })?;
    Ok(value as f64)
}

/// The app's config and secrets as `[key, value, key, value, …]`.
fn config_all(ctx: Ctx<'_>) -> rquickjs::Result<Vec<String>> {
    match config::get_all() {
        Ok(pairs) => Ok(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Err(e) => Err(Exception::throw_message(
            &ctx,
            &format!("reading the app's config failed: {e:?}"),
        )),
    }
}
