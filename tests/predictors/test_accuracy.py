"""Tests for sned.predictors.accuracy and ``sned fit``: tables, nested-CV fitting, baselines, numpy inference,
refusals."""

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
from sned.predictors import selection, surrogate_fit
from sned.predictors.accuracy import (
    AccuracyPredictor,
    read_fvd_table,
    synthetic_fvd_table,
    write_fvd_table,
)
from sned.predictors.encoding import stage_configurations
from sned.predictors.quality_table import noise_floor_of, table_genes
from sned.search.cli import main
from sned.supernet.base.errors import UserError
from sned.supernet.space import SpaceError, arch_id, canonical_json, load_space


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
    return {kind: AccuracyPredictor.fit(tiny, df, models=[kind], transforms=["log"], folds=2, seed=0,
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
    pred = AccuracyPredictor.fit(tiny, df, folds=3, inner_folds=2, seed=0, table_meta=meta, command="pytest")
    cands = pred.candidate_table()
    assert set(cands["model"]) == set(A.MODELS) and set(cands["transform"]) == {"log", "identity"}
    assert np.isfinite(cands[["tau_res", "rho_res", "tau", "rho", "rmse"]].to_numpy()).all()
    chosen = cands[cands["chosen"]]
    # the final choice is the inner CV's on all rows: the best within-resolution tau, not the pooled one
    assert len(chosen) == 1 and chosen["tau_res"].iloc[0] == cands["tau_res"].max()
    assert cands["picked"].sum() == 3  # one inner-CV choice per outer fold
    m = pred.metrics  # the nested (outer-fold) scores of the whole selection procedure
    assert m["tau"] >= 0.9 and m["tau_res"] >= 0.85, (m, cands)
    assert m["rho"] >= 0.95 and m["rmse"] < 5.0  # noise std is 2 FVD
    assert pred.kind == chosen["model"].iloc[0] and pred.transform == chosen["transform"].iloc[0]
    assert pred.target == "fvd" and pred.info["table"]["noise_floor_tau"] == meta["noise_floor_tau"]
    # the synthetic FVD is a function of params and res only: within a resolution, params ranks as well
    baselines = pred.baseline_table().set_index("name")
    assert list(baselines.index) == list(A.BASELINES)
    assert baselines.loc["params", "tau_res"] >= 0.85 and baselines.loc["resolution", "tau_res"] == 0.0
    assert m["best_baseline"] == "params" and m["beats_baselines"] is False


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
    members = surrogate_fit.trees_from_sklearn(fitted)._members(T)
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
    ours_mean, ours_std = surrogate_fit.gp_from_sklearn(gp).predict(T)
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


# ----------------------------------------------------------------------------- honest model selection


def _stage_table(space, n_configurations: int, rng: np.random.Generator) -> pd.DataFrame:
    """A table where every one of ``n_configurations`` stage configurations is measured at every resolution."""
    X = np.unique(space.sample_genes(rng, 4 * n_configurations, res=space.resolutions[0]), axis=0)
    X = X[rng.permutation(len(X))[:n_configurations]]
    rows = []
    for r in range(len(space.resolutions)):
        at_res = X.copy()
        at_res[:, 0] = r  # gene 0 is the resolution
        rows.append(at_res)
    X = np.concatenate(rows)
    archs = space.decode(X)
    df, _ = synthetic_fvd_table(space, 2, rng)  # only for the column layout
    df = pd.concat([df.iloc[:1]] * len(archs), ignore_index=True)
    df["arch_id"] = [arch_id(a) for a in archs]
    df["arch"] = [canonical_json(a) for a in archs]
    df["res"] = space.values(X)[:, 0].astype(np.int64)
    df["fvd"] = 300 - 40 * np.log(space.params(X) / 1e5) + 10 * np.log2(df["res"] / 32) + rng.normal(0, 2, len(df))
    df["kvd"] = df["fvd"] / 1000
    return df


def test_selection_uses_within_resolution_tau_not_pooled_tau(monkeypatch):
    """Pooled tau prefers a candidate that knows only the resolution; the one that ranks inside one must win."""
    rng = np.random.default_rng(5)
    res = np.repeat([32, 64, 128], 20)
    quality = rng.normal(0, 10, len(res))
    truth = 100 * np.log2(res) + quality
    F = np.stack([res, quality], axis=1).astype(np.float64)

    class Fake:
        def __init__(self, kind):
            self.kind = kind

        def predict(self, F_rows):
            mean = 100 * np.log2(F_rows[:, 0]) if self.kind == "resolution_only" else F_rows[:, 1]
            return mean, np.zeros(len(F_rows))

    monkeypatch.setattr(selection, "fit_surrogate", lambda kind, transform, *args: Fake(kind))
    candidates = [("resolution_only", "identity"), ("stages_only", "identity")]
    choice, rows = selection.choose_candidate(candidates, F, truth, res, np.arange(len(res)), folds=3,
                                              rng=np.random.default_rng(0), seed=0)
    by_kind = {row["model"]: row for row in rows}
    assert by_kind["resolution_only"]["tau"] > by_kind["stages_only"]["tau"]  # pooled tau prefers it ...
    assert by_kind["resolution_only"]["tau_res"] == 0.0 and by_kind["stages_only"]["tau_res"] == 1.0
    assert choice == ("stages_only", "identity")  # ... the within-resolution tau does not


def test_folds_group_every_resolution_of_a_stage_configuration(tiny, monkeypatch):
    df = _stage_table(tiny, 12, np.random.default_rng(7))
    assert df["arch_id"].nunique() == 36  # one arch id per (configuration, resolution): grouping by it splits them
    configurations = df["arch"].map(lambda text: canonical_json({k: v for k, v in json.loads(text).items()
                                                                 if k != "res"}))
    seen = {}
    real = selection.select_and_evaluate

    def spy(*args, **kwargs):
        seen["result"] = result = real(*args, **kwargs)
        return result

    monkeypatch.setattr(selection, "select_and_evaluate", spy)
    pred = AccuracyPredictor.fit(tiny, df, models=["ridge"], transforms=["identity"], folds=4, inner_folds=2)
    outer_fold = seen["result"].outer_fold
    per_configuration = pd.Series(outer_fold).groupby(configurations.to_numpy()).nunique()
    assert len(per_configuration) == 12 and (per_configuration == 1).all()  # all resolutions in one fold
    assert len(np.unique(outer_fold)) == 4
    assert pred.info["table"]["stage_configurations"] == 12 and "stage configuration" in pred.info["cv"]["grouped_by"]
    # the grouping key itself: the arch JSON without its res
    np.testing.assert_array_equal(stage_configurations(tiny, table_genes(tiny, df)), configurations.to_numpy())


def test_nested_cv_never_scores_a_fold_on_rows_that_chose_or_fitted_its_model(tiny, table, monkeypatch):
    df, _ = table
    X = table_genes(tiny, df)
    F, values, res = A.features(tiny, X), df["fvd"].to_numpy(), df["res"].to_numpy()
    assert len(np.unique(values)) == len(values)  # a row is recognised by its value
    groups = stage_configurations(tiny, X)
    row_of_feature = {F[i].tobytes(): i for i in range(len(F))}
    row_of_value = {v: i for i, v in enumerate(values)}
    choices, fits = [], []
    real_choose, real_fit = selection.choose_candidate, selection.fit_surrogate

    def choose(candidates, F_rows, values_rows, *args, **kwargs):
        choices.append({row_of_value[v] for v in values_rows})
        return real_choose(candidates, F_rows, values_rows, *args, **kwargs)

    class Recorded:
        def __init__(self, fitted, trained_on):
            self.fitted, self.trained_on = fitted, trained_on

        def predict(self, F_rows):
            fits.append((self.trained_on, {row_of_feature[f.tobytes()] for f in F_rows}))
            return self.fitted.predict(F_rows)

    def fit(kind, transform, F_rows, values_rows, seed):
        return Recorded(real_fit(kind, transform, F_rows, values_rows, seed), {row_of_value[v] for v in values_rows})

    monkeypatch.setattr(selection, "choose_candidate", choose)
    monkeypatch.setattr(selection, "fit_surrogate", fit)
    designs = selection.baseline_designs(res, *tiny.costs(X))
    result = selection.select_and_evaluate([("ridge", "log"), ("ridge", "identity")], F, values, res, groups,
                                           designs, folds=3, inner_folds=2, seed=0)
    everything = set(range(len(values)))
    assert len(choices) == 4 and choices[-1] == everything  # one choice per outer fold, then on all rows
    for k in range(3):
        test = set(np.flatnonzero(result.outer_fold == k).tolist())
        assert test and choices[k] == everything - test  # the choice for fold k never saw fold k
        assert (everything - test, test) in fits  # and fold k is predicted by a model fitted without it
    assert result.settings["outer_choices"] == [f"{kind}/{transform}" for kind, transform in result.outer_choices]
    # every fit, inner or outer, predicted only rows it was not fitted on
    assert len(fits) == 3 * (2 * 2 + 1) + 2 * 2 and all(not (trained & predicted) for trained, predicted in fits)


def test_cli_says_a_resolution_only_table_does_not_beat_the_baselines(tmp_path, tiny, capsys):
    rng = np.random.default_rng(11)
    df, meta = synthetic_fvd_table(tiny, 90, rng)
    df["fvd"] = 200 + 40 * np.log2(df["res"] / 32) + rng.normal(0, 5, len(df))  # only the resolution matters
    path = _write(tmp_path, df, meta)
    out_path = tmp_path / "pred.npz"
    assert main(["fit", str(path), "--out", str(out_path), "--models", "ridge,gbt", "--folds", "3",
                 "--inner-folds", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "does NOT beat the best baseline" in out and "beats_baselines: false" in out, out
    assert "baseline: resolution" in out and "baseline: resolution+log_flops" in out and "baseline: params" in out
    pred = AccuracyPredictor.load(out_path)
    assert pred.metrics["beats_baselines"] is False and pred.beats_baselines is False
    baselines = pred.baseline_table().set_index("name")
    # pooled over resolutions the resolution-only baseline looks good; within a resolution it ranks nothing
    assert baselines.loc["resolution", "tau"] > 0.5 and baselines.loc["resolution", "tau_res"] == 0.0
    assert pred.metrics["tau_res"] < 0.3 and pred.info["comparison"]["lower_bound"] <= 0


def test_fit_beats_the_baselines_when_the_stages_matter_beyond_cost(tiny):
    rng = np.random.default_rng(12)
    df, meta = synthetic_fvd_table(tiny, 90, rng)
    V = tiny.values(table_genes(tiny, df))
    # middle widths help or hurt: not monotone in params or FLOPs, so no cost baseline can rank it
    df["fvd"] = (200 + 20 * np.log2(df["res"] / 32) + 30 * (V[:, 3] == 64) - 30 * (V[:, 7] == 96)
                 + rng.normal(0, 2, len(df)))
    pred = AccuracyPredictor.fit(tiny, df, models=["ridge"], folds=3, inner_folds=2, table_meta=meta)
    assert pred.metrics["beats_baselines"] is True and pred.metrics["tau_res"] > 0.4, pred.info["comparison"]
    assert pred.info["comparison"]["lower_bound"] > 0


def test_fit_predicts_any_numeric_target_column(tiny, table):
    df, meta = table
    pred = AccuracyPredictor.fit(tiny, df, target="kvd", models=["ridge"], folds=3, inner_folds=2, table_meta=meta)
    assert pred.target == "kvd" and pred.describe_target() in ("kvd", "log(kvd)")
    mean, _ = pred.predict(tiny.decode(table_genes(tiny, df)))
    assert np.abs(mean - df["kvd"].to_numpy()).max() < 0.05  # kvd units (fvd / 1000 here), not FVD
    assert pred.info["table"]["target"] == "kvd"
    with_loss = df.assign(loss=np.linspace(0.1, 0.2, len(df)))
    assert AccuracyPredictor.fit(tiny, with_loss, target="loss", models=["ridge"], folds=3,
                                 inner_folds=2).target == "loss"
    with pytest.raises(UserError, match=r"target column 'loss' is not in the table; valid: \['fvd', 'kvd'\]"):
        AccuracyPredictor.fit(tiny, df, target="loss", models=["ridge"])
    with pytest.raises(UserError, match=r"target column 'arch' is not numeric"):
        AccuracyPredictor.fit(tiny, df, target="arch", models=["ridge"])
    broken = with_loss.copy()
    broken.loc[[2, 5], "loss"] = np.nan
    with pytest.raises(UserError, match=r"target column 'loss': 2 of 150 rows are missing or non-finite"):
        AccuracyPredictor.fit(tiny, broken, target="loss", models=["ridge"])
    with pytest.raises(UserError, match="transform 'log' needs positive values"):
        AccuracyPredictor.fit(tiny, df.assign(kvd=df["kvd"] - 1), target="kvd", transforms=["log"], models=["ridge"])


def test_fit_refuses_too_few_subnets_for_nested_cv_naming_how_many(tiny, table):
    df, _ = table
    assert selection.minimum_groups(5, 3) == 10 and selection.minimum_groups(2, 2) == 8
    with pytest.raises(UserError, match=r"9 subnets in \d distinct stage configurations are too few for nested "
                                        r"CV with 5 outer x 3 inner folds: need at least 10"):
        AccuracyPredictor.fit(tiny, df.iloc[:9], models=["ridge"], folds=5, inner_folds=3)
    # every resolution of one configuration is one group: 4 configurations x 3 res are 12 subnets, 4 groups
    stages = _stage_table(tiny, 4, np.random.default_rng(3))
    with pytest.raises(UserError, match=r"12 subnets in 4 distinct stage configurations .* need at least 8"):
        AccuracyPredictor.fit(tiny, stages, models=["ridge"], folds=2, inner_folds=2)
    with pytest.raises(UserError, match=r"inner_folds = 1: nested cross-validation needs an integer >= 2"):
        AccuracyPredictor.fit(tiny, df, models=["ridge"], inner_folds=1)


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
    assert loaded.space_hash == tiny.hash and loaded.kind == kind and loaded.target == pred.target == "fvd"
    assert loaded.transform == pred.transform == "log"
    assert loaded.metrics == pred.metrics and isinstance(loaded.metrics["beats_baselines"], bool)
    pd.testing.assert_frame_equal(loaded.candidate_table(), pred.candidate_table())
    pd.testing.assert_frame_equal(loaded.baseline_table(), pred.baseline_table())
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


@pytest.mark.parametrize("transform", ["log", "identity"])
def test_load_reads_format_v1_files(predictors, tiny, tmp_path, transform):
    """v1 stored the transform as "target" ("log" or "fvd"); such files (e.g. bundled ones) still load."""
    pred = predictors["ridge"]
    path = pred.save(tmp_path / "v2.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays[A._META_KEY].tobytes())
    meta["format_version"], meta["target"] = 1, {"log": "log", "identity": "fvd"}[transform]
    del meta["transform"]
    arrays[A._META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v1.npz", **arrays)
    old = AccuracyPredictor.load(tmp_path / "v1.npz")
    assert old.target == "fvd" and old.transform == transform
    if transform == "log":  # the same model read the old way predicts the same
        X = tiny.sample_genes(np.random.default_rng(1), 20)
        np.testing.assert_array_equal(old.predict(X)[0], pred.predict(X)[0])
    meta["format_version"] = 7
    arrays[A._META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v7.npz", **arrays)
    with pytest.raises(UserError, match="v7; expected 'sned-accuracy-predictor' v1 or v2"):
        AccuracyPredictor.load(tmp_path / "v7.npz")


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


def test_cli_fit_on_the_held_out_loss_needs_no_finite_fvd(tmp_path, tiny, table, capsys):
    df, meta = table
    df = df.assign(loss=0.05 + 0.02 / np.log10(tiny.params([json.loads(a) for a in df["arch"]]).astype(float)))
    df.loc[[4, 9], "fvd"] = np.nan  # trials whose FVD failed still have a loss
    meta = {**meta, "noise_floor": {"columns": {"loss": {"tau": 0.93, "tau_res": {"32": 0.9, "64": 0.95}},
                                                "fvd": {"tau": 0.5, "tau_res": {"32": 0.5}}}}}
    path = _write(tmp_path, df, meta)
    with pytest.raises(UserError, match="2 rows have a non-finite fvd"):
        read_fvd_table(path)
    assert len(read_fvd_table(path, target="loss")[0]) == len(df)
    broken = _write(tmp_path, df.assign(loss=df["loss"].where(df.index != 7)), meta, "broken.parquet")
    with pytest.raises(UserError, match="1 rows have a non-finite loss"):
        read_fvd_table(broken, target="loss")
    out_path = tmp_path / "loss.npz"
    rc = main(["fit", str(path), "--target", "loss", "--out", str(out_path), "--models", "ridge", "--folds", "3",
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "target loss" in out and "noise-floor tau of loss (two independent evaluation passes): 0.9300" in out
    pred = AccuracyPredictor.load(out_path)
    assert pred.target == "loss" and pred.info["table"]["noise_floor_tau"] == 0.93  # the target's, not FVD's
    assert noise_floor_of(meta, "fvd") == (0.5, {"32": 0.5})
    assert noise_floor_of({"noise_floor_tau": 0.7, "noise_floor": {"tau_res": {"32": 0.7}}}) == (0.7, {"32": 0.7})
    assert noise_floor_of({"noise_floor_tau": 0.7}, "loss") == (None, {})  # an old table measured no loss tau


@pytest.mark.parametrize("case", ["missing_columns", "empty", "other_space", "bad_model", "missing_file", "too_few",
                                  "bad_target"])
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
    elif case == "too_few":
        _write(tmp_path, df.iloc[:8], meta, "t.parquet")
        extra = ["--folds", "5", "--inner-folds", "3", "--models", "ridge"]
    elif case == "bad_target":
        _write(tmp_path, df, meta, "t.parquet")
        extra = ["--target", "loss"]
    rc = main(["fit", str(path), "--out", str(tmp_path / "p.npz"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    expected = {"missing_columns": "missing columns ['kvd']", "empty": "empty", "other_space": latent.hash,
                "bad_model": "svm", "missing_file": "not found", "too_few": "need at least 10 stage configurations",
                "bad_target": "target column 'loss' is not in the table; valid: ['fvd', 'kvd']"}[case]
    assert expected in err
    assert not (tmp_path / "p.npz").exists()
