//! Stage 4: link a compiled component against the host once, so each request only
//! instantiates.

use crate::host::Host;
use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::{ProxyIndices, ProxyPre};

/// A component linked and type-checked against the host: ready to instantiate. Cloning
/// shares the code.
#[derive(Clone)]
pub struct Prepared {
    /// Pre-instantiated `wasi:http/proxy` world.
    pub pre: ProxyPre<Host>,
    /// Where its exports are, to find them in an instance made from `pre`.
    pub indices: ProxyIndices,
}

/// The host's imports, built once per engine: all of WASI 0.2 (sandboxed by [`Host`]) and
/// `wasi:http`, plus `wasi:keyvalue` and `wasi:config`, so components built by standard toolchains link with no flags.
pub fn linker(engine: &Engine) -> Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::kv::host::add_to_linker(&mut linker, Host::kv)?;
    Ok(linker)
}

/// Links `component` and checks it exports `wasi:http/incoming-handler`.
pub fn prepare(linker: &Linker<Host>, component: &Component) -> Result<Prepared> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(anyhow::Error::from)
        .context("the component imports something edge does not provide")?;
    let pre = ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("the component does not export `wasi:http/incoming-handler` (is it a `wasi:http/proxy` component?)")?;
    let indices = ProxyIndices::new(pre.instance_pre()).map_err(anyhow::Error::from)?;
    Ok(Prepared { pre, indices })
}
