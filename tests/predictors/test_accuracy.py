"""Tests for sned.predictors.accuracy and ``sned fit``: tables, fitting, numpy inference, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sned.predictors import accuracy as A
from sned.predictors.accuracy import (
    AccuracyPredictor,
    read_fvd_table,
    synthetic_fvd_table,
    write_fvd_table,
)
from sned.search.cli import main
from sned.supernet.errors import UserError
from sned.supernet.space import SpaceError, load_space


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="module")
def latent():
    return load_space("latent")


@pytest.fixture(scope="module")
def table(tiny):
    """150 distinct tiny archs, fvd = 300 - 40 ln(params/1e5) + 10 log2(res/32) + N(0, 2^2)."""
    return synthetic_fvd_table(tiny, 150, np.random.default_rng(0), noise=2.0)


@pytest.fixture(scope="module")
def predictors(tiny) -> dict[str, AccuracyPredictor]:
    """One fitted predictor per model family (small table, 2 folds: these test export and I/O)."""
    df, meta = synthetic_fvd_table(tiny, 80, np.random.default_rng(1), noise=2.0)
    return {kind: AccuracyPredictor.fit(tiny, df, models=[kind], targets=["log"], folds=2, seed=0,
                                        table_meta=meta, command="pytest") for kind in A.MODELS}


def _write(tmp_path: Path, df: pd.DataFrame, meta: dict, name: str = "fvd.parquet") -> Path:
    return write_fvd_table(df, tmp_path / name, meta)


# ----------------------------------------------------------------------------- reading tables


def test_table_round_trip_keeps_rows_meta_and_hash(tmp_path, tiny, table):
    df, meta = table
    path = _write(tmp_path, df, meta)
    read, read_meta = read_fvd_table(path, tiny)
    pd.testing.assert_frame_equal(read, df)
    assert read_meta["space_hash"] == tiny.hash and read_meta["noise_floor_tau"] == meta["noise_floor_tau"]
    assert read_meta["sha256"] == A.file_sha256(path) and len(read_meta["sha256"]) == 64


def test_read_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_fvd_table(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="not a readable parquet"):
        read_fvd_table(bad)


def test_read_names_missing_columns(tmp_path, table):
    df, meta = table
    path = tmp_path / "t.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_pandas(df.drop(columns=["fvd", "seed"]), preserve_index=False)
    pq.write_table(t.replace_schema_metadata({b"sned": json.dumps(meta).encode()}), path)
    with pytest.raises(UserError, match=r"missing columns \['fvd', 'seed'\]"):
        read_fvd_table(path)


def test_read_refuses_empty_table_and_missing_meta(tmp_path, table):
    df, meta = table
    with pytest.raises(UserError, match="empty"):
        read_fvd_table(_write(tmp_path, df.iloc[:0], meta))
    path = tmp_path / "nometa.parquet"
    df.to_parquet(path)
    with pytest.raises(UserError, match="no 'sned' metadata"):
        read_fvd_table(path)


def test_read_refuses_table_of_another_space(tmp_path, tiny, latent, table):
    df, meta = table
    path = _write(tmp_path, df, meta)
    with pytest.raises(UserError) as info:
        read_fvd_table(path, latent)
    assert tiny.hash in str(info.value) and latent.hash in str(info.value)


def test_read_refuses_non_finite_fvd(tmp_path, table):
    df, meta = table
    df = df.copy()
    df.loc[3, "fvd"] = np.nan
    with pytest.raises(UserError, match="non-finite fvd"):
        read_fvd_table(_write(tmp_path, df, meta))


# ----------------------------------------------------------------------------- fitting


def test_fit_on_smooth_function_reaches_tau_09(tiny, table):
    df, meta = table
    pred = AccuracyPredictor.fit(tiny, df, folds=3, seed=0, table_meta=meta, command="pytest")
    cands = pred.candidate_table()
    assert set(cands["model"]) == set(A.MODELS) and set(cands["target"]) == {"log", "fvd"}
    assert np.isfinite(cands[["tau", "rho", "rmse", "tau_res"]].to_numpy()).all()
    chosen = cands[cands["chosen"]]
    assert len(chosen) == 1 and chosen["tau"].iloc[0] == cands["tau"].max()
    assert pred.metrics["tau"] >= 0.9, cands
    assert pred.metrics["rho"] >= 0.95 and pred.metrics["rmse"] < 5.0  # noise std is 2 FVD
    assert pred.kind == chosen["model"].iloc[0] and pred.target == chosen["target"].iloc[0]
    assert pred.info["table"]["noise_floor_tau"] == meta["noise_floor_tau"]


@pytest.mark.parametrize("kind", A.MODELS)
def test_every_model_family_learns_and_reports_uncertainty(predictors, tiny, kind):
    pred = predictors[kind]
    assert pred.kind == kind and pred.metrics["tau"] >= 0.75, pred.candidate_table()
    X = tiny.sample_genes(np.random.default_rng(5), 300)
    mean, std = pred.predict(X)
    truth = 300 - 40 * np.log(tiny.params(X) / 1e5) + 10 * np.log2(tiny.values(X)[:, 0] / 32)
    from scipy.stats import kendalltau

    assert kendalltau(mean, truth).statistic >= 0.75
    assert mean.shape == std.shape == (300,) and (std > 0).all() and np.isfinite(std).all()


def test_tree_export_matches_sklearn_exactly():
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(3)
    F, T = rng.normal(size=(150, 5)), rng.normal(size=(400, 5))
    z = np.sin(F[:, 0]) + 0.3 * F[:, 1] ** 2 + rng.normal(0, 0.1, 150)
    fitted = [GradientBoostingRegressor(n_estimators=25, max_depth=3, subsample=0.8, random_state=m).fit(F, z)
              for m in range(3)]
    members = A._trees_from_sklearn(fitted)._members(T)
    np.testing.assert_allclose(members, np.stack([g.predict(T) for g in fitted]), rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gp_export_matches_sklearn_mean_and_latent_std():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    rng = np.random.default_rng(4)
    F, T = rng.normal(size=(100, 4)), rng.normal(size=(300, 4))
    z = np.sin(F[:, 0]) + F[:, 1] + rng.normal(0, 0.1, 100)
    gp = GaussianProcessRegressor(ConstantKernel() * RBF(np.ones(4)) + WhiteKernel(1e-2)).fit(F, z)
    mean, std = gp.predict(T, return_std=True)  # sklearn's std includes the white noise
    ours_mean, ours_std = A._gp_from_sklearn(gp).predict(T)
    np.testing.assert_allclose(ours_mean, mean, atol=1e-9)
    np.testing.assert_allclose(ours_std**2, std**2 - gp.kernel_.k2.noise_level, atol=1e-7)


def test_fit_refuses_bad_choices_mixed_checkpoints_and_other_space(tiny, latent, table):
    df, meta = table
    with pytest.raises(UserError, match="unknown model"):
        AccuracyPredictor.fit(tiny, df, models=["svm"])
    with pytest.raises(UserError, match="too few"):
        AccuracyPredictor.fit(tiny, df.iloc[:5], models=["ridge"], folds=5)
    with pytest.raises(UserError) as info:
        AccuracyPredictor.fit(latent, df, models=["ridge"], table_meta=meta)
    assert tiny.hash in str(info.value) and latent.hash in str(info.value)
    mixed = df.copy()
    mixed.loc[::2, "checkpoint_sha256"] = "ab" * 32
    with pytest.raises(UserError, match="mixes 2 checkpoints"):
        AccuracyPredictor.fit(tiny, mixed, models=["ridge"])
    pred = AccuracyPredictor.fit(tiny, mixed, models=["ridge"], folds=3, checkpoint="abab")
    assert pred.info["table"]["rows"] == len(df[::2]) and pred.info["table"]["checkpoint_sha256"] == "ab" * 32


def test_fit_refuses_arch_that_disagrees_with_res(tiny, table):
    df = table[0].copy()
    df.loc[0, "res"] = 999
    with pytest.raises(UserError, match="row 0: res column 999"):
        AccuracyPredictor.fit(tiny, df, models=["ridge"])


# ----------------------------------------------------------------------------- inference and refusals


def test_refuses_arch_and_space_of_another_space(predictors, tiny, latent):
    pred = predictors["ridge"]
    with pytest.raises(SpaceError, match=tiny.hash):
        pred.predict([latent.sample(np.random.default_rng(0))])
    with pytest.raises(SpaceError) as info:
        pred.check_space(latent)
    assert tiny.hash in str(info.value) and latent.hash in str(info.value)
    with pytest.raises(SpaceError, match=latent.hash):
        pred.predict([tiny.sample(np.random.default_rng(0))], space=latent)
    pred.check_space(load_space("tiny"))  # the same space, loaded again, is accepted


def test_refuses_gene_matrix_of_wrong_width_or_bounds(predictors, tiny, latent):
    pred = predictors["ridge"]
    with pytest.raises(SpaceError, match="11 genes"):
        pred.predict(latent.sample_genes(np.random.default_rng(0), 4))
    X = tiny.sample_genes(np.random.default_rng(0), 4)
    X[0, 1] = 7
    with pytest.raises(SpaceError, match="out of bounds"):
        pred.predict(X)


def test_archs_gene_matrix_and_non_canonical_genes_agree(predictors, tiny):
    pred = predictors["gp"]
    X = tiny.sample_genes(np.random.default_rng(2), 50)
    by_genes = pred.predict(X)
    by_archs = pred.predict(tiny.decode(X))
    np.testing.assert_allclose(by_genes, by_archs)
    messy = X.copy()
    attn = [i for i, g in enumerate(tiny.genes) if g.field == "attn"]
    messy[:, attn] = 1  # flags beyond a stage's depth are irrelevant and canonicalised away
    np.testing.assert_allclose(pred.predict(messy), pred.predict(tiny.canonical(messy)))
    one_mean, one_std = pred.predict(tiny.decode(X[:1])[0])
    assert one_mean.shape == (1,) and one_mean[0] == pytest.approx(by_genes[0][0])
    assert pred.predict([])[0].shape == (0,)


@pytest.mark.parametrize("kind", A.MODELS)
def test_save_load_round_trip_is_identical(predictors, tiny, tmp_path, kind):
    pred = predictors[kind]
    path = pred.save(tmp_path / f"{kind}.npz")
    loaded = AccuracyPredictor.load(path)
    X = tiny.sample_genes(np.random.default_rng(9), 500)
    for a, b in zip(pred.predict(X), loaded.predict(X), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.space_hash == tiny.hash and loaded.kind == kind and loaded.target == pred.target
    assert loaded.metrics == pred.metrics
    pd.testing.assert_frame_equal(loaded.candidate_table(), pred.candidate_table())
    assert loaded.info["table"]["sha256"] is None or len(loaded.info["table"]["sha256"]) == 64
    prov = loaded.info["provenance"]
    assert prov["command"] == "pytest" and prov["sned_version"] and prov["date"]
    with np.load(path, allow_pickle=False) as npz:  # every entry is a plain array
        assert all(npz[k].dtype != object for k in npz.files)
        meta = json.loads(npz[A._META_KEY].tobytes())
    assert meta["encoding"]["features"] == A.feature_names(tiny) and meta["space"]["hash"] == tiny.hash


def test_load_refuses_missing_corrupt_and_tampered_files(predictors, tmp_path):
    with pytest.raises(UserError, match="not found"):
        AccuracyPredictor.load(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a sned accuracy predictor"):
        AccuracyPredictor.load(bad)
    path = predictors["ridge"].save(tmp_path / "p.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays[A._META_KEY].tobytes())
    meta["space"]["hash"] = "0" * 16
    arrays[A._META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(UserError, match="records 0000000000000000"):
        AccuracyPredictor.load(tmp_path / "tampered.npz")


def test_predict_10k_archs_fast_without_torch_or_sklearn(predictors, tmp_path):
    paths = {kind: str(p.save(tmp_path / f"{kind}.npz")) for kind, p in predictors.items()}
    script = textwrap.dedent(f"""
        import sys, time, json
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from sned.predictors.accuracy import AccuracyPredictor
        from sned.supernet.space import load_space
        space = load_space("tiny")
        X = space.sample_genes(np.random.default_rng(0), 10_000)
        times = {{}}
        for kind, path in {paths!r}.items():
            pred = AccuracyPredictor.load(path)
            pred.predict(X[:10])  # warm-up
            start = time.perf_counter()
            mean, std = pred.predict(X)
            times[kind] = time.perf_counter() - start
            assert mean.shape == std.shape == (10_000,) and np.isfinite(mean).all()
        heavy = [m for m in ("sklearn", "scipy", "pandas", "torch") if sys.modules.get(m) is not None]
        print(json.dumps({{"times": times, "heavy": heavy}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], result
    assert max(result["times"].values()) < 1.0, result["times"]


# ----------------------------------------------------------------------------- the CLI


def test_cli_fit_prints_table_and_writes_predictor(tmp_path, tiny, table, capsys):
    df, meta = table
    path = _write(tmp_path, df, meta)
    out_path = tmp_path / "pred.npz"
    rc = main(["fit", str(path), "--out", str(out_path), "--models", "ridge,gp", "--folds", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "tau" in out and "rho" in out and "rmse" in out and "noise-floor tau" in out
    assert out.count("ridge") >= 2 and "gp" in out and "chosen:" in out
    pred = AccuracyPredictor.load(out_path)
    assert pred.space_hash == tiny.hash and pred.info["table"]["sha256"] == A.file_sha256(path)
    assert pred.info["cv"]["folds"] == 3


@pytest.mark.parametrize("case", ["missing_columns", "empty", "other_space", "bad_model", "missing_file"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, table, latent, capsys, case):
    df, meta = table
    path = tmp_path / "t.parquet"
    extra: list[str] = []
    if case == "missing_columns":
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = pa.Table.from_pandas(df.drop(columns=["kvd"]), preserve_index=False)
        pq.write_table(t.replace_schema_metadata({b"sned": json.dumps(meta).encode()}), path)
    elif case == "empty":
        _write(tmp_path, df.iloc[:0], meta, "t.parquet")
    elif case == "other_space":
        _write(tmp_path, df, meta, "t.parquet")
        extra = ["--experiment", "latent"]
    elif case == "bad_model":
        _write(tmp_path, df, meta, "t.parquet")
        extra = ["--models", "ridge,svm"]
    rc = main(["fit", str(path), "--out", str(tmp_path / "p.npz"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    expected = {"missing_columns": "missing columns ['kvd']", "empty": "empty", "other_space": latent.hash,
                "bad_model": "svm", "missing_file": "not found"}[case]
    assert expected in err
    assert not (tmp_path / "p.npz").exists()
