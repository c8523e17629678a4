#!/usr/bin/env bash
# A cluster on one PostgreSQL app store (issue 17): how long a deploy through one node
# takes to be served by every node of three, against the same deploy on a single node,
# with warm caches; and the request path of a cluster node against a single node. Starts
# deploy/local-cluster.sh (PostgreSQL, three nodes, haproxy) and one single node; the
# measuring is in benches/cluster.py. Loopback only.
#
#   bash benches/cluster.sh            # ROUNDS=100
#
# Targets: every node serves a deploy within p50 50 ms / p99 200 ms above the single-node
# deploy; a cluster node's request rate within 5 % of a single node's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-100}
unset RUST_BACKTRACE

rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release --quiet --bin hello --target wasm32-wasip2 --target-dir ../../target/wasm)
(cd tests/guests && cargo build --release --quiet --bin counter --target wasm32-wasip2 --target-dir ../../target/wasm)
cargo build --release --quiet -p edge -p loadrig
python3 benches/cluster.py target/release/edge target/release/loadrig \
  target/wasm/wasm32-wasip2/release/hello.wasm target/wasm/wasm32-wasip2/release/counter.wasm "$ROUNDS"
