//! `NAME.toml`, the optional manifest beside `NAME.wasm`.
//!
//! Every field has a default, so a bare `NAME.wasm` is a complete app:
//!
//! ```toml
//! hosts = ["www.example.com"]          # exact Host values routed to this app
//! paths = ["/api"]                     # path prefixes routed to this app, on any host
//! memory_limit = "64MiB"               # overrides --memory-limit
//! timeout = "5s"                       # overrides --timeout
//! max_concurrency = 32                 # this app's share of --max-concurrency
//! max_body_size = "1MiB"               # overrides --max-body-size
//! allowed_outbound_hosts = ["api.example.com", "http://127.0.0.1:8080"]
//!
//! key_value_stores = ["default"]       # wasi:keyvalue stores the app may open (none by default)
//!
//! [key_value_limits]                   # per store; these are the defaults
//! max_key_size = "512B"
//! max_value_size = "1MiB"
//! max_keys = 100000
//! max_store_size = "100MiB"
//!
//! [env]                                # environment the guest sees (none by default)
//! GREETING = "hello"
//!
//! [config]                             # wasi:config values (secrets are set apart: `edge secret`)
//! feature_x = "on"
//! ```

use crate::config::{self, Limits};
use crate::kv::{self, LimitsSpec, StoreLimits};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The manifest as written, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Exact hosts (without port) routed to this app, besides its name as first label.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefixes routed to this app on any host.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Per-request memory limit, e.g. `64MiB`.
    pub memory_limit: Option<String>,
    /// Per-request wall-clock limit, e.g. `5s`.
    pub timeout: Option<String>,
    /// Requests of this app running at once.
    pub max_concurrency: Option<usize>,
    /// Request body limit, e.g. `1MiB`.
    pub max_body_size: Option<String>,
    /// Destinations the guest may call: `host`, `host:port`, `scheme://host[:port]`,
    /// `*.domain`, or `*` for anywhere.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Environment variables the guest sees. The host environment is never inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `false`: this app's responses carry no `Server-Timing` header (overrides
    /// `--server-timing`).
    pub server_timing: Option<bool>,
    /// The `wasi:keyvalue` stores the app may open, by name (scoped to the app).
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Limits on each of the app's stores.
    #[serde(default)]
    pub key_value_limits: LimitsSpec,
    /// Values `wasi:config` gives the guest.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A validated manifest merged with the server's defaults.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Exact hosts, lowercased, without port.
    pub hosts: Vec<String>,
    /// Path prefixes, each starting with `/`.
    pub paths: Vec<String>,
    /// Limits for this app's requests.
    pub limits: Limits,
    /// Where the guest may send HTTP requests.
    pub outbound: OutboundPolicy,
    /// The guest's environment.
    pub env: Vec<(String, String)>,
    /// The key-value stores it may open.
    pub stores: Vec<String>,
    /// What each of them may hold.
    pub store_limits: StoreLimits,
    /// Its `wasi:config` values (secrets come from the state database).
    pub config: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses manifest text.
    pub fn parse(text: &str) -> Result<Manifest> {
        Ok(toml::from_str(text)?)
    }

    /// Validates every field and fills the gaps from the server's `defaults`.
    pub fn resolve(&self, defaults: &Limits) -> Result<AppConfig> {
        let mut limits = defaults.clone();
        if let Some(m) = &self.memory_limit {
            limits.memory = config::parse_memory_limit(m).context("in `memory_limit`")?;
        }
        if let Some(t) = &self.timeout {
            limits.timeout = config::parse_duration(t).context("in `timeout`")?;
        }
        if let Some(n) = self.max_concurrency {
            limits.max_concurrency = config::check_concurrency(n)
                .context("in `max_concurrency`")?
                .min(defaults.max_concurrency);
        }
        if let Some(b) = &self.max_body_size {
            limits.max_body_size = config::parse_size(b).context("in `max_body_size`")?;
        }
        if let Some(on) = self.server_timing {
            limits.server_timing = on;
        }
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                if h.is_empty() || h.contains(['/', ' ', ':']) {
                    bail!("host `{h}` in `hosts` must be a bare host name without port or path");
                }
                Ok(h)
            })
            .collect::<Result<_>>()?;
        let paths = self
            .paths
            .iter()
            .map(|p| {
                if !p.starts_with('/') {
                    bail!("path prefix `{p}` in `paths` must start with `/`");
                }
                Ok(p.trim_end_matches('/').to_string())
            })
            .collect::<Result<_>>()?;
        let outbound = OutboundPolicy::parse(&self.allowed_outbound_hosts)?;
        let env = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        kv::check_store_names(&self.key_value_stores)?;
        let store_limits = self.key_value_limits.resolve()?;
        for key in self.config.keys() {
            kv::check_secret_name(key).map_err(|e| {
                anyhow::anyhow!(
                    "in `[config]`: {}",
                    e.to_string().replace("secret name", "key")
                )
            })?;
        }
        Ok(AppConfig {
            hosts,
            paths,
            limits,
            outbound,
            env,
            stores: self.key_value_stores.clone(),
            store_limits,
            config: self.config.clone(),
        })
    }
}

/// Which outbound HTTP destinations a guest may reach. Empty denies everything.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    rules: Vec<HostRule>,
}

#[derive(Debug, Clone)]
struct HostRule {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

impl OutboundPolicy {
    /// Parses `allowed_outbound_hosts` entries.
    pub fn parse(entries: &[String]) -> Result<OutboundPolicy> {
        let rules = entries
            .iter()
            .map(|e| HostRule::parse(e).context("in `allowed_outbound_hosts`"))
            .collect::<Result<_>>()?;
        Ok(OutboundPolicy { rules })
    }

    /// Whether a request to `scheme://authority` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let default_port = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let port = port.or(default_port);
        let host = host.to_ascii_lowercase();
        self.rules.iter().any(|r| {
            r.scheme.as_deref().is_none_or(|s| s == scheme)
                && r.port.is_none_or(|p| Some(p) == port)
                && match &r.host {
                    HostPattern::Any => true,
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Suffix(s) => host.ends_with(s.as_str()),
                }
        })
    }

    /// Whether no destination at all is allowed.
    pub fn is_deny_all(&self) -> bool {
        self.rules.is_empty()
    }
}

impl HostRule {
    fn parse(entry: &str) -> Result<HostRule> {
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, rest)) => {
                let s = s.to_ascii_lowercase();
                if s != "http" && s != "https" {
                    bail!("outbound host `{entry}`: scheme must be `http` or `https`");
                }
                (Some(s), rest)
            }
            None => (None, entry),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            bail!("outbound host `{entry}` must not contain a path");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .with_context(|| format!("outbound host `{entry}` has an invalid port"))?;
                (h, Some(port))
            }
            _ => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(format!(".{suffix}"))
        } else if host.is_empty() {
            bail!("outbound host `{entry}` has no host");
        } else {
            HostPattern::Exact(host.trim_start_matches('[').trim_end_matches(']').into())
        };
        Ok(HostRule { scheme, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_manifest_takes_defaults_and_denies_outbound() {
        let app = Manifest::parse("")
            .unwrap()
            .resolve(&Limits::default())
            .unwrap();
        assert_eq!(app.limits, Limits::default());
        assert!(app.outbound.is_deny_all());
        assert!(!app.outbound.allows("http", "example.com", None));
    }

    #[test]
    fn overrides_and_outbound_rules() {
        let m = Manifest::parse(
            r#"
            memory_limit = "32MiB"
            timeout = "2s"
            hosts = ["WWW.Example.com"]
            paths = ["/api/"]
            allowed_outbound_hosts = ["http://127.0.0.1:8080", "*.example.org", "api.test"]
            [env]
            A = "1"
            "#,
        )
        .unwrap();
        let app = m.resolve(&Limits::default()).unwrap();
        assert_eq!(app.limits.memory, 32 << 20);
        assert_eq!(app.hosts, ["www.example.com"]);
        assert_eq!(app.paths, ["/api"]);
        assert_eq!(app.env, [("A".to_string(), "1".to_string())]);
        let o = &app.outbound;
        assert!(o.allows("http", "127.0.0.1", Some(8080)));
        assert!(!o.allows("https", "127.0.0.1", Some(8080)));
        assert!(!o.allows("http", "127.0.0.1", Some(8081)));
        assert!(o.allows("https", "a.example.org", None));
        assert!(!o.allows("https", "example.org.evil", None));
        assert!(o.allows("https", "api.test", Some(443)));
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let err = Manifest::parse("memory = 1").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = Manifest::parse(r#"timeout = "soon""#)
            .unwrap()
            .resolve(&Limits::default())
            .unwrap_err();
        assert!(format!("{err:#}").contains("`soon`"));
        let err = Manifest::parse(r#"allowed_outbound_hosts = ["ftp://x"]"#)
            .unwrap()
            .resolve(&Limits::default())
            .unwrap_err();
        assert!(format!("{err:#}").contains("scheme"));
    }
}
