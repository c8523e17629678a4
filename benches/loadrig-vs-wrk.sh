#!/usr/bin/env bash
# loadrig against wrk, side by side, on the native hyper hello (examples/native) pinned to
# CPU 0 with the generator pinned to CPU 1:
#   1. closed model, 16 connections: loadrig's rate / wrk's rate (target >= 1), interleaved
#      over ROUNDS rounds;
#   2. open model at 80 % of loadrig's closed rate: achieved / requested (target within 1 %);
#   3. memory: peak RSS of a 1-million and a 10-million-request run (target: flat).
#
#   bash benches/loadrig-vs-wrk.sh        # ROUNDS=3 DURATION=5s CONNS=16 BIG=10000000
#
# Needs wrk (apt-get install wrk; INSTALL=1 installs it). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
BIG=${BIG:-10000000}
unset RUST_BACKTRACE

if [ "${INSTALL:-0}" = 1 ] && ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk (or INSTALL=1)" >&2; exit 1; }
cargo build --release --quiet -p loadrig -p edge-native
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

taskset -c 0 target/release/native --app hello --listen 127.0.0.1:0 >"$work/native.out" &
for _ in $(seq 1 100); do grep -q Serving "$work/native.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*/' "$work/native.out")
rig() { taskset -c 1 target/release/loadrig run "$url" --no-progress "$@"; }
rate_of() { awk '$1 ~ /^http_reqs\./ { print $3 }' | sed 's/\/s//'; }

echo "target: native hyper hello at $url (CPU 0); generators on CPU 1, $CONNS connections, $DURATION per run"
# Warm up both sides.
taskset -c 1 wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
printf "\n%-6s %12s %12s\n" round wrk loadrig
for r in $(seq 1 "$ROUNDS"); do
  w=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "$url" | awk '/^Requests\/sec/ { print $2 }')
  l=$(rig -c "$CONNS" -d "$DURATION" | rate_of)
  printf '%-6s %12.0f %12.0f\n' "$r" "$w" "$l"
  echo "$w $l" >>"$work/closed"
done
read -r wm lm < <(awk '{ w+=$1; l+=$2; n++ } END { printf "%.0f %.0f\n", w/n, l/n }' "$work/closed")
awk -v w="$wm" -v l="$lm" 'BEGIN { printf "mean   %12.0f %12.0f\nloadrig/wrk %.3f\n", w, l, l/w }'

target=$(awk -v l="$lm" 'BEGIN { printf "%.0f", l * 0.8 }')
echo
echo "open model at 80 % of loadrig's closed rate: -r $target"
for r in $(seq 1 "$ROUNDS"); do
  got=$(rig -c "$CONNS" -r "$target" -d "$DURATION" | tee "$work/open.txt" | rate_of)
  late=$(awk '$1 ~ /^loadrig_late_sends/ { print $2 }' "$work/open.txt")
  p99=$(awk '$1 ~ /^http_req_duration\./ { for (i=2;i<=NF;i++) if ($i ~ /^p\(99\)=/) print substr($i, 7) }' "$work/open.txt")
  awk -v g="$got" -v t="$target" -v late="$late" -v p99="$p99" -v r="$r" 'BEGIN {
    printf "round %s: %.0f req/s = %.2f%% of requested, late sends %s, corrected p99 %s\n", r, g, 100*g/t, late, p99 }'
done

echo
echo "memory: peak RSS by request count (closed model)"
for n in 1000000 "$BIG"; do
  /usr/bin/time -f "%M" -o "$work/rss" taskset -c 1 target/release/loadrig run "$url" --no-progress -c "$CONNS" -n "$n" >"$work/big.txt"
  printf '  %10s requests: peak RSS %6d KiB, %s\n' "$n" "$(cat "$work/rss")" "$(grep -E '^ +http_reqs' "$work/big.txt" | sed 's/ \+/ /g')"
done
