"""Cluster propagation and request cost (driven by benches/cluster.sh).

Usage: cluster.py EDGE LOADRIG HELLO_WASM COUNTER_WASM ROUNDS

Starts deploy/local-cluster.sh (PostgreSQL, three `edge serve --store` nodes, haproxy) and
one single node without a store, on loopback. Both versions of the app (hello and
counter) are deployed once first, so every node's compile cache holds their code (warm).

1. Propagation, ROUNDS rounds, interleaved: deploy the other version to the single node
   and time from sending the upload to its first response of the new version; deploy it
   through cluster node 1 and time from sending the upload to the moment *every* node of
   three answers with it. Reported: both, and per round the cluster's extra time over the
   single node's (target: p50 <= 50 ms, p99 <= 200 ms).
2. Request path: `loadrig run` closed-model rounds against the single node and cluster
   node 1, alternated; the ratio of request rates (target: within 5 %).
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "app.localhost"
# Request-rate rounds per server: the machine is noisy, the median of several is reported.
REQUEST_ROUNDS = 6


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def put(admin, token, name, wasm):
    c = http.client.HTTPConnection(*admin, timeout=60)
    c.request("PUT", f"/apps/{name}", body=wasm,
              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/wasm"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise SystemExit(f"deploy failed: {r.status} {body!r}")
    return json.loads(body)


class Poller(threading.Thread):
    """Asks one node for the app in a tight loop until it answers `want`; records when."""

    def __init__(self, addr, want):
        super().__init__(daemon=True)
        self.addr, self.want, self.at = addr, want, None
        self.conn = http.client.HTTPConnection(*addr, timeout=10)

    def run(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.conn.request("GET", "/", headers={"Host": HOST})
                r = self.conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(*self.addr, timeout=10)
                continue
            if r.status == 200 and body == self.want:
                self.at = time.monotonic()
                return
            time.sleep(0.0002)


def propagate(admin, token, wasm, want, nodes):
    """Deploys through `admin`; returns (reply, all-nodes-serve) times from the send."""
    pollers = [Poller(n, want) for n in nodes]
    t0 = time.monotonic()
    for p in pollers:
        p.start()
    put(admin, token, "app", wasm)
    reply = time.monotonic() - t0
    for p in pollers:
        p.join()
    if any(p.at is None for p in pollers):
        raise SystemExit("a node never served the new version")
    return reply, max(p.at for p in pollers) - t0, [p.at - t0 for p in pollers]


def loadrig_rate(loadrig, addr):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(
            [loadrig, "run", f"http://{addr[0]}:{addr[1]}/", "-H", f"Host: {HOST}", "-c", "16",
             "-d", "3s", "-t", "1", "--no-progress", "--json", f.name],
            stdout=subprocess.DEVNULL, check=True)
        return json.load(open(f.name))["metrics"]["http_reqs"]["values"]["rate"]


def main():
    edge, loadrig, hello, counter, rounds = sys.argv[1:6]
    rounds = int(rounds)
    versions = [(open(hello, "rb").read(), b"Hello from edge!\n"),
                (open(counter, "rb").read(), b"1")]
    env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"} | {"RUST_LOG": "warn"}
    state = tempfile.mkdtemp()
    os.chmod(state, 0o755)
    base = 20000 + os.getpid() % 20000
    cluster = subprocess.Popen(
        ["bash", "deploy/local-cluster.sh"], stdout=subprocess.PIPE, text=True,
        stderr=subprocess.DEVNULL,
        env=env | {"EDGE_BIN": edge, "EDGE_CLUSTER_DIR": state, "EDGE_NODE_PORT": str(base),
                   "EDGE_PORT": str(free_port()), "EDGE_PG_PORT": str(free_port())})
    for line in cluster.stdout:
        if line.startswith("local cluster up"):
            break
    else:
        raise SystemExit("the local cluster did not start")
    token = open(os.path.join(state, "admin-token")).read().strip()
    nodes = [("127.0.0.1", base + i) for i in (1, 2, 3)]
    admin = ("127.0.0.1", base + 101)
    single_dir = tempfile.mkdtemp()
    single = subprocess.Popen(
        [edge, "serve", single_dir, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--cache-dir", os.path.join(single_dir, "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env | {"EDGE_ADMIN_TOKEN": token})
    s_addr = s_admin = None
    for line in single.stdout:
        if line.startswith("Admin API"):
            h, p = line.split("http://")[1].split("/")[0].rsplit(":", 1)
            s_admin = (h, int(p))
        if line.startswith("Serving HTTP on"):
            h, p = line.split("http://")[1].split("/")[0].rsplit(":", 1)
            s_addr = (h, int(p))
            break
    try:
        # Warm: each version once everywhere, Cranelift's code in every cache.
        for wasm, want in versions * 2:
            propagate(admin, token, wasm, want, nodes)
            propagate(s_admin, token, wasm, want, [s_addr])
            time.sleep(1.5)
        singles, clusters, extras, lags = [], [], [], []
        for r in range(rounds):
            wasm, want = versions[r % 2]
            order = [0, 1] if r % 4 < 2 else [1, 0]
            for which in order:
                if which == 0:
                    _, t, _ = propagate(s_admin, token, wasm, want, [s_addr])
                    singles.append(t)
                else:
                    reply, t, each = propagate(admin, token, wasm, want, nodes)
                    clusters.append(t)
                    lags.extend(x - reply for x in each[1:])
            extras.append(clusters[-1] - singles[-1])
            time.sleep(0.05)
        ms = lambda x: f"{x * 1e3:7.1f} ms"
        print(f"propagation over {rounds} deploys (warm cache), from sending the upload:")
        print(f"  single node, first byte of the new version:   p50 {ms(pct(singles, 50))}  p99 {ms(pct(singles, 99))}")
        print(f"  cluster, every node of three serves it:       p50 {ms(pct(clusters, 50))}  p99 {ms(pct(clusters, 99))}")
        print(f"  cluster's extra over the single node (paired): p50 {ms(pct(extras, 50))}  p99 {ms(pct(extras, 99))}   target p50 <= 50 ms, p99 <= 200 ms")
        print(f"  followers: deploy reply -> serving:           p50 {ms(pct(lags, 50))}  p99 {ms(pct(lags, 99))}")

        # The request path: same binary, same app; the cluster node has a store, the other not.
        rates = {"single": [], "cluster": []}
        for r in range(REQUEST_ROUNDS):
            for name, addr in ([("single", s_addr), ("cluster", nodes[0])] if r % 2 == 0
                               else [("cluster", nodes[0]), ("single", s_addr)]):
                rates[name].append(loadrig_rate(loadrig, addr))
        s, c = statistics.median(rates["single"]), statistics.median(rates["cluster"])
        print(f"request path (loadrig -c 16 -t 1, {REQUEST_ROUNDS} x 3 s each, alternated): single {s:,.0f} req/s, "
              f"cluster node {c:,.0f} req/s, ratio {c / s:.3f} (target within 5 %)")
        print(f"  rounds: single {[round(x) for x in rates['single']]}, cluster {[round(x) for x in rates['cluster']]}")
    finally:
        single.terminate()
        single.wait()
        cluster.terminate()
        cluster.wait()


if __name__ == "__main__":
    main()
