"""sned.supernet.video_io: native stderr stays captured, and every command fed corrupt videos prints one line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sned.supernet.video_io import count_frames, native_stderr_captured, read_frames, write_video


def _corrupt_folder(root: Path) -> Path:
    """``root/<class>/`` holding random bytes named .mp4 and a real mp4 cut to a third (its index is lost)."""
    rng = np.random.default_rng(0)
    (root / "noise").mkdir(parents=True)
    (root / "noise" / "random.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    real = write_video(root / "full.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    data = real.read_bytes()
    real.unlink()
    (root / "cut").mkdir()
    (root / "cut" / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory) -> Path:
    return _corrupt_folder(tmp_path_factory.mktemp("corrupt"))


def test_capture_silences_fd2_restores_it_and_logs_what_it_caught(capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="sned.supernet.video_io"):
        with native_stderr_captured("clip.mp4"):
            os.write(2, b"native: ERROR opening clip.mp4\n")  # below sys.stderr, as C++ code writes
        with pytest.raises(RuntimeError, match="boom"), native_stderr_captured("other.mp4"):
            os.write(2, b"native: second line\n")
            raise RuntimeError("boom")
    os.write(2, b"after\n")  # fd 2 is the real one again, after a normal and an exceptional exit
    assert capfd.readouterr().err == "after\n"
    logged = [r.getMessage() for r in caplog.records]
    assert any("clip.mp4: native: ERROR opening clip.mp4" in m for m in logged), logged
    assert any("other.mp4: native: second line" in m for m in logged), logged


def test_corrupt_files_read_silently_and_name_the_file(corrupt, capfd):
    for path in sorted(corrupt.rglob("*.mp4")):
        assert count_frames(path) is None
        with pytest.raises(RuntimeError, match=str(path)):
            read_frames(path)
    assert capfd.readouterr().err == ""


def test_a_readable_video_reads_the_same_inside_the_capture(tmp_path, capfd):
    frames = np.random.default_rng(1).integers(0, 256, (4, 32, 40, 3), dtype=np.uint8)
    path = write_video(tmp_path / "ok.mp4", frames)
    assert count_frames(path) == 4
    assert read_frames(path, [1, 3]).shape == (2, 32, 40, 3)
    assert capfd.readouterr().err == ""


def _save_fresh_checkpoint(run_dir: Path) -> None:
    """A freshly initialised ``tiny`` supernet through the checkpoint API (what ``sned evaluate`` loads)."""
    import torch

    from sned.supernet.checkpoint import save_checkpoint
    from sned.supernet.model import Supernet
    from sned.supernet.space import load_space

    space = load_space("tiny")
    torch.manual_seed(0)
    net = Supernet(space)
    save_checkpoint(run_dir, 0, net, net, torch.optim.Adam(net.parameters()),
                    {"experiment": space.name, "space": space.to_dict(), "space_hash": space.hash,
                     "config": {"prediction": "v"}})


def _commands(corrupt: Path, tmp: Path) -> list[tuple[str, list[str]]]:
    """(the program name its error line starts with, the command line) for each command that reads user videos."""
    sned = [sys.executable, "-m", "sned.search.cli"]
    script = Path(sys.executable).with_name("sned-train")  # the console script, as installed
    train = [str(script)] if script.is_file() else [sys.executable, "-c", "from sned.supernet.train_cli import main; main()"]
    return [
        ("sned train", [*sned, "train", "tiny", "--data", str(corrupt), "--out", str(tmp / "run")]),
        ("sned-train", [*train, "tiny", "--data", str(corrupt), "--out", str(tmp / "run")]),
        ("sned fvd", [*sned, "fvd", str(corrupt), str(corrupt)]),
        ("sned features", [*sned, "features", "train", str(corrupt), "--out", str(tmp / "features")]),
        ("sned evaluate", [*sned, "evaluate", "tiny", "--ckpt", str(tmp / "ckpt"), "--data", str(corrupt),
                           "--out", str(tmp / "fvd.parquet"), "--res", "32", "--n-subnets", "2", "--videos", "2",
                           "--steps", "1"]),
    ]


def test_every_command_reading_user_videos_prints_one_line_and_exits_2(corrupt, tmp_path):
    """Each command in its own process, as a user runs it: exit 2, one stderr line, no native library's lines."""
    _save_fresh_checkpoint(tmp_path / "ckpt")
    env = {k: v for k, v in os.environ.items() if k not in ("SNED_DEBUG", "TQDM_DISABLE")}
    env.update(OMP_NUM_THREADS="1", RAY_DISABLE_USAGE_STATS="1")
    for name, argv in _commands(corrupt, tmp_path):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        lines = done.stderr.splitlines()
        assert done.returncode == 2, (name, done.returncode, done.stderr[-2000:])
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"{name}: error: "), (name, lines)
        assert "video_reader.cc" not in done.stderr and "ERROR opening" not in done.stderr, (name, lines)
        # The message names what it could not use: the file it stopped at, or every file it skipped.
        assert "random.mp4" in lines[0] or "truncated.mp4" in lines[0], (name, lines)
        if name != "sned fvd":
            assert "2 unreadable" in lines[0] and "random.mp4" in lines[0] and "truncated.mp4" in lines[0], lines
