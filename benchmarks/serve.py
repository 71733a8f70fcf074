"""Search-service figures: request latency of ``sned serve`` under N concurrent clients, on loopback.

    python benchmarks/serve.py [--clients 16] [--requests 50] [--uncached 4]

Starts ``sned serve`` in its own process on a free 127.0.0.1 port (traffic never leaves the
machine), then runs two phases with ``--clients`` threads, each with its own keep-alive connection:

1. cached: every client repeats one ``POST /search`` that was answered once before
   (``--requests`` per client). Goal: p50 under 5 ms, zero errors at 16 clients.
2. uncached: every request is a new search (a distinct budget, so a distinct cache key;
   ``--uncached`` per client); the server runs ``--max-searches`` at once and queues the rest,
   so these latencies include the wait.

Prints p50/p99/max latency (ms), throughput and errors (non-200 answers or failed connections) per
phase, and the handler's own time (``Server-Timing``), which tells the service's cost from queueing
when clients, server (and other jobs) share a few cores. Uses the bundled ``tiny`` table and predictor; where the predictor does not exist yet, the
analytic cost model (``"analytic": true``), and says so.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from importlib import resources

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, max_searches: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sned.search.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-searches", str(max_searches), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "SNED_TOKEN"}  # loopback needs none
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sned serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("sned serve did not answer /health within 60 s")


def _phase(url: str, clients: int, bodies_per_client: list[list[dict]]) -> dict:
    """Send each client's bodies in order, all clients at once; latency per request in ms."""
    latencies: list[float] = []
    server_ms: list[float] = []  # the handler's own time, from the Server-Timing header
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(bodies: list[dict]) -> None:
        mine, own, bad = [], [], []
        with httpx.Client(base_url=url, timeout=300) as c:
            start.wait()
            for body in bodies:
                t0 = time.perf_counter()
                try:
                    r = c.post("/search", json=body)
                    if r.status_code != 200:
                        bad.append(f"{r.status_code}: {r.text[:200]}")
                    timing = r.headers.get("server-timing", "")
                    if "dur=" in timing:
                        own.append(float(timing.split("dur=")[1]))
                except httpx.HTTPError as exc:
                    bad.append(f"{type(exc).__name__}: {exc}")
                mine.append((time.perf_counter() - t0) * 1e3)
        with lock:
            latencies.extend(mine)
            server_ms.extend(own)
            errors.extend(bad)

    threads = [threading.Thread(target=client, args=(bodies,)) for bodies in bodies_per_client]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50": statistics.median(ordered), "p99": p99, "max": ordered[-1],
            "rps": len(ordered) / wall, "errors": errors,
            "server_p50": statistics.median(server_ms) if server_ms else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--requests", type=int, default=50, help="cached requests per client (default: 50)")
    parser.add_argument("--uncached", type=int, default=4, help="uncached searches per client (default: 4)")
    parser.add_argument("--max-searches", type=int, default=2, help="the server's concurrent searches (default: 2)")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "uncached", "max_searches"):
        if not 1 <= getattr(args, name) <= 1000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 1000")

    folder = resources.files("sned.experiments") / "tiny"
    analytic = not any((folder / name).is_file() for name in ("predictor.npz", "predictor.json"))
    base = {"experiment": "tiny", "budget_ms": 200, "res": [128], **({"analytic": True} if analytic else {})}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"sned serve on {url} ({'analytic cost model: tiny has no predictor yet' if analytic else 'bundled table + predictor'}); "
          f"{args.clients} clients, {os.cpu_count()} CPUs")
    server = _start_server(port, args.max_searches)
    try:
        warm = httpx.post(f"{url}/search", json=base, timeout=300)
        if warm.status_code != 200:
            raise SystemExit(f"warm-up search failed: {warm.status_code} {warm.text[:300]}")
        results = {
            "cached": _phase(url, args.clients, [[base] * args.requests for _ in range(args.clients)]),
            # A distinct budget per request: a distinct cache key, a real search each time.
            "uncached": _phase(url, args.clients, [[{**base, "budget_ms": 200 + 0.001 * (c * args.uncached + k + 1)}
                                                    for k in range(args.uncached)] for c in range(args.clients)]),
        }
        health = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(10)
    print(f"{'phase':<9} {'requests':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'req/s':>8} {'errors':>6}"
          f" {'handler p50 ms':>15}")
    for name, r in results.items():
        print(f"{name:<9} {r['n']:>8} {r['p50']:>9.2f} {r['p99']:>9.2f} {r['max']:>9.2f} {r['rps']:>8.1f} "
              f"{len(r['errors']):>6} {r['server_p50']:>15.3f}")
        for err in r["errors"][:3]:
            print(f"  error: {err}")
    print(f"server: {health['searches_run']} searches run, {health['cached']} answers cached")
    cached = results["cached"]
    ok = cached["p50"] < 5.0 and not cached["errors"] and not results["uncached"]["errors"]
    print(f"goal (cached p50 < 5 ms, zero errors at {args.clients} clients): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
