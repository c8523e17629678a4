#!/usr/bin/env bash
# Deploy → first successful response, for the hello example, measured from one client
# process (no process start-up in the figures):
#   empty cache: a server run with --no-cache, and every deploy's bytes made new by a
#                custom section, so each validates and compiles (baseline tier);
#   warm cache:  a server whose cache already holds hello's code (and that does not serve
#                it, which would let the deploy reuse it), so a deploy only validates, loads
#                native code, links, stores and swaps.
#   first after start: FIRST servers started afresh (--no-cache), each given a second to
#                warm up, then one empty-cache deploy each: what a restarted server's first
#                deploy costs.
# "server" is the deploy's own total_ms; the rest is HTTP and the first request.
#   N=20 FIRST=5 bash benches/deploy-latency.sh
# EDGE=path/to/edge measures another build (side by side with an older version).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
FIRST=${FIRST:-5}
EDGE=${EDGE:-target/release/edge}
unset RUST_BACKTRACE
rustup target add wasm32-wasip2 >/dev/null
(cd examples/apps && cargo build --release --quiet)
cargo build --release --quiet -p edge
work=$(mktemp -d)
# Servers started by `start` run in a subshell ($(...) or <(...)), so they are not jobs
# of this shell: their pids are kept in $work/pids.
trap 'kill $(jobs -p) $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
export EDGE_ADMIN_TOKEN=bench-token
hello=target/wasm/wasm32-wasip2/release/hello.wasm

start() { # name, extra args... -> "http_port admin_port"
  local name=$1; shift
  mkdir -p "$work/$name"
  "$EDGE" serve "$work/$name" --listen 127.0.0.1:0 --admin 127.0.0.1:0 "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  echo $! >>"$work/pids"
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

python3 - "$hello" "$N" "$cold_http" "$cold_admin" "$warm_http" "$warm_admin" "$FIRST" "$EDGE" "$work" <<'PY'
import http.client, json, os, re, statistics, subprocess, sys, time
wasm_path, n, cold_http, cold_admin, warm_http, warm_admin, first, edge, work = sys.argv[1:]
wasm = open(wasm_path, "rb").read()
n = int(n)
auth = {"Authorization": "Bearer bench-token", "Content-Type": "application/wasm"}

def leb(v):
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out

def with_nonce(i):
    # A custom section: new bytes (new digest, nothing cached or live to reuse), same code.
    name = b"edge-bench-nonce"
    payload = leb(len(name)) + name + f"{time.time_ns()}-{i}".encode()
    return wasm + b"\x00" + leb(len(payload)) + payload

def admin(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    c.request(method, path, body=body, headers=auth)
    r = c.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data)
    return json.loads(data) if data else None

def deploy_to_first_byte(http_port, admin_port, name, body):
    start = time.perf_counter()
    report = admin(admin_port, "PUT", f"/apps/{name}", body)
    while True:
        h = http.client.HTTPConnection("127.0.0.1", int(http_port))
        h.request("GET", "/", headers={"Host": f"{name}.localhost"})
        g = h.getresponse(); g.read()
        if g.status == 200:
            return (time.perf_counter() - start) * 1e3, report

def settle(admin_port, name):
    # Let the background Cranelift compile finish so it does not share the next deploy's
    # cores.
    while any(a["name"] == name and a["tier"] == "baseline" for a in admin(admin_port, "GET", "/apps")):
        time.sleep(0.01)

# Put hello's code in the warm server's cache, then take the app down: a deploy of code
# that still serves would reuse it without even reading the cache.
deploy_to_first_byte(warm_http, warm_admin, "prime", wasm)
settle(warm_admin, "prime")
admin(warm_admin, "DELETE", "/apps/prime")
def first_deploy(i):
    # A server of its own, started afresh; its ports come from its first lines of output.
    d = f"{work}/first{i}"
    os.makedirs(d)
    proc = subprocess.Popen([edge, "serve", d, "--no-cache", "--listen", "127.0.0.1:0",
                             "--admin", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ports = {}
        for line in proc.stdout:
            for key, pat in (("http", r"Serving HTTP on http://[0-9.]+:(\d+)"),
                             ("admin", r"admin\) on http://[0-9.]+:(\d+)")):
                m = re.search(pat, line)
                if m:
                    ports[key] = m.group(1)
            if len(ports) == 2:
                break
        time.sleep(1.0)
        return deploy_to_first_byte(ports["http"], ports["admin"], "first", with_nonce(i))
    finally:
        proc.kill()
        proc.wait()

rows = {}
for label in ("empty cache", "warm cache", "first after start"):
    samples, compile_ms, server_ms = [], [], []
    for i in range(int(first) if label == "first after start" else n):
        if label == "first after start":
            ms, report = first_deploy(i)
        elif label == "empty cache":
            ms, report = deploy_to_first_byte(cold_http, cold_admin, f"app{i}", with_nonce(i))
            settle(cold_admin, f"app{i}")
        else:
            ms, report = deploy_to_first_byte(warm_http, warm_admin, f"app{i}", wasm)
            admin(warm_admin, "DELETE", f"/apps/app{i}")
        samples.append(ms)
        compile_ms.append(report["compile_ms"] or 0.0)
        server_ms.append(report["total_ms"])
    if not samples:
        continue
    samples.sort()
    rows[label] = (statistics.median(samples), samples[int(0.9 * (len(samples) - 1))], samples[-1],
                   statistics.median(compile_ms), statistics.median(server_ms))
print(f"deploy -> first 200 for examples/apps hello, {n} deploys each, {first} first (ms)")
print(f"{'':<17} {'p50':>8} {'p90':>8} {'max':>8} {'compile p50':>12} {'server p50':>11}")
for label, (p50, p90, mx, comp, server) in rows.items():
    print(f"{label:<17} {p50:8.1f} {p90:8.1f} {mx:8.1f} {comp:12.1f} {server:11.1f}")
PY
