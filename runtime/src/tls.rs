//! TLS termination for `--listen-tls`: rustls (ring), ALPN `h2` and `http/1.1`, a
//! certificate chosen by SNI, and certificates reloaded without a restart when their files
//! change.
//!
//! Certificates come from `--tls-cert FILE --tls-key FILE` (the default: clients with no
//! SNI, or an SNI no other certificate names) and from `--tls-dir DIR`, where
//! `HOST.crt` + `HOST.key` serve SNI `HOST` (`*.example.com.crt` serves one label under
//! `example.com`). Every file is checked before the server listens; a reload that finds a
//! bad file logs it and keeps the certificates it had.

use anyhow::{Context, Result, anyhow, bail};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where the certificates are.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The default certificate chain and its key.
    pub default: Option<(PathBuf, PathBuf)>,
    /// A directory of `HOST.crt` / `HOST.key` pairs.
    pub dir: Option<PathBuf>,
}

/// The certificates in use.
#[derive(Debug, Default)]
struct Certs {
    by_name: BTreeMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// Picks a certificate by SNI; the default when there is no SNI or no match.
#[derive(Debug)]
struct Resolver {
    certs: ArcSwap<Certs>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(cert) = certs.by_name.get(&name) {
                return Some(cert.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(cert) = certs.by_name.get(&format!("*.{parent}"))
            {
                return Some(cert.clone());
            }
        }
        certs.default.clone()
    }
}

/// What identifies the files' contents cheaply: path, length and modification time.
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The TLS side of the server: the acceptor and what it reloads from.
pub struct Tls {
    /// Makes a TLS stream of an accepted connection.
    pub acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Resolver>,
    files: TlsFiles,
    stamp: Mutex<Stamp>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads and checks every certificate and key; a precise error for the first bad one.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>> {
        if files.default.is_none() && files.dir.is_none() {
            bail!("--listen-tls needs certificates: --tls-cert and --tls-key, or --tls-dir");
        }
        let stamp = stamp(&files);
        let certs = read(&files)?;
        let resolver = Arc::new(Resolver {
            certs: ArcSwap::from_pointee(certs),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("rustls has no TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
            files,
            stamp: Mutex::new(stamp),
        }))
    }

    /// The SNI names served, sorted (`*` for the default certificate).
    pub fn names(&self) -> Vec<String> {
        let certs = self.resolver.certs.load();
        let mut names: Vec<String> = certs.by_name.keys().cloned().collect();
        if certs.default.is_some() {
            names.push("*".into());
        }
        names
    }

    /// Reloads the certificates if a file changed: new handshakes use the new ones at
    /// once. A bad file is logged and the previous certificates stay.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.files);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *last == now {
                return;
            }
            *last = now;
        }
        match read(&self.files) {
            Ok(certs) => {
                self.resolver.certs.store(Arc::new(certs));
                tracing::info!("TLS certificates reloaded: {}", self.names().join(" "));
            }
            Err(e) => {
                tracing::warn!("TLS certificates not reloaded, keeping the previous ones: {e:#}")
            }
        }
    }

    /// Checks the files every `every` on a task of the current runtime.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let tls = tls.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }
}

/// The certificate and key files in play, and the directory's pairs.
fn files_of(files: &TlsFiles) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some((cert, key)) = &files.default {
        out.extend([cert.clone(), key.clone()]);
    }
    if let Some(dir) = &files.dir {
        out.push(dir.clone());
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "crt" || e == "key"))
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    out
}

fn stamp(files: &TlsFiles) -> Stamp {
    files_of(files)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

fn read(files: &TlsFiles) -> Result<Certs> {
    let provider = provider();
    let mut certs = Certs::default();
    if let Some((cert, key)) = &files.default {
        certs.default = Some(Arc::new(load_pair(cert, key, &provider)?));
    }
    if let Some(dir) = &files.dir {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the TLS directory `{}`", dir.display()))?;
        let mut crts: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        crts.sort();
        for crt in crts {
            let name = crt
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| anyhow!("`{}`: the file name is not UTF-8", crt.display()))?
                .to_ascii_lowercase();
            let key = crt.with_extension("key");
            if !key.exists() {
                bail!(
                    "`{}` has no key beside it (expected `{}`)",
                    crt.display(),
                    key.display()
                );
            }
            certs
                .by_name
                .insert(name, Arc::new(load_pair(&crt, &key, &provider)?));
        }
        if certs.by_name.is_empty() && certs.default.is_none() {
            bail!(
                "the TLS directory `{}` holds no `HOST.crt` + `HOST.key` pair",
                dir.display()
            );
        }
    }
    Ok(certs)
}

/// A certificate chain and its private key, checked to belong together.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow!("cannot read the certificate `{}`: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the certificate `{}` is not valid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "`{}` holds no certificate (a PEM `BEGIN CERTIFICATE` block)",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow!(
            "`{}` holds no usable private key (PEM PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        )
    })?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => anyhow!(
            "the key `{}` does not belong to the certificate `{}`",
            key.display(),
            cert.display()
        ),
        e => anyhow!(
            "the certificate `{}` and the key `{}` cannot be used together: {e}",
            cert.display(),
            key.display()
        ),
    })?;
    // `from_der` lets an unknown consistency through; be strict.
    certified.keys_match().map_err(|e| {
        anyhow!(
            "the key `{}` does not belong to the certificate `{}`: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}
