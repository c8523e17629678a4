//! Which app a request goes to.
//!
//! In order: an exact host listed in a manifest's `hosts`; the longest path prefix listed
//! in a manifest's `paths` (on any host); the first label of the Host (`hello.localhost`
//! and `hello.example.com` both go to app `hello`).

use std::collections::HashMap;
use std::sync::Arc;

/// A routing table over apps of type `A`. Built whole and swapped whole, never mutated.
#[derive(Debug)]
pub struct Router<A> {
    by_name: HashMap<String, Arc<A>>,
    by_host: HashMap<String, Arc<A>>,
    /// Sorted longest first, so the first match is the most specific.
    by_prefix: Vec<(String, Arc<A>)>,
}

impl<A> Default for Router<A> {
    fn default() -> Self {
        Router {
            by_name: HashMap::new(),
            by_host: HashMap::new(),
            by_prefix: Vec::new(),
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
                if router.by_prefix.iter().any(|(p, _)| p == prefix) {
                    tracing::warn!(
                        "path prefix `{prefix}` is claimed twice; `{}` loses it",
                        app.name()
                    );
                    continue;
                }
                router.by_prefix.push((prefix.clone(), app.clone()));
            }
            router.by_name.insert(app.name().to_string(), app);
        }
        router
            .by_prefix
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        router
    }

    /// The app for a request to `host` (a Host header value, port allowed) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<A>> {
        let host = strip_port(host).to_ascii_lowercase();
        if let Some(app) = self.by_host.get(&host) {
            return Some(app);
        }
        let by_prefix = self.by_prefix.iter().find(|(prefix, _)| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.is_empty())
        });
        if let Some((_, app)) = by_prefix {
            return Some(app);
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
    }
}
