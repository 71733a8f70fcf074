"""Video clips for training and evaluation: a decord-backed clip dataset, resizing, an endless loader.

:class:`VideoClipDataset` reads random clips from any folder of videos (recursive, UCF-101 class
folders work) as float32 ``(c, f, h, w)`` in [-1, 1]; :func:`infinite_loader` streams seeded,
shuffled batches forever; :func:`resize_clips` downsamples a batch to one of the space's
resolutions (the trainer loads at the largest and resizes per step). Torch is imported only inside
the code paths that return tensors. The procedural dataset the tests train on is
:mod:`sned.supernet.synth` (``sned data synth``, :mod:`sned.supernet.data_cli`).
"""

from __future__ import annotations

import copy
import logging
import operator
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sned.supernet.base.errors import UserError
from sned.supernet.video_io import VIDEO_SUFFIXES, count_frames, list_videos, read_frames

if TYPE_CHECKING:  # only for annotations; torch is imported lazily at run time
    import torch

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- clip dataset


def _resize_square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(n, c, h, w)`` so the short side is ``size`` (box filter for integer down-sampling
    factors, antialiased bilinear otherwise), then centre-crop to ``(n, c, size, size)``."""
    import torch.nn.functional as F

    height, width = frames.shape[-2:]
    if (height, width) == (size, size):
        return frames
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    factor = height // new_h
    if new_h < height and height == factor * new_h and width == factor * new_w:
        frames = F.avg_pool2d(frames, factor)  # exact area average: 128 -> 64 -> 32 px
    elif (new_h, new_w) != (height, width):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return frames[..., top : top + size, left : left + size]


def resize_clips(clips: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch of clips ``(b, c, f, h, w)`` to ``(b, c, f, size, size)``.

    Down-sampling averages (area/box filter for integer factors such as 128 -> 32, antialiased
    bilinear otherwise), so a down-sampled clip matches one rendered at the smaller size; a
    non-square input is resized on its short side and centre-cropped. Frames are never resampled.
    Returns the input itself when it already has the size.
    """
    from einops import rearrange

    if clips.ndim != 5:
        raise ValueError(f"expected clips of shape (b, c, f, h, w), got {tuple(clips.shape)}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if clips.shape[-2:] == (size, size):
        return clips
    batch = clips.shape[0]
    frames = _resize_square(rearrange(clips, "b c f h w -> (b f) c h w"), size)
    return rearrange(frames, "(b f) c h w -> b c f h w", b=batch).contiguous()


def _examples(paths: list[Path], root: Path, limit: int = 3) -> str:
    names = [str(p.relative_to(root)) for p in paths[:limit]]
    return ", ".join(names) + (", ..." if len(paths) > limit else "")


class VideoClipDataset:
    """Random fixed-length clips from a folder of videos, as float32 ``(c, f, h, w)`` in [-1, 1].

    A map-style dataset in the torch sense (``__len__`` + ``__getitem__``; it works with
    ``DataLoader``, ``Subset``, ``ConcatDataset``) that does not subclass
    ``torch.utils.data.Dataset``, so that this module imports without torch.

    Item ``i`` is a clip of ``frames`` frames taken every ``stride`` frames from video ``i``,
    starting at a random frame drawn from a generator seeded by ``(seed, i, epoch)``: the same
    index and epoch always give the same clip, in any worker. ``dataset[i]`` uses
    :attr:`epoch` (see :meth:`set_epoch`); ``dataset[(i, epoch)]`` names the epoch explicitly
    (what :func:`infinite_loader` does). Frames are resized on their short side to ``size``
    (antialiased) and centre-cropped.

    Videos in class folders (``root/<class>/...``, as UCF-101 and ``sned data synth`` lay them out)
    are labelled: :attr:`class_names` holds the sorted folder names and :attr:`labels` each
    video's index into them; with any video directly under ``root`` both are empty.

    Construction lists the videos (recursively, any of ``VIDEO_SUFFIXES``) and opens each once
    with decord to count its frames; unreadable videos and videos shorter than
    ``(frames - 1) * stride + 1`` frames are skipped, with one ``logging`` warning. Readers are
    opened per item, in whichever process reads it, because a decord reader created in the
    parent hangs when used in forked ``DataLoader`` workers.

    Args:
        root: folder to search for videos.
        frames: frames per clip ``f``.
        size: clip height and width ``s`` in pixels.
        stride: take every ``stride``-th frame.
        seed: seeds the clip start positions.
        cache: keep every video's decoded frames in memory after its first read (small datasets:
            the synthetic default is ~0.5 GB at 128 px); views made by :meth:`subset` or
            ``copy.copy`` share the cache.

    Raises:
        UserError: the folder is missing or holds no usable video.
    """

    spatial_factor = 1  # pixels per clip pixel (a LatentClipDataset's is its autoencoder's)

    def __init__(self, root: str | Path, frames: int, size: int, stride: int = 1, seed: int = 0,
                 cache: bool = False) -> None:
        from tqdm import tqdm

        for name, value, low in (("frames", frames, 1), ("size", size, 1), ("stride", stride, 1), ("seed", seed, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.root = Path(root)
        self.frames, self.size, self.stride, self.seed = int(frames), int(size), int(stride), int(seed)
        self.epoch = 0
        self.cache: dict[Path, np.ndarray] | None = {} if cache else None
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise UserError(f"video folder {self.root} {what}")
        files = list_videos(self.root)
        if not files:
            raise UserError(f"no video files ({'/'.join(VIDEO_SUFFIXES)}) under {self.root}")
        unreadable, too_short = [], []
        self.paths: list[Path] = []
        self.frame_counts: list[int] = []
        for path in tqdm(files, desc="scanning videos", unit="video", disable=len(files) < 500):
            count = count_frames(path)
            if count is None:
                unreadable.append(path)
            elif count < self.clip_span:
                too_short.append(path)
            else:
                self.paths.append(path)
                self.frame_counts.append(count)
        reasons = []
        if unreadable:
            reasons.append(f"{len(unreadable)} unreadable ({_examples(unreadable, self.root)})")
        if too_short:
            reasons.append(f"{len(too_short)} shorter than {self.clip_span} frames "
                           f"({_examples(too_short, self.root)})")
        if not self.paths:
            raise UserError(f"no usable video under {self.root}: {len(files)} video files, " + "; ".join(reasons))
        if reasons:
            logger.warning("skipped %d of %d videos under %s: %s", len(files) - len(self.paths), len(files),
                           self.root, "; ".join(reasons))
        folders = [p.relative_to(self.root).parts[0] if len(p.relative_to(self.root).parts) > 1 else None
                   for p in self.paths]
        labelled = all(folder is not None for folder in folders)
        self.class_names: tuple[str, ...] = tuple(sorted(set(folders))) if labelled else ()  # type: ignore[arg-type]
        self.labels: list[int] = [self.class_names.index(f) for f in folders] if labelled else []

    @property
    def clip_span(self) -> int:
        """Frames a clip spans in its video: ``(frames - 1) * stride + 1``."""
        return (self.frames - 1) * self.stride + 1

    def set_epoch(self, epoch: int) -> None:
        """Draw new clip positions: ``dataset[i]`` then uses this epoch (as ``DistributedSampler`` does)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        if isinstance(key, tuple):
            index, epoch = key
            return self.clip(index, epoch)
        return self.clip(key, self.epoch)

    def start_frame(self, index: int, epoch: int) -> int:
        """The first frame of clip ``index`` in ``epoch`` (reproducible: seeded by (seed, index, epoch))."""
        rng = np.random.default_rng([self.seed, index, epoch])
        return int(rng.integers(0, self.frame_counts[index] - self.clip_span + 1))

    def clip(self, index: int, epoch: int = 0) -> torch.Tensor:
        """Clip ``index`` of ``epoch`` as float32 ``(c, f, size, size)`` in [-1, 1]."""
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} videos")
        index %= len(self)
        start = self.start_frame(index, epoch)
        return self._frames(index, list(range(start, start + self.clip_span, self.stride)))

    def _frames(self, index: int, indices: list[int]) -> torch.Tensor:
        """Frames ``indices`` of video ``index``, resized: float32 ``(c, f, size, size)`` in [-1, 1]."""
        import torch

        if self.cache is not None:  # whole videos decoded once, shared by subset/resolution views
            path = self.paths[index]
            if path not in self.cache:
                self.cache[path] = read_frames(path, list(range(self.frame_counts[index])))
            frames = self.cache[path][indices]
        else:
            frames = read_frames(self.paths[index], indices)  # (f, h, w, 3) uint8
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (f, c, h, w)
        clip = _resize_square(clip, self.size)
        return (clip.permute(1, 0, 2, 3) / 127.5 - 1.0).clamp_(-1.0, 1.0).contiguous()  # (c, f, s, s)

    def video(self, index: int) -> torch.Tensor:
        """Every frame of video ``index`` (every ``stride``-th) as float32 ``(c, F, size, size)`` in [-1, 1]
        (what a latent cache encodes)."""
        index = operator.index(index) % len(self)
        return self._frames(index, list(range(0, self.frame_counts[index], self.stride)))

    def subset(self, indices: Sequence[int]) -> VideoClipDataset:
        """A view of the videos at ``indices`` (in that order); clip positions are seeded by the new index."""
        view = copy.copy(self)
        view.paths = [self.paths[i] for i in indices]
        view.frame_counts = [self.frame_counts[i] for i in indices]
        view.labels = [self.labels[i] for i in indices] if self.labels else []
        return view

    def __repr__(self) -> str:
        return (f"VideoClipDataset({str(self.root)!r}, frames={self.frames}, size={self.size}, "
                f"stride={self.stride}, seed={self.seed}; {len(self)} videos)")


class _EpochShuffle:
    """Endless ``(index, epoch)`` keys: each epoch a fresh permutation seeded by (seed, epoch),
    of which rank ``r`` of ``world_size`` takes every ``world_size``-th entry."""

    def __init__(self, length: int, seed: int, rank: int, world_size: int) -> None:
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
            for index in order[self.rank :: self.world_size]:
                yield int(index), epoch
            epoch += 1


def infinite_loader(dataset: VideoClipDataset, batch_size: int, workers: int = 0, seed: int = 0, *,
                    rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """Yield batches ``(b, c, f, s, s)`` forever, in a seeded shuffle that is new every epoch.

    The stream is identical for any number of workers: the order comes from ``(seed, epoch)``
    and each clip from ``(dataset.seed, index, epoch)``. Batches may straddle epochs, so every
    batch is full even when the dataset is smaller than a batch.

    Args:
        dataset: a :class:`VideoClipDataset` (or any dataset accepting ``(index, epoch)`` keys).
        batch_size: clips per batch.
        workers: ``DataLoader`` worker processes (0 reads in this process).
        seed: seeds the shuffle.
        rank: this process's rank under data parallelism; it reads a disjoint share of each epoch.
        world_size: number of data-parallel processes.
        pin_memory: pin batches for faster host-to-GPU copies.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1 or workers < 0 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1, workers >= 0, 0 <= rank < world_size; got batch_size={batch_size},"
                         f" workers={workers}, rank={rank}, world_size={world_size}")
    if len(dataset) < world_size:
        raise ValueError(f"{len(dataset)} videos cannot be shared among {world_size} ranks")
    loader = DataLoader(dataset, batch_size=batch_size, sampler=_EpochShuffle(len(dataset), seed, rank, world_size),
                        num_workers=workers, drop_last=True, pin_memory=pin_memory)
    yield from loader
