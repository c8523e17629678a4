#!/usr/bin/env bash
# loadrig ws, measured side by side, interleaved, on the native example's /ws echo:
#
# 1. Message rate: the echo pinned to CPU 1, each generator pinned to CPU 0, CONNS
#    connections, SIZE-byte text messages, one in flight per connection, DURATION seconds:
#      - ws-floor (benches/ws-floor.rs: the least a tokio-tungstenite flood can do),
#      - loadrig ws (closed model),
#      - Artillery 2.0.21's WebSocket engine (npm; INSTALL=1 installs it under target/).
#    Prints messages/s and round-trip p50/p99 per round, then the mean ratios.
# 2. Held connections: HOLD connections opened at 5000/s and held DURATION seconds with
#    2000 messages/s over them; loadrig's peak RSS (VmHWM), connections, round trips.
#
#   bash benches/ws.sh                # ROUNDS=3 DURATION=5 CONNS=64 SIZE=16 HOLD=10000
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
SIZE=${SIZE:-16}
HOLD=${HOLD:-10000}
unset RUST_BACKTRACE
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
artillery=target/npm-artillery/node_modules/.bin/artillery
if [ "${INSTALL:-0}" = 1 ] && [ ! -x "$artillery" ]; then
  mkdir -p target/npm-artillery
  (cd target/npm-artillery && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund \
    --loglevel=error artillery@2.0.21 >/dev/null)
fi
have_artillery=1
[ -x "$artillery" ] || { echo "Artillery not installed (INSTALL=1 installs it): skipping it" >&2; have_artillery=0; }
cargo build --release --quiet -p loadrig -p edge-native -p edge-benches --bin ws-floor
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 1 target/release/native --app hello --listen 127.0.0.1:0 >"$work/native.out" &
for _ in $(seq 1 100); do grep -q Serving "$work/native.out" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/native.out" | head -1 | sed 's#^http#ws#')/ws"

floor_run() { taskset -c 0 target/release/ws-floor "$url" "$CONNS" "$DURATION" "$SIZE"; }
loadrig_run() {
  taskset -c 0 target/release/loadrig ws "$url" -c "$CONNS" -d "${DURATION}s" -t 1 \
    --message-size "$SIZE" --no-progress --json "$work/lr.json" >/dev/null
  python3 - "$work/lr.json" "$DURATION" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
n = m["ws_msgs_received"]["values"]["count"]
rtt = m["ws_rtt"]["values"]
print(f"{n / float(sys.argv[2]):.0f} {rtt['med'] * 1000:.0f} {rtt['p(99)'] * 1000:.0f}")
PY
}
artillery_run() {
  [ "$have_artillery" = 1 ] || { echo "0 - -"; return; }
  (cd benches/scenarios && TARGET="$url" SECONDS="$DURATION" taskset -c 0 "$OLDPWD/$artillery" run \
    --output "$work/art.json" ws-echo.yml >/dev/null 2>&1) || { echo "0 - -"; return; }
  python3 - "$work/art.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["aggregate"]
secs = (a["lastCounterAt"] - a["firstCounterAt"]) / 1000
print(f"{a['counters'].get('websocket.messages_received', 0) / max(secs, 1e-9):.0f} - -")
PY
}

echo "== message rate: $CONNS connections, $SIZE-byte messages, ${DURATION}s, one core each"
printf '%-6s %-10s %12s %10s %10s\n' round tool "messages/s" "p50 µs" "p99 µs"
: >"$work/rates"
for r in $(seq 1 "$ROUNDS"); do
  for tool in floor loadrig artillery; do
    read -r rate p50 p99 < <("${tool}_run")
    printf '%-6s %-10s %12s %10s %10s\n' "$r" "$tool" "$rate" "$p50" "$p99"
    echo "$r $tool $rate" >>"$work/rates"
  done
done
python3 - "$work/rates" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, tool, rate in rows:
    by.setdefault(r, {})[tool] = float(rate)
def ratios(a, b):
    return [v[a] / v[b] for v in by.values() if v.get(b)]
for a, b, target in [("loadrig", "floor", 0.9), ("loadrig", "artillery", 3.0)]:
    xs = ratios(a, b)
    if xs:
        mean = sum(xs) / len(xs)
        print(f"{a}/{b}: mean {mean:.2f}x over {len(xs)} rounds "
              f"({', '.join(f'{x:.2f}' for x in xs)}); target >= {target}x: "
              f"{'met' if mean >= target else 'MISSED'}")
PY

echo "== $HOLD connections held for ${DURATION}s (2000 messages/s over them)"
target/release/loadrig ws "$url" -c "$HOLD" --connect-rate 5000 -d "${DURATION}s" -r 2000 \
  --no-progress --json "$work/hold.json" >"$work/hold.txt" &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
  hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$hwm" ] && peak=$hwm
  sleep 0.2
done
wait "$pid"
python3 - "$work/hold.json" "$peak" "$HOLD" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
peak_kb, hold = int(sys.argv[2]), int(sys.argv[3])
c = lambda k: int(m[k]["values"]["count"]) if k in m else 0
print(f"peak RSS {peak_kb / 1024:.1f} MiB ({peak_kb / hold:.1f} KiB per connection; target <= 200 MiB: "
      f"{'met' if peak_kb <= 200 * 1024 else 'MISSED'})")
print(f"sessions {c('ws_sessions')}/{hold}, errors {c('ws_errors')}, "
      f"round trips {c('ws_msgs_received')} of {c('ws_msgs_sent')} sent, "
      f"ws_connecting p99 {m['ws_connecting']['values']['p(99)']:.2f} ms, "
      f"ws_rtt p99 {m['ws_rtt']['values']['p(99)']:.2f} ms")
PY
