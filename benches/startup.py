"""Start-up and density of `edge serve` with many apps (driven by benches/startup.sh).

Usage: startup.py EDGE HELLO_WASM WORKDIR APPS ROUNDS LISTING_APPS

1. APPS distinct apps (hello, each with a custom section of its own, so each has its own
   digest, cache entry and compiled code), compiled into a cache once. Then, ROUNDS times:
   process start -> first byte of the first app, and -> `/readyz` 200 (every app ready),
   and the server's RSS while idle, against a one-app server measured the same way.
2. LISTING_APPS copies of hello: time to ready, `/metrics` (size and time), `GET /apps`,
   and sequential request latency, against the one-app server.
Loopback only.
"""

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def distinct(wasm, i):
    """`wasm` with a custom section naming `i`: a different digest, the same behaviour."""
    name = b"edge-bench"
    payload = leb(len(name)) + name + str(i).encode()
    return wasm + b"\x00" + leb(len(payload)) + payload


def start(edge, apps, cache, extra=()):
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [edge, "serve", apps, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--cache-dir", cache, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"} | {"RUST_LOG": "warn"},
    )
    addr = admin = None
    for line in proc.stdout:
        if line.startswith("Admin API"):
            admin = line.split("http://")[1].split("/")[0]
        if line.startswith("Serving HTTP on"):
            addr = line.split("http://")[1].split("/")[0]
            break
    listening = time.monotonic() - t0
    host, port = addr.rsplit(":", 1)
    ahost, aport = admin.rsplit(":", 1)
    return proc, t0, listening, (host, int(port)), (ahost, int(aport))


def request(addr, host, path="/", headers=None, timeout=30):
    c = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host, **(headers or {})})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(admin, t0, limit=600):
    while True:
        status, body = request(admin, "admin", "/readyz")
        if status == 200:
            return time.monotonic() - t0, json.loads(body)
        if time.monotonic() - t0 > limit:
            raise SystemExit(f"not ready after {limit} s: {body}")
        time.sleep(0.005)


def rss(pid):
    """(RSS, anonymous, file-backed) in KiB, from smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    return fields["Rss"], fields["Anonymous"], fields["Rss"] - fields["Anonymous"]


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_apps(dir, hello, n, distinct_apps):
    shutil.rmtree(dir, ignore_errors=True)
    os.makedirs(dir)
    for i in range(n):
        data = distinct(hello, i) if distinct_apps else hello
        with open(os.path.join(dir, f"app-{i:05d}.wasm"), "wb") as f:
            f.write(data)


def idle_rss(edge, apps, cache):
    proc, t0, _, addr, admin = start(edge, apps, cache)
    wait_ready(admin, t0)
    time.sleep(1.0)
    r = rss(proc.pid)
    stop(proc)
    return r


def latencies(addr, host, n=300):
    c = http.client.HTTPConnection(*addr, timeout=10)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        out.append((time.perf_counter() - t) * 1e3)
    c.close()
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99)]


def fill(edge, many, one, cache, n):
    t = time.monotonic()
    proc, t0, _, _, admin = start(edge, many, cache, ["--no-baseline"])
    _, ready = wait_ready(admin, t0, limit=3600)
    stop(proc)
    proc, t0, _, _, admin = start(edge, one, cache, ["--no-baseline"])
    wait_ready(admin, t0)
    stop(proc)
    print(f"cache filled: {n} apps compiled in {time.monotonic() - t:.1f} s ({ready})")


def main():
    edge, hello_path, work, n, rounds, listing = sys.argv[1:7]
    n, rounds, listing = int(n), int(rounds), int(listing)
    hello = open(hello_path, "rb").read()
    cache = os.path.join(work, "cache")
    one = os.path.join(work, "one")
    many = os.path.join(work, "many")
    make_apps(one, hello, 1, True)
    make_apps(many, hello, n, True)

    # Fill the cache: Cranelift at once (no baseline tier), so every entry is written.
    # A kept WORK directory whose cache is already full skips it.
    sums = [f for f in os.listdir(cache) if f.endswith(".sum")] if os.path.isdir(cache) else []
    if len(sums) >= n + 1:
        print(f"cache already holds {len(sums)} entries")
    else:
        fill(edge, many, one, cache, n)

    print(f"\n{n} apps in the cache, {rounds} rounds (ms from process start):")
    # The first request goes to the app loaded last in queue order, so it is served only
    # as early as demand-first loading makes it.
    last = f"app-{n - 1:05d}.localhost"
    print(f"{'round':>5} {'listening':>10} {'first byte':>11} {'all ready':>10}  (first byte: {last})")
    firsts, readies = [], []
    for r in range(rounds):
        proc, t0, listening, addr, admin = start(edge, many, cache)
        status, _ = request(addr, last)
        first = time.monotonic() - t0
        assert status == 200, status
        ready_at, body = wait_ready(admin, t0)
        assert {k: body.get(k) for k in ("ready", "apps", "loaded", "failed")} == {"ready": True, "apps": n, "loaded": n, "failed": 0}, body
        stop(proc)
        firsts.append(first * 1e3)
        readies.append(ready_at * 1e3)
        print(f"{r + 1:>5} {listening * 1e3:>10.1f} {first * 1e3:>11.1f} {ready_at * 1e3:>10.1f}")
    print(f"median: first byte {statistics.median(firsts):.1f} ms, "
          f"all {n} ready {statistics.median(readies):.1f} ms")

    base = idle_rss(edge, one, cache)
    full = idle_rss(edge, many, cache)
    per = [(f - b) / (n - 1) for f, b in zip(full, base)]
    print(f"\nidle RSS, 1 app: {base[0] / 1024:.1f} MiB (anonymous {base[1] / 1024:.1f}, "
          f"file-backed {base[2] / 1024:.1f})")
    print(f"idle RSS, {n} apps: {full[0] / 1024:.1f} MiB (anonymous {full[1] / 1024:.1f}, "
          f"file-backed {full[2] / 1024:.1f})")
    print(f"per idle app: {per[0]:.1f} KiB (anonymous {per[1]:.1f}, file-backed {per[2]:.1f})")

    if listing <= 0:
        return
    # Copies share one digest, so the cache entry above (app 0's is not theirs) is made once.
    make_apps(many, hello, listing, False)
    rows = []
    for label, apps in [("1 app", one), (f"{listing} apps", many)]:
        proc, t0, _, addr, admin = start(edge, apps, cache)
        ready_at, _ = wait_ready(admin, t0)
        host = "app-00000.localhost"
        request(addr, host)
        p50, p99 = latencies(addr, host)
        token = open(os.path.join(apps, ".edge", "admin-token")).read().strip()
        auth = {"Authorization": f"Bearer {token}"}
        t = time.perf_counter()
        status, metrics = request(admin, "admin", "/metrics", auth)
        metrics_ms = (time.perf_counter() - t) * 1e3
        assert status == 200
        t = time.perf_counter()
        status, listing_body = request(admin, "admin", "/apps", auth)
        apps_ms = (time.perf_counter() - t) * 1e3
        assert status == 200
        kib = rss(proc.pid)[0]
        stop(proc)
        rows.append((label, ready_at * 1e3, p50, p99, metrics_ms, len(metrics) / 1e6, apps_ms,
                     len(listing_body) / 1e6, kib / 1024))
    print(f"\n{'server':>12} {'ready ms':>9} {'req p50 ms':>10} {'req p99 ms':>10} "
          f"{'/metrics ms':>11} {'MB':>6} {'/apps ms':>9} {'MB':>6} {'RSS MiB':>8}")
    for row in rows:
        print(f"{row[0]:>12} {row[1]:>9.1f} {row[2]:>10.3f} {row[3]:>10.3f} {row[4]:>11.1f} "
              f"{row[5]:>6.2f} {row[6]:>9.1f} {row[7]:>6.2f} {row[8]:>8.1f}")


if __name__ == "__main__":
    main()
