#!/usr/bin/env bash
# edge serve against wasmtime serve (the reference embedding) on the same hello
# component. Each server is pinned to CPU 0 and loaded by wrk pinned to CPU 1, one server
# at a time, interleaved over several rounds; prints both request rates, p50/p99 latency
# and the ratios.
#
#   bash benches/serve-vs-wasmtime.sh            # ROUNDS=3 DURATION=10s CONNS=16
#
# Needs wrk (apt-get install wrk) and wasmtime-cli 48 (cargo install wasmtime-cli
# --version 48.0.8 --locked, about 10 minutes); it installs neither on its own unless
# INSTALL=1. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
unset RUST_BACKTRACE

if [ "${INSTALL:-0}" = 1 ]; then
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.' \
    || cargo install wasmtime-cli --version 48.0.8 --locked
fi
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk (or INSTALL=1)" >&2; exit 1; }
wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.' \
  || { echo "wasmtime 48 not found: cargo install wasmtime-cli --version 48.0.8 --locked (or INSTALL=1)" >&2; exit 1; }

rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release --quiet)
cargo build --release --quiet -p edge
work=$(mktemp -d)
# Servers started by `start` run in a subshell ($(...) or <(...)), so they are not jobs
# of this shell: their pids are kept in $work/pids.
trap 'kill $(jobs -p) $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/apps"
cp target/wasm/wasm32-wasip2/release/hello.wasm "$work/apps/hello.wasm"

# Start a server pinned to CPU 0 and print the port from its startup line.
start() { # name, command...
  local name=$1; shift
  taskset -c 0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  echo $! >>"$work/pids"
  for _ in $(seq 1 600); do
    if grep -qo 'Serving HTTP on http://[0-9.]*:[0-9]*' "$work/$name.out" "$work/$name.err" 2>/dev/null; then
      grep -ho 'Serving HTTP on http://[0-9.]*:[0-9]*' "$work/$name.out" "$work/$name.err" | head -1 | sed 's/.*://'
      return
    fi
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}

edge_port=$(start edge target/release/edge serve "$work/apps" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --cache-dir "$work/cache")
wt_port=$(start wasmtime wasmtime serve -Scli --addr 127.0.0.1:0 "$work/apps/hello.wasm")
# wasmtime serve prints its address as 0.0.0.0 or 127.0.0.1 depending on version; both bind loopback here.

run() { # port -> "rate p50_ms p99_ms"
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H 'Host: hello.localhost' \
    "http://127.0.0.1:$1/" >"$work/wrk.txt"
  local rate p50 p99
  rate=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  if grep -q 'Non-2xx' "$work/wrk.txt"; then echo "non-2xx responses:" >&2; cat "$work/wrk.txt" >&2; exit 1; fi
  echo "$rate $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { # wrk prints 12.34us / 1.23ms / 1.02s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n*=1; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

# Warm both (first requests fault in code pages).
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H 'Host: hello.localhost' "http://127.0.0.1:$edge_port/" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$wt_port/" >/dev/null

printf '%-6s %-10s %12s %10s %10s\n' round server req/s p50_ms p99_ms
for r in $(seq 1 "$ROUNDS"); do
  read -r er e50 e99 < <(run "$edge_port")
  printf '%-6s %-10s %12s %10s %10s\n' "$r" edge "$er" "$e50" "$e99"
  read -r wr w50 w99 < <(run "$wt_port")
  printf '%-6s %-10s %12s %10s %10s\n' "$r" wasmtime "$wr" "$w50" "$w99"
  echo "$er $e50 $e99 $wr $w50 $w99" >>"$work/rounds"
done
awk '{ er+=$1; e50+=$2; e99+=$3; wr+=$4; w50+=$5; w99+=$6; n++ }
  END { printf "\nmean over %d rounds (server on 1 core, wrk on the other, %s connections)\n", n, "'"$CONNS"'";
        printf "  edge serve     %10.0f req/s  p50 %.3f ms  p99 %.3f ms\n", er/n, e50/n, e99/n;
        printf "  wasmtime serve %10.0f req/s  p50 %.3f ms  p99 %.3f ms\n", wr/n, w50/n, w99/n;
        printf "  edge/wasmtime  %10.2fx req/s        p99 ratio %.2f\n", er/wr, (e99/n)/(w99/n) }' "$work/rounds"
