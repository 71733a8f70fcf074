"""The cluster recipe: `ray job submit --working-dir . -- sned-search ...` against a head started here.

Needs `ray[default]` (the job server); `make test-all` installs it. Ray 2.60 turns token
authentication on by default, so the head and the client share a token through RAY_AUTH_TOKEN.
The head lives in a private temp dir and is stopped by its own process (the ``ray_head`` fixture),
never by `ray stop`, which would stop every Ray process on the machine.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_http(url: str, timeout: float = 120) -> None:
    """Until something answers at ``url`` (any HTTP status: the dashboard may ask for the token)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing answered at {url}"
            time.sleep(0.5)


@pytest.mark.slow
def test_ray_job_submit_runs_sned_search(tmp_path, ray_head, short_temp_dir):
    pytest.importorskip("ray.dashboard.modules.job.sdk", reason="needs ray[default] (make test-all installs it)")
    pytest.importorskip("aiohttp", reason="needs ray[default]'s dashboard packages (make test-all installs them)")
    ray = str(Path(sys.executable).parent / "ray")
    temp = short_temp_dir  # short: socket paths
    env = {**os.environ, "RAY_TMPDIR": temp, "RAY_DISABLE_USAGE_STATS": "1", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    dashboard = _free_port()
    with ray_head(env, f"--dashboard-port={dashboard}", "--num-cpus=1", "--include-dashboard=true",
                  f"--temp-dir={temp}"):
        _wait_for_http(f"http://127.0.0.1:{dashboard}/api/version")
        out = tmp_path / "search"
        job = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT),
             "--runtime-env-json", json.dumps({"excludes": [".venv", "runs", ".git"]}), "--",
             "sned-search", "--analytic", "--res", "32", "--budget-ms", "100", "--json", "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout + job.stderr
        assert json.loads((out / "pareto.json").read_text())["fronts"]["32"]
