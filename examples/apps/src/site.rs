//! `site`: a static site, the kind of server the Rust-vs-Go k6 comparisons measure. Pages
//! and assets of realistic sizes are embedded at build time with strong ETags (so a
//! revalidation is a `304` without a body), and a redirect table maps old URLs to new.

use crate::{Reply, Request};

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    /// `Cache-Control`: pages revalidate, assets are cached.
    cache: &'static str,
    body: &'static [u8],
    etag: [u8; 18],
}

/// FNV-1a, 64 bits: computed at compile time, so ETags cost nothing per request.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"<16 hex digits>"`, quotes included.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal, $cache:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../assets/", $file));
        Asset {
            path: $path,
            content_type: $type,
            cache: $cache,
            body: BODY,
            etag: etag(BODY),
        }
    }};
}

static ASSETS: [Asset; 6] = [
    asset!("/", "index.html", "text/html; charset=utf-8", "no-cache"),
    asset!(
        "/about",
        "about.html",
        "text/html; charset=utf-8",
        "no-cache"
    ),
    asset!(
        "/assets/style.css",
        "style.css",
        "text/css; charset=utf-8",
        "public, max-age=31536000, immutable"
    ),
    asset!(
        "/assets/app.js",
        "app.js",
        "text/javascript; charset=utf-8",
        "public, max-age=31536000, immutable"
    ),
    asset!(
        "/assets/logo.svg",
        "logo.svg",
        "image/svg+xml",
        "public, max-age=31536000, immutable"
    ),
    asset!(
        "/notes",
        "sample.md",
        "text/markdown; charset=utf-8",
        "no-cache"
    ),
];

/// Old URL → (status, new URL).
static REDIRECTS: [(&str, u16, &str); 6] = [
    ("/index.html", 301, "/"),
    ("/home", 301, "/"),
    ("/about.html", 301, "/about"),
    ("/css/style.css", 301, "/assets/style.css"),
    ("/blog", 302, "/notes"),
    ("/latest", 307, "/notes"),
];

/// Serves a page, an asset, a redirect, a `304`, or a `404`.
pub fn handle(request: &Request<'_>) -> Reply {
    if request.method != "GET" && request.method != "HEAD" {
        return Reply::new(
            405,
            "text/plain; charset=utf-8",
            &b"method not allowed\n"[..],
        )
        .header("allow", "GET, HEAD");
    }
    if let Some((_, status, to)) = REDIRECTS.iter().find(|(from, _, _)| *from == request.path) {
        return Reply::new(*status, "text/plain; charset=utf-8", &b""[..]).header("location", *to);
    }
    let Some(asset) = ASSETS.iter().find(|a| a.path == request.path) else {
        return Reply::new(
            404,
            "text/html; charset=utf-8",
            &b"<!doctype html><title>Not found</title><h1>Not found</h1>\n"[..],
        );
    };
    let etag = std::str::from_utf8(&asset.etag).expect("hex");
    let fresh = request
        .if_none_match
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let reply = if fresh {
        Reply::new(304, asset.content_type, &b""[..])
    } else if request.method == "HEAD" {
        Reply::new(200, asset.content_type, &b""[..])
    } else {
        Reply::new(200, asset.content_type, asset.body)
    };
    reply
        .header("etag", etag.to_owned())
        .header("cache-control", asset.cache)
}
