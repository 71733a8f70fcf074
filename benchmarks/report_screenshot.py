"""Render a search run's report.html to a PNG with headless Chromium (checks the page draws offline).

    python benchmarks/report_screenshot.py runs/search-XXXX/report.html [--out report.png]
    python benchmarks/report_screenshot.py            # runs a small search first, then renders it

Needs ``/usr/bin/chromium`` (Debian: ``apt-get install chromium``); without it the script says so
and exits 0, so ``make bench`` still runs on machines without a browser. Chromium runs with no
network-facing background services and a throw-away profile, and ``--virtual-time-budget`` lets
plotly.js draw before the screenshot is taken.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def screenshot(report: Path, png: Path, width: int = 1200, height: int = 2600, timeout_s: float = 120) -> Path:
    """Render ``report`` (an HTML file) to ``png`` with headless Chromium; returns the PNG path."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sned-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", "--virtual-time-budget=10000",
               f"--screenshot={png.resolve()}", report.resolve().as_uri()]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", help="a report.html (default: run a small search and render it)")
    parser.add_argument("--out", help="PNG path (default: next to the report, report.png)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2600)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found (apt-get install chromium); skipping the screenshot")
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
