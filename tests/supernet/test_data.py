"""Tests for sned.supernet.data: the procedural dataset, the clip dataset, the loader and the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sned.search.cli import main
from sned.supernet.base.errors import UserError
from sned.supernet.data import VideoClipDataset, infinite_loader, resize_clips
from sned.supernet.synth import CLASS_NAMES, render_video, synthesize
from sned.supernet.video_io import list_videos, read_video, write_video

FRAMES, SIZE = 6, 32


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset shared by the read-only tests: 8 videos, 6 frames of 32x32."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(out, n=8, frames=FRAMES, size=SIZE, seed=3, progress=False)
    return out


def _gradient_video(path: Path, frames: int, size: int = 32) -> None:
    """A video whose frame t is uniformly grey at level 10 + 15 t, so a clip reveals its frame indices."""
    levels = (10 + 15 * np.arange(frames)).astype(np.uint8)
    write_video(path, np.broadcast_to(levels[:, None, None, None], (frames, size, size, 3)).copy())


# ----------------------------------------------------------------------------- synthesis


def test_synthesize_writes_readable_videos_in_class_folders(dataset_dir: Path) -> None:
    paths = list_videos(dataset_dir)
    assert len(paths) == 8
    assert sorted(p.name for p in dataset_dir.iterdir() if p.is_dir()) == sorted(CLASS_NAMES)
    for path in paths:
        class_name = path.parent.name
        assert path.name.startswith(f"v_{class_name}_g01_c0") and path.suffix == ".mp4"
        frames = read_video(path)  # decord
        assert frames.shape == (FRAMES, SIZE, SIZE, 3)
        assert frames.std() > 5  # not a blank video
    # 8 videos over 6 classes: the first two classes get a second video.
    assert (dataset_dir / CLASS_NAMES[0] / f"v_{CLASS_NAMES[0]}_g01_c02.mp4").is_file()
    assert not (dataset_dir / CLASS_NAMES[2] / f"v_{CLASS_NAMES[2]}_g01_c02.mp4").exists()
    manifest = json.loads((dataset_dir / "dataset.json").read_text())
    assert manifest["args"] == {"n": 8, "frames": FRAMES, "size": SIZE, "seed": 3, "fps": 8}
    assert manifest["complete"] is True and manifest["version"] >= 1
    assert sum(manifest["counts"].values()) == 8 and manifest["counts"][CLASS_NAMES[0]] == 2


def test_synthesize_is_deterministic_per_seed(tmp_path: Path, dataset_dir: Path) -> None:
    again = synthesize(tmp_path / "again", n=8, frames=FRAMES, size=SIZE, seed=3, progress=False)
    for path in again:
        original = dataset_dir / path.relative_to(tmp_path / "again")
        np.testing.assert_array_equal(read_video(path), read_video(original))
    for name in CLASS_NAMES:
        np.testing.assert_array_equal(render_video(name, 1, 4, 16, seed=7), render_video(name, 1, 4, 16, seed=7))
        assert not np.array_equal(render_video(name, 1, 4, 16, seed=7), render_video(name, 1, 4, 16, seed=8))
        assert not np.array_equal(render_video(name, 1, 4, 16, seed=7), render_video(name, 2, 4, 16, seed=7))


def test_every_class_moves_smoothly() -> None:
    """Each class has visible motion, yet consecutive frames stay close (learnable, no flicker)."""
    for name in CLASS_NAMES:
        for index in range(3):
            video = render_video(name, index, frames=8, size=64, seed=0).astype(np.float64) / 255
            step = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))  # per frame pair
            assert step.min() > 0.002, (name, index, step)
            assert step.max() < 0.2, (name, index, step)


def test_rendering_is_resolution_consistent() -> None:
    """A video rendered at 64 px and area-downsampled to 32 px is close to one rendered at 32 px,
    so training at several resolutions sees the same scenes."""
    for name in CLASS_NAMES:
        big = torch.from_numpy(render_video(name, 0, 4, 64, seed=1)).permute(3, 0, 1, 2)[None].float()
        small = torch.from_numpy(render_video(name, 0, 4, 32, seed=1)).permute(3, 0, 1, 2)[None].float()
        assert (resize_clips(big, 32) - small).abs().mean() < 12, name  # in 0..255 units


def test_synthesize_resumes_and_extends(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = synthesize(out, n=3, frames=3, size=16, seed=0, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in first}
    first[1].unlink()
    second = synthesize(out, n=4, frames=3, size=16, seed=0, progress=False)
    assert second[:3] == first and len(second) == 4
    assert first[0].stat().st_mtime_ns == stamps[first[0]]  # kept, not rewritten
    assert first[2].stat().st_mtime_ns == stamps[first[2]]
    assert first[1].is_file() and second[3].is_file()  # the missing one is back, the new one added
    assert json.loads((out / "dataset.json").read_text())["args"]["n"] == 4
    with pytest.raises(UserError, match="other settings: size 16"):
        synthesize(out, n=4, frames=3, size=24, seed=0, progress=False)
    with pytest.raises(UserError, match="already holds a 4-video"):
        synthesize(out, n=2, frames=3, size=16, seed=0, progress=False)


def test_synthesize_refuses_bad_outputs(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        synthesize(tmp_path / "file.txt", n=1, frames=2, size=16, seed=0, progress=False)
    with pytest.raises(UserError, match="no dataset.json"):
        synthesize(tmp_path, n=1, frames=2, size=16, seed=0, progress=False)  # not empty, not a dataset
    with pytest.raises(UserError, match="n must be an integer >= 1"):
        synthesize(tmp_path / "new", n=0, frames=2, size=16, seed=0, progress=False)


# ----------------------------------------------------------------------------- clip dataset


def test_dataset_shapes_range_and_resize(dataset_dir: Path) -> None:
    dataset = VideoClipDataset(dataset_dir, frames=4, size=16, seed=0)
    assert len(dataset) == 8
    clip = dataset[0]
    assert clip.shape == (3, 4, 16, 16) and clip.dtype == torch.float32
    assert -1.0 <= clip.min() and clip.max() <= 1.0 and clip.std() > 0.05


def test_dataset_layout_matches_the_file(dataset_dir: Path) -> None:
    """With the whole video as the clip and no resize, an item is exactly the file's frames in (c, f, h, w)."""
    dataset = VideoClipDataset(dataset_dir, frames=FRAMES, size=SIZE)
    frames = read_video(dataset.paths[3])  # (f, h, w, c) uint8
    expected = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
    torch.testing.assert_close(dataset[3], expected)


def test_dataset_stride_and_reproducible_starts(tmp_path: Path) -> None:
    _gradient_video(tmp_path / "ramp.mp4", frames=16)
    dataset = VideoClipDataset(tmp_path, frames=3, size=32, stride=2, seed=5)
    assert dataset.clip_span == 5
    starts = set()
    for epoch in range(8):
        clip = dataset[(0, epoch)]
        levels = (clip.mean(dim=(0, 2, 3)) + 1.0) * 127.5  # one grey level per frame
        start = dataset.start_frame(0, epoch)
        starts.add(start)
        expected = 10 + 15 * (start + 2 * torch.arange(3))
        torch.testing.assert_close(levels, expected.float(), atol=2.0, rtol=0)
        torch.testing.assert_close(dataset[(0, epoch)], clip)  # same (index, epoch) -> same clip
    assert len(starts) > 1 and max(starts) <= 16 - 5
    dataset.set_epoch(3)
    torch.testing.assert_close(dataset[0], dataset[(0, 3)])


def test_dataset_subset_and_cache_give_the_same_clips(dataset_dir: Path) -> None:
    plain = VideoClipDataset(dataset_dir, frames=4, size=16, seed=0)
    cached = VideoClipDataset(dataset_dir, frames=4, size=16, seed=0, cache=True)
    for epoch in range(3):
        torch.testing.assert_close(cached[(2, epoch)], plain[(2, epoch)])
    assert len(cached.cache) == 1
    part = cached.subset([5, 2])
    assert len(part) == 2 and part.paths == [plain.paths[5], plain.paths[2]] and part.cache is cached.cache
    torch.testing.assert_close(part.clip(1, epoch=0), plain.subset([5, 2]).clip(1, epoch=0))


@pytest.mark.parametrize("width", [16, 48])
def test_dataset_reads_widths_decord_cannot(tmp_path: Path, width: int) -> None:
    """decord fails on frames 16 or 48 px wide (dmlc/decord#336); the dataset decodes those with PyAV."""
    _gradient_video(tmp_path / "narrow.mp4", frames=6, size=width)
    dataset = VideoClipDataset(tmp_path, frames=2, size=8, stride=3)
    start = dataset.start_frame(0, 0)
    levels = (dataset[0].mean(dim=(0, 2, 3)) + 1.0) * 127.5
    torch.testing.assert_close(levels, 10 + 15 * (start + 3 * torch.arange(2.0)), atol=2.0, rtol=0)


def test_dataset_skips_corrupt_and_short_videos_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _gradient_video(tmp_path / "a" / "good1.mp4", frames=8)
    _gradient_video(tmp_path / "b" / "good2.avi.mp4", frames=8)
    _gradient_video(tmp_path / "short.mp4", frames=2)
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "notes.txt").write_text("not a video")
    with caplog.at_level(logging.WARNING):
        dataset = VideoClipDataset(tmp_path, frames=4, size=16)
    assert len(dataset) == 2 and {p.name for p in dataset.paths} == {"good1.mp4", "good2.avi.mp4"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "skipped 2 of 4" in message and "corrupt.mp4" in message and "short.mp4" in message


def test_dataset_without_usable_videos_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        VideoClipDataset(tmp_path / "missing", frames=4, size=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no video files .* under .*empty"):
        VideoClipDataset(tmp_path / "empty", frames=4, size=16)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mp4").write_bytes(b"\x00" * 100)
    _gradient_video(bad / "short.mp4", frames=2)
    with pytest.raises(UserError, match=r"no usable video under .*bad: 2 video files, 1 unreadable .* 1 shorter"):
        VideoClipDataset(bad, frames=4, size=16)


def test_resize_clips() -> None:
    clips = torch.rand(2, 3, 4, 8, 8)
    small = resize_clips(clips, 4)
    assert small.shape == (2, 3, 4, 4, 4)
    torch.testing.assert_close(small[1, 2, 3, 0, 0], clips[1, 2, 3, :2, :2].mean())  # 2x2 area average
    assert resize_clips(clips, 8) is clips
    odd = resize_clips(torch.full((1, 3, 2, 12, 18), 0.25), 5)  # non-integer factor, non-square
    assert odd.shape == (1, 3, 2, 5, 5)
    torch.testing.assert_close(odd, torch.full_like(odd, 0.25))
    with pytest.raises(ValueError, match="b, c, f, h, w"):
        resize_clips(torch.rand(3, 4, 8, 8), 4)


def test_infinite_loader_with_fork_workers_matches_in_process(dataset_dir: Path) -> None:
    dataset = VideoClipDataset(dataset_dir, frames=4, size=16, seed=1)
    in_process = infinite_loader(dataset, batch_size=3, workers=0, seed=2)
    batches = [next(in_process) for _ in range(4)]  # 12 clips: more than one epoch of 8
    assert all(b.shape == (3, 3, 4, 16, 16) for b in batches)
    workers = infinite_loader(dataset, batch_size=3, workers=2, seed=2)
    for expected in batches:
        torch.testing.assert_close(next(workers), expected)
    workers.close()  # shuts the worker processes down


def test_infinite_loader_shards_epochs_across_ranks() -> None:
    from sned.supernet.data import _EpochShuffle

    keys = [iter(_EpochShuffle(10, seed=4, rank=r, world_size=2)) for r in range(2)]
    epoch0 = [next(k) for k in keys for _ in range(5)]
    assert sorted(i for i, e in epoch0) == list(range(10)) and {e for _, e in epoch0} == {0}
    assert next(keys[0])[1] == 1  # then a new epoch, in another order


# ----------------------------------------------------------------------------- CLI


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    args = ["data", "synth", "--out", str(out), "--n", "2", "--frames", "3", "--size", "16", "--quiet"]
    assert main(args) == 0
    assert len(list_videos(out)) == 2 and "2 written" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 written, 2 already there" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["data", "synth", "--out", str(tmp_path / "file"), "--n", "2", "--quiet"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_synth_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None\n"  # any torch import now fails
            "from sned.search.cli import main\n"
            f"sys.exit(main(['data', 'synth', '--out', {str(tmp_path / 'ds')!r}, '--n', '1', '--frames', '2',"
            " '--size', '16', '--quiet']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=os.environ | {"SNED_DEBUG": "1"})
    assert result.returncode == 0, result.stderr


def test_class_folders_label_the_videos_and_flat_folders_do_not(dataset_dir: Path, tmp_path: Path) -> None:
    ds = VideoClipDataset(dataset_dir, frames=4, size=16)
    assert ds.class_names == tuple(sorted(CLASS_NAMES))
    assert [ds.class_names[label] for label in ds.labels] == [p.parent.name for p in ds.paths]
    view = ds.subset([3, 0])
    assert view.labels == [ds.labels[3], ds.labels[0]]
    _gradient_video(tmp_path / "flat.mp4", frames=6)
    flat = VideoClipDataset(tmp_path, frames=4, size=16)
    assert flat.class_names == () and flat.labels == []
