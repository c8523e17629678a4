//! k6.js's `__k6native.http`, the call every request of a k6 script makes: a raw QuickJS
//! function. Through rquickjs's argument conversion (a context clone per value, a Rust
//! `String` per string argument, a `Value` per element of the answer) it cost a fifth of
//! the engine's time per request; here the strings are borrowed from QuickJS and the answer
//! is made in one `JS_NewArrayFrom`.

use std::borrow::Cow;
use std::ffi::c_int;

use rquickjs::qjs::{self, JSContext, JSValue};

use super::loadrig::scenario::http;

/// `http("METHOD\0scheme\0authority\0path", headers, body?, tags, timeout_ms, mode)`, with
/// `headers` and `tags` alternating names and values, NUL-separated, and `body` a
/// `Uint8Array` or `undefined`. `mode` is what to do with the response body: 0 drop it, 1
/// decode it as UTF-8 text, 2 hand over its bytes. Returns `[status, headers, body,
/// blocked, connecting, tls_handshaking, sending, waiting, receiving, duration,
/// set_cookie]` (headers packed the same way; `set_cookie` whether they hold one; an array,
/// so that no property names are looked up), or `[0, error]` when there was no response.
///
/// # Safety
///
/// QuickJS calls it with `argc` values at `argv`, as for any C function of `ctx`.
pub unsafe extern "C" fn http(
    ctx: *mut JSContext,
    _this: JSValue,
    argc: c_int,
    argv: *mut JSValue,
) -> JSValue {
    if argc < 6 || argv.is_null() {
        return unsafe { qjs::JS_ThrowTypeError(ctx, c"http() takes 6 arguments".as_ptr()) };
    }
    // SAFETY: QuickJS passes `argc` live values.
    let args = unsafe { std::slice::from_raw_parts(argv, argc as usize) };
    let (Some(head), Some(headers), Some(tags)) = (
        Borrowed::of(ctx, args[0]),
        Borrowed::of(ctx, args[1]),
        Borrowed::of(ctx, args[3]),
    ) else {
        return qjs::JS_EXCEPTION;
    };
    let body: &[u8] = if unsafe { qjs::JS_IsUndefined(args[2]) || qjs::JS_IsNull(args[2]) } {
        &[]
    } else {
        let mut len = 0;
        // SAFETY: the bytes are read by the host call below, before any JavaScript runs
        // that could detach or resize the array.
        let p = unsafe { qjs::JS_GetUint8Array(ctx, &mut len, args[2]) };
        if p.is_null() {
            return qjs::JS_EXCEPTION;
        }
        unsafe { std::slice::from_raw_parts(p, len as usize) }
    };
    let (mut timeout_ms, mut mode) = (0f64, 0i32);
    if unsafe {
        qjs::JS_ToFloat64(ctx, &mut timeout_ms, args[4]) < 0
            || qjs::JS_ToInt32(ctx, &mut mode, args[5]) < 0
    } {
        return qjs::JS_EXCEPTION;
    }
    let head = head.text();
    let (method, rest) = head.split_once('\0').unwrap_or((&head, ""));
    let (scheme, rest) = rest.split_once('\0').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('\0').unwrap_or((rest, ""));
    let sent = http::send(http::Request {
        method,
        scheme,
        authority,
        path,
        headers: &headers.text(),
        body,
        tags: &tags.text(),
        timeout_ms: timeout_ms.max(1.0),
    });
    // SAFETY (all below): values made in `ctx`, each owned once, handed to the array.
    let values: Vec<JSValue> = match sent {
        Ok(r) => {
            let body = match mode {
                1 => string(ctx, &utf8(&r.body)),
                2 => unsafe { qjs::JS_NewUint8ArrayCopy(ctx, r.body.as_ptr(), r.body.len() as _) },
                _ => qjs::JS_NULL,
            };
            let t = r.timings;
            let cookie = if super::has_set_cookie(r.headers.as_bytes()) {
                qjs::JS_TRUE
            } else {
                qjs::JS_FALSE
            };
            vec![
                qjs::JS_NewFloat64(f64::from(r.status)),
                string(ctx, &r.headers),
                body,
                qjs::JS_NewFloat64(t.blocked),
                qjs::JS_NewFloat64(t.connecting),
                qjs::JS_NewFloat64(t.tls_handshaking),
                qjs::JS_NewFloat64(t.sending),
                qjs::JS_NewFloat64(t.waiting),
                qjs::JS_NewFloat64(t.receiving),
                qjs::JS_NewFloat64(t.duration),
                cookie,
            ]
        }
        Err(message) => vec![qjs::JS_NewFloat64(0.0), string(ctx, &message)],
    };
    if values.iter().any(|&v| unsafe { qjs::JS_IsException(v) }) {
        for v in values {
            unsafe { qjs::JS_FreeValue(ctx, v) };
        }
        return qjs::JS_EXCEPTION;
    }
    // JS_NewArrayFrom takes the values over (and frees them itself if it fails).
    unsafe { qjs::JS_NewArrayFrom(ctx, values.len() as c_int, values.as_ptr()) }
}

/// `bytes` as text, invalid sequences replaced: checked first with `from_utf8`, which is
/// faster than `from_utf8_lossy`'s chunking when the text is valid, as it nearly always is.
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn string(ctx: *mut JSContext, s: &str) -> JSValue {
    unsafe { qjs::JS_NewStringLen(ctx, s.as_ptr().cast(), s.len() as _) }
}

/// A JavaScript value's UTF-8 text, borrowed from QuickJS until dropped.
struct Borrowed {
    ctx: *mut JSContext,
    ptr: *const std::ffi::c_char,
    len: usize,
}

impl Borrowed {
    /// `None` with an exception pending when the value has no string form.
    fn of(ctx: *mut JSContext, v: JSValue) -> Option<Borrowed> {
        let mut len = 0;
        let ptr = unsafe { qjs::JS_ToCStringLen2(ctx, &mut len, v, false) };
        (!ptr.is_null()).then_some(Borrowed {
            ctx,
            ptr,
            len: len as usize,
        })
    }

    /// The text; QuickJS's UTF-8 is checked, not trusted (a lone surrogate is replaced).
    fn text(&self) -> Cow<'_, str> {
        // SAFETY: QuickJS keeps `len` bytes at `ptr` until JS_FreeCString.
        utf8(unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) })
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        unsafe { qjs::JS_FreeCString(self.ctx, self.ptr) };
    }
}
