#!/usr/bin/env bash
# Two builds of `edge serve` side by side on the same app, interleaved: each server pinned
# to CPU 0 in turn, wrk on CPU 1, ROUNDS rounds of A then B (B first in even rounds, so
# neither always runs on a warmer machine). Prints each round's req/s and p99, the means
# and B/A. Issue 20's "this version vs the previous main" is
#
#   BASE=origin/main bash benches/ab-serve.sh          # A = BASE built in a worktree, B = this tree
#   A=/tmp/edge-old B=target/release/edge bash benches/ab-serve.sh   # two binaries at hand
#
# BASE is built with its own target directory (target/ab-base: the first build compiles
# wasmtime, ~10 minutes; later ones reuse it). APP=hello|site|markdown (default hello),
# ROUNDS=5, DURATION=5s, CONNS=16. Needs wrk (apt-get install wrk). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
APP=${APP:-hello}
unset RUST_BACKTRACE
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT

(cd examples/apps && cargo build --release --quiet)
if [ -z "${B:-}" ]; then
  cargo build --release --quiet -p edge
  B=target/release/edge
fi
if [ -z "${A:-}" ]; then
  [ -n "${BASE:-}" ] || { echo "give BASE=<git revision> or A=<edge binary>" >&2; exit 2; }
  git worktree add --quiet --detach "$work/base" "$BASE"
  echo "building $BASE ($(git rev-parse --short "$BASE")) into target/ab-base …" >&2
  cargo build --release --quiet -p edge --manifest-path "$work/base/Cargo.toml" --target-dir target/ab-base
  cp target/ab-base/release/edge "$work/edge-a"
  A=$work/edge-a
fi
mkdir -p "$work/apps"
cp "target/wasm/wasm32-wasip2/release/$APP.wasm" "$work/apps/"

start() { # binary -> port
  taskset -c 0 "$1" serve "$work/apps" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --no-cache \
    >"$work/out" 2>&1 &
  echo $! >"$work/pids"
  for _ in $(seq 1 600); do
    # Wait until the app serves from Cranelift's code, not Winch's.
    if grep -q 'Cranelift code serves' "$work/out" 2>/dev/null; then
      grep -o 'Serving HTTP on http://[0-9.]*:[0-9]*' "$work/out" | head -1 | sed 's/.*://'
      return
    fi
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$work/out" >&2; exit 1
}
stop() { kill "$(cat "$work/pids")" 2>/dev/null || true; wait 2>/dev/null || true; }
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n*=1; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
run() { # binary -> "rate p99_ms"
  local port; port=$(start "$1")
  taskset -c 1 wrk -t1 -c"$CONNS" -d1s -H "Host: $APP.localhost" "http://127.0.0.1:$port/" >/dev/null
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Host: $APP.localhost" \
    "http://127.0.0.1:$port/" >"$work/wrk.txt"
  stop
  if grep -q 'Non-2xx' "$work/wrk.txt"; then echo "non-2xx responses:" >&2; cat "$work/wrk.txt" >&2; exit 1; fi
  echo "$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt") $(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.txt")")"
}

echo "A = $A"
echo "B = $B"
printf '%-6s %12s %9s %12s %9s %7s\n' round "A req/s" "A p99" "B req/s" "B p99" B/A
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    read -r ar a99 < <(run "$A"); read -r br b99 < <(run "$B")
  else
    read -r br b99 < <(run "$B"); read -r ar a99 < <(run "$A")
  fi
  printf '%-6s %12.0f %9s %12.0f %9s %7.3f\n' "$r" "$ar" "$a99" "$br" "$b99" "$(awk -v a="$ar" -v b="$br" 'BEGIN { print b/a }')"
  echo "$ar $a99 $br $b99" >>"$work/rounds"
done
awk '{ a+=$1; a99+=$2; b+=$3; b99+=$4; n++ } END {
  printf "mean   %12.0f %9.3f %12.0f %9.3f %7.3f\n", a/n, a99/n, b/n, b99/n, b/a }' "$work/rounds"
