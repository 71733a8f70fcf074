"""Search-service figures: request latency of ``sned serve`` under N concurrent clients, on loopback.

    python benchmarks/serve.py [--clients 16] [--requests 50] [--uncached 4]
    python benchmarks/serve.py --soak 120 [--clients 16] [--new-share 0.2] [--cache-size 32]

Starts ``sned serve`` in its own process on a free 127.0.0.1 port (traffic never leaves the
machine), then runs two phases with ``--clients`` threads, each with its own keep-alive connection:

1. cached: every client repeats one ``POST /search`` that was answered once before
   (``--requests`` per client). Goal: p50 under 5 ms, zero errors at 16 clients.
2. uncached: every request is a new search (a distinct budget, so a distinct cache key;
   ``--uncached`` per client); the server runs ``--max-searches`` at once and queues the rest,
   so these latencies include the wait.

``--soak SECONDS`` instead runs one time-bounded phase: every client loops until the deadline (and
at most 100,000 requests), sending the cached search or, with probability ``--new-share``, a new
one (a fresh budget: a real search that the server then caches). The server runs with a small
``--cache-size`` (and ``--known-archs``) so its caches fill within the soak; the server's RSS
(``/proc/PID/status``) is sampled every 5 s and printed at the start, the end and its peak, per
quarter of the soak: once the caches are full it must stop growing.

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

from sned.supernet.base.artifacts import DEFAULT_PREDICTORS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, max_searches: int, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sned.search.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-searches", str(max_searches), "--log-level", "warning", *(extra or [])]
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


def _post(client: httpx.Client, body: dict, errors: list[str], server_ms: list[float] | None = None) -> float:
    """One ``POST /search``; returns its latency in ms, records a failure in ``errors`` and the
    handler's own time (``Server-Timing``) in ``server_ms``."""
    t0 = time.perf_counter()
    try:
        r = client.post("/search", json=body)
        if r.status_code != 200:
            errors.append(f"{r.status_code}: {r.text[:200]}")
        timing = r.headers.get("server-timing", "")
        if server_ms is not None and "dur=" in timing:
            server_ms.append(float(timing.split("dur=")[1]))
    except httpx.HTTPError as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    return (time.perf_counter() - t0) * 1e3


def _percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50": statistics.median(ordered), "p99": p99, "max": ordered[-1]}


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
                mine.append(_post(c, body, bad, own))
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
    return {**_percentiles(latencies), "rps": len(latencies) / wall, "errors": errors,
            "server_p50": statistics.median(server_ms) if server_ms else float("nan")}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _soak(url: str, pid: int, clients: int, seconds: float, new_share: float, base: dict) -> dict:
    """All clients loop until the deadline, mixing the cached search and new ones; RSS sampled every 5 s."""
    import random

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(1, 10**9))  # distinct budgets for the new searches (next() is atomic enough here)
    deadline = time.monotonic() + seconds
    rss: list[tuple[float, float]] = [(0.0, _rss_mb(pid))]
    began = time.monotonic()

    def client(seed: int) -> None:
        rng, mine, bad = random.Random(seed), [], []
        with httpx.Client(base_url=url, timeout=300) as c:
            while time.monotonic() < deadline and len(mine) < 100_000:
                body = {**base, "budget_ms": 200 + 0.001 * next(counter)} if rng.random() < new_share else base
                mine.append(_post(c, body, bad))
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(5)
        rss.append((time.monotonic() - began, _rss_mb(pid)))
    for t in threads:
        t.join()
    return {**_percentiles(latencies), "rps": len(latencies) / (time.monotonic() - began), "errors": errors,
            "rss": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--requests", type=int, default=50, help="cached requests per client (default: 50)")
    parser.add_argument("--uncached", type=int, default=4, help="uncached searches per client (default: 4)")
    parser.add_argument("--max-searches", type=int, default=2, help="the server's concurrent searches (default: 2)")
    parser.add_argument("--soak", type=float, help="run one mixed phase for this many seconds (at most 3600)")
    parser.add_argument("--new-share", type=float, default=0.2, help="soak: share of new searches (default: 0.2)")
    parser.add_argument("--cache-size", type=int, default=32, help="soak: the server's --cache-size (default: 32)")
    args = parser.parse_args(argv)
    if args.soak is not None and not (0 < args.soak <= 3600 and 0 <= args.new_share <= 1):
        parser.error("--soak must be in (0, 3600] seconds and --new-share in [0, 1]")
    for name in ("clients", "requests", "uncached", "max_searches"):
        if not 1 <= getattr(args, name) <= 1000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 1000")

    folder = resources.files("sned.experiments") / "tiny"
    analytic = not any((folder / name).is_file() for name in DEFAULT_PREDICTORS)
    base = {"experiment": "tiny", "budget_ms": 200, "resolutions": [128], **({"analytic": True} if analytic else {})}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"sned serve on {url} ({'analytic cost model: tiny has no predictor yet' if analytic else 'bundled table + predictor'}); "
          f"{args.clients} clients, {os.cpu_count()} CPUs")
    if args.soak is not None:
        return _run_soak(args, url, port, base)
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


def _run_soak(args: argparse.Namespace, url: str, port: int, base: dict) -> int:
    server = _start_server(port, args.max_searches, ["--cache-size", str(args.cache_size),
                                                      "--known-archs", str(8 * args.cache_size)])
    try:
        warm = httpx.post(f"{url}/search", json=base, timeout=300)
        if warm.status_code != 200:
            raise SystemExit(f"warm-up search failed: {warm.status_code} {warm.text[:300]}")
        r = _soak(url, server.pid, args.clients, args.soak, args.new_share, base)
        health = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(10)
    print(f"soak {args.soak:.0f} s, {args.clients} clients, {args.new_share:.0%} new searches, server --cache-size "
          f"{args.cache_size}: {r['n']} requests, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, max {r['max']:.0f} ms, "
          f"{r['rps']:.1f} req/s, {len(r['errors'])} errors")
    for err in r["errors"][:3]:
        print(f"  error: {err}")
    rss = r["rss"]
    quarters = [rss[min(len(rss) - 1, round(q * (len(rss) - 1) / 4))] for q in range(5)]
    print("server RSS (MB) at " + ", ".join(f"{t:.0f} s {mb:.0f}" for t, mb in quarters)
          + f"; peak {max(mb for _, mb in rss):.0f}")
    print(f"server: {health['searches_run']} searches run, {health['cached']} answers cached")
    return 0 if not r["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
