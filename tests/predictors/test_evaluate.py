"""Tests for sned.predictors.evaluate (``sned evaluate``): subnet selection, the table, resume, Ray trials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sned.predictors.accuracy import REQUIRED_COLUMNS, read_fvd_table
from sned.predictors.evaluate import (
    FvdTable,
    TrialSpec,
    noise_floor_subset,
    noise_floor_tau,
    peak_concurrency,
    plan_trials,
    select_subnets,
)
from sned.search.cli import main
from sned.supernet.errors import UserError
from sned.supernet.space import arch_id, canonical_json, load_space

CKPT_SHA = "c" * 64


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def _row(arch: dict, fvd: float, ckpt: str = CKPT_SHA, seed: int = 0) -> dict:
    return {"arch_id": arch_id(arch), "arch": canonical_json(arch), "res": arch["res"], "fvd": fvd, "kvd": fvd / 100,
            "n_videos": 4, "extractor": "i3d-random", "extractor_sha256": "e" * 64, "checkpoint_sha256": ckpt,
            "seed": seed, "steps": 2, "params": 1, "gflops": 0.1, "seconds": 1.0, "generate_seconds": 0.5,
            "features_seconds": 0.5}


SETTINGS = {"videos": 4, "real_videos": 4, "steps": 2, "eta": 0.0, "seed": 0, "ema": True,
            "extractor": "i3d-random", "extractor_sha256": "e" * 64}


# ----------------------------------------------------------------------------- subnet selection


@pytest.mark.parametrize("res", [32, 128])
def test_selection_includes_extremes_and_is_sorted_distinct(tiny, res):
    archs = select_subnets(tiny, res, 8, np.random.default_rng(0))
    ids = [arch_id(a) for a in archs]
    assert len(archs) == 8 and len(set(ids)) == 8
    assert archs[0] == tiny.smallest(res) and archs[-1] == tiny.largest(res)
    assert all(a["res"] == res for a in archs)
    flops = tiny.flops(archs)
    assert np.all(np.diff(flops) >= 0)


def test_selection_is_stratified_over_the_flops_quantiles(tiny):
    """Each of the n-2 inner picks lies in its own FLOPs-quantile stratum of the other archs."""
    n = 10
    X = tiny.enumerate(32)
    flops = np.sort(tiny.flops(X))[1:-1]  # without the extremes
    edges = [chunk[[0, -1]] for chunk in np.array_split(flops, n - 2)]
    for seed in range(5):
        inner = tiny.flops(select_subnets(tiny, 32, n, np.random.default_rng(seed))[1:-1])
        for value, (low, high) in zip(inner, edges, strict=True):
            assert low <= value <= high


def test_selection_is_seeded(tiny):
    first = select_subnets(tiny, 64, 6, np.random.default_rng([3, 64]))
    again = select_subnets(tiny, 64, 6, np.random.default_rng([3, 64]))
    other = [select_subnets(tiny, 64, 6, np.random.default_rng([s, 64])) for s in range(4, 8)]
    assert first == again
    assert any(o != first for o in other)


def test_selection_edge_cases(tiny):
    assert select_subnets(tiny, 32, 2, np.random.default_rng(0)) == [tiny.smallest(32), tiny.largest(32)]
    everything = select_subnets(tiny, 32, 10**6, np.random.default_rng(0))
    assert len(everything) == tiny.count(32)
    with pytest.raises(UserError, match="at least 2"):
        select_subnets(tiny, 32, 1, np.random.default_rng(0))


def test_selection_of_a_big_space_uses_a_pool_with_both_extremes():
    big = load_space("pixel-1.6b")
    res = big.resolutions[0]
    archs = select_subnets(big, res, 7, np.random.default_rng(0), pool=500)
    assert archs[0] == big.smallest(res) and archs[-1] == big.largest(res) and len({arch_id(a) for a in archs}) == 7


def test_noise_floor_subset_spreads_over_the_list():
    items = [{"i": i} for i in range(8)]
    assert noise_floor_subset(items, 3) == [items[0], items[4], items[7]]  # round(linspace(0, 7, 3))
    assert noise_floor_subset(items, 0) == [] and noise_floor_subset(items, 20) == items


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
    with pytest.raises(UserError, match="--resume"):
        FvdTable(path, tiny, SETTINGS)
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
    from sned.supernet.data import synthesize

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


# ----------------------------------------------------------------------------- one trial in-process (slow)


@pytest.mark.slow
def test_run_trial_uses_common_random_numbers_and_the_worker_cache(tmp_path, tiny, data_dir):
    from sned.predictors import evaluate as E
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
    assert (out.parent / "fvd.parquet.cache" / "real-32-i3d-random.npz").is_file()
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
