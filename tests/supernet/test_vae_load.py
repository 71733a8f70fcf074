"""load_autoencoder on diffusers folders: tiny random models saved with save_pretrained, round-tripped offline."""

from __future__ import annotations

import json
import socket
import sys

import pytest
import torch

from sned.search.cli import main as sned
from sned.supernet.base.errors import UserError
from sned.supernet.vae_load import load_autoencoder

diffusers = pytest.importorskip("diffusers")  # the `vae` extra

TINY_KL = {"block_out_channels": (8, 16), "down_block_types": ("DownEncoderBlock2D",) * 2,
           "up_block_types": ("UpDecoderBlock2D",) * 2, "latent_channels": 4, "norm_num_groups": 4,
           "layers_per_block": 1, "sample_size": 16}


def _save(model_class, folder, seed=0, **config):
    torch.manual_seed(seed)
    model = getattr(diffusers, model_class)(**config)
    model.save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="module")
def kl_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kl") / "vae"
    model = _save("AutoencoderKL", folder, **TINY_KL, scaling_factor=0.5)
    return folder, model


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_autoencoder_kl_round_trips_shapes_dtype_and_scaling_per_frame(kl_folder, no_network):
    folder, model = kl_folder
    ae = load_autoencoder(folder)
    assert (ae.kind, ae.latent_channels, ae.spatial_factor, ae.temporal_factor) == ("diffusers:AutoencoderKL", 4, 2, 1)
    assert ae.scaling_factor == 0.5 and ae.shift_factor == 0.0 and not ae.training
    video = torch.rand(2, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        z = ae.encode(video)
        assert z.shape == (2, 4, 5, 8, 8) and z.dtype == torch.float32
        # per frame: frame k of clip b is the image model's posterior mean of that frame, times the scaling factor
        expected = model.encode(video[1, :, 3][None]).latent_dist.mean * 0.5
        torch.testing.assert_close(z[1, :, 3], expected[0], rtol=1e-4, atol=1e-5)
        y = ae.decode(z)
        assert y.shape == video.shape and y.dtype == torch.float32 and y.abs().max() <= 1.0
        torch.testing.assert_close(y[0, :, 2], model.decode(z[0, :, 2][None] / 0.5).sample[0].clamp(-1, 1),
                                   rtol=1e-4, atol=1e-5)
        sampled = ae.encode(video, torch.Generator().manual_seed(0))
        assert sampled.shape == z.shape and not torch.equal(sampled, z)
    half = load_autoencoder(folder, dtype=torch.bfloat16)
    with torch.inference_mode():
        z16 = half.encode(video)
        assert z16.dtype == torch.bfloat16 and half.decode(z16).dtype == torch.bfloat16
    assert half.scaling_factor == 0.5 and half.sha256 == ae.sha256


def test_identity_is_stable_and_follows_the_weights(kl_folder, tmp_path):
    folder, _ = kl_folder
    first = load_autoencoder(folder)
    assert first.identity == load_autoencoder(folder).identity and first.identity.startswith("diffusers:AutoencoderKL:")
    _save("AutoencoderKL", tmp_path / "other", seed=1, **TINY_KL, scaling_factor=0.5)
    assert load_autoencoder(tmp_path / "other").sha256 != first.sha256


def test_shift_and_per_channel_statistics_are_honoured(tmp_path):
    _save("AutoencoderKL", tmp_path / "shift", **TINY_KL, scaling_factor=2.0, shift_factor=0.25)
    _save("AutoencoderKL", tmp_path / "stats", **TINY_KL, scaling_factor=2.0, latents_mean=[0.1, 0.2, 0.3, 0.4],
          latents_std=[1.0, 2.0, 4.0, 8.0])
    video = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    shifted, stats = load_autoencoder(tmp_path / "shift"), load_autoencoder(tmp_path / "stats")
    with torch.inference_mode():
        mean, _ = shifted.moments(video)
        torch.testing.assert_close(shifted.encode(video), (mean - 0.25) * 2.0)
        mean, _ = stats.moments(video)
        channel = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1, 1)
        scale = (2.0 / torch.tensor([1.0, 2.0, 4.0, 8.0])).view(1, 4, 1, 1, 1)
        torch.testing.assert_close(stats.encode(video), (mean - channel) * scale)
    assert shifted.shift_factor == 0.25


def test_temporal_decoder_and_pipeline_folders(tmp_path, no_network):
    model = _save("AutoencoderKLTemporalDecoder", tmp_path / "pipe" / "vae", block_out_channels=(32, 32),
                  down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                  scaling_factor=0.18215)
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    ae = load_autoencoder(tmp_path / "pipe")  # a pipeline folder: the autoencoder is in vae/
    assert (ae.kind, ae.spatial_factor, ae.temporal_factor, ae.scaling_factor) == \
           ("diffusers:AutoencoderKLTemporalDecoder", 2, 1, 0.18215)
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    with torch.inference_mode():
        z = ae.encode(video)
        y = ae.decode(z)
        assert z.shape == (2, 4, 4, 8, 8) and y.shape == video.shape
        frames = (z[1] / 0.18215).permute(1, 0, 2, 3)  # clip 1's frames, decoded together
        torch.testing.assert_close(y[1], model.decode(frames, num_frames=4).sample.permute(1, 0, 2, 3).clamp(-1, 1),
                                   rtol=1e-4, atol=1e-5)


def test_bad_diffusers_folders_are_one_line_errors(kl_folder, tmp_path, monkeypatch, capsys):
    import shutil

    folder, _ = kl_folder
    pickled = tmp_path / "pickled"
    torch.manual_seed(0)
    diffusers.AutoencoderKL(**TINY_KL).save_pretrained(pickled, safe_serialization=False)
    with pytest.raises(UserError, match=r"holds only pickle weights \(diffusion_pytorch_model.bin\); sned loads "
                                        r"safetensors only"):
        load_autoencoder(pickled)
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(UserError, match="holds a diffusers UNet2DModel; supported: AutoencoderKL, "
                                        "AutoencoderKLTemporalDecoder"):
        load_autoencoder(unet)
    (unet / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLCogVideoX"}))
    with pytest.raises(UserError, match="a causal 3D VAE"):
        load_autoencoder(unet)
    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated)
    weights = truncated / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(UserError, match="corrupt diffusers AutoencoderKL"):
        load_autoencoder(truncated)
    (truncated / "config.json").write_text("{")
    assert sned(["vae", "info", str(truncated)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json is not valid JSON" in err[0], err
    monkeypatch.setitem(sys.modules, "diffusers", None)  # diffusers not installed
    with pytest.raises(UserError, match=r"install diffusers \(pip install 'sned\[vae\]'\)"):
        load_autoencoder(folder)
