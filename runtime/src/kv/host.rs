//! The guest side: `wasi:keyvalue` (store, atomics, batch) and `wasi:config` (store),
//! answered from the app's [`AppState`].
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

mod config {
    wasmtime::component::bindgen!({
        path: "wit/config",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

use config::wasi::config::store as cfg;
use keyvalue::wasi::keyvalue::{atomics, batch, store};

/// An open store, as the guest holds it.
pub struct Bucket {
    store: String,
}

/// What the bindings borrow from a request's host state.
pub struct KvView<'a> {
    /// The app's state; `None` during pre-initialization.
    pub state: Option<&'a Arc<AppState>>,
    /// The request's resource table.
    pub table: &'a mut ResourceTable,
}

struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

const DURING_PREINIT: &str = "key-value stores and config are not available during \
    pre-initialization (`wizer-initialize`): read them while handling a request";

impl KvView<'_> {
    fn state(&self) -> Result<&AppState, KvError> {
        self.state
            .map(|s| &**s)
            .ok_or(KvError::Unavailable(DURING_PREINIT))
    }

    /// Runs `f` on the state and the store `bucket` names.
    fn on<R>(
        &mut self,
        bucket: &Resource<Bucket>,
        f: impl FnOnce(&AppState, &str) -> Result<R, KvError>,
    ) -> wasmtime::Result<Result<R, store::Error>> {
        let store = self.table.get(bucket)?.store.clone();
        Ok(self.state().and_then(|s| f(s, &store)).map_err(to_wit))
    }
}

fn to_wit(e: KvError) -> store::Error {
    match e {
        KvError::NoSuchStore(_) => store::Error::NoSuchStore,
        other => store::Error::Other(other.to_string()),
    }
}

/// Adds `wasi:keyvalue` and `wasi:config` to `linker`; `get` borrows the view from the
/// request's host state.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> anyhow::Result<()> {
    keyvalue::Imports::add_to_linker::<T, KvData>(linker, get)?;
    config::Imports::add_to_linker::<T, KvData>(linker, get)?;
    Ok(())
}

impl store::Host for KvView<'_> {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let store = match self
            .state()
            .and_then(|s| s.open(&identifier).map(str::to_owned))
        {
            Ok(store) => store,
            Err(e) => return Ok(Err(to_wit(e))),
        };
        Ok(Ok(self.table.push(Bucket { store })?))
    }
}

impl store::HostBucket for KvView<'_> {
    fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        self.on(&bucket, |s, store| s.get(store, &key))
    }

    fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.on(&bucket, |s, store| s.set(store, &key, &value))
    }

    fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.on(&bucket, |s, store| s.delete(store, &key))
    }

    fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        self.on(&bucket, |s, store| s.exists(store, &key))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        self.on(&bucket, |s, store| {
            let (keys, cursor) = s.list(store, cursor)?;
            Ok(store::KeyResponse { keys, cursor })
        })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        self.on(&bucket, |s, store| s.increment(store, &key, delta))
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        self.on(&bucket, |s, store| {
            let values = s.get_many(store, &keys)?;
            Ok(keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        })
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.on(&bucket, |s, store| {
            let pairs: Vec<(&str, &[u8])> = key_values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            s.set_many(store, &pairs)
        })
    }

    fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.on(&bucket, |s, store| {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            s.delete_many(store, &keys)
        })
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
        Ok(self
            .state()
            .and_then(|s| s.config(&key))
            .map_err(config_error))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, cfg::Error>> {
        Ok(self
            .state()
            .and_then(|s| s.config_all())
            .map_err(config_error))
    }
}
