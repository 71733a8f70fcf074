"""DDIM videos from any subnet of a trained supernet, at any resolution of its space (``sned sample``).

:func:`write_samples` writes ``sample-000.mp4`` and ``sample-000.gif`` per video, ``grid.gif`` (all
of them tiled) and ``samples.json`` (arch, checkpoint sha256, seed, steps, eta); the command is
:mod:`sned.supernet.sample_cli`.

:func:`generate` is the Python entry point (the sampled-FVD trials call it). It uses **common random
numbers**: video ``i`` draws all its noise from a generator seeded by ``(seed, i)``, so every
subnet given the same seed starts from the same noise and sees the same sampler noise, whatever
the batch size, which removes most of the sampling noise from FVD differences between subnets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sned.supernet.base.errors import SettingError
from sned.supernet.base.files import write_json_atomic
from sned.supernet.space import Arch


def video_generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per video, seeded by ``(seed, i)``: the common random numbers."""
    states = np.random.SeedSequence(int(seed)).spawn(n)
    return [torch.Generator().manual_seed(int(s.generate_state(1, np.uint64)[0] >> np.uint64(1))) for s in states]


@torch.no_grad()
def generate(net: torch.nn.Module, arch: Arch, n: int, steps: int, seed: int, eta: float = 0.0,
             batch_size: int = 8, device: str | torch.device = "cpu", prediction: str = "v",
             dtype: torch.dtype = torch.float32, labels: Any = None, guidance: float = 1.0,
             on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
             decoder: Any = None) -> torch.Tensor:
    """Generate ``n`` videos with DDIM from subnet ``arch`` of a supernet.

    Args:
        net: a :class:`~sned.supernet.model.Supernet` (e.g. from ``load_supernet``).
        arch: the subnet (its ``res`` sets the video size).
        n: number of videos.
        steps: DDIM steps (network evaluations per video).
        seed: video ``i`` draws its noise from a generator seeded by ``(seed, i)``.
        eta: DDIM η (0: deterministic given the initial noise).
        batch_size: videos per forward (the result does not depend on it).
        device: where the network runs (it is moved there).
        prediction: what the network predicts, ``"v"`` or ``"eps"`` (a checkpoint's ``config``).
        dtype: autocast dtype on CUDA (``torch.bfloat16`` for speed); float32 runs without autocast.
        labels: class-conditional spaces only: video ``i``'s class index (``n`` of them, in
            ``[0, classes]``; ``classes`` is the null label, i.e. unconditional). Default: the
            classes in turn (video ``i`` gets class ``i % classes``), so every class is sampled.
        guidance: classifier-free guidance scale ``w``: the prediction is
            ``uncond + w * (cond - uncond)`` (Ho & Salimans 2022); 1 is the plain conditional model
            (one forward per step), anything else costs a second forward (batched with the first).
        on_step: ``on_step(t, z_t, x0_hat)`` for each batch at each DDIM step (see
            :meth:`~sned.supernet.diffusion.GaussianDiffusion.ddim_sample`).
        decoder: a latent network's video autoencoder (:func:`~sned.supernet.latent.autoencoder_for`):
            each batch's latents are decoded to video. None: return what the network denoises.

    Returns:
        ``(n, c, f, h, w)`` float32 on the CPU, in [-1, 1] (pixels, or latents without ``decoder``).
    """
    from sned.supernet.diffusion import GaussianDiffusion

    if n < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"need n, steps, batch_size >= 1; got {n}, {steps}, {batch_size}")
    arch = net.space.validate(arch)
    device = torch.device(device)
    net = net.to(device).eval()
    spec = net.space.spec
    side = spec.unet_size(arch["res"]) * spec.patch_size
    shape = (spec.unet_channels, spec.unet_frames, side, side)
    diffusion = GaussianDiffusion(prediction)  # type: ignore[arg-type]
    generators = video_generators(seed, n)
    autocast = dtype != torch.float32 and device.type == "cuda"
    classes = spec.classes
    if not classes:
        if labels is not None:
            raise ValueError("labels given, but this network is unconditional (space.classes = 0)")
    else:
        labels = torch.arange(n) % classes if labels is None else torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (n,) or int(labels.min()) < 0 or int(labels.max()) > classes:
            raise ValueError(f"need {n} labels in [0, {classes}], got {labels.tolist()}")
        labels = labels.to(device)

    def model(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            if y is None or guidance == 1.0:
                return net(z, t, arch, labels=y).float()
            both = net(torch.cat([z, z]), torch.cat([t, t]), arch, labels=torch.cat([y, torch.full_like(y, classes)]))
        cond, uncond = both.float().chunk(2)
        return uncond + guidance * (cond - uncond)

    videos = []
    for i in range(0, n, batch_size):
        y = None if labels is None else labels[i: i + batch_size]
        z = diffusion.ddim_sample(lambda z, t, y=y: model(z, t, y), shape, steps, generators[i: i + batch_size],
                                  eta=eta, device=device, on_step=on_step)
        if decoder is not None:
            with torch.no_grad():
                z = decoder.decode(z.to(decoder.device)).float()
        videos.append(z.cpu())
    return torch.cat(videos)


def to_uint8(videos: torch.Tensor) -> np.ndarray:
    """``(n, c, f, h, w)`` in [-1, 1] -> ``(n, f, h, w, 3)`` uint8 frames."""
    x = ((videos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).numpy()


def video_grid(videos: np.ndarray, columns: int = 6, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile ``(n, f, h, w, 3)`` uint8 videos into one ``(f, H, W, 3)`` video, row by row.

    ``pad`` pixels of black separate the tiles; ``scale`` enlarges every pixel (nearest) so that
    32 px videos stay visible. Missing tiles of the last row stay black.
    """
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.dtype != np.uint8:
        raise ValueError(f"expected uint8 videos (n, f, h, w, 3), got {videos.dtype} {videos.shape}")
    if scale > 1:
        videos = videos.repeat(scale, axis=2).repeat(scale, axis=3)
    n, f, h, w, c = videos.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    out = np.zeros((f, rows * (h + pad) + pad, columns * (w + pad) + pad, c), dtype=np.uint8)
    for i, video in enumerate(videos):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[:, top: top + h, left: left + w] = video
    return out


def write_samples(videos: torch.Tensor, out: str | Path, fps: int = 8, meta: dict[str, Any] | None = None
                  ) -> list[Path]:
    """Write each video as ``sample-XXX.mp4`` and ``.gif`` under ``out``, all of them tiled in
    ``grid.gif``, and ``samples.json``; return the mp4s."""
    from sned.supernet.video_io import write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    frames_all = to_uint8(videos)
    for i, frames in enumerate(frames_all):
        paths.append(write_video(out / f"sample-{i:03d}.mp4", frames, fps=fps))
        write_video(out / f"sample-{i:03d}.gif", frames, fps=fps)
    scale = max(1, 64 // frames_all.shape[2])
    write_video(out / "grid.gif", video_grid(frames_all, columns=6, scale=scale), fps=fps)
    write_json_atomic(out / "samples.json", {**(meta or {}), "videos": [p.name for p in paths]}, indent=1)
    return paths


def class_labels(classes: int, class_names: list[str], n: int, wanted: str | None = None
                 ) -> tuple[Any, list[str]]:
    """The labels of ``n`` videos and their class names: ``wanted`` for all, else every class in turn.

    Raises:
        UserError: ``wanted`` for an unconditional network, or a class the checkpoint does not have.
    """
    if not classes:
        if wanted is not None:
            raise SettingError("label", "{label}: this checkpoint is unconditional (space.classes = 0)")
        return None, []
    names = list(class_names) or [str(i) for i in range(classes)]
    if wanted is None:
        labels = [i % classes for i in range(n)]
    elif wanted in names:
        labels = [names.index(wanted)] * n
    else:
        raise SettingError("label", "{label} {value!r}: not a class of this checkpoint; valid: {choices}", value=wanted,
                           choices=", ".join(names), valid=names)
    return labels, [names[i] for i in labels]


__all__ = ["class_labels", "generate", "to_uint8", "video_generators", "write_samples"]
