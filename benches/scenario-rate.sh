#!/usr/bin/env bash
# Scenario throughput on one core, side by side, interleaved: the native hyper hello pinned
# to CPU 0, each generator pinned to CPU 1 with VUS virtual users (or connections):
#   - `loadrig run URL` (closed model, the ceiling: no VU at all),
#   - `loadrig run trivial.js` (a k6 script: http.get in a loop, no sleep, QuickJS VUs),
#   - `loadrig run scenario.wasm` (the Rust example's `get`: a compiled VU),
#   - Locust's FastHttpUser doing the same (one process, no wait).
# Prints req/s per round and the ratios the issue sets targets on (script ≥ 50 % of the
# URL run; script ≥ 3× Locust).
#
#   bash benches/scenario-rate.sh          # ROUNDS=3 DURATION=5 VUS=16; INSTALL=1 pip-installs locust
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
VUS=${VUS:-16}
unset RUST_BACKTRACE
if [ "${INSTALL:-0}" = 1 ] && ! command -v locust >/dev/null; then pip install -q locust; fi
have_locust=1
command -v locust >/dev/null || { echo "locust not found (pip install locust, or INSTALL=1): skipping it" >&2; have_locust=0; }
cargo build --release --quiet -p loadrig -p edge-native
(cd examples/scenarios/rust && cargo build --release --quiet)
wasm=target/wasm/wasm32-wasip2/release/loadrig_scenario_example.wasm
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 0 target/release/native --app hello --listen 127.0.0.1:0 >"$work/native.out" &
for _ in $(seq 1 100); do grep -q Serving "$work/native.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/native.out" | head -1)
rate_of() { awk '$1 ~ /^http_reqs\./ { print $3 }' | sed 's/\/s//'; }
lr() { taskset -c 1 target/release/loadrig run "$@" --no-progress -t 1 2>/dev/null | rate_of; }
url_run() { lr "$url/" -c "$VUS" -d "${DURATION}s"; }
js_run() { lr benches/scenarios/trivial.js -e BASE_URL="$url" --vus "$VUS" -d "${DURATION}s"; }
wasm_run() {
  local opts="{\"scenarios\":{\"s\":{\"executor\":\"constant-vus\",\"vus\":$VUS,\"duration\":\"${DURATION}s\",\"exec\":\"get\"}}}"
  lr "$wasm" -e BASE_URL="$url" -e PATH_TO_GET=/ -e "OPTIONS=$opts"
}
locust_run() {
  [ "$have_locust" = 1 ] || { echo 0; return; }
  (cd "$work" && taskset -c 1 locust -f "$OLDPWD/benches/scenarios/locustfile.py" --headless -u "$VUS" -r "$VUS" \
    -t "${DURATION}s" --host "$url" --csv loc --only-summary >/dev/null 2>&1 || true)
  # The Aggregated row's "Requests/s" (column 10 of Locust's stats CSV).
  awk -F, '$2 == "Aggregated" { print $10 }' "$work/loc_stats.csv"
}
echo "target: native hello at $url (CPU 0); generators on CPU 1, $VUS VUs/connections, ${DURATION}s per run"
js_run >/dev/null
printf "\n%-6s %12s %12s %12s %12s\n" round "run URL" "k6 script" "Rust VU" locust
for r in $(seq 1 "$ROUNDS"); do
  u=$(url_run); j=$(js_run); w=$(wasm_run); l=$(locust_run)
  printf "%-6s %12.0f %12.0f %12.0f %12.0f\n" "$r" "$u" "$j" "$w" "$l"
  echo "$u $j $w $l" >>"$work/rates"
done
awk '{ u+=$1; j+=$2; w+=$3; l+=$4; n++ } END {
  printf "mean   %12.0f %12.0f %12.0f %12.0f\n", u/n, j/n, w/n, l/n
  printf "k6 script / run URL: %.3f   Rust VU / run URL: %.3f", j/u, w/u
  if (l > 0) printf "   k6 script / locust: %.2f", j/l
  printf "\n" }' "$work/rates"
