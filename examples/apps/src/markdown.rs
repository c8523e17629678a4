//! `markdown`: a CPU-heavy handler. `POST` a Markdown document, get it back as HTML;
//! `GET` renders the embedded sample (6 KB of release notes with lists, code, tables).

use crate::{Reply, Request};

/// The sample document (also what `loadrig compare` posts).
pub const SAMPLE: &[u8] = include_bytes!("../assets/sample.md");

/// Renders Markdown (CommonMark plus tables, strikethrough and task lists) to HTML.
pub fn render(markdown: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(markdown, options));
    out
}

/// Renders the posted document (or the sample on `GET`).
pub fn handle(request: &Request<'_>) -> Reply {
    let source = match request.method {
        "POST" | "PUT" => request.body,
        "GET" | "HEAD" => SAMPLE,
        _ => {
            return Reply::new(
                405,
                "text/plain; charset=utf-8",
                &b"use POST with a Markdown body\n"[..],
            )
            .header("allow", "GET, HEAD, POST");
        }
    };
    let Ok(text) = std::str::from_utf8(source) else {
        return Reply::new(
            400,
            "text/plain; charset=utf-8",
            &b"the body is not UTF-8\n"[..],
        );
    };
    Reply::new(200, "text/html; charset=utf-8", render(text).into_bytes())
}
