#!/usr/bin/env bash
# HTTPS hello against plain HTTP/1.1 hello on the same `edge serve` (both listeners), the
# server pinned to CPU 0 and wrk to CPU 1, interleaved over ROUNDS rounds:
#   1. keep-alive connections (CONNS of them): the per-request cost of TLS -> ratio;
#   2. a new connection per request (`Connection: close`): handshakes, measured apart.
# The certificate is a throwaway EC P-256 one made with openssl.
#
#   bash benches/tls.sh        # ROUNDS=3 DURATION=5s CONNS=16; INSTALL=1 installs wrk
#
# Target (issue 16): report the HTTPS/h1 ratio. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
unset RUST_BACKTRACE

if [ "${INSTALL:-0}" = 1 ]; then
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
fi
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk (or INSTALL=1)" >&2; exit 1; }
rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release --quiet --bin hello --target wasm32-wasip2 --target-dir ../../target/wasm)
cargo build --release --quiet -p edge
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/apps"
cp target/wasm/wasm32-wasip2/release/hello.wasm "$work/apps/hello.wasm"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=hello.localhost -addext subjectAltName=DNS:hello.localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

taskset -c 0 target/release/edge serve "$work/apps" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
  --listen-tls 127.0.0.1:0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --cache-dir "$work/cache" >"$work/edge.out" 2>&1 &
for _ in $(seq 1 300); do grep -q "Serving HTTP on" "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
http=$(grep -o 'Serving HTTP on http://[0-9.:]*' "$work/edge.out" | sed 's/.*http:\/\///')
https=$(grep -o 'Serving HTTPS on https://[0-9.:]*' "$work/edge.out" | sed 's/.*https:\/\///')
[ -n "$http" ] && [ -n "$https" ] || { cat "$work/edge.out" >&2; exit 1; }

rate() { # url [wrk args...] -> req/s
  local url=$1; shift
  taskset -c 1 wrk -t1 -d"$DURATION" -H 'Host: hello.localhost' "$@" "$url" >"$work/wrk.txt"
  if grep -q 'Non-2xx' "$work/wrk.txt"; then cat "$work/wrk.txt" >&2; exit 1; fi
  awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt"
}
echo "edge serve (CPU 0): http://$http and https://$https; wrk on CPU 1, $DURATION per run"
rate "http://$http/" -c "$CONNS" >/dev/null
rate "https://$https/" -c "$CONNS" >/dev/null
printf "\n%-6s %14s %14s %10s %16s %16s %10s\n" round "h1 req/s" "https req/s" "https/h1" "h1 new conn/s" "https new conn/s" "ratio"
for r in $(seq 1 "$ROUNDS"); do
  h1=$(rate "http://$http/" -c "$CONNS")
  tls=$(rate "https://$https/" -c "$CONNS")
  h1c=$(rate "http://$http/" -c 4 -H 'Connection: close')
  tlsc=$(rate "https://$https/" -c 4 -H 'Connection: close')
  awk -v r="$r" -v a="$h1" -v b="$tls" -v c="$h1c" -v d="$tlsc" \
    'BEGIN { printf "%-6s %14.0f %14.0f %10.2f %16.0f %16.0f %10.2f\n", r, a, b, b/a, c, d, d/c }'
  echo "$h1 $tls $h1c $tlsc" >>"$work/rounds"
done
awk '{ a+=$1; b+=$2; c+=$3; d+=$4; n++ } END {
  printf "mean   %14.0f %14.0f %10.2f %16.0f %16.0f %10.2f\n", a/n, b/n, b/a, c/n, d/n, d/c }' "$work/rounds"
