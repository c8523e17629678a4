#!/usr/bin/env bash
# Memory and start-up of many VUs: VUS k6 VUs (benches/scenarios/sleepy.js: one GET, then a
# second of sleep) against the native hello, for DURATION. Reports the VUs' start-up (from
# the snapshot; loadrig prints it), peak RSS as the kernel counts it (VmHWM: the snapshot's
# shared copy-on-write pages are counted once per VU mapping them) and peak PSS (each
# shared page counted once: the memory the VUs really take), per VU over a 1-VU baseline.
# The same for the Rust example scenario (a compiled VU) with RUST=1.
#
#   bash benches/scenario-vus.sh            # VUS=10000 DURATION=20s LOADRIG=target/release/loadrig
set -euo pipefail
cd "$(dirname "$0")/.."
VUS=${VUS:-10000}
DURATION=${DURATION:-20s}
unset RUST_BACKTRACE
# LOADRIG=path: another loadrig binary (an A/B against an older build).
LOADRIG=${LOADRIG:-target/release/loadrig}
cargo build --release --quiet -p loadrig -p edge-native
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/native --app hello --listen 127.0.0.1:0 >"$work/native.out" &
for _ in $(seq 1 100); do grep -q Serving "$work/native.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/native.out" | head -1)
ulimit -n 65536 2>/dev/null || true

avail() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
# Runs loadrig with the arguments; prints "startup_ms peak_rss_mb peak_pss_mb requests
# taken_mb", the last the largest drop of the system's MemAvailable during the run: what
# the run took from the machine, including the kernel's share (page tables, both ends'
# socket buffers), the target server's growth and any other process's noise.
measure() {
  local before low
  before=$(avail)
  low=$before
  "$LOADRIG" run "$@" --no-progress >"$work/out" 2>"$work/err" &
  local pid=$! rss=0 pss=0
  while kill -0 "$pid" 2>/dev/null; do
    a=$(avail)
    [ "$a" -lt "$low" ] && low=$a
    if [ -r "/proc/$pid/smaps_rollup" ]; then
      p=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
      r=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${p:-0}" -gt "$pss" ] && pss=$p
      [ "${r:-0}" -gt "$rss" ] && rss=$r
    fi
    sleep 0.5
  done
  wait "$pid" || true
  local startup reqs
  startup=$(grep -o 'initialized in [0-9.]* ms' "$work/err" | awk '{ print $3 }')
  reqs=$(awk '$1 ~ /^http_reqs\./ { print $2 }' "$work/out")
  echo "${startup:-0} $((rss / 1024)) $((pss / 1024)) ${reqs:-0} $(((before - low) / 1024))"
}
report() { # name vus baseline-line line
  read -r _ rss0 pss0 _ <<<"$3"
  read -r up rss pss reqs taken <<<"$4"
  awk -v n="$1" -v v="$2" -v up="$up" -v r0="$rss0" -v p0="$pss0" -v r="$rss" -v p="$pss" -v q="$reqs" -v t="$taken" 'BEGIN {
    printf "%-10s %6d VUs: start-up %.0f ms (%.0f µs/VU), peak RSS %d MB (%.0f KB/VU), peak PSS %d MB (%.0f KB/VU), system memory taken %d MB, %d requests\n",
      n, v, up, 1000*up/v, r, 1024*(r-r0)/v, p, 1024*(p-p0)/v, t, q }'
}
js() { measure benches/scenarios/sleepy.js -e BASE_URL="$url" --vus "$1" -d "$DURATION"; }
echo "target: native hello at $url; $VUS VUs for $DURATION (sleepy.js: one GET, then sleep 1 s)"
report "k6 script" "$VUS" "$(js 1)" "$(js "$VUS")"
if [ "${RUST:-0}" = 1 ]; then
  (cd examples/scenarios/rust && cargo build --release --quiet)
  wasm=target/wasm/wasm32-wasip2/release/loadrig_scenario_example.wasm
  rs() { measure "$wasm" -e BASE_URL="$url" -e "OPTIONS={\"scenarios\":{\"s\":{\"executor\":\"constant-vus\",\"vus\":$1,\"duration\":\"$DURATION\"}}}"; }
  report "Rust VU" "$VUS" "$(rs 1)" "$(rs "$VUS")"
fi
