#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the workspace
# (unit tests and the end-to-end suite in tests/e2e) in the release profile, which the
# binary and benches share, so wasmtime is compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
# The JavaScript engine's C toolchain (clang-16, llvm-16, wasi-libc), for `edge build`.
bash sdk-js/setup.sh
# npm: k6's own HTML reporter, which the suite renders loadrig's JSON with, and
# puppeteer-core, which drives Debian's Chromium to render loadrig's HTML reports.
if [ ! -d target/npm/node_modules/k6-html-reporter ] || [ ! -d target/npm/node_modules/puppeteer-core ]; then
  npm install --silent --no-audit --no-fund --prefix target/npm \
    k6-html-reporter@1.0.5 puppeteer-core@24.43.1
fi
# apt: Prometheus' promtool (package `prometheus`), which checks /metrics, the dashboard's
# queries and the scrape config in deploy/; headless Chromium (package `chromium`) for the
# screenshot tests of the HTML reports; PostgreSQL.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# PostgreSQL's server binaries, for the cluster state store's tests (the harness runs its
# own throwaway server, as the `postgres` user when the suite runs as root).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# haproxy, the load balancer in front of the cluster tests' edge nodes.
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Python tools in target/py: componentize-py (the Python example; examples/python/build.sh
# installs it the same way), the Prometheus Python client's strict OpenMetrics parser, and
# kubernetes-validate (offline schemas) for the manifests in deploy/kubernetes.
if ! target/py/bin/python -c "import componentize_py, prometheus_client, kubernetes_validate" 2>/dev/null; then
  python3 -m venv target/py
  target/py/bin/pip install --quiet --disable-pip-version-check \
    componentize-py==0.25.1 prometheus-client==0.26.0 kubernetes-validate==1.37.0
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# RUST_BACKTRACE=1 makes wasmtime capture a backtrace on every store drop; the tests
# don't need it and it slows every request.
unset RUST_BACKTRACE
# The loadrig runs of the tests share one code cache under target/ (not ~/.cache): the k6
# VU engine is compiled once for the whole suite.
export LOADRIG_CACHE_DIR="${LOADRIG_CACHE_DIR:-$PWD/target/loadrig-cache}"
cargo nextest run --workspace --release --no-fail-fast "$@"
