"""Tests for sned.predictors.evaluate (``sned evaluate``): subnet selection, the table, resume, Ray trials."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sned.predictors.accuracy import REQUIRED_COLUMNS, read_fvd_table
from sned.predictors.evaluate import (
    LOSS_COLUMNS,
    NOISE_SUBSET,
    FvdTable,
    TrialSpec,
    clip_subset,
    noise_floor_tau,
    peak_concurrency,
    plan_trials,
    select_subnets,
)
from sned.predictors.evaluate_cli import SETTING_FLAGS
from sned.search.cli import main
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.space import arch_id, canonical_json, load_space

CKPT_SHA = "c" * 64


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def _row(arch: dict, fvd: float, ckpt: str = CKPT_SHA, seed: int = 0, loss: float | None = None) -> dict:
    return {"arch_id": arch_id(arch), "arch": canonical_json(arch), "res": arch["res"], "fvd": fvd, "kvd": fvd / 100,
            **({} if loss is None else {"loss": loss}), "n_videos": 4, "extractor": "i3d-random", "extractor_sha256": "e" * 64, "checkpoint_sha256": ckpt,
            "seed": seed, "steps": 2, "params": 1, "gflops": 0.1, "seconds": 1.0, "generate_seconds": 0.5,
            "features_seconds": 0.5}


SETTINGS = {"videos": 4, "real_videos": 4, "steps": 2, "eta": 0.0, "seed": 0, "ema": True,
            "extractor": "i3d-random", "extractor_sha256": "e" * 64}


# ----------------------------------------------------------------------------- planning, the table, resume


def test_plan_skips_finished_keys_and_puts_the_noise_pass_last(tiny):
    selection = {32: select_subnets(tiny, 32, 4, np.random.default_rng(0)),
                 64: select_subnets(tiny, 64, 3, np.random.default_rng(0))}
    done = {TrialSpec.of(selection[32][1], 0).key(CKPT_SHA)}
    specs = plan_trials(selection, 0, CKPT_SHA, done, noise_floor=2)
    main_specs = [s for s in specs if not s.noise]
    assert len(main_specs) == 6 and all(not s.noise for s in specs[:6]) and all(s.noise for s in specs[6:])
    assert TrialSpec.of(selection[32][1], 0) not in specs
    assert {s.seed for s in main_specs} == {0}  # common random numbers: one seed for every subnet
    noise = [s for s in specs if s.noise]
    assert {(s.res, s.seed) for s in noise} == {(32, 1), (64, 1)} and len(noise) == 4
    # another checkpoint: nothing is finished
    assert len(plan_trials(selection, 0, "d" * 64, done)) == 7
    # every main key finished, noise pass measured too: nothing left
    all_done = done | {s.key(CKPT_SHA) for s in specs}
    assert plan_trials(selection, 0, CKPT_SHA, all_done, 2, all_done) == []


def test_plan_noise_floor_all_covers_every_subnet_with_its_own_seed(tiny):
    selection = {32: select_subnets(tiny, 32, 5, np.random.default_rng(0)),
                 64: select_subnets(tiny, 64, 4, np.random.default_rng(0))}
    specs = plan_trials(selection, 7, CKPT_SHA, set(), noise_floor="all")
    main_specs, noise = [s for s in specs if not s.noise], [s for s in specs if s.noise]
    assert len(main_specs) == len(noise) == 9
    assert {s.key(CKPT_SHA) for s in noise} == {s.key(CKPT_SHA) for s in main_specs}
    assert {s.seed for s in main_specs} == {7} and {s.seed for s in noise} == {8}
    # resume: measured second-pass keys are not planned again
    measured = {noise[0].key(CKPT_SHA), noise[5].key(CKPT_SHA)}
    again = plan_trials(selection, 7, CKPT_SHA, {s.key(CKPT_SHA) for s in main_specs}, "all", measured)
    assert len(again) == 7 and all(s.noise for s in again)


def test_table_appends_atomically_and_never_duplicates_a_key(tmp_path, tiny):
    path = tmp_path / "fvd.parquet"
    table = FvdTable(path, tiny, SETTINGS)
    a, b = tiny.smallest(32), tiny.largest(32)
    assert table.add(_row(a, 10.0)) and path.is_file()
    assert not table.add(_row(a, 99.0))  # same key: dropped
    assert table.add(_row(a, 12.0, ckpt="d" * 64))  # same arch, other checkpoint: a new row
    assert table.add(_row(b, 5.0))
    df, meta = read_fvd_table(path, tiny)
    assert len(df) == 3 and not df.duplicated(["arch_id", "res", "checkpoint_sha256"]).any()
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    assert df.loc[(df["arch_id"] == arch_id(a)) & (df["checkpoint_sha256"] == CKPT_SHA), "fvd"].item() == 10.0
    assert meta["evaluate"]["videos"] == 4 and meta["space_hash"] == tiny.hash
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_resume_reads_the_keys_and_refuses_other_settings(tmp_path, tiny):
    path = tmp_path / "fvd.parquet"
    archs = select_subnets(tiny, 32, 4, np.random.default_rng(0))
    first = FvdTable(path, tiny, SETTINGS)
    for arch in archs[:2]:
        first.add(_row(arch, 1.0))
    with pytest.raises(SettingError) as raised:
        FvdTable(path, tiny, SETTINGS)
    assert raised.value.setting == "resume" and "pass --resume to continue" in raised.value.phrase(SETTING_FLAGS)
    with pytest.raises(UserError, match="steps=2"):
        FvdTable(path, tiny, {**SETTINGS, "steps": 10}, resume=True)
    with pytest.raises(UserError, match="space"):
        FvdTable(path, load_space("latent"), SETTINGS, resume=True)
    resumed = FvdTable(path, tiny, SETTINGS, resume=True)
    specs = plan_trials({32: archs}, 0, CKPT_SHA, resumed.keys())
    assert [s.arch_id for s in specs] == [arch_id(a) for a in archs[2:]]
    for spec in specs:
        resumed.add(_row(json.loads(spec.arch), 2.0))
    df, _ = read_fvd_table(path)
    assert sorted(df["arch_id"]) == sorted(arch_id(a) for a in archs)


def test_noise_floor_rows_go_to_metadata_with_kendall_tau(tmp_path, tiny):
    path = tmp_path / "fvd.parquet"
    table = FvdTable(path, tiny, SETTINGS)
    archs = select_subnets(tiny, 32, 5, np.random.default_rng(0)) + select_subnets(tiny, 64, 3, np.random.default_rng(0))
    first = [50, 40, 30, 20, 10, 9, 8, 7]
    second = [49, 41, 18, 22, 11, 7, 8, 9]  # 32 px: one swap in 10 pairs; 64 px: reversed
    for arch, f in zip(archs, first, strict=True):
        table.add(_row(arch, f))
    for arch, f in zip(archs, second, strict=True):
        assert table.add(_row(arch, f, seed=1), noise=True)
    assert not table.add(_row(archs[0], 1.0, seed=1), noise=True)  # one second-pass value per key
    df, meta = read_fvd_table(path)
    assert len(df) == 8  # the second pass adds no rows
    tau_32, tau_64 = 0.8, -1.0
    assert meta["noise_floor"]["tau_res"]["32"] == pytest.approx(tau_32)
    assert meta["noise_floor"]["tau_res"]["64"] == pytest.approx(tau_64)
    assert meta["noise_floor_tau"] == pytest.approx((5 * tau_32 + 3 * tau_64) / 8)
    assert len(meta["noise_floor"]["rows"]) == 8
    resumed = FvdTable(path, tiny, SETTINGS, resume=True)
    assert resumed.noise_keys() == {(arch_id(a), a["res"], CKPT_SHA) for a in archs}


def test_noise_floor_records_the_tau_of_fvd_and_of_the_loss(tmp_path, tiny):
    path = tmp_path / "fvd.parquet"
    table = FvdTable(path, tiny, {**SETTINGS, "noise_subset": NOISE_SUBSET})
    archs = select_subnets(tiny, 32, 4, np.random.default_rng(0)) + select_subnets(tiny, 64, 3, np.random.default_rng(0))
    first_loss = [0.4, 0.3, 0.2, 0.1, 0.3, 0.2, 0.1]
    second_loss = [0.41, 0.31, 0.21, 0.11, 0.1, 0.2, 0.3]  # 32 px: the same order; 64 px: reversed
    for k, arch in enumerate(archs):
        table.add(_row(arch, 10.0 - k, loss=first_loss[k]))
        table.add(_row(arch, 10.0 - k if k != 1 else 0.5, seed=1, loss=second_loss[k]), noise=True)
    df, meta = read_fvd_table(path)
    columns = meta["noise_floor"]["columns"]
    assert columns["loss"]["tau_res"] == {"32": pytest.approx(1.0), "64": pytest.approx(-1.0)}
    assert columns["loss"]["tau"] == pytest.approx((4 * 1.0 + 3 * -1.0) / 7)
    fvd_32 = noise_floor_tau(df, meta["noise_floor"]["rows"])[1][32]
    assert columns["fvd"]["tau_res"]["32"] == pytest.approx(fvd_32) and fvd_32 < 1.0  # one swapped pair
    assert columns["fvd"]["tau"] == meta["noise_floor_tau"]  # the pooled FVD tau keeps its old key
    assert all("loss" in r for r in meta["noise_floor"]["rows"])
    # rows without a loss (a table resumed from before the column) are left out of the loss tau only
    old = pd.DataFrame([_row(a, 1.0 + k) for k, a in enumerate(archs[:4])])
    second = [_row(a, 2.0 + k, loss=0.1 * k) for k, a in enumerate(archs[:4])]
    assert noise_floor_tau(old, second, "loss") == (None, {})
    assert noise_floor_tau(old, second)[1] == {32: pytest.approx(1.0)}


def test_resume_drops_second_pass_rows_measured_against_the_same_real_set(tmp_path, tiny):
    """Before the second pass had its own real subset, its rows measured only the generation seed."""
    path = tmp_path / "fvd.parquet"
    archs = select_subnets(tiny, 32, 3, np.random.default_rng(0))
    old = FvdTable(path, tiny, SETTINGS)  # settings without noise_subset: an old table
    for k, arch in enumerate(archs):
        old.add(_row(arch, 1.0 + k))
        old.add(_row(arch, 2.0 + k, seed=1), noise=True)
    assert len(old.noise_keys()) == 3 and "noise_floor_tau" in read_fvd_table(path)[1]
    resumed = FvdTable(path, tiny, {**SETTINGS, "noise_subset": NOISE_SUBSET}, resume=True)
    assert resumed.noise_keys() == set() and "noise_floor" not in resumed.meta
    assert len(plan_trials({32: archs}, 0, CKPT_SHA, resumed.keys(), "all", resumed.noise_keys())) == 3
    again = FvdTable(path, tiny, SETTINGS, resume=True)  # the same setting as when measured: kept
    assert len(again.noise_keys()) == 3


def test_noise_floor_tau_needs_two_pairs_per_resolution(tiny):
    a, b = tiny.smallest(32), tiny.largest(32)
    df = pd.DataFrame([_row(a, 1.0), _row(b, 2.0)])
    assert noise_floor_tau(df, [_row(a, 1.5)]) == (None, {})
    assert noise_floor_tau(df, [_row(a, 1.5), _row(b, 0.5)]) == (-1.0, {32: -1.0})


def test_peak_concurrency_counts_overlapping_trials():
    assert peak_concurrency([0, 0, 10], [5, 12, 1]) == 2
    assert peak_concurrency([0, 5, 10], [5, 5, 5]) == 1  # back to back: one at a time
    assert peak_concurrency([], []) == 0


# ----------------------------------------------------------------------------- bad input (CLI, before Ray starts)


def _save_fresh_checkpoint(run_dir: Path, space, seed: int = 0) -> Path:
    """A freshly initialised supernet saved through the checkpoint API (zero-init layers made random,
    so that subnets produce different videos)."""
    import torch

    from sned.supernet.checkpoint import save_checkpoint
    from sned.supernet.model import Supernet

    torch.manual_seed(seed)
    net = Supernet(space)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.02)
    optimizer = torch.optim.Adam(net.parameters())
    return save_checkpoint(run_dir, 0, net, net, optimizer, {
        "experiment": space.name, "space": space.to_dict(), "space_hash": space.hash, "config": {"prediction": "v"}})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from sned.supernet.synth import synthesize

    out = tmp_path_factory.mktemp("real")
    synthesize(out, n=8, frames=8, size=32, seed=0)
    return out


def _other_space_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "other.yaml"
    path.write_text("name: other\nspace:\n  resolutions: [32]\n  frames: 8\n  patch_size: 4\n  stages:\n"
                    "    - {widths: [32], depths: [1]}\n    - {widths: [32], depths: [1], attention: true}\n")
    return path


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, tiny, data_dir, capsys):
    other_run = tmp_path / "other-run"
    _save_fresh_checkpoint(other_run, load_space(_other_space_yaml(tmp_path)))
    out = str(tmp_path / "t.parquet")
    cases = {
        "another space": (["tiny", "--ckpt", str(other_run), "--data", str(data_dir)], "belongs to space"),
        "missing checkpoint": (["tiny", "--ckpt", str(tmp_path / "nope"), "--data", str(data_dir)],
                               "checkpoint not found"),
        "missing data": (["tiny", "--ckpt", str(other_run), "--data", str(tmp_path / "none")], "does not exist"),
        "bad resolution": (["tiny", "--ckpt", str(other_run), "--data", str(data_dir), "--res", "48"],
                           "not in space"),
    }
    for name, (argv, message) in cases.items():
        assert main(["evaluate", *argv, "--out", out]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
    assert not Path(out).exists()


def test_cli_a_real_set_the_folder_cannot_fill_is_one_line_and_exit_2(tmp_path, tiny, data_dir, capsys):
    """FVD against repeated real videos would look better than it is: more real clips than videos is bad input."""
    run_dir = tmp_path / "run"
    _save_fresh_checkpoint(run_dir, tiny)
    flat = tmp_path / "flat"  # videos outside class folders: no labels for the class-conditional tiny
    flat.mkdir()
    for video in sorted(data_dir.rglob("*.mp4"))[:3]:
        shutil.copy(video, flat / video.name)
    out = tmp_path / "t.parquet"
    base = ["evaluate", "tiny", "--ckpt", str(run_dir), "--out", str(out), "--res", "32"]
    cases = {
        "--real-videos": (["--data", str(data_dir), "--real-videos", "9", "--videos", "4"],
                          r"--real-videos 9: .* holds 8 usable videos of 8 frames; pass --real-videos 8 or fewer"),
        "--videos (the default of --real-videos)": (["--data", str(data_dir), "--videos", "12"],
                                                    r"--real-videos 12: .* holds 8 usable videos"),
        "--pca-dim": (["--data", str(data_dir), "--videos", "4", "--pca-dim", "4"],
                      r"--pca-dim 4: expected 1 <= k < --videos 4"),
        "no class folders": (["--data", str(flat), "--videos", "2"],
                             r"class-conditional with 6 classes, but --data .* has videos outside class folders"),
    }
    import re

    for name, (argv, pattern) in cases.items():
        assert main([*base, *argv]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(pattern, err), (name, err)
    assert not out.exists() and not Path(f"{out}.cache").exists()


# ----------------------------------------------------------------------------- the held-out loss column


def test_loss_column_is_the_held_out_loss_of_the_arch_on_fixed_clips_and_noise(tmp_path, tiny, data_dir):
    """subnet_loss on held_out_set (what run_trial stores) equals held_out_loss computed directly."""
    import torch

    from sned.predictors import evaluate_trials as E
    from sned.supernet.checkpoint import load_supernet
    from sned.supernet.data import VideoClipDataset
    from sned.supernet.diffusion import GaussianDiffusion
    from sned.supernet.validation import VAL_TIMESTEPS, held_out_loss, make_held_out

    assert E.LOSS_TIMESTEPS == VAL_TIMESTEPS and LOSS_COLUMNS == ("loss", "loss_t50", "loss_t200", "loss_t500",
                                                                  "loss_t800")
    torch.set_num_threads(1)
    net, _ = load_supernet(_save_fresh_checkpoint(tmp_path / "run", tiny))
    small, large = tiny.smallest(32), tiny.largest(32)
    held = E.held_out_set(data_dir, 32, tiny.frames, 5, seed=3, conditional=True)

    # The same clips, labels and noise built by hand: 5 videos spread over the classes, epoch 0, noise seed 3.
    dataset = VideoClipDataset(data_dir, frames=tiny.frames, size=32, seed=3)
    items, _ = clip_subset(len(dataset), 5, 3, labels=dataset.labels)
    clips = torch.stack([dataset[item] for item in items])
    labels = torch.tensor([dataset.labels[i] for i, _ in items])
    assert torch.equal(held.clips, clips) and torch.equal(held.labels, labels) and len(set(labels.tolist())) == 5
    direct = held_out_loss(lambda z, t, y: net(z, t, small, labels=y), make_held_out(clips, 32, 3, labels=labels),
                           GaussianDiffusion("v"))
    row = E.subnet_loss(net, small, held, "v")
    assert row == {"loss": pytest.approx(float(np.mean(list(direct.values())))),
                   **{f"loss_t{t}": v for t, v in direct.items()}}
    # common random numbers: a fresh held-out set of the same seed gives the identical loss
    assert E.subnet_loss(net, small, E.held_out_set(data_dir, 32, tiny.frames, 5, 3, conditional=True), "v") == row
    assert E.subnet_loss(net, large, held, "v")["loss"] != row["loss"]
    assert E.subnet_loss(net, small, held, "x0")["loss"] != row["loss"]  # scored in v units whatever is predicted
    # the second pass: other noise (seed + 1) and another draw of clips
    second = E.held_out_set(data_dir, 32, tiny.frames, 5, seed=3, second=True, conditional=True)
    assert not torch.equal(second.noise, held.noise) and not torch.equal(second.clips, held.clips)
    # more clips asked than videos: every video once
    assert len(E.held_out_set(data_dir, 32, tiny.frames, 50, seed=3, conditional=True).clips) == len(dataset)


def test_loss_of_an_unconditional_space_calls_the_network_without_labels(tmp_path, data_dir):
    import torch

    from sned.predictors import evaluate_trials as E
    from sned.supernet.checkpoint import load_supernet
    from sned.supernet.diffusion import GaussianDiffusion
    from sned.supernet.validation import held_out_loss

    torch.set_num_threads(1)
    space = load_space(_other_space_yaml(tmp_path))
    net, _ = load_supernet(_save_fresh_checkpoint(tmp_path / "run", space))
    held = E.held_out_set(data_dir, 32, space.frames, 4, seed=0, conditional=False)
    assert held.labels is None
    arch = space.largest(32)
    direct = held_out_loss(lambda z, t: net(z, t, arch), held, GaussianDiffusion("v"))
    assert E.subnet_loss(net, arch, held, "v")["loss_t200"] == direct[200]


# ----------------------------------------------------------------------------- one trial in-process (slow)


@pytest.mark.slow
def test_run_trial_uses_common_random_numbers_and_the_worker_cache(tmp_path, tiny, data_dir):
    from sned.predictors import evaluate_trials as E
    from sned.predictors.i3d import I3DFeatureExtractor
    from sned.supernet.checkpoint import read_state

    ckpt = _save_fresh_checkpoint(tmp_path / "run", tiny)
    extractor = I3DFeatureExtractor(None, batch_size=4)
    real = E.real_features(data_dir, 32, tiny.frames, 4, 0, extractor, tmp_path / "cache", progress=False)
    assert real.shape == (4, extractor.num_features)
    sha = read_state(ckpt)["files"]["weights.safetensors"]
    settings = E.TrialSettings(str(ckpt), sha, True, "v", videos=3, steps=2, eta=0.0, batch_size=3, i3d=None,
                               extractor=extractor.name, extractor_sha256=extractor.weights_sha256)
    E._WORKER_CACHE.clear()
    small, large = tiny.smallest(32), tiny.largest(32)
    first = E.run_trial(TrialSpec.of(small, 0), settings, real)
    again = E.run_trial(TrialSpec.of(small, 0), settings, real)
    other_seed = E.run_trial(TrialSpec.of(small, 1), settings, real)
    other_arch = E.run_trial(TrialSpec.of(large, 0), settings, real)
    assert first["fvd"] == again["fvd"] and first["kvd"] == again["kvd"]  # same seed: the same videos
    assert other_seed["fvd"] != first["fvd"] and other_arch["fvd"] != first["fvd"]
    assert sorted(k[0] for k in E._WORKER_CACHE) == ["i3d", "supernet"]  # loaded once for four trials
    assert first["checkpoint_sha256"] == sha and first["n_videos"] == 3 and first["gflops"] < other_arch["gflops"]
    assert all(math.isnan(first[c]) for c in LOSS_COLUMNS)  # no data folder: no held-out loss

    # With the data folder: the loss column is filled, the same for two calls, and is held_out_loss of the arch.
    with_data = replace(settings, data=str(data_dir), held_out=4, seed=0)
    scored = E.run_trial(TrialSpec.of(small, 0), with_data, real)
    assert scored["loss"] == E.run_trial(TrialSpec.of(small, 0), with_data, real)["loss"]
    assert scored["fvd"] == first["fvd"]  # the loss does not disturb the generation
    net = E._supernet(with_data)
    held = E.held_out_set(data_dir, 32, tiny.frames, 4, seed=0, conditional=True)
    assert {c: scored[c] for c in LOSS_COLUMNS} == E.subnet_loss(net, small, held, "v", batch_size=3)
    noise = E.run_trial(TrialSpec.of(small, 1, noise=True), with_data, real)
    assert math.isfinite(noise["loss"]) and noise["loss"] != scored["loss"]  # its own held-out set
    assert sum(k[0] == "held_out" for k in E._WORKER_CACHE) == 2  # built once per (res, pass)


@pytest.mark.slow
def test_real_features_of_the_second_pass_come_from_another_subset(tmp_path, tiny, data_dir):
    from sned.predictors import evaluate_trials as E
    from sned.predictors.fvd import load_features
    from sned.predictors.i3d import I3DFeatureExtractor

    extractor = I3DFeatureExtractor(None, batch_size=4)
    cache = tmp_path / "cache"
    first = E.real_features(data_dir, 32, tiny.frames, 3, 0, extractor, cache, progress=False)
    second = E.real_features(data_dir, 32, tiny.frames, 3, 0, extractor, cache, progress=False, second=True)
    assert first.shape == second.shape == (3, extractor.num_features) and not np.allclose(first, second)
    sources = [json.loads(load_features(cache / name).source)
               for name in ("real-32-i3d-random.npz", "real-32-i3d-random-pass2.npz")]
    assert [s["pass"] for s in sources] == [1, 2] and sources[1]["disjoint"]
    assert sources[0]["videos_sha1"] != sources[1]["videos_sha1"]  # the cache key names the subset
    again = E.real_features(data_dir, 32, tiny.frames, 3, 0, extractor, cache, progress=False, second=True)
    np.testing.assert_array_equal(again, second)  # from the cache


# ----------------------------------------------------------------------------- end to end on Ray (slow)


def _popen(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Own process group: the Ray processes it starts are ended with it.
    return subprocess.Popen([sys.executable, "-m", "sned.search.cli", "evaluate", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.mark.slow
def test_evaluate_on_ray_survives_a_kill_and_resumes_without_duplicates(tmp_path, tiny, data_dir, request):
    """`sned evaluate` on local Ray, 2 trials at a time; killed after the first rows, then --resume."""
    run_dir = tmp_path / "run"
    _save_fresh_checkpoint(run_dir, tiny)
    out = tmp_path / "fvd.parquet"
    args = ["tiny", "--ckpt", str(run_dir), "--data", str(data_dir), "--out", str(out), "--res", "32",
            "--n-subnets", "6", "--videos", "3", "--steps", "2", "--batch-size", "3", "--cpus-per-trial", "1",
            "--noise-floor", "3"]
    # A short private TMPDIR (Ray's socket paths must stay under 107 bytes): what the killed run leaves goes too.
    tmp = Path(tempfile.mkdtemp(prefix="sned-test-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "RAY_DISABLE_USAGE_STATS": "1",
           "TMPDIR": str(tmp)}

    # 1. Start, wait for the first rows, kill the whole process group (driver and its Ray).
    proc = _popen(args, env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_file() and len(read_fvd_table(out)[0]) >= 1:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        assert out.is_file(), "no row appeared within 300 s"
    finally:
        _kill_group(proc)
    partial, _ = read_fvd_table(out)
    assert 1 <= len(partial) <= 6

    # 2. Without --resume the table is refused; with it the run completes and computes nothing twice.
    refused = subprocess.run([sys.executable, "-m", "sned.search.cli", "evaluate", *args], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    proc = _popen([*args, "--resume"], env)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, stderr
    assert f"{6 - len(partial) + 3} run, {len(partial)} already done, 0 failed" in stdout, stdout
    df, meta = read_fvd_table(out, tiny)
    assert len(df) == 6 and not df.duplicated(["arch_id", "res", "checkpoint_sha256"]).any()
    assert set(df["arch_id"]) == {arch_id(a) for a in select_subnets(tiny, 32, 6, np.random.default_rng([0, 32]))}
    kept = df.set_index("arch_id").loc[partial["arch_id"], "fvd"]
    np.testing.assert_array_equal(kept.to_numpy(), partial["fvd"].to_numpy())  # finished rows were not recomputed
    assert np.isfinite(df["fvd"]).all() and (df["n_videos"] == 3).all() and (df["steps"] == 2).all()
    assert (df["extractor"] == "i3d-random").all()
    assert len(meta["noise_floor"]["rows"]) == 3 and -1.0 <= meta["noise_floor_tau"] <= 1.0
    assert np.isfinite(df["loss"]).all() and np.isfinite(df["loss_t200"]).all()
    loss_floor = meta["noise_floor"]["columns"]["loss"]
    assert -1.0 <= loss_floor["tau"] <= 1.0 and set(loss_floor["tau_res"]) == {"32"}
    assert all(np.isfinite(r["loss"]) for r in meta["noise_floor"]["rows"])
    assert meta["evaluate"]["noise_real_disjoint"] and meta["evaluate"]["held_out"] == 24
    assert (out.parent / "fvd.parquet.cache" / "real-32-i3d-random.npz").is_file()
    assert (out.parent / "fvd.parquet.cache" / "real-32-i3d-random-pass2.npz").is_file()  # its own real subset
    assert "time per trial" in stdout
    if (os.cpu_count() or 1) >= 2:  # --cpus-per-trial 1: Ray runs two trials at once on two cores
        resumed = df[~df["arch_id"].isin(partial["arch_id"])]
        assert peak_concurrency(resumed["started_at"], resumed["seconds"]) >= 2


def test_checkpoint_path_is_made_absolute_for_the_ray_workers(tmp_path, tiny, monkeypatch):
    """Ray workers run in another directory: a relative --ckpt must reach them as an absolute path."""
    from sned.predictors.evaluate import _checkpoint

    _save_fresh_checkpoint(tmp_path / "run", tiny)
    monkeypatch.chdir(tmp_path)
    ckpt, info = _checkpoint(tiny, "run")
    assert ckpt.is_absolute() and ckpt.is_dir() and info["step"] >= 0


def test_worker_cache_is_a_bounded_lru():
    from sned.predictors import evaluate_trials as ev

    saved = dict(ev._WORKER_CACHE)
    ev._WORKER_CACHE.clear()
    try:
        built = []
        for key in ["a", "b", "a", "c", "d"]:
            ev._cached((key,), lambda k=key: built.append(k) or k.upper(), size=2)
        assert built == ["a", "b", "c", "d"]  # "a" came from the cache the second time
        assert list(ev._WORKER_CACHE) == [("c",), ("d",)]  # the least recently used went first
        assert ev._cached(("a",), lambda: "rebuilt", size=2) == "rebuilt" and len(ev._WORKER_CACHE) == 2
    finally:
        ev._WORKER_CACHE.clear()
        ev._WORKER_CACHE.update(saved)
