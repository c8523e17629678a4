#!/usr/bin/env bash
# Start-up and density with many apps (issue 16): process start -> first byte and -> every
# app ready (`/readyz`) with APPS distinct apps in the compile cache, the idle RSS per app
# and what it is made of; then the request path, `/metrics` and `GET /apps` with
# LISTING_APPS apps against a one-app server. The measuring is in benches/startup.py.
#
#   bash benches/startup.sh            # APPS=1000 ROUNDS=5 LISTING_APPS=10000
#
# Targets: first byte <= 50 ms and all 1 000 ready within 2 s. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
APPS=${APPS:-1000}
ROUNDS=${ROUNDS:-5}
LISTING_APPS=${LISTING_APPS:-10000}
unset RUST_BACKTRACE

rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release --quiet --bin hello --target wasm32-wasip2 --target-dir ../../target/wasm)
cargo build --release --quiet -p edge
# WORK=DIR keeps the apps and the filled cache there for the next run; EDGE=PATH runs
# another edge binary (an A/B against an older build).
if [ -n "${WORK:-}" ]; then
  work=$WORK; mkdir -p "$work"
else
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi
# Thousands of apps: each compiled-code file stays open (mapped) while its app serves.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
python3 benches/startup.py "${EDGE:-target/release/edge}" target/wasm/wasm32-wasip2/release/hello.wasm \
  "$work" "$APPS" "$ROUNDS" "$LISTING_APPS"
