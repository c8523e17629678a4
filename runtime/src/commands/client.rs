//! The admin-API client shared by `deploy`, `apps`, `rollback` and `delete`.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The server's admin API.
    #[arg(
        long,
        value_name = "URL",
        env = "EDGE_SERVER",
        default_value = "http://127.0.0.1:8081"
    )]
    pub server: String,

    /// File holding the admin token [default: `EDGE_ADMIN_TOKEN`, else
    /// APPS_DIR/.edge/admin-token].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The apps directory whose generated token to use when no other is given.
    #[arg(long, value_name = "DIR", default_value = "./apps")]
    pub apps_dir: PathBuf,
}

impl AdminArgs {
    fn token(&self) -> Result<String> {
        if let Ok(token) = std::env::var("EDGE_ADMIN_TOKEN")
            && !token.trim().is_empty()
        {
            return Ok(token.trim().to_string());
        }
        let path = self
            .token_file
            .clone()
            .unwrap_or_else(|| crate::admin::default_token_path(&self.apps_dir));
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no admin token: set EDGE_ADMIN_TOKEN, pass --token-file, or run next to the \
                 server's apps directory (cannot read `{}`)",
                path.display()
            )
        })?;
        Ok(token.trim().to_string())
    }

    /// Sends one request and returns the JSON body of a success; an error status becomes
    /// an error carrying the server's message.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<serde_json::Value> {
        let token = self.token()?;
        let uri: hyper::Uri = self
            .server
            .parse()
            .with_context(|| format!("invalid server URL `{}`", self.server))?;
        if uri.scheme_str() != Some("http") {
            bail!("server URL `{}` must start with `http://`", self.server);
        }
        let authority = uri
            .authority()
            .with_context(|| format!("server URL `{}` has no host", self.server))?
            .clone();
        let addr = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .with_context(|| {
                    format!("cannot connect to the admin API at `{addr}`; is `edge serve` running?")
                })?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", authority.as_str())
                .header(AUTHORIZATION, format!("Bearer {token}"));
            if let Some(ct) = content_type {
                req = req.header(CONTENT_TYPE, ct);
            }
            let resp = sender
                .send_request(req.body(Full::new(Bytes::from(body)))?)
                .await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(
                |_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes) }),
            );
            if !status.is_success() {
                let message = value["error"].as_str().unwrap_or("unknown error");
                bail!("{message} (HTTP {})", status.as_u16());
            }
            Ok(value)
        })
    }
}
