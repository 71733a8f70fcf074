"""Latent-space training: the latent cache (build, resume, refusal), training on it, decoding samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sned.supernet.latent as latent_module
from sned.search.cli import main as sned
from sned.supernet.base.errors import UserError
from sned.supernet.checkpoint import load_supernet, read_state, resolve_checkpoint
from sned.supernet.data import VideoClipDataset
from sned.supernet.latent import (
    LatentClipDataset,
    autoencoder_for,
    build_latent_cache,
    open_latent_cache,
)
from sned.supernet.train import TrainSettings, read_validation, train
from sned.supernet.vae import VAEConfig
from sned.supernet.vae_load import load_autoencoder
from sned.supernet.vae_train import VAETrainSettings, train_vae

EXPERIMENT = """\
name: mini-latent
space:
  resolutions: [16, 32]
  frames: 8
  latent: {{channels: {channels}, spatial_factor: 4, temporal_factor: 1}}
  patch_size: 1
  time_embed_dim: 32
  classes: 6
  stages:
    - {{widths: [32], depths: [1, 2], attention: false}}
    - {{widths: [32, 64], depths: [1], attention: true}}
train:
  steps: 4
  image_steps: 1
  base_batch: 2
  max_batch: 2
  lr_warmup_steps: 1
  sampling_warmup_steps: 2
  buckets: 2
  prediction: x0
  checkpoint_every: 2
  val_videos: 6
  val_every: 4
sample:
  steps: 2
  n: 1
"""


def _vae(data: Path, out: Path, channels: int = 4) -> Path:
    config = VAEConfig(latent_channels=channels, widths=(8, 16, 16), groups=4)
    train_vae(VAETrainSettings(str(data), str(out), steps=2, architecture=config, resolutions=(16, 32), batch_size=2,
                               lr_warmup_steps=1, val_videos=2, val_every=2, checkpoint_every=2, stats_clips=2,
                               progress=False, command="test"))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sned.supernet.synth import synthesize

    root = tmp_path_factory.mktemp("latent")
    synthesize(root / "data", n=12, frames=10, size=32, seed=0, progress=False)
    (root / "mini-latent.yaml").write_text(EXPERIMENT.format(channels=4))
    return root, _vae(root / "data", root / "vae")


def test_the_cache_holds_every_video_per_resolution_and_serves_latent_clips(setup, tmp_path):
    root, vae = setup
    autoencoder = load_autoencoder(vae)
    videos = VideoClipDataset(root / "data", frames=8, size=32)
    cache = build_latent_cache(autoencoder, videos, [16, 32], tmp_path / "cache", progress=False)
    assert cache.resolutions == [16, 32] and len(cache.manifest["videos"]) == 12
    whole = cache.latent(32, 3)
    assert whole.dtype == torch.float16 and tuple(whole.shape) == (4, 10, 8, 8)  # every frame of the video
    with torch.no_grad():
        direct = autoencoder.encode(videos.video(3)[None])[0]
    torch.testing.assert_close(whole.float(), direct, atol=2e-2, rtol=1e-2)  # float16 storage

    clips = LatentClipDataset(videos, cache, latent_frames=8, spatial_factor=4)
    first, again = clips.clip(3, epoch=1), clips[(3, 1)]
    assert tuple(first.shape) == (4, 8, 8, 8) and first.dtype == torch.float32 and torch.equal(first, again)
    start = clips.start_frame(3, 1, 10)
    assert torch.equal(first, whole[:, start: start + 8].float())
    clips.size = 16
    assert tuple(clips.clip(0).shape) == (4, 8, 4, 4)
    view = clips.subset([5, 2])
    assert len(view) == 2 and view.labels == [clips.labels[5], clips.labels[2]]
    start = view.start_frame(1, 0, 10)  # as in VideoClipDataset.subset: positions seeded by the new index
    assert torch.equal(view.clip(1, 0), cache.latent(16, 2)[:, start: start + 8].float())
    # opened again: the same latents, no rebuild
    assert open_latent_cache(tmp_path / "cache", cache.key).latent(32, 3).equal(whole)


def test_a_stopped_build_resumes_without_redoing_finished_shards(setup, tmp_path, monkeypatch):
    root, vae = setup
    autoencoder = load_autoencoder(vae)
    videos = VideoClipDataset(root / "data", frames=8, size=32)
    monkeypatch.setattr(latent_module, "SHARD_VIDEOS", 4)  # 3 shards per resolution
    encoded = []
    real_encode = latent_module.encode_video

    def encode_then_stop(ae, video, *args):
        if len(encoded) == 6:  # mid-way through the second shard of 16 px: as if killed
            raise KeyboardInterrupt
        encoded.append(1)
        return real_encode(ae, video, *args)

    monkeypatch.setattr(latent_module, "encode_video", encode_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_latent_cache(autoencoder, videos, [16, 32], tmp_path / "cache", progress=False)
    assert open_latent_cache(tmp_path / "cache") is None  # unfinished: not usable
    finished = (tmp_path / "cache" / "r16" / "shard-00000.safetensors")
    assert finished.is_file() and not (tmp_path / "cache" / "r16" / "shard-00001.safetensors").exists()
    stamp = finished.stat().st_mtime_ns
    encoded.clear()
    monkeypatch.setattr(latent_module, "encode_video", lambda ae, video, *a: (encoded.append(1), real_encode(ae, video, *a))[1])
    cache = build_latent_cache(autoencoder, videos, [16, 32], tmp_path / "cache", progress=False)
    assert len(encoded) == 24 - 4 and finished.stat().st_mtime_ns == stamp  # the finished shard was kept
    assert cache.manifest["complete"] and tuple(cache.latent(16, 11).shape) == (4, 10, 4, 4)


def test_a_cache_of_another_autoencoder_is_refused(setup, tmp_path):
    root, vae = setup
    videos = VideoClipDataset(root / "data", frames=8, size=32)
    build_latent_cache(load_autoencoder(vae), videos, [32], tmp_path / "cache", progress=False)
    other = _vae(root / "data", tmp_path / "other-vae", channels=2)
    with pytest.raises(UserError, match="another autoencoder"):
        build_latent_cache(load_autoencoder(other), videos, [32], tmp_path / "cache", progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text("[1, 2")
    with pytest.raises(UserError, match="not a sned latent-cache manifest"):
        open_latent_cache(tmp_path / "junk")


def test_a_latent_run_trains_on_the_cache_and_its_samples_decode_to_video(setup, tmp_path, capsys):
    root, vae = setup
    out = tmp_path / "run"
    result = train(TrainSettings(str(root / "mini-latent.yaml"), str(root / "data"), str(out), vae=str(vae),
                                 progress=False))
    assert result.end_step == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    assert (out / "latents" / "manifest.json").is_file()
    state = read_state(resolve_checkpoint(out))
    assert state["vae"]["sha256"] == load_autoencoder(vae).sha256
    rows = read_validation(out)
    assert {r["res"] for r in rows} == {16, 32} and {"largest", "per_pixel"} <= {r["subnet"] for r in rows}

    net, info = load_supernet(out)
    decoder = autoencoder_for(info)
    assert decoder is not None and decoder.sha256 == state["vae"]["sha256"]
    assert sned(["sample", str(out), "--largest", "--res", "32", "--n", "2", "--out", str(tmp_path / "s")]) == 0
    meta = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert meta["vae"] == decoder.identity
    from sned.supernet.video_io import read_frames

    frames = read_frames(next((tmp_path / "s").glob("*.mp4")), list(range(8)))
    assert frames.shape == (8, 32, 32, 3)  # decoded pixels, not the 8x8 latent

    # resume continues from the same cache (no second encode) and the checkpoint keeps the record
    again = train(TrainSettings(str(root / "mini-latent.yaml"), str(root / "data"), str(out), steps=6, resume=True,
                                vae=str(vae), progress=False))
    assert again.start_step == 4 and again.end_step == 6


def test_a_mismatched_or_missing_autoencoder_is_one_line(setup, tmp_path, capsys):
    root, vae = setup
    (tmp_path / "eight.yaml").write_text(EXPERIMENT.format(channels=8))
    argv = ["train", str(tmp_path / "eight.yaml"), "--data", str(root / "data"), "--out", str(tmp_path / "r"),
            "--vae", str(vae)]
    for args, message in ((argv, "expects (8, 4, 1)"), (argv[:-2], "--vae DIR"),
                          (argv[:-1] + [str(tmp_path / "nowhere")], "does not exist")):
        code = sned(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()
    assert sned(["train", "tiny", "--data", str(root / "data"), "--out", str(tmp_path / "p"), "--vae", str(vae)]) == 2
    assert "pixel-space experiment" in capsys.readouterr().err


def test_the_decoder_is_a_measured_fixed_block_that_the_budget_pays_once(setup, tmp_path):
    from sned.predictors.latency import LatencyTable
    from sned.predictors.latency_decoder import measure_decoder
    from sned.predictors.latency_measure import MeasureSettings, measure_table
    from sned.search.engine import SearchConfig, run_search
    from sned.supernet.space import load_space

    root, vae = setup
    space = load_space(str(root / "mini-latent.yaml"))
    out = tmp_path / "table.parquet"
    measure_table(space, out, MeasureSettings(threads=1, repeats=2, warmup=1), resolutions=[16, 32], progress=False)
    table = measure_decoder(out, space, load_autoencoder(vae), repeats=3, warmup=1)
    table = LatencyTable.load(out, space)  # stored in the file
    assert table.decoder["sha256"] == load_autoencoder(vae).sha256
    decoder = {res: table.decoder_ms(res) for res in (16, 32)}
    assert all(ms > 0 for ms in decoder.values()) and table.decoder["repeats"] == 3

    class Predictors:  # the table's latency, a cost-shaped quality (the budget is what is under test)
        device, target = table.device, "fvd"

        def latency_ms(self, X):
            return table.predict(space, X)

        def quality(self, X):
            flops = space.flops(X).astype(float)
            return 1e3 / flops, 0.0 * flops

        def decoder_ms(self, res):
            return table.decoder_ms(res)

    predictors = Predictors()
    every = table.predict(space, space.enumerate(32))  # the 8 subnets at 32 px
    steps = int(np.ceil(2 * decoder[32] / (every.max() - every.min()))) + 1
    budget = steps * float(every.max())  # every whole run fits without the decoder, not with it
    result = run_search(SearchConfig(budget_ms=budget, steps=steps, resolutions=(32,)), predictors, space=space)
    front = result.fronts[32]
    assert result.stats[32].feasible == int((steps * every + decoder[32] <= budget).sum()) < len(every)
    assert len(front) and (steps * front["latency_ms"] + decoder[32] <= budget + 1e-9).all()
    assert result.stats[32].decoder_ms == decoder[32]

    class PixelBudget(Predictors):  # the same subnets, the decoder left out
        decoder_ms = None

    without = run_search(SearchConfig(budget_ms=budget, steps=steps, resolutions=(32,)), PixelBudget(), space=space)
    assert without.stats[32].feasible == len(every)
    with pytest.raises(UserError, match="below the fastest"):  # the decoder alone eats the budget
        run_search(SearchConfig(budget_ms=decoder[32] * 0.99, steps=steps, resolutions=(32,)), predictors,
                   space=space)


@pytest.mark.slow
def test_a_killed_cache_build_resumes_without_redoing_finished_shards(setup, tmp_path, killer):
    import os
    import signal
    import subprocess
    import sys

    root, vae = setup
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sned.search.cli", "train", str(root / "mini-latent.yaml"), "--data",
           str(root / "data"), "--out", str(out), "--vae", str(vae), "--quiet"]
    first = out / "latents" / "r16" / "shard-00000.safetensors"  # 16 px is encoded before 32 px
    assert killer(cmd, first, 120, {**os.environ, "OMP_NUM_THREADS": "1"}) == -signal.SIGKILL
    assert first.is_file() and open_latent_cache(out / "latents") is None  # killed before the cache was complete
    stamp = first.stat().st_mtime_ns
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # the same command: no checkpoint yet
    assert done.returncode == 0, done.stderr[-2000:]
    assert first.stat().st_mtime_ns == stamp and open_latent_cache(out / "latents") is not None
