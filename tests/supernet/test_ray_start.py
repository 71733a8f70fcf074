"""Starting Ray (``sned.supernet.ray_start``): a private local instance next to a head, stale files, one-line errors.

The slow tests run ``sned-train --workers 2`` (no ``--address``) as a user would, in a subprocess,
next to a real ``ray start --head`` on this machine and next to a stale ``ray_current_cluster``
file. Ray's default temp dir (``$RAY_TMPDIR/ray``) points at a private dir for both, so the tests
never read or write a user's ``/tmp/ray``, and the head is stopped by its own process (the
``ray_head`` fixture), never by ``ray stop``.
"""

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sned.supernet.base.errors import UserError
from sned.supernet.ray_start import RAY_ENVIRON, environ_restored, start_ray

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mini_experiment):
    from sned.supernet.synth import synthesize

    root = tmp_path_factory.mktemp("ray_start")
    synthesize(root / "data", n=6, frames=8, size=32, seed=0, progress=False)
    (root / "mini.yaml").write_text(mini_experiment("mini", 64).replace("steps: 6", "steps: 2").replace(
        "lr_warmup_steps: 2", "lr_warmup_steps: 1").replace("sampling_warmup_steps: 3", "sampling_warmup_steps: 1").replace(
        "keep_checkpoints: 10", "val_videos: 0"))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(ray_tmpdir: str, **extra: str) -> dict[str, str]:
    """The test process's environment with Ray's default temp dir moved to ``ray_tmpdir``."""
    return {**os.environ, "RAY_TMPDIR": ray_tmpdir, "OMP_NUM_THREADS": "1", "RAY_DISABLE_USAGE_STATS": "1",
            # The README's recipe: head and clients share a token (and nothing is written to ~/.ray).
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def _sned_train(setup: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``sned-train mini --steps 2 --workers 2`` without ``--address``, as a user runs it."""
    cmd = [str(BIN / "sned-train"), str(setup / "mini.yaml"), "--data", str(setup / "data"), "--out", str(out),
           "--steps", "2", "--workers", "2", "--quiet"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _assert_trained(proc: subprocess.CompletedProcess, out: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained steps 1..2" in proc.stdout
    assert (out / "checkpoints" / "step-00000002").is_dir()


# ----------------------------------------------------------------------------- fast


def test_environment_settings_do_not_outlive_the_block(monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", "/users/own")
    monkeypatch.delenv("RAY_DISABLE_USAGE_STATS", raising=False)
    with environ_restored(RAY_ENVIRON):
        os.environ["RAY_TMPDIR"] = "/tmp/sned-ray-x"
        os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
    assert os.environ["RAY_TMPDIR"] == "/users/own" and "RAY_DISABLE_USAGE_STATS" not in os.environ


def test_an_address_nothing_listens_at_is_one_user_error(monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", "/users/own")
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(UserError) as info:
        start_ray(address)  # Ray alone would retry for minutes
    message = info.value.phrase({"address": "--address"})  # as a CLI with --address spells it
    assert "\n" not in message and f"--address {address}" in message and "nothing listens" in message
    assert os.environ["RAY_TMPDIR"] == "/users/own"
    import ray

    assert not ray.is_initialized()


def test_a_failed_local_start_is_one_user_error(monkeypatch, tmp_path):
    # A temp dir so deep that Ray's socket paths pass the 107-byte limit of AF_UNIX: Ray raises OSError.
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(UserError) as info:
        start_ray(None, num_cpus=1)
    message = str(info.value)
    assert "\n" not in message and message.startswith("Ray did not start a local instance") and "107" in message
    assert "RAY_TMPDIR" not in os.environ and not list(deep.iterdir())  # environment and temp dir as before
    import ray

    assert not ray.is_initialized()


def test_sned_train_prints_one_line_when_ray_fails(setup, tmp_path):
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    env = {**_env(str(tmp_path)), "TMPDIR": str(deep)}
    proc = _sned_train(setup, tmp_path / "run", env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sned-train: error: Ray did not start a local instance"), lines


# ----------------------------------------------------------------------------- slow: real Ray next to a head


@pytest.mark.slow
def test_sned_train_workers_next_to_a_running_head(setup, tmp_path, ray_head, short_temp_dir):
    """The README's `ray start --head` (default temp dir: $RAY_TMPDIR/ray) runs; training starts its own Ray."""
    env = _env(short_temp_dir)
    cluster_file = Path(short_temp_dir) / "ray" / "ray_current_cluster"
    with ray_head(env, "--num-cpus=1", "--include-dashboard=false") as (address, head):
        written = cluster_file.read_text()
        assert written.strip().endswith(address.rsplit(":", 1)[1])  # what Ray's default ray.init() would join
        out = tmp_path / "run"
        _assert_trained(_sned_train(setup, out, env), out)
        assert head.poll() is None and cluster_file.read_text() == written  # the head was left alone
        with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), timeout=5):
            pass


@pytest.mark.slow
def test_sned_train_workers_next_to_a_stale_cluster_file(setup, tmp_path, short_temp_dir):
    """A head that died without `ray stop` leaves ray_current_cluster behind, naming a dead address."""
    cluster_file = Path(short_temp_dir) / "ray" / "ray_current_cluster"
    cluster_file.parent.mkdir()
    stale = f"127.0.0.1:{_free_port()}"
    cluster_file.write_text(stale)
    out = tmp_path / "run"
    _assert_trained(_sned_train(setup, out, _env(short_temp_dir)), out)
    assert cluster_file.read_text() == stale
