"""The cluster recipe: `ray job submit --working-dir . -- sned-search ...` against a head started here.

Needs `ray[default]` (the job server); `make test-all` installs it. Ray 2.60 turns token
authentication on by default, so the head and the client share a token through RAY_AUTH_TOKEN.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_job_submit_runs_sned_search(tmp_path):
    pytest.importorskip("ray.dashboard.modules.job.sdk", reason="needs ray[default] (make test-all installs it)")
    ray = str(Path(sys.executable).parent / "ray")
    temp = Path(os.environ.get("TMPDIR", "/tmp")) / f"sned-rj-{secrets.token_hex(3)}"  # short: socket paths
    env = {**os.environ, "RAY_TMPDIR": str(temp), "RAY_DISABLE_USAGE_STATS": "1", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    port, dashboard = _free_port(), _free_port()
    start = [ray, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}", "--num-cpus=1",
             "--include-dashboard=true", "--disable-usage-stats", f"--temp-dir={temp}"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        out = tmp_path / "search"
        job = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT),
             "--runtime-env-json", json.dumps({"excludes": [".venv", "runs", ".git"]}), "--",
             "sned-search", "--analytic", "--res", "32", "--budget-ms", "100", "--json", "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout + job.stderr
        assert json.loads((out / "pareto.json").read_text())["fronts"]["32"]
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
