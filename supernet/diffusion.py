"""Gaussian diffusion for the supernet: the cosine noise schedule, v/eps/x0 prediction, the training
loss and the DDIM sampler.

References: Nichol & Dhariwal 2021 (improved DDPM: the cosine schedule); Salimans & Ho 2022
(progressive distillation: v-prediction); Hang et al. 2023 (Min-SNR weighting); Song et al. 2021
(DDIM).

**x0 prediction** (the network outputs x̂_0 directly) is the default of patch-stem spaces such
as ``tiny``: a v or ε target at small t is mostly the noise ε itself, full rank per pixel, which a
4×4 space-to-depth stem cannot pass through 32-64 channels, so under-removed noise piles up
along the sampling path. With x̂_0 the noise is removed analytically (ε̂ = (z − α·x̂_0)/σ) and
the network only has to produce the clean video. Its loss is the x0 error weighted by
min(1 + SNR, 1 + γ), SNR = α²/σ²: exactly the v loss (which equals (1 + SNR)·‖x̂_0 − x_0‖²)
wherever SNR ≤ γ (t ≳ 265 for γ = 5), and capped at small t, where the v weight grows without
bound (Min-SNR, Hang et al. 2023).

Notation (code name -> symbol):

=================  =========================  ================================================
code               paper                      meaning
=================  =========================  ================================================
``T``              T                          number of discrete timesteps (1000)
``t``              t                          timestep, float in [0, T); the network sees it
``alpha_bar[t]``   ᾱ_t                        signal fraction: ᾱ(t) = f(t)/f(0),
                                              f(t) = cos²(((t/T) + s)/(1 + s) · π/2), s = 0.008
``beta[t]``        β_t                        1 − ᾱ_t/ᾱ_{t−1}, clipped to ≤ 0.999
``alpha``          α_t = √ᾱ_t                 signal scale
``sigma``          σ_t = √(1 − ᾱ_t)           noise scale
``x0``             x_0                        clean video (b, c, f, h, w) in [-1, 1]
``noise``          ε                          standard Gaussian noise
``z``              z_t = α_t·x_0 + σ_t·ε      noised video (the network input)
``v``              v = α_t·ε − σ_t·x_0        v-prediction target; x_0 = α_t·z − σ_t·v,
                                              ε = σ_t·z + α_t·v
``eta``            η                          DDIM stochasticity (0: deterministic)
``ddim_sigma``     σ_DDIM                     η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)
=================  =========================  ================================================

DDIM step from t to its predecessor ``prev`` (ᾱ_prev = 1 after the last step):
x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev − σ_DDIM²)·ε̂ + σ_DDIM·z, z ~ N(0, I).

Randomness is explicit: every function that draws noise takes a ``torch.Generator`` (or, in
:func:`ddim_sample`, one generator per video, so that a video's noise does not depend on the batch
it is generated in: the "common random numbers" the sampled-FVD trials rely on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

Prediction = Literal["v", "eps", "x0"]
PREDICTIONS: tuple[str, ...] = ("v", "eps", "x0")
MIN_SNR_GAMMA = 5.0  # x0 loss weight cap: min(1 + SNR, 1 + gamma)
# model(z, t) -> prediction; t is a float tensor (b,) of timesteps in [0, T)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cosine_alpha_bar(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """ᾱ_t for t = 0..T-1 of the cosine schedule, float64 ``(T,)``.

    β_t = min(1 − f(t+1)/f(t), max_beta) and ᾱ_t = ∏_{i≤t} (1 − β_i), as in improved DDPM: the
    clipping keeps the last steps from dividing by ~0 (f(T) = 0 exactly).
    """
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((steps / T) + s) / (1 + s) * math.pi / 2) ** 2
    beta = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - beta, dim=0)


class GaussianDiffusion:
    """The forward process, the training target and the prediction conversions.

    Args:
        prediction: ``"v"`` (default; stable at both ends of the schedule), ``"eps"``, or ``"x0"``
            (the network predicts the clean video; see the module docstring).
        timesteps: T.
        s: the cosine schedule's offset.
        max_beta: upper clip of β_t.
    """

    def __init__(self, prediction: Prediction = "v", timesteps: int = 1000, s: float = 0.008,
                 max_beta: float = 0.999):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction = {prediction!r}; valid: {list(PREDICTIONS)}")
        if timesteps < 2:
            raise ValueError(f"timesteps = {timesteps}; need at least 2")
        self.prediction: Prediction = prediction
        self.T = int(timesteps)
        self.alpha_bar = cosine_alpha_bar(self.T, s, max_beta)  # float64 (T,)

    # ------------------------------------------------------------------ schedule lookups

    def _scales(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """α_t, σ_t for integer timesteps ``t`` (b,), shaped to broadcast over ``like`` (b, ...)."""
        ab = self.alpha_bar.to(like.device)[t.long()]
        shape = (-1,) + (1,) * (like.ndim - 1)
        return ab.sqrt().to(like.dtype).view(shape), (1 - ab).sqrt().to(like.dtype).view(shape)

    def sample_timesteps(self, batch: int, generator: torch.Generator, device: torch.device | str = "cpu"
                         ) -> torch.Tensor:
        """Uniform integer timesteps ``(batch,)`` in [0, T) (int64, on ``device``)."""
        return torch.randint(0, self.T, (batch,), generator=generator).to(device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """z_t = α_t·x_0 + σ_t·ε."""
        alpha, sigma = self._scales(t, x0)
        return alpha * x0 + sigma * noise

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network learns to predict: v = α_t·ε − σ_t·x_0, ε, or x_0."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        alpha, sigma = self._scales(t, x0)
        return alpha * noise - sigma * x0

    def split(self, prediction: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂_0, ε̂) from the network's prediction at z_t."""
        alpha, sigma = self._scales(t, z)
        if self.prediction == "v":
            return alpha * z - sigma * prediction, sigma * z + alpha * prediction
        if self.prediction == "x0":
            return prediction, (z - alpha * prediction) / sigma
        return (z - sigma * prediction) / alpha, prediction

    def to_v(self, prediction: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The prediction expressed as v̂ = α_t·ε̂ − σ_t·x̂_0, whatever the network predicts.

        Validation losses are compared in this one unit (the v-MSE equals (1 + SNR)·‖x̂_0 − x_0‖²).
        """
        if self.prediction == "v":
            return prediction
        alpha, sigma = self._scales(t, z)
        x0, eps = self.split(prediction, z, t)
        return alpha * eps - sigma * x0

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor | None:
        """Per-sample weight of the squared error (b,), or None for the plain mean (v, eps)."""
        if self.prediction != "x0":
            return None
        ab = self.alpha_bar.to(t.device)[t.long()]
        return (1.0 / (1.0 - ab)).clamp(max=1.0 + MIN_SNR_GAMMA).float()  # 1 + SNR = 1 / σ², capped

    # ------------------------------------------------------------------ training

    def loss(self, model: Denoiser, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean squared error of the prediction over the batch, at uniform random timesteps
        (for x0 prediction weighted per sample by :meth:`loss_weight`).

        Args:
            model: ``model(z, t)`` with ``t`` float timesteps ``(b,)``.
            x0: clean videos ``(b, c, f, h, w)``.
            generator: draws the timesteps and the noise (a CPU generator; tensors move to ``x0``'s device).

        Returns:
            A scalar float32 loss.
        """
        t = self.sample_timesteps(x0.shape[0], generator, x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        prediction = model(self.q_sample(x0, t, noise), t.float())
        error = (prediction.float() - self.target(x0, t, noise).float()).square()
        weight = self.loss_weight(t)
        if weight is None:
            return error.mean()
        return (error.flatten(1).mean(dim=1) * weight).mean()

    # ------------------------------------------------------------------ sampling

    def ddim_timesteps(self, steps: int) -> list[int]:
        """``steps`` integer timesteps from T−1 down to 0, evenly spaced (both ends included)."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps = {steps}; expected 1..{self.T}")
        if steps == 1:
            return [self.T - 1]
        return sorted({round(i * (self.T - 1) / (steps - 1)) for i in range(steps)}, reverse=True)

    @torch.no_grad()
    def ddim_sample(self, model: Denoiser, shape: Sequence[int], steps: int, generators: Sequence[torch.Generator],
                    eta: float = 0.0, device: torch.device | str = "cpu", clip: bool = True,
                    dtype: torch.dtype = torch.float32,
                    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Generate ``len(generators)`` videos with DDIM.

        Video ``i`` draws its initial noise and every step's noise from ``generators[i]`` (CPU
        generators), so with the same generator seeds any subnet, batch split or device starts from
        the same noise.

        Args:
            model: ``model(z, t)`` for a batch.
            shape: one video's shape ``(c, f, h, w)``.
            steps: number of denoising steps (network evaluations).
            generators: one per video.
            eta: η; 0 is the deterministic DDIM, 1 matches DDPM's posterior variance.
            device: where the model runs.
            clip: clamp x̂_0 to [-1, 1] at every step (the data range).
            dtype: dtype of the latent ``z`` fed to the model.
            on_step: called as ``on_step(t, z_t, x0_hat)`` at every step, before stepping on (to
                watch a trajectory: what the model sees and what it predicts).

        Returns:
            ``(n, c, f, h, w)`` float32 on ``device``, clamped to [-1, 1].
        """
        if eta < 0:
            raise ValueError(f"eta = {eta}; expected >= 0")
        shape = tuple(int(s) for s in shape)
        n = len(generators)
        z = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, torch.float32)
        ts = self.ddim_timesteps(steps)
        alpha_bar = self.alpha_bar
        for i, t in enumerate(ts):
            # 1. predict x̂_0 and ε̂ at z_t
            t_batch = torch.full((n,), t, dtype=torch.long, device=device)
            out = model(z.to(dtype), t_batch.float()).float()
            x0, eps = self.split(out, z, t_batch)
            if clip:
                x0 = x0.clamp(-1, 1)
                eps = (z - alpha_bar[t].sqrt().item() * x0) / (1 - alpha_bar[t]).sqrt().item()
            if on_step is not None:
                on_step(t, z, x0)
            # 2. step to the previous timestep (ᾱ_prev = 1: the clean video)
            ab_t = alpha_bar[t].item()
            ab_prev = alpha_bar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
            sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(max(0.0, 1 - ab_t / ab_prev))
            z = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma**2)) * eps
            if sigma > 0:
                noise = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
                z = z + sigma * noise
        return z.clamp(-1, 1)


__all__ = ["GaussianDiffusion", "PREDICTIONS", "Prediction", "cosine_alpha_bar"]
