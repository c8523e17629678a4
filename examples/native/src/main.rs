//! `native`: the example apps as a plain hyper server, the baseline edge is measured
//! against. The handlers are the `apps` library the wasm builds use; only the entry point
//! differs.
//!
//! ```text
//! native --app site --listen 127.0.0.1:0     # prints `Serving HTTP on http://ADDR/`
//! ```
//!
//! Every app also answers `GET /ws` as a WebSocket echo endpoint (see `ws.rs`).

mod api;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Serve one example app natively.
#[derive(Debug, Parser)]
struct Args {
    /// The example to serve; `api` is the stand-in target for scenarios (login, JSON CRUD,
    /// redirects, cookies, delays, and the `site` pages), native only since it keeps state.
    #[arg(long, default_value = "hello", value_parser = app_names())]
    app: String,
    /// Address to listen on (port 0 picks a free port; the startup line says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

type Handler = fn(&apps::Request<'_>) -> apps::Reply;

fn app_names() -> Vec<&'static str> {
    let mut names = apps::APPS.to_vec();
    names.push("api");
    names
}

async fn serve(
    req: Request<Incoming>,
    handle: Handler,
    api: Option<Arc<api::Api>>,
) -> anyhow::Result<Response<Full<Bytes>>> {
    if req.uri().path() == ws::PATH {
        return Ok(ws::upgrade(req));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, apps::MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(Response::builder()
                .status(413)
                .body(Full::new(Bytes::from_static(b"request body too large\n")))?);
        }
    };
    if let Some(api) = api
        && let Some((status, headers, body)) = api
            .handle(
                &parts.method,
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &parts.headers,
                &body,
            )
            .await
    {
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(name, value);
        }
        return Ok(response.body(Full::new(body))?);
    }
    let reply = handle(&apps::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        if_none_match: parts
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok()),
        body: &body,
    });
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value.as_ref());
    }
    let body = match reply.body {
        std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
        std::borrow::Cow::Owned(b) => Bytes::from(b),
    };
    Ok(response.body(Full::new(body))?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (handle, api) = match args.app.as_str() {
        "api" => (
            apps::handler("site").expect("the site example exists"),
            Some(Arc::new(api::Api::default())),
        ),
        name => (apps::handler(name).expect("clap checked the name"), None),
    };
    // One thread, like one edge HTTP worker: the comparison is per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("Serving HTTP on http://{}/", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let api = api.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| serve(req, handle, api.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
