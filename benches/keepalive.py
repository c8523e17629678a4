"""Idle keep-alive connections on `edge serve` (driven by benches/keepalive.sh).

Usage: keepalive.py EDGE LOADRIG APPS_DIR CONNS RATE DURATION ROUNDS

Starts one edge (keep-alive and header-read timeouts far off, so nothing but the client
closes), then in ROUNDS interleaved rounds measures a well-behaved client's latency
(loadrig, open model at RATE req/s for DURATION) with no other connection open, and with
CONNS connections that each sent one request and now sit idle. Reports the server's RSS
and loadrig's p50/p99 for both, and checks every idle connection is still open at the end.
Loopback only.
"""

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_idle(host, port, n):
    """`n` connections, each after one answered request: idle keep-alives."""
    request = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"
    conns = []

    async def one():
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        lengths = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                   if l.lower().startswith(b"content-length:")]
        if lengths:
            await reader.readexactly(lengths[0])
        else:  # chunked: up to the last chunk
            await reader.readuntil(b"0\r\n\r\n")
        conns.append((reader, writer))

    # 100 at a time: below --max-client-concurrency, so none is refused with 503.
    for start in range(0, n, 100):
        await asyncio.gather(*(one() for _ in range(min(100, n - start))))
    return conns


def still_open(conns):
    """How many of `conns` the server has not closed."""
    return sum(1 for reader, _ in conns if not reader.at_eof() and not reader.exception())


def rig(loadrig, url, rate, duration):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            ["taskset", "-c", "1", loadrig, "run", url, "--no-progress", "-H", "Host: hello.localhost",
             "-r", str(rate), "-c", "16", "-d", duration, "--json", out.name],
            check=True, stdout=subprocess.DEVNULL,
        )
        data = json.load(open(out.name))
    values = data["metrics"]["http_req_duration"]["values"]
    return values["med"], values["p(99)"]


async def main():
    edge, loadrig, apps, conns, rate, duration, rounds = sys.argv[1:8]
    conns, rounds = int(conns), int(rounds)
    proc = subprocess.Popen(
        ["taskset", "-c", "0", edge, "serve", apps, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--threads", "1", "--keep-alive-timeout", "1h", "--header-read-timeout", "1h",
         "--max-connections", str(conns + 1000)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"} | {"RUST_LOG": "warn"},
    )
    try:
        for line in proc.stdout:
            if line.startswith("Serving HTTP on"):
                addr = line.split("http://")[1].split("/")[0]
                break
        host, port = addr.rsplit(":", 1)
        url = f"http://{addr}/"
        rig(loadrig, url, rate, "2s")  # warm-up
        quiet, loaded = [], []
        print(f"{'round':>5} {'idle conns':>10} {'RSS MiB':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for r in range(rounds):
            rss = rss_kib(proc.pid)
            p50, p99 = rig(loadrig, url, rate, duration)
            quiet.append((rss, p50, p99))
            print(f"{r + 1:>5} {0:>10} {rss / 1024:>8.1f} {p50:>8.3f} {p99:>8.3f}")
            held = await open_idle(host, int(port), conns)
            # Past the parking point (1 s) and the next trim (every 2 s).
            await asyncio.sleep(4)
            rss = rss_kib(proc.pid)
            p50, p99 = rig(loadrig, url, rate, duration)
            await asyncio.sleep(0.2)
            alive = still_open(held)
            assert alive == conns, f"only {alive} of {conns} idle connections still open"
            loaded.append((rss, p50, p99))
            print(f"{r + 1:>5} {conns:>10} {rss / 1024:>8.1f} {p50:>8.3f} {p99:>8.3f}")
            for _, writer in held:
                writer.close()
            await asyncio.sleep(2)
        med = lambda rows, i: statistics.median(row[i] for row in rows)
        print(f"\nmedian over {rounds} rounds, {rate} req/s for {duration}:")
        print(f"  no idle connections: RSS {med(quiet, 0) / 1024:.1f} MiB, "
              f"p50 {med(quiet, 1):.3f} ms, p99 {med(quiet, 2):.3f} ms")
        print(f"  {conns} idle:          RSS {med(loaded, 0) / 1024:.1f} MiB, "
              f"p50 {med(loaded, 1):.3f} ms, p99 {med(loaded, 2):.3f} ms")
        print(f"  p99 ratio {med(loaded, 2) / med(quiet, 2):.2f}x; "
              f"{(med(loaded, 0) - med(quiet, 0)) / conns:.2f} KiB per idle connection")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
