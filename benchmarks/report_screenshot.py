"""Render a search run's report.html, or ``sned serve``'s API docs, to a PNG with headless Chromium
(checks that the page draws offline).

    python benchmarks/report_screenshot.py runs/search-XXXX/report.html [--out report.png]
    python benchmarks/report_screenshot.py            # runs a small search first, then renders it
    python benchmarks/report_screenshot.py --docs [--out docs.png]   # starts `sned serve`, renders /docs

Needs Chromium (Debian: ``apt-get install chromium`` or ``chromium-headless-shell``); without it
the script says so and exits 0, so ``make bench`` still runs on machines without a browser.
Chromium runs with no network-facing background services, a throw-away profile and a host
resolver that maps every host except 127.0.0.1 to nothing, so a page that needs a CDN renders
blank; ``--virtual-time-budget`` lets plotly.js / Swagger UI draw before the screenshot is taken.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell")


def chromium() -> str | None:
    """The first installed Chromium build, or None."""
    return next((c for c in CHROMIUMS if Path(c).exists()), None) or shutil.which("chromium")


def screenshot(page: Path | str, png: Path, width: int = 1200, height: int = 2600, timeout_s: float = 120) -> Path:
    """Render ``page`` (an HTML file or a loopback URL) to ``png`` with headless Chromium; returns the PNG path."""
    png.parent.mkdir(parents=True, exist_ok=True)
    binary = chromium()
    if binary is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    url = page.resolve().as_uri() if isinstance(page, Path) else page
    with tempfile.TemporaryDirectory(prefix="sned-chromium-") as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no CDN can answer
               f"--user-data-dir={profile}", f"--window-size={width},{height}", "--virtual-time-budget=10000",
               f"--screenshot={png.resolve()}", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return png


def _demo_report(folder: Path) -> Path:
    """Run a small two-resolution search (one exhaustive, one NSGA-II) to have a report to render."""
    cmd = [sys.executable, "-m", "sned.search.cli", "search", "--budget-ms", "200", "--res", "64,128",
           "--method", "nsga2", "--pop", "32", "--gens", "25", "--out", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "not found" in proc.stderr:  # no bundled latency table / predictor yet
        print("bundled latency table / predictor missing: rendering a search with the analytic cost model")
        proc = subprocess.run(cmd + ["--analytic"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return folder / "report.html"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docs_screenshot(png: Path, width: int, height: int) -> Path:
    """Start ``sned serve`` on a free loopback port, render its ``/docs`` page, stop the server."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "sned.search.cli", "serve", "--port", str(port),
                               "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the service answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sned serve did not start: {server.stderr.read() if server.stderr else ''}") from None
                time.sleep(0.5)
        return screenshot(f"http://127.0.0.1:{port}/docs", png, width, height)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", help="a report.html (default: run a small search and render it)")
    parser.add_argument("--out", help="PNG path (default: next to the report, report.png)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2600)
    parser.add_argument("--docs", action="store_true", help="render `sned serve`'s /docs page instead of a report")
    args = parser.parse_args(argv)
    if chromium() is None:
        print(f"no Chromium ({' or '.join(CHROMIUMS)}; apt-get install chromium); skipping the screenshot")
        return 0
    if args.docs:
        png = Path(args.out or "runs/docs.png")
        t0 = time.perf_counter()
        docs_screenshot(png, args.width, min(args.height, 1400))
        print(f"sned serve /docs -> {png} in {time.perf_counter() - t0:.1f} s (every host but 127.0.0.1 unresolvable)")
        return 0
    tmp = None
    if args.report:
        report = Path(args.report)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="sned-report-"))
        report = _demo_report(tmp / "run")
    png = Path(args.out) if args.out else report.with_name("report.png")
    t0 = time.perf_counter()
    screenshot(report, png, args.width, args.height)
    print(f"report {report} ({report.stat().st_size / 1e6:.1f} MB) -> {png} in {time.perf_counter() - t0:.1f} s")
    if tmp is not None and not args.out:
        print(f"(run folder kept in {tmp}; delete it with: rm -r {tmp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
