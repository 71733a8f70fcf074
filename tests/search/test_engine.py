"""run_search (sned/search/engine.py): exact fronts, NSGA-II, budgets, resolutions and bad input."""

import math

import numpy as np
import pytest

from sned.search.engine import FRONT_COLUMNS, SearchConfig, parse_budget, parse_resolutions, run_search
from sned.search.objectives import evaluate
from sned.search.pareto import hypervolume
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.space import arch_id


def _search(space, analytic, **kwargs):
    return run_search(SearchConfig(**kwargs), analytic, space=space, progress=False)


def test_exhaustive_front_is_exactly_the_non_dominated_feasible_set(space, analytic):
    result = _search(space, analytic, budget_ms=200, resolutions=(128,))
    front = result.fronts[128]
    assert result.methods == {128: "exhaustive"}  # auto: 1,296 archs per resolution
    assert list(front.columns) == list(FRONT_COLUMNS)
    # independent check: brute-force dominance over every feasible arch of the space
    X = space.enumerate(128)
    cols = evaluate(space, analytic, X)
    ok = cols["latency_ms"] <= 200
    F = np.column_stack([cols["fvd_pred"], cols["latency_ms"]])[ok]
    ids = np.array([arch_id(a) for a in space.decode(X[ok])])
    dominated = np.array([np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1)) for f in F])
    assert set(front["arch_id"]) == set(ids[~dominated])
    assert (front["latency_ms"] <= 200).all()
    assert front["latency_ms"].is_monotonic_increasing
    assert front["fvd_pred"].is_monotonic_decreasing  # a 2-objective front trades one for the other
    assert result.stats[128].evaluations == 1296 == result.stats[128].space_count
    assert front.loc[0, "arch"] == space.decode(space.encode([front.loc[0, "arch"]]))[0]


def test_nsga2_same_seed_same_front_and_close_to_exact(space, analytic):
    kwargs = dict(budget_ms=200, resolutions=(128,), method="nsga2", pop_size=32, generations=14, seed=3)
    a, b = _search(space, analytic, **kwargs), _search(space, analytic, **kwargs)
    assert a.methods == {128: "nsga2"}
    assert a.fronts[128].drop(columns="arch").equals(b.fronts[128].drop(columns="arch"))
    assert a.history[128]["hypervolume"].tolist() == b.history[128]["hypervolume"].tolist()
    hv = a.history[128]["hypervolume"]
    assert hv.is_monotonic_increasing and len(hv) == a.stats[128].generations
    exact = _search(space, analytic, budget_ms=200, resolutions=(128,), method="exhaustive")
    assert a.stats[128].ideal == exact.stats[128].ideal  # one normalisation box: comparable hypervolumes
    assert a.stats[128].hypervolume / exact.stats[128].hypervolume > 0.98
    assert set(a.fronts[128]["arch_id"]) <= set(a.evaluated[128]["arch_id"])
    assert a.stats[128].evaluations == a.stats[128].unique  # duplicate elimination spans the whole archive


def test_steps_scale_the_budget(space, analytic):
    one = _search(space, analytic, budget_ms=150, resolutions=(64, 128))
    many = _search(space, analytic, budget_ms=1500, steps=10, resolutions=(64, 128))
    for res in (64, 128):
        assert one.fronts[res]["arch_id"].tolist() == many.fronts[res]["arch_id"].tolist()


def test_no_budget_and_three_objectives(space, analytic):
    result = _search(space, analytic, resolutions=(32,), objectives="fvd,latency,params")
    front = result.fronts[32]
    assert result.config.objectives == ("fvd", "latency", "params")
    F = front[["fvd_pred", "latency_ms", "params"]].to_numpy(float)
    assert not any(np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1)) for f in F)
    assert result.stats[32].feasible == 1296
    assert hypervolume(F, result.stats[32].ideal, result.stats[32].nadir) == pytest.approx(result.stats[32].hypervolume)


def test_all_resolutions_and_an_infeasible_one(space, analytic):
    result = _search(space, analytic, budget_ms=40)  # 32 and 64 px fit, 128 px (fastest ~51 ms) does not
    assert sorted(result.fronts) == [32, 64, 128]
    assert len(result.fronts[32]) and len(result.fronts[64]) and not len(result.fronts[128])
    assert any("128 px" in note and "51.0 ms" in note for note in result.notes)
    payload = result.to_json()
    assert set(payload) >= {"experiment", "device", "budget_ms", "method", "fronts"}
    assert payload["method"] == "exhaustive" and payload["device"] == "analytic"
    record = payload["fronts"]["32"][0]
    assert set(record) == {"arch_id", "arch", "latency_ms", "fvd_pred", "fvd_std", "params", "gflops"}


def test_auto_uses_nsga2_above_the_exhaustive_limit(space, analytic):
    result = _search(space, analytic, budget_ms=200, resolutions=(64,), exhaustive_limit=1000, pop_size=16,
                     generations=3)
    assert result.methods == {64: "nsga2"} and result.stats[64].generations == 3
    assert result.stats[64].evaluations >= 16


def test_budget_below_the_fastest_subnet_names_its_latency(space, analytic):
    for method in ("exhaustive", "nsga2"):
        with pytest.raises(UserError, match=r"below the fastest subnet \(128 px 51\.0 ms"):
            _search(space, analytic, budget_ms=20, resolutions=(128,), method=method)


def test_resolution_outside_the_space(space, analytic):
    with pytest.raises(UserError, match=r"resolution 96 is not in space 'tiny'; valid: 32, 64, 128"):
        _search(space, analytic, budget_ms=200, resolutions=(96,))


@pytest.mark.parametrize("value", [0, -5, "nan", math.nan, "inf", "abc", ""])
def test_bad_budgets(value):
    with pytest.raises(SettingError, match="^budget_ms ") as raised:  # library errors name settings, not flags
        parse_budget(value)
    assert raised.value.setting == "budget_ms" and raised.value.phrase({"budget_ms": "--budget-ms"}).startswith(
        "--budget-ms ")
    with pytest.raises(UserError):
        SearchConfig(budget_ms=value)


def test_parse_resolutions():
    assert parse_resolutions("all") is None and parse_resolutions(None) is None
    assert parse_resolutions("64, 128,64") == (64, 128)
    assert parse_resolutions([128]) == (128,)
    with pytest.raises(SettingError, match="^resolutions '128px'") as raised:
        parse_resolutions("128px")
    assert raised.value.setting == "resolutions"


def test_config_rejects_unknown_objectives_and_methods():
    with pytest.raises(UserError, match=r"unknown objective 'speed'; valid: fvd, latency, params, gflops"):
        SearchConfig(objectives="fvd,speed")
    with pytest.raises(UserError, match="at least two"):
        SearchConfig(objectives="fvd")
    with pytest.raises(SettingError, match="method 'random'") as raised:
        SearchConfig(method="random")
    assert raised.value.setting == "method" and raised.value.valid == ["auto", "nsga2", "exhaustive"]
    config = SearchConfig(budget_ms="200", resolutions="64,128", objectives="fvd,latency,params")
    assert SearchConfig.from_dict(config.to_dict()) == config


def test_missing_files_are_user_errors(space, tmp_path):
    config = SearchConfig(budget_ms=200, resolutions=(128,), table=str(tmp_path / "nope.parquet"))
    with pytest.raises(UserError, match="latency table not found: .*nope.parquet"):
        run_search(config, space=space)
