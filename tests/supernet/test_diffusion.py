"""The cosine schedule, the v/eps/x0 conversions, the loss weights and the DDIM sampler against closed forms."""

import math

import pytest
import torch

from sned.supernet.diffusion import GaussianDiffusion, cosine_alpha_bar


def test_cosine_schedule_matches_the_formula_and_clips_beta():
    T, s = 1000, 0.008
    ab = cosine_alpha_bar(T, s)
    f = lambda t: math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):  # far from the clipped end, ᾱ_t = f(t + 1) / f(0)
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    beta = 1 - ab[1:] / ab[:-1]
    assert (beta <= 0.999 + 1e-12).all() and (beta > 0).all()
    assert beta[-1].item() == pytest.approx(0.999)  # the last step is clipped
    assert ab[0].item() > 0.9999 and ab[-1].item() < 1e-6


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_split_inverts_the_target(prediction):
    d = GaussianDiffusion(prediction)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 2, 4, 4, generator=g) * 2 - 1, torch.randn(4, 3, 2, 4, 4, generator=g)
    t = torch.tensor([0, 250, 700, 999])
    z = d.q_sample(x0, t, noise)
    x0_hat, eps_hat = d.split(d.target(x0, t, noise), z, t)
    assert torch.allclose(eps_hat[1:], noise[1:], atol=1e-4)  # at t = 0 x0 -> eps divides by σ ≈ 0.006
    assert torch.allclose(x0_hat[:3], x0[:3], atol=1e-4)  # at t = 999 eps -> x0 divides by α ≈ 0
    v = GaussianDiffusion("v")
    assert torch.allclose(d.to_v(d.target(x0, t, noise), z, t)[1:3], v.target(x0, t, noise)[1:3], atol=1e-4)
    if prediction == "v":  # v = α ε − σ x0 by definition
        ab = d.alpha_bar[t].float().view(-1, 1, 1, 1, 1)
        assert torch.allclose(d.target(x0, t, noise), ab.sqrt() * noise - (1 - ab).sqrt() * x0, atol=1e-5)


def test_loss_is_zero_for_an_oracle_and_positive_otherwise():
    d = GaussianDiffusion("eps")
    x0 = torch.zeros(3, 1, 1, 2, 2)  # data = 0: ε = z / σ is exactly predictable
    def oracle(z, t):
        return z / (1 - d.alpha_bar[t.long()]).sqrt().float().view(-1, 1, 1, 1, 1)

    assert d.loss(oracle, x0, torch.Generator().manual_seed(0)).item() < 1e-8
    assert d.loss(lambda z, t: torch.zeros_like(z), x0, torch.Generator().manual_seed(0)).item() > 0.1


def test_x0_loss_is_the_v_loss_capped_at_small_t():
    d, v = GaussianDiffusion("x0"), GaussianDiffusion("v")
    t = torch.tensor([10, 100, 265, 400, 800])
    w = d.loss_weight(t)
    one_plus_snr = 1 / (1 - d.alpha_bar[t]).float()
    assert torch.allclose(w, one_plus_snr.clamp(max=6.0))
    assert w[0].item() == pytest.approx(6.0) and w[-1].item() == pytest.approx(one_plus_snr[-1].item())
    assert v.loss_weight(t) is None
    # Where the weight is not capped, the x0 loss of a prediction equals the v loss of the same prediction.
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(2, 3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(2, 3, 1, 4, 4, generator=g)
    tt = torch.tensor([400, 800])
    z = d.q_sample(x0, tt, noise)
    guess = 0.5 * x0
    x0_loss = ((guess - x0).square().flatten(1).mean(1) * d.loss_weight(tt)).mean()
    v_loss = (d.to_v(guess, z, tt) - v.target(x0, tt, noise)).square().mean()
    assert x0_loss.item() == pytest.approx(v_loss.item(), rel=1e-4)


def test_ddim_timesteps():
    d = GaussianDiffusion()
    assert d.ddim_timesteps(1) == [999]
    ts = d.ddim_timesteps(10)
    assert len(ts) == 10 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    with pytest.raises(ValueError, match="steps"):
        d.ddim_timesteps(0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_ddim_with_the_exact_denoiser_samples_gaussian_data(eta, prediction):
    """Data N(0, s²): the posterior mean E[x0|z] = α s² z / (α² s² + σ²) is the ideal denoiser, so
    DDIM with enough steps must return samples of standard deviation s (for any η). s is small enough that the final
    clamp to the data range [-1, 1] does not matter."""
    s = 0.25
    d = GaussianDiffusion(prediction)

    def model(z, t):
        ab = d.alpha_bar[t.long()].view(-1, 1, 1, 1, 1)
        alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
        x0 = alpha * s**2 * z.double() / (alpha**2 * s**2 + sigma**2)
        eps = (z.double() - alpha * x0) / sigma
        return {"v": alpha * eps - sigma * x0, "eps": eps, "x0": x0}[prediction].float()

    generators = [torch.Generator().manual_seed(i) for i in range(8)]
    x = d.ddim_sample(model, (1, 1, 32, 32), steps=500, generators=generators, eta=eta, clip=False)
    assert x.shape == (8, 1, 1, 32, 32)
    assert x.std().item() == pytest.approx(s, rel=0.02)
    assert abs(x.mean().item()) < 0.05


def test_ddim_noise_is_per_video_and_independent_of_the_batch():
    d = GaussianDiffusion()
    model = lambda z, t: 0.3 * z  # noqa: E731 - any deterministic per-sample function
    def run(seeds, eta):
        return d.ddim_sample(model, (1, 2, 4, 4), 5, [torch.Generator().manual_seed(s) for s in seeds], eta=eta)

    both = run([1, 2], eta=0.7)
    assert torch.equal(both[1:], run([2], eta=0.7))
    assert not torch.equal(both[0], both[1])
    assert torch.equal(run([1, 2], eta=0.0), run([1, 2], eta=0.0))
    assert not torch.equal(run([1], eta=0.0), run([1], eta=1.0))


def test_on_step_sees_each_step_input_and_clipped_prediction():
    d = GaussianDiffusion("x0")
    model = lambda z, t: 2.0 * z  # noqa: E731 - predictions outside [-1, 1], so clipping shows
    seen = []
    out = d.ddim_sample(model, (1, 2, 4, 4), 5, [torch.Generator().manual_seed(0)],
                        on_step=lambda t, z, x0: seen.append((t, z.clone(), x0.clone())))
    assert [t for t, _, _ in seen] == d.ddim_timesteps(5)
    assert torch.equal(seen[0][1], torch.randn((1, 2, 4, 4), generator=torch.Generator().manual_seed(0))[None])
    for _, z, x0 in seen:
        assert torch.equal(x0, (2.0 * z).clamp(-1, 1))
    assert torch.allclose(out, seen[-1][2])  # the last step (t = 0 -> clean) returns its prediction


def test_bad_arguments():
    with pytest.raises(ValueError, match="prediction"):
        GaussianDiffusion("x_0")
    with pytest.raises(ValueError, match="eta"):
        GaussianDiffusion().ddim_sample(lambda z, t: z, (1, 1, 1, 1), 2, [torch.Generator()], eta=-1)
