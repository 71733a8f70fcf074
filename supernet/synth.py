"""A procedural training set (``sned data synth``): smooth-motion videos in UCF-101 layout.

:func:`synthesize` writes a deterministic, UCF-101-shaped folder of short mp4 videos with several
kinds of smooth motion (:data:`CLASS_NAMES`), rendered with vectorised numpy in normalised
coordinates, so a clip rendered at 128 px and area-downsampled to 32 px shows the same scene as one
rendered at 32 px. It is what the tests and the ``tiny`` experiment train on. Torch-free (numpy and
PyAV), so ``sned data synth`` starts in well under a second.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import write_json_atomic
from sned.supernet.video_io import write_video

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
            raise SettingError(name, "{setting} must be an integer >= {low}, got {value!r}", low=low, value=value)
    if out.exists() and not out.is_dir():
        raise SettingError("out", "{out} {path} exists and is not a folder; pass a new or dataset folder", path=out)


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
        raise SettingError("out", "{path} is not a {generator} manifest ({exc}); choose another {out}", path=manifest,
                           generator=GENERATOR, exc=exc) from exc
    wanted = {key: value for key, value in settings.items() if key != "n"} | {"version": GENERATOR_VERSION}
    if previous_settings != wanted:
        diff = ", ".join(f"{k} {previous_settings.get(k)} (now {v})" for k, v in wanted.items()
                         if previous_settings.get(k) != v)
        raise SettingError("out", "{path} holds a dataset made with other settings: {diff}; choose another {out}",
                           path=out, diff=diff)
    if n < previous_n:
        raise SettingError("n", "{path} already holds a {previous}-video dataset; {n} {value} would leave extra "
                           "videos in it (pass {n} >= {previous} or another {out})", path=out, previous=previous_n, value=n)


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
    paths, _ = write_dataset(Path(out), n, frames, size, seed, fps, progress)
    return paths


def write_dataset(out: Path, n: int, frames: int, size: int, seed: int, fps: int = 8,
                  progress: bool = True) -> tuple[list[Path], int]:
    """:func:`synthesize`, also returning how many of the videos this call wrote (the rest were there)."""
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


__all__ = ["CLASSES", "CLASS_NAMES", "GENERATOR", "GENERATOR_VERSION", "MANIFEST", "render_clips", "render_video",
           "synthesize", "write_dataset"]
