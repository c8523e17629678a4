//! Start-up: which apps are still loading, so `edge serve` can listen at once.
//!
//! At start-up every app's routes (its name, and its manifest's hosts and paths) are known
//! from the directory in a few milliseconds, long before its code is. [`Loading`] holds
//! those routes for the apps not yet loaded: a request that routes to one waits for it, up
//! to `--load-wait`, and then gets `503` with `Retry-After` (see
//! [`crate::server::Server::respond`]); a host no app claims still gets 404 at once. Once
//! every app is loaded (or has failed), the server drops its [`Loading`] and routes as
//! before, with no extra cost per request.

use crate::router::{Routable, Router};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// One app not loaded yet: its routes, and a flag that turns `true` once it is loaded or
/// has failed.
#[derive(Debug)]
pub struct Pending {
    name: String,
    hosts: Vec<String>,
    paths: Vec<String>,
    done: watch::Sender<bool>,
    /// A request is waiting for it: it is loaded next.
    wanted: AtomicBool,
    /// A loader has taken it.
    claimed: AtomicBool,
}

impl Routable for Pending {
    fn name(&self) -> &str {
        &self.name
    }
    fn hosts(&self) -> &[String] {
        &self.hosts
    }
    fn paths(&self) -> &[String] {
        &self.paths
    }
}

/// The apps of one start-up and how far loading them has got.
#[derive(Debug)]
pub struct Loading {
    router: Router<Pending>,
    total: usize,
    loaded: AtomicUsize,
    failed: AtomicUsize,
    all: watch::Sender<bool>,
    /// Apps requests wait for, in the order they were first asked for.
    wanted: Mutex<std::collections::VecDeque<String>>,
}

/// How far start-up has got, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Apps found in the directory at start-up.
    pub apps: usize,
    /// Apps loaded and serving.
    pub loaded: usize,
    /// Apps that failed to load (logged; they do not serve).
    pub failed: usize,
}

impl Progress {
    /// Whether every app has been loaded or has failed.
    pub fn ready(&self) -> bool {
        self.loaded + self.failed >= self.apps
    }
}

/// Why a request could not be routed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StillLoading(pub String);

impl Loading {
    /// Start-up over apps given as `(name, hosts, paths)`.
    pub fn new(apps: impl IntoIterator<Item = (String, Vec<String>, Vec<String>)>) -> Loading {
        let pending: Vec<Arc<Pending>> = apps
            .into_iter()
            .map(|(name, hosts, paths)| {
                Arc::new(Pending {
                    name,
                    hosts,
                    paths,
                    done: watch::channel(false).0,
                    wanted: AtomicBool::new(false),
                    claimed: AtomicBool::new(false),
                })
            })
            .collect();
        let total = pending.len();
        Loading {
            router: Router::new(pending),
            total,
            loaded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            all: watch::channel(total == 0).0,
            wanted: Mutex::default(),
        }
    }

    /// Takes `name` for loading: `false` if another loader has it (or it is unknown).
    pub fn claim(&self, name: &str) -> bool {
        self.router
            .get(name)
            .is_some_and(|app| !app.claimed.swap(true, Ordering::SeqCst))
    }

    /// Gives `name` back, for a later pass.
    pub fn unclaim(&self, name: &str) {
        if let Some(app) = self.router.get(name) {
            app.claimed.store(false, Ordering::SeqCst);
        }
    }

    /// Whether a request is waiting for `name`.
    pub fn is_wanted(&self, name: &str) -> bool {
        self.router
            .get(name)
            .is_some_and(|app| app.wanted.load(Ordering::SeqCst))
    }

    /// The next app a request waits for that no loader has taken yet.
    pub fn next_wanted(&self) -> Option<String> {
        let mut wanted = self.wanted.lock().unwrap();
        while let Some(name) = wanted.pop_front() {
            if self.claim(&name) {
                return Some(name);
            }
        }
        None
    }

    /// Marks `name` loaded (`ok`) or failed. Calling it again for the same app, or for an
    /// app that was not in the directory at start-up (a deploy), does nothing.
    pub fn finish(&self, name: &str, ok: bool) {
        let Some(app) = self.router.get(name) else {
            return;
        };
        if app.done.send_replace(true) {
            return;
        }
        match ok {
            true => self.loaded.fetch_add(1, Ordering::SeqCst),
            false => self.failed.fetch_add(1, Ordering::SeqCst),
        };
        if self.progress().ready() {
            self.all.send_replace(true);
        }
    }

    /// How far loading has got.
    pub fn progress(&self) -> Progress {
        Progress {
            apps: self.total,
            loaded: self.loaded.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
        }
    }

    /// Waits until every app is loaded or has failed.
    pub async fn all_done(&self) {
        let _ = self.all.subscribe().wait_for(|done| *done).await;
    }

    /// For a request to `host` and `path`: if it routes to an app still loading, waits up
    /// to `bound` for it. `Err` names the app that is still loading after that.
    pub async fn wait(&self, host: &str, path: &str, bound: Duration) -> Result<(), StillLoading> {
        let Some(app) = self.router.route(host, path) else {
            return Ok(());
        };
        let mut done = app.done.subscribe();
        if *done.borrow() {
            return Ok(());
        }
        // Demand goes first: the app jumps the start-up queue.
        if !app.wanted.swap(true, Ordering::SeqCst) {
            self.wanted.lock().unwrap().push_back(app.name.clone());
        }
        match tokio::time::timeout(bound, done.wait_for(|d| *d)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(StillLoading(app.name.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_wait_for_their_own_app_only() {
        let loading = Arc::new(Loading::new([
            ("a".to_string(), vec![], vec![]),
            ("b".to_string(), vec!["b.example".to_string()], vec![]),
        ]));
        let short = Duration::from_millis(10);
        assert_eq!(loading.next_wanted(), None);
        assert_eq!(loading.wait("zzz.localhost", "/", short).await, Ok(()));
        assert_eq!(
            loading.wait("b.example", "/", short).await,
            Err(StillLoading("b".into()))
        );
        // The request made `b` the next to load, once.
        assert!(loading.is_wanted("b") && !loading.is_wanted("a"));
        let _ = loading.wait("b.example", "/", short).await;
        assert_eq!(loading.next_wanted().as_deref(), Some("b"));
        assert_eq!(loading.next_wanted(), None);
        assert!(!loading.claim("b"), "claimed twice");
        loading.unclaim("b");
        assert!(loading.claim("b") && loading.claim("a"));
        let waiter = {
            let loading = loading.clone();
            tokio::spawn(async move {
                loading
                    .wait("a.localhost", "/", Duration::from_secs(30))
                    .await
            })
        };
        loading.finish("a", true);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert!(!loading.progress().ready());
        loading.finish("b", false);
        loading.finish("b", true);
        loading.finish("deployed-later", true);
        assert_eq!(
            loading.progress(),
            Progress {
                apps: 2,
                loaded: 1,
                failed: 1
            }
        );
        assert!(loading.progress().ready());
        loading.all_done().await;
    }
}
