#!/usr/bin/env bash
# Builds the hello example and serves it with edge on 127.0.0.1:8080 (override with
# EDGE_LISTEN). Try it: curl -H 'Host: hello.localhost' http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release)
mkdir -p target/apps
cp target/wasm/wasm32-wasip2/release/hello.wasm target/apps/hello.wasm
unset RUST_BACKTRACE
exec cargo run --release -p edge -- serve target/apps --listen "${EDGE_LISTEN:-127.0.0.1:8080}" "$@"
