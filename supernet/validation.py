"""Held-out denoising loss: the supernet's validation metric, next to two reference levels.

nanoGPT reports an eval loss on held-out data; sned does the same per resolution, for the largest
and the smallest subnet. The clips, the noise and the timesteps are fixed once per run, so two
evaluations differ only by the weights (the same common random numbers the sampled-quality trials
use). Every figure is the MSE of the prediction expressed as v (``GaussianDiffusion.to_v``) at one
timestep, whatever the network predicts: the v loss's unit, (1 + SNR) times the x_0 error.

Two reference levels tell at once whether the network uses spatial context:

* **predict zero**: the loss of a network that outputs 0;
* **per pixel**: the loss of the best denoiser that sees only the pixel's own noisy RGB value
  (no neighbours, no frames): the posterior mean of ``x_0`` under the empirical distribution of
  the held-out clips' RGB values, which is an upper bound on what any context-free denoiser can do
  on them (it is given the test marginal). It is an estimate over a random subset of pixels.

A network at or above the per-pixel level has learnt nothing a lookup table could not do.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sned.supernet.diffusion import GaussianDiffusion

VAL_TIMESTEPS: tuple[int, ...] = (50, 200, 500, 800)
REFERENCES: tuple[str, ...] = ("zero", "per_pixel")
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class HeldOut:
    """Fixed held-out clips of one resolution with fixed noise: ``clips`` and ``noise`` are ``(n, c, f, h, w)``;
    ``labels`` ``(n,)`` their classes for a class-conditional network (None: unconditional)."""

    res: int
    clips: torch.Tensor
    noise: torch.Tensor
    timesteps: tuple[int, ...] = VAL_TIMESTEPS
    labels: torch.Tensor | None = None


def make_held_out(clips: torch.Tensor, res: int, seed: int, timesteps: Sequence[int] = VAL_TIMESTEPS,
                  labels: torch.Tensor | None = None, side: int | None = None) -> HeldOut:
    """Fix the noise of held-out ``clips`` ``(n, c, f, side, side)`` with a generator seeded by ``(seed, res)``.

    ``side`` is the clips' size: the resolution ``res`` for pixels, ``res / spatial_factor`` for latents.
    """
    side = int(res if side is None else side)
    if clips.ndim != 5 or clips.shape[-1] != side or clips.shape[-2] != side:
        raise ValueError(f"expected held-out clips (n, c, f, {side}, {side}), got {tuple(clips.shape)}")
    generator = torch.Generator().manual_seed(int(seed) * 100_003 + int(res))
    noise = torch.randn(clips.shape, generator=generator, dtype=clips.dtype)
    if labels is not None and tuple(labels.shape) != (len(clips),):
        raise ValueError(f"expected {len(clips)} held-out labels, got shape {tuple(labels.shape)}")
    return HeldOut(int(res), clips, noise, tuple(int(t) for t in timesteps), labels)


def held_out_set(videos: Any, res: int, seed: int, labels: bool = True) -> HeldOut:
    """The held-out set of ``videos`` (a :class:`~sned.supernet.data.VideoClipDataset` of the held-out
    videos, or a :class:`~sned.supernet.latent.LatentClipDataset`) at ``res``: each video's clip of
    epoch 0, with :func:`make_held_out`'s fixed noise and, with ``labels`` and a labelled dataset,
    the true classes."""
    view = copy.copy(videos)  # same videos and decoded-frame cache; only the output size differs
    view.size = int(res)
    clips = torch.stack([view.clip(i, epoch=0) for i in range(len(view))])
    classes = torch.tensor(view.labels) if labels and view.labels else None
    return make_held_out(clips, res, seed, labels=classes, side=int(res) // view.spatial_factor)


@torch.no_grad()
def held_out_losses(model: Denoiser, held: HeldOut, diffusion: GaussianDiffusion, batch_size: int = 8,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-clip prediction MSE of ``model(z, t)`` (``model(z, t, labels)`` where ``held`` has labels)
    on the held-out clips at each fixed timestep.

    Returns:
        ``(n_clips, len(held.timesteps))`` float64, on the CPU (for bootstrap intervals over clips).
    """
    v = GaussianDiffusion("v")  # every prediction type is scored in v units
    out = torch.empty(len(held.clips), len(held.timesteps), dtype=torch.float64)
    for j, t in enumerate(held.timesteps):
        for i in range(0, len(held.clips), batch_size):
            x0 = held.clips[i: i + batch_size].to(device)
            noise = held.noise[i: i + batch_size].to(device)
            tt = torch.full((len(x0),), t, dtype=torch.long, device=device)
            target = v.target(x0, tt, noise)
            z = diffusion.q_sample(x0, tt, noise)
            if held.labels is None:
                output = model(z, tt.float())
            else:
                output = model(z, tt.float(), held.labels[i: i + batch_size].to(device))
            prediction = diffusion.to_v(output.float(), z, tt)
            out[i: i + len(x0), j] = (prediction - target.float()).square().flatten(1).double().mean(dim=1).cpu()
    return out


def held_out_loss(model: Denoiser, held: HeldOut, diffusion: GaussianDiffusion, batch_size: int = 8,
                  device: torch.device | str = "cpu") -> dict[int, float]:
    """The prediction MSE on the held-out clips at each fixed timestep (:func:`held_out_losses`, averaged).

    Returns:
        ``{t: loss}`` in the order of ``held.timesteps``.
    """
    losses = held_out_losses(model, held, diffusion, batch_size, device).mean(dim=0)
    return {t: float(loss) for t, loss in zip(held.timesteps, losses, strict=True)}


@torch.no_grad()
def reference_losses(held: HeldOut, diffusion: GaussianDiffusion, pixels: int = 8192, seed: int = 0
                     ) -> dict[str, dict[int, float]]:
    """The predict-zero and per-pixel reference losses at each held-out timestep.

    The per-pixel denoiser's prior is ``pixels`` RGB values drawn from the held-out clips; it is
    scored on ``pixels`` other randomly drawn pixels (with their fixed noise).

    Returns:
        ``{"zero": {t: loss}, "per_pixel": {t: loss}}``.
    """
    generator = torch.Generator().manual_seed(int(seed) * 7919 + held.res)
    values = held.clips.movedim(1, -1).reshape(-1, held.clips.shape[1]).float()  # (N, c) RGB values
    noise = held.noise.movedim(1, -1).reshape(-1, held.noise.shape[1]).float()
    prior = values[torch.randint(len(values), (pixels,), generator=generator)]
    pick = torch.randint(len(values), (pixels,), generator=generator)
    x0, eps = values[pick], noise[pick]
    zero, per_pixel = {}, {}
    for t in held.timesteps:
        alpha_bar = float(diffusion.alpha_bar[t])
        alpha, sigma = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
        z = alpha * x0 + sigma * eps
        target = alpha * eps - sigma * x0  # v units, whatever the network predicts
        zero[t] = float(target.square().mean())
        # Posterior mean of x0 given z under the discrete prior: weights softmax(-|z - a x_k|^2 / 2 s^2).
        x0_hat = torch.empty_like(x0)
        for i in range(0, len(z), 2048):
            logits = -torch.cdist(z[i: i + 2048], alpha * prior).square() / (2.0 * sigma**2)
            x0_hat[i: i + 2048] = torch.softmax(logits, dim=1) @ prior
        prediction = (alpha * z - x0_hat) / sigma  # v = (a z - x0) / s
        per_pixel[t] = float((prediction - target).square().mean())
    return {"zero": zero, "per_pixel": per_pixel}


def format_losses(losses: dict[int, float]) -> str:
    """``t=50 0.123, t=200 0.234, ...``."""
    return ", ".join(f"t={t} {v:.4f}" for t, v in losses.items())


__all__ = ["HeldOut", "REFERENCES", "VAL_TIMESTEPS", "format_losses", "held_out_loss", "held_out_losses", "held_out_set", "make_held_out",
           "reference_losses"]
