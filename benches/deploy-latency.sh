#!/usr/bin/env bash
# Deploy → first successful response, for the hello example, measured from one client
# process (no process start-up in the figures):
#   empty cache: a server run with --no-cache, so every deploy validates and compiles;
#   warm cache:  a server whose cache already holds hello's code, so a deploy only
#                validates, loads native code, links, stores and swaps.
#   N=20 bash benches/deploy-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
unset RUST_BACKTRACE
rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release --quiet)
cargo build --release --quiet -p edge
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export EDGE_ADMIN_TOKEN=bench-token
hello=target/wasm/wasm32-wasip2/release/hello.wasm

start() { # name, extra args... -> "http_port admin_port"
  local name=$1; shift
  mkdir -p "$work/$name"
  target/release/edge serve "$work/$name" --listen 127.0.0.1:0 --admin 127.0.0.1:0 "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  for _ in $(seq 1 300); do
    if grep -q 'Serving HTTP on' "$work/$name.out"; then
      echo "$(grep -o 'Serving HTTP on http://[0-9.]*:[0-9]*' "$work/$name.out" | sed 's/.*://') \
$(grep -o 'admin) on http://[0-9.]*:[0-9]*' "$work/$name.out" | sed 's/.*://')"
      return
    fi
    sleep 0.1
  done
  echo "server $name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}

read -r cold_http cold_admin < <(start cold --no-cache)
read -r warm_http warm_admin < <(start warm --cache-dir "$work/cache")

python3 - "$hello" "$N" "$cold_http" "$cold_admin" "$warm_http" "$warm_admin" <<'PY'
import http.client, json, statistics, sys, time
wasm_path, n, cold_http, cold_admin, warm_http, warm_admin = sys.argv[1:]
wasm = open(wasm_path, "rb").read()
n = int(n)
auth = {"Authorization": "Bearer bench-token", "Content-Type": "application/wasm"}

def deploy_to_first_byte(http_port, admin_port, name):
    start = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", int(admin_port))
    c.request("PUT", f"/apps/{name}", body=wasm, headers=auth)
    r = c.getresponse(); report = json.loads(r.read())
    assert r.status == 200, report
    while True:
        h = http.client.HTTPConnection("127.0.0.1", int(http_port))
        h.request("GET", "/", headers={"Host": f"{name}.localhost"})
        g = h.getresponse(); g.read()
        if g.status == 200:
            return (time.perf_counter() - start) * 1e3, report

# Prime the warm server's cache with hello's code.
deploy_to_first_byte(warm_http, warm_admin, "prime")
rows = {}
for label, hp, ap in (("empty cache", cold_http, cold_admin), ("warm cache", warm_http, warm_admin)):
    samples, compile_ms = [], []
    for i in range(n):
        ms, report = deploy_to_first_byte(hp, ap, f"app{i}")
        samples.append(ms)
        compile_ms.append(report["compile_ms"] or 0.0)
    samples.sort()
    rows[label] = (statistics.median(samples), samples[int(0.9 * (n - 1))], samples[-1],
                   statistics.median(compile_ms))
print(f"deploy -> first 200 for examples/apps, {n} deploys each (ms)")
print(f"{'':<12} {'p50':>8} {'p90':>8} {'max':>8} {'compile p50':>12}")
for label, (p50, p90, mx, comp) in rows.items():
    print(f"{label:<12} {p50:8.1f} {p90:8.1f} {mx:8.1f} {comp:12.1f}")
PY
