//! The admin API, on its own listener. Every request but the two probes (`/healthz`,
//! `/readyz`) must carry `Authorization: Bearer TOKEN`; without a valid one it gets 401
//! before anything else is looked at.
//!
//! | method and path | does | success |
//! |---|---|---|
//! | `GET /apps` | lists apps, versions, routes | 200 JSON array |
//! | `PUT /apps/NAME` | deploys a new version: the body is the component (`application/wasm`), or `multipart/form-data` with parts `component` and optional `manifest` | 200 JSON [`DeployReport`](crate::control::DeployReport) |
//! | `POST /apps/NAME/rollback[?to=VERSION]` | makes an older version current | 200 JSON |
//! | `DELETE /apps/NAME` | removes the app | 200 JSON |
//! | `GET /metrics` | Prometheus text format | 200 |
//! | `GET /healthz` | liveness, **no token**: the process serves | 200 `{"status":"ok"}`, or `"degraded"` on a cluster node that cannot reach the app store |
//! | `GET /readyz` | readiness, **no token**: every app found at start-up is loaded (or failed) | 200, or 503 while loading; `{"ready":…,"apps":N,"loaded":N,"failed":N,"degraded":…}` |
//! | `/apps/NAME/secrets…`, `/apps/NAME/kv/…` | secrets and key-value stores: [`crate::kv::admin`] | |
//!
//! Errors are JSON `{"error": "…"}` with 400 (bad name or request), 401 (token), 404 (no
//! such app or version), 405, 409 (another change to the app in progress, here or, in a
//! cluster, on another node), 413 (upload too large), 422 (invalid component or manifest),
//! 500 (storage failure), 503 (a cluster node cannot reach the app store; nothing changed).

use crate::control::{Control, ControlError};
use crate::metrics::Format;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// The bearer token, stored as its SHA-256 so comparison is constant-time whatever the
/// length of the candidate.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    /// A token with the value `secret`.
    pub fn new(secret: &str) -> Token {
        Token {
            digest: Sha256::digest(secret.trim().as_bytes()).into(),
        }
    }

    /// Whether `Authorization: Bearer …` in `header` carries this token.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(candidate) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        let candidate: [u8; 32] = Sha256::digest(candidate.trim().as_bytes()).into();
        self.digest.ct_eq(&candidate).into()
    }
}

/// Where the server's token comes from, in order: `EDGE_ADMIN_TOKEN`, `--admin-token-file`,
/// or a new random token written (mode 0600) to `DIR/.edge/admin-token`.
pub fn server_token(
    env: Option<String>,
    file: Option<&Path>,
    apps_dir: &Path,
) -> Result<(Token, String)> {
    if let Some(secret) = env.filter(|s| !s.trim().is_empty()) {
        return Ok((Token::new(&secret), "from EDGE_ADMIN_TOKEN".into()));
    }
    if let Some(file) = file {
        let secret = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read admin token file `{}`", file.display()))?;
        if secret.trim().is_empty() {
            anyhow::bail!("admin token file `{}` is empty", file.display());
        }
        return Ok((Token::new(&secret), format!("from `{}`", file.display())));
    }
    let path = default_token_path(apps_dir);
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let secret = hex::encode(bytes);
    write_private(&path, secret.as_bytes())?;
    Ok((
        Token::new(&secret),
        format!("generated, in `{}`", path.display()),
    ))
}

/// `DIR/.edge/admin-token`.
pub fn default_token_path(apps_dir: &Path) -> PathBuf {
    apps_dir.join(".edge").join("admin-token")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

type AdminResponse = Response<Full<Bytes>>;

/// Serves the admin API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, control: Arc<Control>, token: Token) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let control = control.clone();
        let token = token.clone();
        let service = hyper::service::service_fn(move |req| {
            let control = control.clone();
            let token = token.clone();
            async move { Ok::<_, Infallible>(respond(&control, &token, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(conn);
    }
}

async fn respond(control: &Arc<Control>, token: &Token, req: Request<Incoming>) -> AdminResponse {
    // Probes for load balancers and orchestrators: no token, no detail beyond counts.
    match (req.method(), req.uri().path()) {
        // A cluster node that lost its app store still serves: it says `degraded`, with no
        // detail, and stays live and ready (taking every node out of rotation because the
        // database went away would turn a control-plane fault into an outage).
        (&Method::GET | &Method::HEAD, "/healthz") => {
            let status = if control.degraded() { "degraded" } else { "ok" };
            return json(StatusCode::OK, &serde_json::json!({ "status": status }));
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            let progress = control.progress().unwrap_or_default();
            let status = match progress.ready() {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            let body = serde_json::json!({
                "ready": progress.ready(),
                "apps": progress.apps,
                "loaded": progress.loaded,
                "failed": progress.failed,
                "degraded": control.degraded(),
            });
            return json(status, &body);
        }
        _ => {}
    }
    if !token.accepts(req.headers().get(AUTHORIZATION)) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid admin token: send `Authorization: Bearer TOKEN`",
        );
        resp.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return resp;
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let query = req.uri().query().unwrap_or("").to_string();
    if crate::kv::admin::matches(&segments) {
        let method = req.method().clone();
        let body = match Limited::new(req.into_body(), control.max_upload() as usize)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return too_large(control.max_upload() + 1, control.max_upload()),
        };
        let (status, value) = crate::kv::admin::respond(control, &method, &segments, &query, &body);
        return json(status, &value);
    }
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["apps"]) => json(StatusCode::OK, &control.list().await),
        (Method::GET, ["metrics"]) => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let body = control.metrics().encode(format);
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            let headers = resp.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            headers.insert(VARY, HeaderValue::from_static("accept"));
            resp
        }
        (Method::PUT, ["apps", name]) => {
            let name = name.to_string();
            match read_upload(control, req).await {
                Ok((wasm, manifest)) => result(control.deploy(&name, wasm, manifest).await),
                Err(resp) => resp,
            }
        }
        (Method::POST, ["apps", name, "rollback"]) => {
            let to = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("to="))
                .filter(|v| !v.is_empty());
            result(control.rollback(name, to).await)
        }
        (Method::DELETE, ["apps", name]) => result(
            control
                .delete(name)
                .await
                .map(|()| serde_json::json!({ "deleted": name })),
        ),
        (_, ["apps"] | ["metrics"] | ["apps", _] | ["apps", _, "rollback"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no admin endpoint `{path}`"),
        ),
    }
}

/// Reads the upload: a raw component, or multipart parts `component` and `manifest`.
async fn read_upload(
    control: &Control,
    req: Request<Incoming>,
) -> Result<(Vec<u8>, Option<String>), AdminResponse> {
    let limit = control.max_upload();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > limit + 64 * 1024
    {
        return Err(too_large(len, limit));
    }
    // Multipart framing and a manifest add a little on top of the component.
    let body = Limited::new(req.into_body(), (limit + 64 * 1024) as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large(limit + 1, limit)
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the upload: {e}"),
                )
            }
        })?
        .to_bytes();
    if !content_type.starts_with("multipart/form-data") {
        if body.len() as u64 > limit {
            return Err(too_large(body.len() as u64, limit));
        }
        return Ok((body.to_vec(), None));
    }
    let bad = |e: multer::Error| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("bad multipart upload: {e}"),
        )
    };
    let boundary = multer::parse_boundary(&content_type).map_err(bad)?;
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let (mut wasm, mut manifest) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("component") => wasm = Some(field.bytes().await.map_err(bad)?.to_vec()),
            Some("manifest") => {
                let text = field.text().await.map_err(bad)?;
                manifest = Some(text);
            }
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unexpected multipart part `{}` (expected `component` and `manifest`)",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    let wasm = wasm.ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "the upload has no `component` part",
        )
    })?;
    if wasm.len() as u64 > limit {
        return Err(too_large(wasm.len() as u64, limit));
    }
    Ok((wasm, manifest))
}

fn result<T: serde::Serialize>(r: Result<T, ControlError>) -> AdminResponse {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => {
            let status = match &e {
                ControlError::BadName(_) => StatusCode::BAD_REQUEST,
                ControlError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ControlError::Busy(_) | ControlError::Conflict(_) => StatusCode::CONFLICT,
                ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ControlError::NotFound(_) => StatusCode::NOT_FOUND,
                ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, &e.to_string())
        }
    }
}

fn too_large(size: u64, limit: u64) -> AdminResponse {
    result::<()>(Err(ControlError::TooLarge { size, limit }))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> AdminResponse {
    let body = serde_json::to_vec_pretty(value).expect("serializable");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error(status: StatusCode, message: &str) -> AdminResponse {
    json(status, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_value_only() {
        let t = Token::new("s3cret\n");
        assert!(t.accepts(Some(&HeaderValue::from_static("Bearer s3cret"))));
        assert!(!t.accepts(Some(&HeaderValue::from_static("Bearer s3cre"))));
        assert!(!t.accepts(Some(&HeaderValue::from_static("s3cret"))));
        assert!(!t.accepts(None));
    }
}
