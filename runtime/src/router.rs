//! Which app a request goes to.
//!
//! In order: an exact host listed in a manifest's `hosts`; the longest path prefix listed
//! in a manifest's `paths` (on any host); the first label of the Host (`hello.localhost`
//! and `hello.example.com` both go to app `hello`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// A routing table over apps of type `A`. Built whole and swapped whole, never mutated.
#[derive(Debug)]
pub struct Router<A> {
    by_name: HashMap<String, Arc<A>>,
    by_host: HashMap<String, Arc<A>>,
    /// Path prefixes (no trailing `/`). A request looks up its own path and each of its
    /// `/`-prefixes, longest first: a few hash lookups however many apps there are.
    by_prefix: HashMap<String, Arc<A>>,
}

impl<A> Default for Router<A> {
    fn default() -> Self {
        Router {
            by_name: HashMap::new(),
            by_host: HashMap::new(),
            by_prefix: HashMap::new(),
        }
    }
}

/// What the router needs to know about an app.
pub trait Routable {
    /// The app's name: the first Host label that selects it.
    fn name(&self) -> &str;
    /// Exact hosts (lowercase, without port).
    fn hosts(&self) -> &[String];
    /// Path prefixes, without a trailing `/`.
    fn paths(&self) -> &[String];
}

impl<A: Routable> Router<A> {
    /// Builds the table. Where two apps claim the same host or prefix, the first (apps come
    /// sorted by name) keeps it and the clash is logged.
    pub fn new(apps: impl IntoIterator<Item = Arc<A>>) -> Router<A> {
        let mut router: Router<A> = Router::default();
        for app in apps {
            for host in app.hosts() {
                if let Some(prev) = router.by_host.get(host) {
                    tracing::warn!(
                        "host `{host}` is claimed by `{}` and `{}`; `{}` keeps it",
                        prev.name(),
                        app.name(),
                        prev.name()
                    );
                    continue;
                }
                router.by_host.insert(host.clone(), app.clone());
            }
            for prefix in app.paths() {
                if router.by_prefix.contains_key(prefix) {
                    tracing::warn!(
                        "path prefix `{prefix}` is claimed twice; `{}` loses it",
                        app.name()
                    );
                    continue;
                }
                router.by_prefix.insert(prefix.clone(), app.clone());
            }
            router.by_name.insert(app.name().to_string(), app);
        }
        router
    }

    /// The app for a request to `host` (a Host header value, port allowed) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<A>> {
        // Hosts are nearly always lowercase already: allocate only when they are not.
        let host = strip_port(host);
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        if let Some(app) = self.by_host.get(host.as_ref()) {
            return Some(app);
        }
        if !self.by_prefix.is_empty() {
            // `/api/v2/x` tries `/api/v2/x`, `/api/v2`, `/api`, then `` (a catch-all).
            let mut candidate = path;
            loop {
                if let Some(app) = self.by_prefix.get(candidate) {
                    return Some(app);
                }
                match candidate.rfind('/') {
                    Some(i) => candidate = &candidate[..i],
                    None => break,
                }
            }
        }
        let label = host.split('.').next().unwrap_or("");
        self.by_name.get(label)
    }

    /// Every app, in no particular order.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<A>> {
        self.by_name.values()
    }

    /// The app called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<A>> {
        self.by_name.get(name)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // `[::1]:8080` → `[::1]`
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(&'static str, Vec<String>, Vec<String>);
    impl Routable for T {
        fn name(&self) -> &str {
            self.0
        }
        fn hosts(&self) -> &[String] {
            &self.1
        }
        fn paths(&self) -> &[String] {
            &self.2
        }
    }

    fn router() -> Router<T> {
        Router::new([
            Arc::new(T("hello", vec![], vec![])),
            Arc::new(T(
                "api",
                vec!["api.example.com".into()],
                vec!["/api".into()],
            )),
            Arc::new(T("v2", vec![], vec!["/api/v2".into()])),
        ])
    }

    #[test]
    fn routes_by_host_label_exact_host_and_prefix() {
        let r = router();
        let name = |h, p| r.route(h, p).map(|a| a.0);
        assert_eq!(name("hello.localhost:8080", "/"), Some("hello"));
        assert_eq!(name("HELLO.example.com", "/x"), Some("hello"));
        assert_eq!(name("api.example.com", "/"), Some("api"));
        assert_eq!(name("other.test", "/api/users"), Some("api"));
        assert_eq!(name("other.test", "/api"), Some("api"));
        assert_eq!(name("other.test", "/api/v2/x"), Some("v2"));
        assert_eq!(name("other.test", "/apix"), None);
        assert_eq!(name("nope.localhost", "/"), None);
        assert_eq!(name("[::1]:8080", "/"), None);
        assert_eq!(name("other.test", "/api/"), Some("api"));
        assert_eq!(name("other.test", "/api/v2"), Some("v2"));
        assert_eq!(name("other.test", "/api/v20"), Some("api"));
    }

    #[test]
    fn an_empty_prefix_catches_every_path() {
        let r = Router::new([Arc::new(T("all", vec![], vec!["".into()]))]);
        assert_eq!(
            r.route("x.test", "/anything/at/all").map(|a| a.0),
            Some("all")
        );
        assert_eq!(r.route("x.test", "/").map(|a| a.0), Some("all"));
    }
}
