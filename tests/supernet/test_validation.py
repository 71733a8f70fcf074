"""Held-out validation loss and its two reference levels (predict-zero, per-pixel denoiser)."""

import math

import pytest
import torch

from sned.supernet.diffusion import GaussianDiffusion
from sned.supernet.validation import held_out_loss, make_held_out, reference_losses


def _clips(n=4, res=8, frames=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, frames, res, res), generator=generator) * 2 - 1


def test_predict_zero_is_the_mean_squared_target():
    diffusion = GaussianDiffusion("v")
    held = make_held_out(_clips(), 8, seed=3)
    losses = held_out_loss(lambda z, t: torch.zeros_like(z), held, diffusion, batch_size=3)
    for t, loss in losses.items():
        tt = torch.full((len(held.clips),), t)
        expected = diffusion.target(held.clips, tt, held.noise).square().mean().item()
        assert loss == pytest.approx(expected, rel=1e-6)
    # The reference estimate (a random subset of pixels) agrees with the exact value within sampling error.
    refs = reference_losses(held, diffusion, pixels=512)
    for t in held.timesteps:
        assert refs["zero"][t] == pytest.approx(losses[t], rel=0.15)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_every_prediction_type_is_scored_in_v_units(prediction):
    """The same denoiser, written as v, eps or x0 prediction, gets the same held-out loss."""
    held = make_held_out(_clips(), 8, seed=3)
    v, other = GaussianDiffusion("v"), GaussianDiffusion(prediction)

    def shrink_v(z, t):  # some fixed denoiser: x0_hat = 0.5 * alpha * z
        alpha, sigma = v._scales(t.long(), z)
        x0 = 0.5 * alpha * z
        return alpha * (z - alpha * x0) / sigma - sigma * x0

    def shrink_other(z, t):
        x0, eps = v.split(shrink_v(z, t), z, t.long())
        return eps if prediction == "eps" else x0

    a, b = held_out_loss(shrink_v, held, v), held_out_loss(shrink_other, held, other)
    assert all(a[t] == pytest.approx(b[t], rel=1e-4) for t in held.timesteps)
    assert reference_losses(held, v, pixels=256) == reference_losses(held, other, pixels=256)


def test_an_oracle_scores_zero_and_the_noise_is_fixed():
    diffusion = GaussianDiffusion("v")
    held = make_held_out(_clips(), 8, seed=3)
    assert torch.equal(held.noise, make_held_out(_clips(), 8, seed=3).noise)
    assert not torch.equal(held.noise, make_held_out(_clips(), 8, seed=4).noise)
    calls = iter(range(100))

    def oracle(z, t):  # knows the clean clips and the noise, in held_out_loss's batch order
        next(calls)
        alpha, sigma = diffusion._scales(t.long(), z)
        x0 = (z - sigma * held.noise) / alpha
        return alpha * held.noise - sigma * x0

    losses = held_out_loss(oracle, held, diffusion, batch_size=len(held.clips))
    assert max(losses.values()) < 1e-8


def test_per_pixel_denoiser_knows_a_palette():
    """Clips of two colours: the per-pixel posterior mean snaps a noisy pixel back at low noise."""
    diffusion = GaussianDiffusion("v")
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand((6, 1, 2, 8, 8), generator=generator) < 0.5
    clips = torch.where(mask, torch.tensor([0.8, -0.6, 0.2]).view(1, 3, 1, 1, 1),
                        torch.tensor([-0.9, 0.5, -0.1]).view(1, 3, 1, 1, 1))
    held = make_held_out(clips, 8, seed=0)
    refs = reference_losses(held, diffusion, pixels=256)
    assert refs["per_pixel"][50] < 0.05 * refs["zero"][50]  # the colours are far apart relative to sigma(50)
    for t in held.timesteps:
        assert refs["per_pixel"][t] <= refs["zero"][t] + 1e-6


def test_per_pixel_matches_the_gaussian_closed_form():
    """Gaussian pixels: the posterior mean is linear, and its v-loss has a closed form."""
    diffusion = GaussianDiffusion("v")
    generator = torch.Generator().manual_seed(1)
    std = 0.5
    clips = torch.randn((64, 3, 2, 16, 16), generator=generator) * std
    held = make_held_out(clips, 16, seed=0)
    refs = reference_losses(held, diffusion, pixels=4096)
    for t in (500, 800):
        alpha_bar = float(diffusion.alpha_bar[t])
        sigma2 = 1 - alpha_bar
        # Per channel: x0 ~ N(0, s^2); MMSE of x0 from z = a x0 + sigma eps is s^2 sigma^2 / (a^2 s^2 + sigma^2).
        mmse = std**2 * sigma2 / (alpha_bar * std**2 + sigma2)
        assert refs["per_pixel"][t] == pytest.approx(mmse / sigma2, rel=0.1)
        assert math.isfinite(refs["zero"][t])


def test_bad_held_out_shape():
    with pytest.raises(ValueError, match="expected held-out clips"):
        make_held_out(_clips(res=8), 16, seed=0)
