//! End-to-end tests of `edge`: the real binary, real sockets on port 0, and guest
//! components built from source (`examples/apps`, `tests/guests`, `examples/python`) by the
//! harness.
#![allow(missing_docs, unreachable_pub)]

/// The harness: building guests, apps directories, starting `edge`, an HTTP client.
mod support;

/// Routing, fresh instances, Server-Timing, bad app files, admission limits.
mod serve;

/// wasi:http conformance: streamed and sized bodies both ways, trailers, early drops,
/// guests that answer badly.
mod conformance;

/// Hostile guests: traps, infinite loops, memory bombs.
mod limits;

/// Instances reset in place and kept between requests: nothing of one request reaches
/// the next; traps and kills are never kept; `--keep-instances 0`; deploys.
mod reuse;

/// What a guest can reach: host files, environment, outbound HTTP, the log.
mod sandbox;

/// Start, restart, cache, Wizer pre-initialization, allocator fallback, shutdown.
mod lifecycle;

/// Deploys through the admin API and the CLI: versions, rollback, delete, bad input,
/// crashes, `--watch`, metrics.
mod deploy;

/// JavaScript apps: `edge build` and the Web APIs of sdk-js.
mod js;

/// A Python app built with componentize-py.
mod python;

/// `/metrics` in both Prometheus formats, checked by the ecosystem's tools; `deploy/`.
mod metrics;

/// App state: wasi:keyvalue on the SQLite store, wasi:config, secrets, `edge kv`.
mod state;

/// Connection hygiene: header and body read timeouts, the connection cap, header limits.
mod connections;

/// HTTPS: HTTP/1.1 and HTTP/2 by ALPN, certificates by SNI, reloads, bad certificates.
mod tls;

/// Start-up: listening at once, apps loaded in the background, 503 while loading,
/// `/healthz` and `/readyz`.
mod startup;

/// A cluster on one PostgreSQL app store behind haproxy: propagation, kills, database
/// restarts, concurrent deploys, corrupt blobs; the Kubernetes manifests.
mod cluster;
