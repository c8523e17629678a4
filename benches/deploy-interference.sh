#!/usr/bin/env bash
# What deploys cost the apps already serving: request latency of the hello example under an
# open-model load (loadrig, RATE req/s) while nothing else happens ("quiet") and while a
# client deploys new code every 0.5 s to other apps ("deploying": each deploy compiles
# baseline code, then Cranelift's in the background). edge is pinned to one core so
# compiles and requests share it; loadrig runs on the other. Rounds are interleaved.
#   ROUNDS=3 RATE=2000 DURATION=10 bash benches/deploy-interference.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
unset RUST_BACKTRACE
rustup target add wasm32-wasip2 >/dev/null 2>&1
(cd examples/apps && cargo build --release --quiet)
cargo build --release --quiet -p edge -p loadrig
hello=target/wasm/wasm32-wasip2/release/hello.wasm
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export EDGE_ADMIN_TOKEN=bench-token

round() { # label deploys(0|1)
  rm -rf "$work/apps" && mkdir -p "$work/apps" && cp "$hello" "$work/apps/a.wasm"
  : >"$work/out"
  taskset -c 0 target/release/edge serve "$work/apps" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
    --no-cache >"$work/out" 2>&1 &
  local edge=$!
  for _ in $(seq 100); do grep -q "Serving HTTP" "$work/out" && break; sleep 0.1; done
  local http admin
  http=$(grep -o 'Serving HTTP on http://[0-9.]*:[0-9]*' "$work/out" | sed 's/.*http:/http:/')
  admin=$(grep -o 'admin) on http://[0-9.]*:[0-9]*' "$work/out" | sed 's/.*://')
  local deployer=
  if [ "$2" = 1 ]; then
    python3 - "$hello" "$admin" "$((DURATION + 1))" <<'PY' &
import http.client, sys, time
base = open(sys.argv[1], "rb").read()
admin, seconds = int(sys.argv[2]), float(sys.argv[3])
def leb(v):
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
start, i = time.time(), 0
while time.time() - start < seconds:
    # New bytes each time (a custom section), so every deploy compiles.
    name = b"edge-bench-nonce"
    payload = leb(len(name)) + name + str(time.time_ns()).encode()
    c = http.client.HTTPConnection("127.0.0.1", admin)
    c.request("PUT", f"/apps/b{i % 3}", body=base + b"\x00" + leb(len(payload)) + payload,
              headers={"Authorization": "Bearer bench-token"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    i += 1
    time.sleep(0.5)
PY
    deployer=$!
  fi
  sleep 0.3
  printf '%-10s ' "$1"
  taskset -c 1 target/release/loadrig run -r "$RATE" -d "${DURATION}s" -c 32 \
    -H "Host: a.localhost" "$http/" 2>/dev/null | grep 'http_req_duration\.' | sed 's/.*avg=/avg=/'
  [ -n "$deployer" ] && wait "$deployer"
  kill "$edge"; wait "$edge" 2>/dev/null || true
}

echo "hello at $RATE req/s for ${DURATION}s, edge on CPU 0, loadrig on CPU 1 (latency from when each request was due)"
for r in $(seq 1 "$ROUNDS"); do
  round quiet 0
  round deploying 1
done
