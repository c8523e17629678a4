#!/usr/bin/env bash
# The JavaScript hello (examples/js/hello.js, built with `edge build`) against the Rust
# hello (examples/apps, hello.rs) on the same `edge serve`, pinned to CPU 0, with loadrig
# on CPU 1: per-request cost as a ratio, in one run.
#   1. closed model, CONNS connections, interleaved over ROUNDS rounds: req/s of each
#      (the server's core is saturated, so 1/rate is the per-request cost) -> rust/js;
#   2. server-side per-request times from Server-Timing (instantiate, handle) at c=1.
#   3. the JS build itself: component size and `edge build` time.
#
#   bash benches/js-vs-rust.sh        # ROUNDS=3 DURATION=5s CONNS=16; EDGE=PATH for another build
#
# Target (issue 6): JS hello within 3x of the Rust hello per request. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
unset RUST_BACKTRACE

bash sdk-js/setup.sh
cargo build --release --quiet -p edge -p loadrig
(cd examples/apps && cargo build --release --quiet --bin hello)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/apps"
cp target/wasm/wasm32-wasip2/release/hello.wasm "$work/apps/rust.wasm"
start=$(date +%s%N)
"${EDGE:-target/release/edge}" build examples/js/hello.js -o "$work/apps/js.wasm" 2>"$work/build.txt"
build_ms=$(( ($(date +%s%N) - start) / 1000000 ))

taskset -c 0 "${EDGE:-target/release/edge}" serve "$work/apps" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
  --cache-dir "$work/cache" >"$work/edge.out" 2>&1 &
for _ in $(seq 1 300); do grep -q "Serving HTTP" "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'Serving HTTP on http://[0-9.:]*/' "$work/edge.out" | sed 's/Serving HTTP on //')
[ -n "$url" ] || { cat "$work/edge.out" >&2; exit 1; }
rig() { local app=$1; shift; taskset -c 1 target/release/loadrig run "$url" --no-progress -H "Host: $app" "$@"; }
rate_of() { awk '$1 ~ /^http_reqs\./ { print $3 }' | sed 's/\/s//'; }
field() { awk -v m="$1" -v f="$2" '$1 ~ "^"m"\\." { for (i=2;i<=NF;i++) if (index($i, f"=") == 1) print substr($i, length(f)+2) }'; }

echo "edge serve at $url (CPU 0), loadrig on CPU 1, $CONNS connections, $DURATION per run"
echo "js component: $(stat -c %s "$work/apps/js.wasm") bytes, edge build took ${build_ms} ms"
# Measure Cranelift's code, not Winch's: wait until both apps are optimized (edge compiles
# them in the background, on the server's core, after serving from Winch first).
for _ in $(seq 1 600); do
  grep -q 'optimized `rust`' "$work/edge.out" && grep -q 'optimized `js`' "$work/edge.out" && break
  sleep 0.1
done
rig rust -c "$CONNS" -d 2s >/dev/null
rig js -c "$CONNS" -d 2s >/dev/null
printf "\n%-6s %12s %12s %10s\n" round "rust req/s" "js req/s" "rust/js"
for r in $(seq 1 "$ROUNDS"); do
  rust=$(rig rust -c "$CONNS" -d "$DURATION" | rate_of)
  js=$(rig js -c "$CONNS" -d "$DURATION" | rate_of)
  awk -v r="$r" -v a="$rust" -v b="$js" 'BEGIN { printf "%-6s %12.0f %12.0f %10.2f\n", r, a, b, a/b }'
  echo "$rust $js" >>"$work/closed"
done
awk '{ a+=$1; b+=$2; n++ } END { printf "mean   %12.0f %12.0f %10.2f   <- JS costs this many times the Rust hello per request\n", a/n, b/n, a/b }' "$work/closed"

echo
echo "server-side, one connection (Server-Timing, microseconds):"
printf "%-6s %16s %16s %16s %16s\n" app "instantiate p50" "instantiate p99" "handle p50" "handle p99"
for app in rust js; do
  rig "$app" -c 1 -d "$DURATION" >"$work/$app.c1"
  printf "%-6s %16s %16s %16s %16s\n" "$app" \
    "$(field server_timing_instantiate med <"$work/$app.c1")" "$(field server_timing_instantiate 'p(99)' <"$work/$app.c1")" \
    "$(field server_timing_handle med <"$work/$app.c1")" "$(field server_timing_handle 'p(99)' <"$work/$app.c1")"
done
