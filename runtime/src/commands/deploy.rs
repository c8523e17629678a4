//! `edge deploy FILE`: push a component (and its manifest) to a running server.

use super::client::AdminArgs;
use anyhow::{Context, Result};
use hyper::Method;
use std::path::PathBuf;

/// Deploy a component as a new version of an app on a running server.
///
/// The server validates, pre-initializes, compiles and stores it, then swaps it in: the
/// next request runs it, requests in flight finish on the old version.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,

    /// App name [default: the file stem].
    #[arg(long)]
    pub name: Option<String>,

    /// Manifest to deploy with it [default: FILE with `.toml`, if it exists].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    #[command(flatten)]
    admin: AdminArgs,
}

impl DeployArgs {
    /// Uploads and prints the new version and the server's timings.
    pub fn execute(self) -> Result<()> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => self
                .file
                .file_stem()
                .and_then(|s| s.to_str())
                .context("cannot take an app name from the file name; pass --name")?
                .to_string(),
        };
        let wasm = std::fs::read(&self.file)
            .with_context(|| format!("cannot read `{}`", self.file.display()))?;
        let manifest_path = self.manifest.clone().or_else(|| {
            let p = self.file.with_extension("toml");
            p.exists().then_some(p)
        });
        let manifest = manifest_path
            .map(|p| {
                std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read `{}`", p.display()))
            })
            .transpose()?;
        let (content_type, body) = multipart(&wasm, manifest.as_deref());
        let r = self.admin.call(
            Method::PUT,
            &format!("/apps/{name}"),
            Some(&content_type),
            body,
        )?;
        let opt = |v: &serde_json::Value| {
            v.as_f64()
                .map_or("-".to_string(), |ms| format!("{ms:.1} ms"))
        };
        println!(
            "deployed `{name}` {} (sha256 {}) in {:.1} ms: validate {}, preinit {}, compile {}, store {}",
            r["version"].as_str().unwrap_or("?"),
            &r["digest"].as_str().unwrap_or("?")
                [..12.min(r["digest"].as_str().unwrap_or("").len())],
            r["total_ms"].as_f64().unwrap_or(0.0),
            opt(&r["validate_ms"]),
            opt(&r["preinit_ms"]),
            match (r["compile_ms"].is_null(), r["tier"].as_str()) {
                (true, _) if r["code"] == "live" => {
                    "none (the same bytes already serve; their code is reused)".to_string()
                }
                (true, _) => "cached".to_string(),
                (false, Some("baseline")) => format!(
                    "{} (baseline tier; optimizing in the background)",
                    opt(&r["compile_ms"])
                ),
                (false, _) => opt(&r["compile_ms"]),
            },
            opt(&r["store_ms"]),
        );
        if let Some(at) = r["committed_at"].as_str() {
            println!("committed to the cluster's app store at {at}; every node follows");
        }
        Ok(())
    }
}

/// A `multipart/form-data` body with parts `component` and, if given, `manifest`.
fn multipart(wasm: &[u8], manifest: Option<&str>) -> (String, Vec<u8>) {
    let boundary = format!("edge-{:016x}", {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(wasm.len())
    });
    let mut body = Vec::with_capacity(wasm.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"app.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wasm);
    if let Some(m) = manifest {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"; filename=\"app.toml\"\r\nContent-Type: application/toml\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(m.as_bytes());
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
