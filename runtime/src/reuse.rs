//! Instances reset in place and kept for the app's next request.
//!
//! A request used to instantiate its app's component and tear the instance down after
//! it; those two were about a third of a served hello's CPU. Now an instance whose request
//! ended cleanly is reset in place (`vendor/wasmtime`, `Instance::reuse`: every memory's
//! contents and size, every table, global and segment, the component's flags and handle
//! tables back to what instantiation left) and kept here, with its store, for the next
//! request of the same app version. The request's host state (its WASI context, resource
//! table and limiter) is never reused: every request gets a new one.
//!
//! An instance is kept only when its request ended with the guest returning normally.
//! A trap, a timeout, a memory-limit kill, or an error from the reset drops it, and the
//! next request instantiates afresh. So does every instance the pooling allocator did
//! not make (the baseline tier, `--allocator on-demand`).
//!
//! The cache is server-wide and bounded (`--keep-instances`): kept instances hold pool
//! slots, which the pool is sized for on top of `--max-concurrency`, so they never take a
//! slot a request needs. When it is full the instance kept longest ago goes, whatever its
//! app: apps that stop getting requests hand their slots to those that do.

use crate::app::App;
use crate::host::Host;
use crate::metrics::ReuseMeters;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use wasmtime::Store;
use wasmtime::component::Instance;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// Default `--keep-instances`.
pub const DEFAULT_KEEP_INSTANCES: usize = 16;

/// An instance of an app with its store, ready for a request.
pub struct Kept {
    /// The store, holding a new [`Host`] for the next request.
    pub store: Store<Host>,
    /// The component instance, in the state instantiation left it in.
    pub instance: Instance,
    /// Its `wasi:http/proxy` exports.
    pub proxy: Proxy,
    /// With `--check-resets`: its state right after instantiation, which every reset
    /// must reproduce.
    pub fingerprint: Option<Arc<[u8]>>,
}

/// The server's kept instances, oldest first.
pub struct InstanceCache {
    capacity: usize,
    check: bool,
    kept: Mutex<VecDeque<(Weak<App>, Kept)>>,
    meters: ReuseMeters,
}

impl InstanceCache {
    /// A cache of at most `capacity` instances (0: none are kept), counted in `meters`.
    /// With `check`, each reset is compared with the instance's state right after
    /// instantiation, and an instance that differs is dropped (slow: for testing).
    pub fn new(capacity: usize, check: bool, meters: ReuseMeters) -> InstanceCache {
        InstanceCache {
            capacity,
            check,
            kept: Mutex::new(VecDeque::with_capacity(capacity)),
            meters,
        }
    }

    /// A cache that keeps nothing: a fresh instance for every request.
    pub fn disabled() -> InstanceCache {
        InstanceCache::new(0, false, ReuseMeters::default())
    }

    /// Whether instances are kept at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Whether resets are checked (`--check-resets`).
    pub fn checking(&self) -> bool {
        self.check
    }

    /// A kept instance of `app` (this very version), if there is one: the newest.
    pub fn take(&self, app: &Arc<App>) -> Option<Kept> {
        if !self.enabled() {
            return None;
        }
        let mut kept = self.kept.lock().unwrap();
        let at = kept
            .iter()
            .rposition(|(owner, _)| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(app)))?;
        let (_, instance) = kept.remove(at).expect("in range");
        self.meters.idle.set(kept.len() as i64);
        drop(kept);
        self.meters.reused.inc();
        Some(instance)
    }

    /// Keeps `instance` of `app`, which a request has just finished with and which has
    /// been reset. If the cache is full, an instance of an app version no longer served
    /// goes, or else the one kept longest ago.
    pub fn put(&self, app: &Arc<App>, instance: Kept) {
        if !self.enabled() {
            return;
        }
        self.meters.kept.inc();
        let evicted = {
            let mut kept = self.kept.lock().unwrap();
            let evicted = if kept.len() >= self.capacity {
                let at = kept
                    .iter()
                    .position(|(owner, _)| owner.strong_count() == 0)
                    .unwrap_or(0);
                kept.remove(at)
            } else {
                None
            };
            kept.push_back((Arc::downgrade(app), instance));
            self.meters.idle.set(kept.len() as i64);
            evicted
        };
        // Dropping a store frees its instance's pool slots: done outside the lock.
        drop(evicted);
    }

    /// Counts an instance dropped because its reset failed (`mismatch`: it differed from
    /// its state after instantiation).
    pub fn dropped(&self, mismatch: bool) {
        let counter = match mismatch {
            true => &self.meters.mismatched,
            false => &self.meters.failed,
        };
        counter.inc();
    }
}
