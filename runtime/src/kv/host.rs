//! The guest side: `wasi:keyvalue` (store, atomics, batch) in both versions guests import
//! today — 0.2.0-draft (wasmtime's own crate, u64 counters) and 0.2.0-draft2 (the
//! proposal's head and Spin 3's: string cursors, signed counters, compare-and-swap) — on
//! the same stores, and `wasi:config` (store), answered from the app's [`AppState`].
//!
//! A request's store holds `Option<Arc<AppState>>`: `None` while a component is being
//! pre-initialized, so a Wizer snapshot can never hold a key, a config value or a secret
//! (the snapshot is cached by the component's digest and could reach another app).

use super::{AppState, KvError};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod keyvalue {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: trappable },
        with: { "wasi:keyvalue/store.bucket": super::Bucket },
    });
}

mod keyvalue2 {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue-draft2",
        world: "wasi:keyvalue/imports",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

mod config {
    wasmtime::component::bindgen!({
        path: "wit/config",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

use config::wasi::config::store as cfg;
use keyvalue::wasi::keyvalue::{atomics, batch, store};
use keyvalue2::wasi::keyvalue::{atomics as atomics2, batch as batch2, store as store2};

/// An open store, as the guest holds it (either version of the interface).
pub struct Bucket {
    store: String,
}

/// A compare-and-swap handle (0.2.0-draft2): the value of `key` when it was made.
pub struct Cas {
    store: String,
    key: String,
    seen: Option<Vec<u8>>,
}

/// What the bindings borrow from a request's host state.
pub struct KvView<'a> {
    /// The app's state; `None` during pre-initialization, or without a state database.
    pub state: Option<&'a Arc<AppState>>,
    /// Whether the component is being pre-initialized (no state, and calls say why).
    pub preinit: bool,
    /// The request's resource table.
    pub table: &'a mut ResourceTable,
}

struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

const NO_DATABASE: &str = "this host keeps no key-value stores";

const DURING_PREINIT: &str = "key-value stores and config are not available during \
    pre-initialization (`wizer-initialize`): read them while handling a request";

impl KvView<'_> {
    fn state(&self) -> Result<&AppState, KvError> {
        self.state
            .map(|s| &**s)
            .ok_or(KvError::Unavailable(if self.preinit {
                DURING_PREINIT
            } else {
                NO_DATABASE
            }))
    }

    /// Config as an app sees it where the host keeps no state (an embedding with no
    /// database, such as the benches): empty, not an error.
    fn config_or_empty<R: Default>(
        &self,
        f: impl FnOnce(&AppState) -> Result<R, KvError>,
    ) -> Result<R, cfg::Error> {
        match self.state {
            None if !self.preinit => Ok(R::default()),
            _ => self.state().and_then(f).map_err(config_error),
        }
    }

    /// Runs `f` on the state and the store `bucket` names.
    fn on<R>(
        &mut self,
        bucket: &Resource<Bucket>,
        f: impl FnOnce(&AppState, &str) -> Result<R, KvError>,
    ) -> wasmtime::Result<Result<R, KvError>> {
        let store = self.table.get(bucket)?.store.clone();
        Ok(self.state().and_then(|s| f(s, &store)))
    }

    fn open(&mut self, identifier: &str) -> wasmtime::Result<Result<Resource<Bucket>, KvError>> {
        let store = match self
            .state()
            .and_then(|s| s.open(identifier).map(str::to_owned))
        {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(Bucket { store })?))
    }

    /// A CAS handle on `key` of `store`, holding its value now.
    fn cas(
        &mut self,
        store: String,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, KvError>> {
        let seen = match self.state().and_then(|s| s.get(&store, &key)) {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(Cas { store, key, seen })?))
    }
}

fn to_wit(e: KvError) -> store::Error {
    match e {
        KvError::NoSuchStore(_) => store::Error::NoSuchStore,
        other => store::Error::Other(other.to_string()),
    }
}

fn to_wit2(e: KvError) -> store2::Error {
    match e {
        KvError::NoSuchStore(_) => store2::Error::NoSuchStore,
        other => store2::Error::Other(other.to_string()),
    }
}

/// Adds both versions of `wasi:keyvalue`, and `wasi:config`, to `linker`; `get` borrows
/// the view from the request's host state.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> anyhow::Result<()> {
    keyvalue::Imports::add_to_linker::<T, KvData>(linker, get)?;
    keyvalue2::Imports::add_to_linker::<T, KvData>(linker, get)?;
    config::Imports::add_to_linker::<T, KvData>(linker, get)?;
    Ok(())
}

/// The parts both versions share: `store` but its cursor, and `batch`.
macro_rules! shared {
    ($store:ident, $batch:ident, $to_wit:ident) => {
        impl $store::Host for KvView<'_> {
            fn open(
                &mut self,
                identifier: String,
            ) -> wasmtime::Result<Result<Resource<Bucket>, $store::Error>> {
                Ok(KvView::open(self, &identifier)?.map_err($to_wit))
            }
        }

        impl $store::HostBucket for KvView<'_> {
            fn get(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| s.get(store, &key))?
                    .map_err($to_wit))
            }

            fn set(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| s.set(store, &key, &value))?
                    .map_err($to_wit))
            }

            fn delete(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<(), $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| s.delete(store, &key))?
                    .map_err($to_wit))
            }

            fn exists(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<bool, $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| s.exists(store, &key))?
                    .map_err($to_wit))
            }

            fn list_keys(
                &mut self,
                bucket: Resource<Bucket>,
                cursor: Option<<$store::KeyResponse as Page>::Cursor>,
            ) -> wasmtime::Result<Result<$store::KeyResponse, $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| {
                        let (keys, next) = s.list(store, $store::KeyResponse::decode(cursor)?)?;
                        Ok($store::KeyResponse::page(keys, next))
                    })?
                    .map_err($to_wit))
            }

            fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
                self.table.delete(bucket)?;
                Ok(())
            }
        }

        impl $batch::Host for KvView<'_> {
            fn get_many(
                &mut self,
                bucket: Resource<Bucket>,
                keys: Vec<String>,
            ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| {
                        let values = s.get_many(store, &keys)?;
                        Ok(keys
                            .into_iter()
                            .zip(values)
                            .map(|(k, v)| v.map(|v| (k, v)))
                            .collect())
                    })?
                    .map_err($to_wit))
            }

            fn set_many(
                &mut self,
                bucket: Resource<Bucket>,
                key_values: Vec<(String, Vec<u8>)>,
            ) -> wasmtime::Result<Result<(), $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| {
                        let pairs: Vec<(&str, &[u8])> = key_values
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_slice()))
                            .collect();
                        s.set_many(store, &pairs)
                    })?
                    .map_err($to_wit))
            }

            fn delete_many(
                &mut self,
                bucket: Resource<Bucket>,
                keys: Vec<String>,
            ) -> wasmtime::Result<Result<(), $store::Error>> {
                Ok(self
                    .on(&bucket, |s, store| {
                        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                        s.delete_many(store, &keys)
                    })?
                    .map_err($to_wit))
            }
        }
    };
}

shared!(store, batch, to_wit);
shared!(store2, batch2, to_wit2);

/// How each version's `list-keys` pages are cursored: a `u64`, or (draft2) a string that
/// holds one.
trait Page: Sized {
    type Cursor;
    fn decode(cursor: Option<Self::Cursor>) -> Result<Option<u64>, KvError>;
    fn page(keys: Vec<String>, next: Option<u64>) -> Self;
}

impl Page for store::KeyResponse {
    type Cursor = u64;
    fn decode(cursor: Option<u64>) -> Result<Option<u64>, KvError> {
        Ok(cursor)
    }
    fn page(keys: Vec<String>, cursor: Option<u64>) -> Self {
        store::KeyResponse { keys, cursor }
    }
}

impl Page for store2::KeyResponse {
    type Cursor = String;
    fn decode(cursor: Option<String>) -> Result<Option<u64>, KvError> {
        cursor
            .map(|c| {
                c.parse::<u64>().map_err(|_| {
                    KvError::Invalid(format!(
                        "`{c}` is not a cursor from this store's `list-keys`"
                    ))
                })
            })
            .transpose()
    }
    fn page(keys: Vec<String>, cursor: Option<u64>) -> Self {
        store2::KeyResponse {
            keys,
            cursor: cursor.map(|c| c.to_string()),
        }
    }
}

impl atomics::Host for KvView<'_> {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        Ok(self
            .on(&bucket, |s, store| {
                let delta = i64::try_from(delta).map_err(|_| {
                    KvError::Invalid(format!("an increment of {delta} is over i64::MAX"))
                })?;
                let n = s.increment(store, &key, delta)?;
                u64::try_from(n).map_err(|_| {
                    KvError::Invalid(format!(
                        "the counter at `{key}` is {n}, below zero: read it with wasi:keyvalue@0.2.0-draft2"
                    ))
                })
            })?
            .map_err(to_wit))
    }
}

impl atomics2::Host for KvView<'_> {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store2::Error>> {
        Ok(self
            .on(&bucket, |s, store| s.increment(store, &key, delta))?
            .map_err(to_wit2))
    }

    fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics2::CasError>> {
        let Cas { store, key, seen } = self.table.delete(cas)?;
        let swapped = self
            .state()
            .and_then(|s| s.swap(&store, &key, seen.as_deref(), &value));
        Ok(match swapped {
            Ok(true) => Ok(()),
            Ok(false) => match self.cas(store, key)? {
                Ok(fresh) => Err(atomics2::CasError::CasFailed(fresh)),
                Err(e) => Err(atomics2::CasError::StoreError(to_wit2(e))),
            },
            Err(e) => Err(atomics2::CasError::StoreError(to_wit2(e))),
        })
    }
}

impl atomics2::HostCas for KvView<'_> {
    fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store2::Error>> {
        let store = self.table.get(&bucket)?.store.clone();
        Ok(self.cas(store, key)?.map_err(to_wit2))
    }

    fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store2::Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

fn config_error(e: KvError) -> cfg::Error {
    match e {
        KvError::Backend(m) => cfg::Error::Io(m),
        other => cfg::Error::Upstream(other.to_string()),
    }
}

impl cfg::Host for KvView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, cfg::Error>> {
        Ok(self.config_or_empty(|s| s.config(&key)))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, cfg::Error>> {
        Ok(self.config_or_empty(|s| s.config_all()))
    }
}
