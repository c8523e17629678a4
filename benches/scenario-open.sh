#!/usr/bin/env bash
# Open-model accuracy of scenarios: does an arrival-rate executor start its iterations on
# schedule up to 80 % of what the rig can do? On one core (CPU 1), against the native
# hyper hello (CPU 0):
#   1. capacity: the trivial k6 script (benches/scenarios/trivial.js) closed-model with
#      VUS VUs for DURATION s: iterations per second;
#   2. for each fraction in FRACTIONS: benches/scenarios/open.js, constant-arrival-rate at
#      that fraction of the capacity for DURATION s; from its JSON summary, iterations
#      started against the schedule (rate × duration), dropped iterations, and the worst
#      whole second's count against the rate.
# Rounds are interleaved (capacity measured afresh each round).
#
#   bash benches/scenario-open.sh      # ROUNDS=3 DURATION=10 VUS=16 FRACTIONS="0.5 0.8"
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
VUS=${VUS:-16}
FRACTIONS=${FRACTIONS:-0.5 0.8}
unset RUST_BACKTRACE
cargo build --release --quiet -p loadrig -p edge-native
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 0 target/release/native --app hello --listen 127.0.0.1:0 >"$work/native.out" &
for _ in $(seq 1 100); do grep -q Serving "$work/native.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/native.out" | head -1)
lr() {
  taskset -c 1 target/release/loadrig run "$@" --no-progress -t 1 >"$work/out" 2>"$work/err" \
    || { echo "loadrig run $* failed:" >&2; tail -5 "$work/out" "$work/err" >&2; exit 1; }
}

capacity() {
  lr benches/scenarios/trivial.js -e BASE_URL="$url" --vus "$VUS" -d "${DURATION}s" --json "$work/cap.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["metrics"]["iterations"]["values"]["rate"])' "$work/cap.json"
}

# Prints: started/scheduled %, dropped, worst whole second's deviation from the rate %.
accuracy() { # $1: rate
  lr benches/scenarios/open.js -e BASE_URL="$url" -e RATE="$1" -e DURATION="${DURATION}s" \
    -e VUS=$((VUS * 2)) -e MAX_VUS=$((VUS * 8)) --json "$work/open.json"
  python3 - "$work/open.json" "$1" "$DURATION" <<'PY'
import json, sys
doc, rate, duration = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
m = doc["metrics"]
started = m["iterations"]["values"]["count"]
dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
tl = doc["loadrig"]["results"]["timeline"]
step = tl["interval_seconds"]
per = max(1, round(1 / step))
seconds = [sum(tl["requests"][i:i + per]) for i in range(0, len(tl["requests"]), per)]
whole = seconds[1:int(duration) - 1] or seconds  # skip the first and last second
worst = max(abs(n - rate) / rate for n in whole) * 100
print(f"{100 * started / (rate * duration):.2f} {dropped} {worst:.2f}")
PY
}

echo "target: native hello at $url (CPU 0); loadrig on CPU 1, one thread; ${DURATION}s runs"
printf "\n%-6s %12s %9s %12s %10s %8s %12s\n" round "capacity/s" fraction "rate/s" "started %" dropped "worst 1s %"
for r in $(seq 1 "$ROUNDS"); do
  cap=$(capacity)
  for f in $FRACTIONS; do
    rate=$(python3 -c "print(int($cap * $f))")
    read -r pct dropped worst < <(accuracy "$rate")
    printf "%-6s %12.0f %9s %12s %10s %8s %12s\n" "$r" "$cap" "$f" "$rate" "$pct" "$dropped" "$worst"
  done
done
