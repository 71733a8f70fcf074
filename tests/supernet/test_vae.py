"""sned's video VAE: the interface's shapes and scaling, training, exact resume, the folder, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sned.search.cli import main as sned
from sned.supernet.base.errors import UserError
from sned.supernet.vae import KLVideoAutoencoder, VAEConfig, psnr, vae_loss
from sned.supernet.vae_load import load_autoencoder
from sned.supernet.vae_train import VAETrainSettings, list_checkpoints, read_metrics, train_vae

TINY = VAEConfig(latent_channels=4, widths=(8, 16, 16), groups=4)


def _video(b: int = 2, f: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, f, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------- the model and the interface


@pytest.mark.parametrize(("config", "latent"), [(TINY, (2, 4, 8, 4, 4)),
                                                (replace(TINY, temporal_factor=2, latent_channels=3), (2, 3, 4, 4, 4)),
                                                (VAEConfig(widths=(8, 8, 8, 8), groups=4), (2, 8, 8, 2, 2))])
def test_shapes_factors_and_decode_range(config, latent):
    torch.manual_seed(0)
    ae = KLVideoAutoencoder(config).eval()
    x = _video()
    assert (ae.spatial_factor, ae.temporal_factor) == (config.spatial_factor, config.temporal_factor)
    z = ae.encode(x)
    assert z.shape == latent and ae.latent_shape(8, 16, 16) == latent[1:]
    y = ae.decode(z)
    assert y.shape == x.shape and y.dtype == x.dtype and y.abs().max() <= 1.0
    sampled = ae.encode(x, torch.Generator().manual_seed(1))
    assert sampled.shape == z.shape and not torch.equal(sampled, z)
    assert torch.equal(sampled, ae.encode(x, torch.Generator().manual_seed(1)))  # seeded draws
    with pytest.raises(ValueError, match="divisible by its temporal factor"):
        ae.encode(_video(size=18))
    with pytest.raises(ValueError, match=r"expected a video batch \(b, 3, f, h, w\)"):
        ae.encode(x[:, :1])


def test_scaling_shifts_and_scales_latents_and_decode_inverts_it():
    torch.manual_seed(0)
    ae = KLVideoAutoencoder(TINY).eval()
    x = _video()
    mean, _ = ae.moments(x)
    ae.set_scaling(2.0, 0.5)
    torch.testing.assert_close(ae.encode(x), (mean - 0.5) * 2.0)
    torch.testing.assert_close(ae.decode(ae.encode(x)), ae.decoder(mean).clamp(-1, 1))
    assert ae.describe()["scaling_factor"] == 2.0 and ae.describe()["shift_factor"] == 0.5


def test_an_untrained_vae_codes_every_frame_on_its_own():
    """The temporal convs start at zero: changing one frame changes only that frame's latent."""
    torch.manual_seed(0)
    ae = KLVideoAutoencoder(TINY).eval()
    x = _video()
    y = x.clone()
    y[:, :, 3] = -y[:, :, 3]
    changed = (ae.encode(x) - ae.encode(y)).abs().amax(dim=(0, 1, 3, 4))
    assert changed[3] > 0 and torch.count_nonzero(changed) == 1


def test_loss_and_psnr():
    x = _video()
    reconstruction, mean, logvar = x + 0.1, torch.zeros(2, 4, 8, 4, 4), torch.zeros(2, 4, 8, 4, 4)
    loss, parts = vae_loss(x, reconstruction, mean, logvar, kl_weight=0.5)
    assert float(parts["kl"]) == 0.0 and float(loss) == pytest.approx(0.1, abs=1e-6)
    _, parts = vae_loss(x, x, torch.ones_like(mean), logvar, kl_weight=1.0)
    assert float(parts["kl"]) == pytest.approx(0.5)
    assert psnr(x, x + 0.02).tolist() == pytest.approx([40.0, 40.0])  # 10 log10(4 / 0.02^2)


def test_config_is_strict():
    with pytest.raises(UserError, match="unknown architecture key 'width'; valid keys: channels"):
        VAEConfig.from_dict({"width": [8, 8]}, "vae.json")
    with pytest.raises(UserError, match="multiples of groups"):
        VAEConfig.from_dict({"widths": [8, 12], "groups": 8}, "vae.json")
    with pytest.raises(ValueError, match="temporal_factor = 4: expected 1 or 2"):
        VAEConfig(temporal_factor=4)
    assert VAEConfig.from_dict(TINY.to_dict(), "x") == TINY and VAEConfig(widths=[8, 8, 8]).spatial_factor == 4


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from sned.supernet.synth import synthesize

    root = tmp_path_factory.mktemp("vae") / "data"
    synthesize(root, n=12, frames=8, size=32, seed=0, progress=False)
    return root


def _settings(data: Path, out: Path, **changes) -> VAETrainSettings:
    base = VAETrainSettings(str(data), str(out), steps=6, architecture=TINY, resolutions=(16, 32), batch_size=2,
                            lr_warmup_steps=2, val_videos=2, val_every=3, checkpoint_every=2, keep_checkpoints=10,
                            stats_clips=4, progress=False, command="test")
    return replace(base, **changes)


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "vae"
    return out, train_vae(_settings(data, out))


def test_a_run_writes_weights_config_scaling_and_provenance(full_run):
    out, result = full_run
    assert result.end_step == 6 and len(result.losses) == 6 and not result.is_reused
    config = json.loads((out / "vae.json").read_text())
    assert config["format"] == "sned-vae" and config["architecture"] == TINY.to_dict()
    assert (config["latent_channels"], config["spatial_factor"], config["temporal_factor"]) == (4, 4, 1)
    stats = config["latent_stats"]
    assert config["scaling_factor"] == pytest.approx(1.0 / stats["std"]) and config["shift_factor"] == stats["mean"]
    assert set(config["held_out"]["psnr_db"]) == {"16", "32"} and config["held_out"]["videos"] == 2
    assert len(config["training"]["held_out_videos"]) == 2 and config["training"]["train_videos"] == 10
    assert {"command", "commit", "date", "seconds", "torch_version"} <= set(config["provenance"])
    assert config["provenance"]["command"] == "test"
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in list_checkpoints(out)] == [f"step-{s:08d}" for s in (2, 4, 6)]
    validation = (out / "validation.csv").read_text().splitlines()
    assert validation[0] == "step,res,psnr" and len(validation) == 1 + 2 * 2  # steps 3 and 6, two resolutions


def test_the_folder_loads_and_its_scaled_latents_have_unit_scale(full_run, data):
    out, _ = full_run
    ae = load_autoencoder(out)
    config = json.loads((out / "vae.json").read_text())
    assert ae.kind == "sned-vae" and ae.scaling_factor == config["scaling_factor"] and not ae.training
    assert ae.identity.startswith("sned-vae:") and len(ae.sha256) == 64
    assert load_autoencoder(out).sha256 == ae.sha256  # stable
    from sned.supernet.data import VideoClipDataset

    clips = torch.stack([VideoClipDataset(data, frames=8, size=32).clip(i) for i in range(1, 11)])
    with torch.inference_mode():
        z = ae.encode(clips, torch.Generator().manual_seed(0))
    assert z.shape == (10, 4, 8, 8, 8) and 0.5 < float(z.std()) < 2.0 and abs(float(z.mean())) < 0.5
    assert ae.decode(z).shape == clips.shape
    half = load_autoencoder(out, dtype=torch.bfloat16)
    assert half.encode(clips[:1]).dtype == torch.bfloat16 and half.scaling_factor == ae.scaling_factor


def test_resume_after_a_stop_is_exact_and_a_finished_run_is_left_alone(data, full_run, tmp_path):
    full, _ = full_run
    out = tmp_path / "vae"
    first = train_vae(_settings(data, out, stop_after=3))  # "killed" after step 3; the checkpoint is at step 2
    assert first.end_step == 3 and first.config is None and not (out / "vae.json").exists()
    second = train_vae(_settings(data, out, resume=True))
    assert (second.start_step, second.end_step) == (2, 6)
    assert [(r["step"], r["loss"]) for r in read_metrics(out)] == [(r["step"], r["loss"]) for r in read_metrics(full)]
    assert (out / "vae.safetensors").read_bytes() == (full / "vae.safetensors").read_bytes()
    assert (out / "validation.csv").read_text() == (full / "validation.csv").read_text()
    before = (out / "vae.json").stat().st_mtime_ns
    again = train_vae(_settings(data, out, resume=True))
    assert again.is_reused and again.losses == [] and (out / "vae.json").stat().st_mtime_ns == before


def test_bad_runs_are_refused(data, full_run, tmp_path):
    full, _ = full_run
    with pytest.raises(UserError, match="already holds a VAE run; pass --resume"):
        train_vae(_settings(data, full))
    with pytest.raises(UserError, match="holds a VAE run with other kl_weight"):
        train_vae(_settings(data, full, resume=True, kl_weight=0.5))
    with pytest.raises(UserError, match="does not exist"):
        train_vae(_settings(tmp_path / "nothing", tmp_path / "a"))
    with pytest.raises(UserError, match="divisible by the spatial factor 4"):
        train_vae(_settings(data, tmp_path / "b", resolutions=(18,)))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and holds no VAE run"):
        train_vae(_settings(data, tmp_path / "c"))
    broken = tmp_path / "broken"
    train_vae(_settings(data, broken, stop_after=2))
    state = broken / "checkpoints" / "step-00000002" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt VAE checkpoint .*does not match its sha256"):
        train_vae(_settings(data, broken, resume=True))


# ----------------------------------------------------------------------------- the CLI: one line, exit 2


def _break(folder: Path, how: str) -> Path:
    import shutil

    if how == "missing":
        return folder / "nothing"
    target = folder / how
    if how == "empty":
        target.mkdir()
        return target
    shutil.copytree(folder / "good", target)
    if how == "not-json":
        (target / "vae.json").write_text("{not json")
    elif how == "tampered":
        weights = target / "vae.safetensors"
        weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    elif how == "foreign":
        (target / "vae.json").write_text(json.dumps({"format": "something-else"}))
    return target


@pytest.mark.parametrize(("how", "message"), [
    ("missing", "does not exist"), ("empty", "holds neither vae.json"), ("not-json", "vae.json is not valid JSON"),
    ("tampered", "vae.safetensors does not match its recorded sha256"), ("foreign", "is not a sned-vae config")])
def test_info_on_a_bad_folder_is_one_line_and_exit_2(full_run, tmp_path, capsys, how, message):
    import shutil

    shutil.copytree(full_run[0], tmp_path / "good")
    assert sned(["vae", "info", str(_break(tmp_path, how))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sned vae: error: ") and message in err[0], err


def test_info_and_train_as_a_user_runs_them(full_run, data, tmp_path):
    """In a real process: the info table, and a corrupt folder or missing data as one stderr line with exit 2."""
    import shutil

    env = {k: v for k, v in os.environ.items() if k not in ("SNED_DEBUG", "TQDM_DISABLE")}
    cli = [sys.executable, "-m", "sned.search.cli", "vae"]
    done = subprocess.run([*cli, "info", str(full_run[0])], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "latent_channels  4" in done.stdout and "sned-vae:" in done.stdout
    shutil.copytree(full_run[0], tmp_path / "good")
    for argv in (["info", str(_break(tmp_path, "tampered"))], ["train", str(tmp_path / "none"), "--out",
                                                                str(tmp_path / "o")]):
        done = subprocess.run([*cli, *argv], env=env, capture_output=True, text=True, timeout=120)
        lines = done.stderr.splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("sned vae: error: "), done.stderr


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_losses_and_weights(data, tmp_path):
    import signal
    import time

    args = ["--steps", "130", "--res", "16,32", "--batch-size", "2"]
    expected = train_vae(VAETrainSettings(str(data), str(tmp_path / "full"), steps=130, resolutions=(16, 32),
                                          batch_size=2, progress=False))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sned.search.cli", "vae", "train", str(data), "--out", str(out), "--quiet", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # this process's thread count: the same float sums
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoints" / "step-00000100").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "vae.json").exists()
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained steps 101..130" in done.stdout
    assert [r["loss"] for r in read_metrics(out)] == [r["loss"] for r in read_metrics(tmp_path / "full")]
    assert (out / "vae.safetensors").read_bytes() == (expected.out / "vae.safetensors").read_bytes()
