"""Shared test settings: small thread counts keep the suite steady on a 2-core machine."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")


def save_perturbed_checkpoint(run_dir, seed: int = 0):
    """A tiny supernet with randomly perturbed weights (zero-initialised residual branches would make
    every subnet alike), saved by the training code's own checkpoint writer. Returns the supernet."""
    import torch

    from sned.supernet.checkpoint import save_checkpoint
    from sned.supernet.model import Supernet
    from sned.supernet.space import load_space

    torch.manual_seed(seed)
    space = load_space("tiny")
    net = Supernet(space)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = {"experiment": "tiny", "space": space.to_dict(), "space_hash": space.hash, "config": {"prediction": "v"}}
    save_checkpoint(run_dir, 1, net, net, torch.optim.AdamW(net.parameters()), state)
    return net


@pytest.fixture(scope="session")
def checkpoint_writer():
    """:func:`save_perturbed_checkpoint`, for tests that need a real checkpoint folder."""
    return save_perturbed_checkpoint


def kill_when_written(cmd: list[str], path: Path, timeout: float, env: dict[str, str] | None = None) -> int:
    """Run ``cmd``, SIGKILL it as soon as ``path`` exists (e.g. a checkpoint folder), and return its exit code.

    The way a test kills a training run mid-way to prove that ``--resume`` continues it exactly.
    """
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not path.exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


@pytest.fixture(scope="session")
def killer():
    """:func:`kill_when_written` as a fixture."""
    return kill_when_written


def free_port() -> int:
    """A TCP port nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_naming(text: str) -> list:
    """This machine's processes whose command line contains ``text`` (the test's own temp dir)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"], ad_value=None):
        if proc.pid != os.getpid() and text in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@contextlib.contextmanager
def private_ray_head(env: dict[str, str], *options: str, timeout: float = 180):
    """``ray start --head --block`` on a free port; yields ``(gcs_address, process)``; stops only that head.

    Every file of the head lies under ``env["RAY_TMPDIR"]`` (a short private dir the caller made):
    Ray's default temp dir is ``$RAY_TMPDIR/ray``, or ``options`` name ``--temp-dir`` inside it. The
    head is stopped through its own process, never ``ray stop`` (which stops every Ray process on
    the machine, a user's included): SIGTERM to ``ray start --block``, which stops what it started,
    then SIGKILL for any descendant, or process naming the private dir, that outlived it.
    """
    import psutil

    root = env["RAY_TMPDIR"]
    port = free_port()
    with open(Path(root) / "head.log", "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                                 f"--port={port}", "--disable-usage-stats", *options],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # `ray start` writes ray_current_cluster once the head is up (in --temp-dir or $RAY_TMPDIR/ray).
        files = [Path(root) / "ray_current_cluster", Path(root) / "ray" / "ray_current_cluster"]
        deadline = time.monotonic() + timeout
        while not any(f.exists() and f.read_text().strip().endswith(f":{port}") for f in files):
            assert proc.poll() is None, f"ray start --head exited {proc.returncode}: " + \
                (Path(root) / "head.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not come up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", proc
    finally:
        family = _processes_naming(root)
        with contextlib.suppress(psutil.Error):
            head = psutil.Process(proc.pid)
            family += [p for p in [head, *head.children(recursive=True)] if p not in family]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _, alive = psutil.wait_procs(family, timeout=30)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
        left = _processes_naming(root)  # (a zombie's command line reads empty)
        assert not left, f"processes of the test's Ray head outlived it: {left}"


@pytest.fixture
def ray_head():
    """:func:`private_ray_head`, for tests that need a real Ray head on this machine."""
    return private_ray_head


@pytest.fixture
def short_temp_dir():
    """A private dir with a short path (Ray's socket paths must stay under 107 bytes), removed afterwards."""
    path = tempfile.mkdtemp(prefix="sned-t-", dir="/tmp" if os.path.isdir("/tmp") else None)
    yield path
    shutil.rmtree(path, ignore_errors=True)
