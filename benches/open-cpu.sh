#!/usr/bin/env bash
# The server's CPU per request in the open model against the closed one: `edge serve
# --threads 1` pinned to CPU 0, loadrig on CPU 1, the hello app. Each round runs a closed
# load (CONNS connections, back to back) and then an open load at RATE req/s, and reads
# the server's CPU time (utime + stime, /proc/PID/stat) before and after each: what a
# request costs when requests come in batches and when they come one at a time. Prints
# each run's rate, CPU per request, the share of one CPU used and the open run's p50/p99.
#
#   bash benches/open-cpu.sh                 # RATE=17000 ROUNDS=3 DURATION=8s CONNS=16
#   EDGE=/tmp/edge-old bash benches/open-cpu.sh   # another build
#   SERVER=native bash benches/open-cpu.sh        # the same handler built natively
#
# Loopback only; needs taskset and 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-17000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-16}
unset RUST_BACKTRACE
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 1; }
(cd examples/apps && cargo build --release --quiet)
cargo build --release --quiet -p edge -p loadrig -p edge-native
EDGE=${EDGE:-target/release/edge}
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/apps"
cp target/wasm/wasm32-wasip2/release/hello.wasm "$work/apps/"
case "${SERVER:-edge}" in
  edge)
    taskset -c 0 "$EDGE" serve "$work/apps" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
      --threads 1 --no-cache >"$work/out" 2>&1 &
    ready='Cranelift code serves'
    # The admin API prints its address too: take the one serving apps.
    listening='Serving HTTP on http://' ;;
  native)
    taskset -c 0 target/release/native --app hello --listen 127.0.0.1:0 >"$work/out" 2>&1 &
    ready='http://'
    listening='http://' ;;
  *) echo "SERVER is edge or native" >&2; exit 2 ;;
esac
echo $! >"$work/pid"
pid=$(cat "$work/pid")
for _ in $(seq 1 600); do
  grep -q "$ready" "$work/out" 2>/dev/null && break
  sleep 0.1
done
port=$(grep -o "${listening}[0-9.]*:[0-9]*" "$work/out" | head -1 | sed 's/.*://')
[ -n "$port" ] || { echo "edge did not start:" >&2; cat "$work/out" >&2; exit 1; }
url="http://127.0.0.1:$port/"
load() { taskset -c 1 target/release/loadrig run -t 1 -c "$CONNS" -H 'Host: hello.localhost' "$@" "$url" 2>&1; }
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
secs=$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
load -d 1s >/dev/null
printf '%-6s %-7s %10s %12s %8s %10s %10s\n' round model req/s "CPU µs/req" busy p50 p99
for r in $(seq 1 "$ROUNDS"); do
  for model in closed open; do
    args=(-d "$DURATION")
    [ "$model" = open ] && args+=(-r "$RATE")
    t0=$(ticks)
    out=$(load "${args[@]}")
    t1=$(ticks)
    rate=$(echo "$out" | awk '/http_reqs\./ { for (i = 1; i <= NF; i++) if ($i ~ /\/s$/) { sub(/\/s$/, "", $i); print $i } }')
    dur=$(echo "$out" | grep -E 'http_req_duration\.' | head -1)
    p50=$(echo "$dur" | grep -o 'med=[^ ]*' | cut -d= -f2)
    p99=$(echo "$dur" | grep -o 'p(99)=[^ ]*' | cut -d= -f2)
    awk -v r="$r" -v m="$model" -v rate="$rate" -v t=$((t1 - t0)) -v hz="$hz" -v s="$secs" -v p50="$p50" -v p99="$p99" \
      'BEGIN { cpu = t / hz; printf "%-6s %-7s %10.0f %12.1f %7.0f%% %10s %10s\n", r, m, rate, cpu / (rate * s) * 1e6, 100 * cpu / s, p50, p99 }'
  done
done
