//! edge: a multitenant WebAssembly edge-function server.
//!
//! Every request runs in a fresh wasmtime instance of a `wasi:http/proxy` component. The
//! pipeline an app goes through, one module per stage:
//!
//! ```text
//! file ─load→ Validated ─preinit (Wizer, if it exports `wizer-initialize`)→ bytes
//!      ─compile (Cranelift, on-disk cache)→ Compiled ─prepare (link once)→ Prepared
//! request ─route→ App ─handle (fresh Store + instance, limits)→ response
//! ```
//!
//! [`app::Loader::load`] runs the load pipeline top to bottom; [`handle::handle`] is the request
//! path; [`server`] is the hyper front end.

pub mod admin;
pub mod alloc;
pub mod app;
pub mod busy_poll;
pub mod cluster;
pub mod commands;
pub mod compile;
pub mod config;
pub mod connection;
pub mod control;
pub mod engine;
pub mod handle;
pub mod host;
pub mod js;
pub mod kv;
pub mod load;
pub mod loading;
pub mod manifest;
pub mod metrics;
pub mod preinit;
pub mod prepare;
pub mod reuse;
pub mod router;
pub mod segments;
pub mod server;
pub mod storage;
pub mod tls;
