#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the workspace
# (unit tests and the end-to-end suite in tests/e2e) in the release profile, which the
# binary and benches share, so wasmtime is compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
# The JavaScript engine's C toolchain (clang-16, llvm-16, wasi-libc), for `edge build`.
bash sdk-js/setup.sh
# k6's own HTML reporter (npm), which the suite renders loadrig's JSON with.
if [ ! -d target/npm/node_modules/k6-html-reporter ]; then
  npm install --silent --no-audit --no-fund --prefix target/npm k6-html-reporter@1.0.5
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# RUST_BACKTRACE=1 makes wasmtime capture a backtrace on every store drop; the tests
# don't need it and it slows every request.
unset RUST_BACKTRACE
cargo nextest run --workspace --release --no-fail-fast "$@"
