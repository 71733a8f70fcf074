"""Video data: a procedural training set (``sned data synth``) and a decord-backed clip dataset.

Two halves, both torch-light at import time (torch is imported only inside the code paths that
return tensors, so ``sned data synth`` starts in well under a second):

* **Synthesis.** :func:`synthesize` writes a deterministic, UCF-101-shaped folder of short mp4
  videos with several kinds of smooth motion (:data:`CLASS_NAMES`), rendered with vectorised numpy
  in normalised coordinates, so a clip rendered at 128 px and area-downsampled to 32 px shows the
  same scene as one rendered at 32 px. It is what the tests and the ``tiny`` experiment train on.
* **Loading.** :class:`VideoClipDataset` reads random clips from any folder of videos (recursive,
  UCF-101 class folders work) as float32 ``(c, f, h, w)`` in [-1, 1]; :func:`infinite_loader`
  streams seeded, shuffled batches forever; :func:`resize_clips` downsamples a batch to one of the
  space's resolutions (the trainer loads at the largest and resizes per step).

CLI: ``sned data synth --out DIR [--n N] [--frames T] [--size S] [--seed K] [--fps F]``.
"""

from __future__ import annotations

import argparse
import colorsys
import copy
import json
import logging
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.supernet.errors import UserError
from sned.supernet.files import write_json_atomic
from sned.supernet.video_io import VIDEO_SUFFIXES, count_frames, list_videos, read_frames, write_video

if TYPE_CHECKING:  # only for annotations; torch is imported lazily at run time
    import torch

logger = logging.getLogger(__name__)

GENERATOR = "sned-synth"
# Bump when rendering changes: a resumed run refuses a folder written by another version.
GENERATOR_VERSION = 1
CLIPS_PER_GROUP = 4  # UCF-101-style names: v_<Class>_g<group>_c<clip>.mp4
MANIFEST = "dataset.json"

_TAU = 2.0 * np.pi

# ----------------------------------------------------------------------------- procedural video
#
# Every renderer maps (rng, frames, size) -> float (f, h, w, 3) in [0, 1]. Coordinates are in
# frame widths (pixel centres in [0, 1]) and time in frames, so speeds read as "fraction of the
# frame per frame". Periodic patterns move at most ~0.25 of their period per frame, well below the
# 0.5 at which the direction of motion becomes ambiguous (temporal aliasing).


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``y`` (1, S, 1) and ``x`` (1, 1, S) in [0, 1]."""
    u = (np.arange(size) + 0.5) / size
    return u[None, :, None], u[None, None, :]


def _time(frames: int) -> np.ndarray:
    return np.arange(frames, dtype=np.float64)[:, None, None]  # (T, 1, 1)


def _colour(rng: np.random.Generator, saturation: float, value: float) -> np.ndarray:
    """A colour of random hue, as an RGB array (3,)."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), saturation, value))


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend colours (or images) ``a`` -> ``b`` by ``weight`` (broadcast over a trailing RGB axis)."""
    weight = weight[..., None]
    return a * (1.0 - weight) + b * weight


def _bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold an unbounded straight-line position into [low, high] by reflecting off both walls."""
    span = high - low
    folded = np.mod(position - low, 2.0 * span)
    return low + np.where(folded > span, 2.0 * span - folded, folded)


def _bouncing_shapes(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """1-3 textured, spinning circles/squares bouncing off the walls over a dark gradient."""
    y, x = _grid(size)
    t = _time(frames)
    background = _mix(_colour(rng, 0.5, 0.3), _colour(rng, 0.5, 0.08), np.broadcast_to(y, (1, size, size)))
    video = np.broadcast_to(background, (frames, size, size, 3)).copy()
    edge = 1.5 / size  # anti-aliased edge, 1.5 px wide
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(0.11, 0.18)
        start = rng.uniform(radius, 1.0 - radius, size=2)
        heading, speed = rng.uniform(0.0, _TAU), rng.uniform(0.04, 0.07)
        cx = _bounce(start[0] + speed * np.cos(heading) * t, radius, 1.0 - radius)  # (T, 1, 1)
        cy = _bounce(start[1] + speed * np.sin(heading) * t, radius, 1.0 - radius)
        angle = rng.uniform(0.0, _TAU) + rng.uniform(-0.2, 0.2) * t  # spin, rad/frame
        dx, dy = x - cx, y - cy  # (T, S, S)
        local_x = np.cos(angle) * dx + np.sin(angle) * dy  # shape-local frame: texture spins along
        local_y = -np.sin(angle) * dx + np.cos(angle) * dy
        if rng.uniform() < 0.5:
            distance = np.hypot(local_x, local_y) - radius
        else:
            distance = np.maximum(np.abs(local_x), np.abs(local_y)) - 0.85 * radius
        mask = np.clip(0.5 - distance / edge, 0.0, 1.0)
        period = radius * rng.uniform(0.7, 1.0)
        texture = np.cos(_TAU * local_x / period)
        if rng.uniform() < 0.5:  # checks instead of stripes
            texture = texture * np.cos(_TAU * local_y / period)
        fill = (0.7 + 0.3 * texture)[..., None] * _colour(rng, 0.85, 1.0)
        video = _mix(video, fill, mask)
    return video


def _drifting_clouds(rng: np.random.Generator, frames: int, size: int, n_modes: int = 16) -> np.ndarray:
    """A soft, tileable noise field drifting in one direction and slowly changing shape.

    The field is a sum of ``n_modes`` plane waves with integer wave numbers (so it tiles the frame
    and the drift wraps around seamlessly) and a 1/|k|^1.3 spectrum (cloud-like: large blobs,
    little fine detail). Each wave factors into a time term and separable x and y terms, so the
    whole video is one ``einsum`` of complex exponentials.
    """
    y, x = _grid(size)
    wave_numbers = np.array([(kx, ky) for kx in range(-4, 5) for ky in range(-4, 5) if (kx, ky) != (0, 0)])
    k = wave_numbers[rng.choice(len(wave_numbers), size=n_modes, replace=False)].astype(np.float64)
    amplitude = np.linalg.norm(k, axis=1) ** -1.3
    heading, speed = rng.uniform(0.0, _TAU), rng.uniform(0.02, 0.05)
    velocity = speed * np.array([np.cos(heading), np.sin(heading)])
    morph = rng.normal(0.0, 0.08, n_modes)  # rad/frame: the clouds change shape as they drift
    t = np.arange(frames)
    # cos(2π k·(p - v t) + φ + m t) = Re[a e^{i(φ + (m - 2π k·v) t)} e^{i2π kx x} e^{i2π ky y}]
    phase = rng.uniform(0.0, _TAU, n_modes)[:, None] + (morph - _TAU * k @ velocity)[:, None] * t
    over_time = amplitude[:, None] * np.exp(1j * phase)  # (n, T)
    along_x = np.exp(1j * _TAU * k[:, :1] * x.reshape(1, size))  # (n, S)
    along_y = np.exp(1j * _TAU * k[:, 1:] * y.reshape(1, size))  # (n, S)
    field = np.einsum("nt,ny,nx->tyx", over_time, along_y, along_x, optimize=True).real
    field = (field - field.mean()) / (field.std() + 1e-8)
    cover = rng.uniform(-0.5, 0.5)  # how much of the sky is cloud
    density = 1.0 / (1.0 + np.exp(-2.5 * (field - cover)))
    sky, cloud = _colour(rng, rng.uniform(0.4, 0.8), rng.uniform(0.45, 0.8)), _colour(rng, 0.15, 1.0)
    return _mix(sky, cloud, density)


def _rotating_pinwheel(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A (possibly spiral) pinwheel of 3-6 arms turning about a point near the centre."""
    y, x = _grid(size)
    t = _time(frames)
    cx, cy = 0.5 + rng.uniform(-0.1, 0.1, size=2)
    radius, theta = np.hypot(x - cx, y - cy), np.arctan2(y - cy, x - cx)  # (1, S, S)
    arms = int(rng.integers(3, 7))
    twist = rng.uniform(-2.0, 2.0)  # turns of the spiral across one frame width
    periods_per_frame = rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.2)
    wave = np.cos(arms * theta + _TAU * (twist * radius - periods_per_frame * t))
    pattern = 0.5 + 0.5 * np.tanh(2.0 * wave)
    hub = np.clip(radius / 0.08, 0.0, 1.0)  # the arms converge at the centre: fade them to grey there
    pattern = hub * pattern + (1.0 - hub) * 0.5
    vignette = np.clip(1.15 - 0.8 * radius, 0.0, 1.0)[..., None]
    return _mix(_colour(rng, 0.8, 0.9), _colour(rng, 0.8, 0.9), pattern) * vignette


def _expanding_ripples(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """Concentric rings travelling outwards from a point, fading with distance."""
    y, x = _grid(size)
    t = _time(frames)
    cx, cy = rng.uniform(0.25, 0.75, size=2)
    radius = np.hypot(x - cx, y - cy)
    wavelength = rng.uniform(0.1, 0.2)
    periods_per_frame = rng.uniform(0.1, 0.2)
    rings = 0.5 + 0.5 * np.cos(_TAU * (radius / wavelength - periods_per_frame * t))
    envelope = np.exp(-radius / rng.uniform(0.35, 0.6))
    return _mix(_colour(rng, 0.7, 0.35), _colour(rng, 0.6, 1.0), rings * envelope)


def _sliding_stripes(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A soft square-wave grating of random orientation sliding along its normal."""
    y, x = _grid(size)
    t = _time(frames)
    angle = rng.uniform(0.0, _TAU)
    wavelength = rng.uniform(0.12, 0.25)
    periods_per_frame = rng.uniform(0.08, 0.2)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / wavelength - periods_per_frame * t
    stripes = 0.5 + 0.5 * np.tanh(3.0 * np.cos(_TAU * phase))
    return _mix(_colour(rng, 0.8, 0.95), _colour(rng, 0.5, 0.3), stripes)


def _orbiting_blobs(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """2-4 glowing Gaussian blobs circling a common centre on a dark background (additive light)."""
    y, x = _grid(size)
    t = _time(frames)
    video = np.broadcast_to(_colour(rng, 0.6, 0.08), (frames, size, size, 3)).copy()
    cx, cy = 0.5 + rng.uniform(-0.08, 0.08, size=2)
    direction = rng.choice([-1.0, 1.0])
    for _ in range(int(rng.integers(2, 5))):
        orbit = rng.uniform(0.12, 0.32)
        angle = rng.uniform(0.0, _TAU) + direction * rng.uniform(0.15, 0.3) * t  # rad/frame
        bx, by = cx + orbit * np.cos(angle), cy + orbit * np.sin(angle)  # (T, 1, 1)
        sigma = rng.uniform(0.05, 0.08)
        glow = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2.0 * sigma**2))
        video += glow[..., None] * _colour(rng, 0.75, 1.0)
    return video


Renderer = Callable[[np.random.Generator, int, int], np.ndarray]

# Class name -> renderer. The order fixes each class's index, which seeds its videos: append only.
CLASSES: dict[str, Renderer] = {
    "BouncingShapes": _bouncing_shapes,
    "DriftingClouds": _drifting_clouds,
    "RotatingPinwheel": _rotating_pinwheel,
    "ExpandingRipples": _expanding_ripples,
    "SlidingStripes": _sliding_stripes,
    "OrbitingBlobs": _orbiting_blobs,
}
CLASS_NAMES: tuple[str, ...] = tuple(CLASSES)


def render_video(class_name: str, index: int, frames: int, size: int, seed: int) -> np.ndarray:
    """Render one synthetic video, deterministically.

    Args:
        class_name: one of :data:`CLASS_NAMES`.
        index: the video's number within its class (0, 1, ...).
        frames: number of frames ``f``.
        size: frame height and width ``s`` in pixels.
        seed: dataset seed; the video's generator is seeded by (seed, class index, index), so a
            video does not depend on how many others are rendered.

    Returns:
        ``(f, s, s, 3)`` uint8 frames.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
    rng = np.random.default_rng([seed, CLASS_NAMES.index(class_name), index])
    video = CLASSES[class_name](rng, frames, size)
    return np.round(np.clip(video, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_clips(n: int, frames: int, size: int, seed: int, first_index: int = 0) -> np.ndarray:
    """``n`` synthetic videos cycling through the classes (video ``i``: class ``i % 6``, index
    ``first_index + i // 6``), as uint8 ``(n, f, s, s, 3)``. A ``first_index`` beyond the dataset's
    videos gives unseen clips of every class (reference grids, held-out probes).
    """
    k = len(CLASS_NAMES)
    return np.stack([render_video(CLASS_NAMES[i % k], first_index + i // k, frames, size, seed) for i in range(n)])


def _video_name(class_name: str, index: int) -> str:
    group, clip = divmod(index, CLIPS_PER_GROUP)
    return f"v_{class_name}_g{group + 1:02d}_c{clip + 1:02d}.mp4"


def _plan(n: int) -> list[tuple[str, int]]:
    """(class, index within class) of the first ``n`` videos: classes take turns, so any n >= the
    number of classes covers them all and growing ``n`` only appends videos."""
    return [(CLASS_NAMES[i % len(CLASS_NAMES)], i // len(CLASS_NAMES)) for i in range(n)]


def _check_synth_args(out: Path, n: int, frames: int, size: int, fps: int, seed: int) -> None:
    for name, value, low in (("n", n, 1), ("frames", frames, 1), ("size", size, 8), ("fps", fps, 1), ("seed", seed, 0)):
        if int(value) != value or value < low:
            raise UserError(f"--{name} must be an integer >= {low}, got {value!r}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; pass a new or dataset folder")


def _check_resume(out: Path, settings: dict[str, Any], n: int) -> None:
    """Refuse to mix datasets: an existing folder must be empty or hold this generator's output
    with the same settings (then existing videos are kept and only missing ones are written)."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"{out} is not empty and holds no {MANIFEST}; choose a new or empty folder")
        return
    try:
        previous = json.loads(manifest.read_text())
        previous_settings = {key: previous["args"][key] for key in settings if key != "n"}
        previous_settings["version"] = previous["version"]
        previous_n = int(previous["args"]["n"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{manifest} is not a {GENERATOR} manifest ({exc}); choose another --out") from exc
    wanted = {key: value for key, value in settings.items() if key != "n"} | {"version": GENERATOR_VERSION}
    if previous_settings != wanted:
        diff = ", ".join(f"{k} {previous_settings.get(k)} (now {v})" for k, v in wanted.items()
                         if previous_settings.get(k) != v)
        raise UserError(f"{out} holds a dataset made with other settings: {diff}; choose another --out")
    if n < previous_n:
        raise UserError(f"{out} already holds a {previous_n}-video dataset; --n {n} would leave extra videos "
                        f"in it (pass --n >= {previous_n} or another --out)")


def synthesize(out: str | Path, n: int, frames: int, size: int, seed: int, fps: int = 8,
               *, progress: bool = True) -> list[Path]:
    """Write a procedural video dataset: ``n`` mp4 videos in UCF-101 layout under ``out``.

    Videos are ``out/<Class>/v_<Class>_g<GG>_c<CC>.mp4``, classes taking turns (video ``i`` is
    class ``i % len(CLASS_NAMES)``). ``out/dataset.json`` records the generator version, the
    arguments and per-class counts. A re-run with the same arguments writes only the videos not
    already there (each video is written atomically, so an existing file is complete); a larger
    ``n`` extends the dataset.

    Args:
        out: the dataset folder (created if missing; must be empty or a dataset of the same settings).
        n: number of videos (>= 1).
        frames: frames per video.
        size: frame height and width in pixels (>= 8).
        seed: the dataset seed (same seed and settings -> identical frames).
        fps: frame rate stored in the files.
        progress: show a tqdm progress bar.

    Returns:
        The paths of all ``n`` videos, in generation order.

    Raises:
        UserError: bad arguments, ``out`` is a file, or ``out`` holds something else.
    """
    paths, _ = _synthesize(Path(out), n, frames, size, seed, fps, progress)
    return paths


def _synthesize(out: Path, n: int, frames: int, size: int, seed: int, fps: int,
                progress: bool) -> tuple[list[Path], int]:
    from tqdm import tqdm

    _check_synth_args(out, n, frames, size, fps, seed)
    settings = {"n": n, "frames": frames, "size": size, "seed": seed, "fps": fps}
    _check_resume(out, settings, n)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(n)
    counts = {name: sum(1 for c, _ in plan if c == name) for name in CLASS_NAMES}
    manifest = {"generator": GENERATOR, "version": GENERATOR_VERSION, "args": settings,
                "classes": list(CLASS_NAMES), "counts": counts, "videos": n, "complete": False}
    write_json_atomic(out / MANIFEST, manifest)  # first, so an interrupted run is still recognised on resume
    paths, written = [], 0
    with tqdm(plan, desc=f"synth {out.name}", unit="video", disable=not progress) as bar:
        for class_name, index in bar:
            path = out / class_name / _video_name(class_name, index)
            if not path.exists():
                write_video(path, render_video(class_name, index, frames, size, seed), fps=fps)
                written += 1
            paths.append(path)
            bar.set_postfix(new=written, kept=len(paths) - written, refresh=False)
    write_json_atomic(out / MANIFEST, manifest | {"complete": True})
    return paths, written


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
        import torch

        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} videos")
        index %= len(self)
        start = self.start_frame(index, epoch)
        indices = list(range(start, start + self.clip_span, self.stride))
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


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned data synth ...`` options."""
    parser.add_argument("action", choices=["synth"], help="synth: write a procedural video dataset")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (new, empty, or one to resume)")
    parser.add_argument("--n", type=int, default=240, help="number of videos (default 240, 40 per class)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate stored in the files (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``sned data synth`` and print a one-line summary."""
    began = time.perf_counter()
    paths, written = _synthesize(args.out, args.n, args.frames, args.size, args.seed, args.fps, not args.quiet)
    print(f"{args.out}: {len(paths)} videos in {min(len(paths), len(CLASS_NAMES))} classes, "
          f"{args.frames} frames of {args.size}x{args.size} ({written} written, {len(paths) - written} already there)"
          f" in {time.perf_counter() - began:.1f} s")
    return 0
