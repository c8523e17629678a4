//! `native`: the example apps as a plain hyper server, the baseline edge is measured
//! against. Each app's logic is the very file its wasm build uses; only the entry point
//! differs.
//!
//! ```text
//! native --app hello --listen 127.0.0.1:0     # prints `Serving HTTP on http://ADDR/`
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[path = "../../hello/src/app.rs"]
mod hello;

/// Serve one example app natively.
#[derive(Debug, Parser)]
struct Args {
    /// The example to serve.
    #[arg(long, default_value = "hello", value_parser = ["hello"])]
    app: String,
    /// Address to listen on (port 0 picks a free port; the startup line says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", hello::CONTENT_TYPE)
        .body(Full::new(Bytes::from_static(hello::BODY.as_bytes())))
        .expect("valid response"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
            tokio::spawn(async move {
                let service = hyper::service::service_fn(hello);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
