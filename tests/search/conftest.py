"""Fixtures of the search tests: the bundled ``tiny`` space and the analytic cost model on it."""

import numpy as np
import pandas as pd
import pytest

from sned.predictors import accuracy, latency
from sned.search.objectives import AnalyticPredictors
from sned.supernet.space import load_space


@pytest.fixture(scope="session")
def space():
    return load_space("tiny")


@pytest.fixture(scope="session")
def analytic(space):
    """Latency and FVD computed from the space's analytic FLOPs/params (no files needed)."""
    return AnalyticPredictors(space)


@pytest.fixture(scope="session")
def real_files(tmp_path_factory, space):
    """A real latency table (parquet) and a real fitted accuracy predictor (npz) for ``tiny``.

    Written with ``sned.predictors``' own classes: per-block latencies computed from each block's
    shape (a cost model, not a measurement; device ``cpu-test``) and a ridge predictor fitted with
    cross-validation on their labelled-synthetic FVD table. The project's own modules are imported
    at the top, never skipped: an import error there is a failure.
    """
    folder = tmp_path_factory.mktemp("predictors")
    rows = []
    for key, (slot, _) in latency.enumerate_keys(space).items():
        shape = {f: getattr(key, f) for f in ("kind", "c_in", "c_out", "c_skip", "size")}
        ms = 0.6 + 2.4e-6 * (shape["c_in"] + shape["c_skip"] + 1) * (shape["c_out"] + 1) * (shape["size"] + 1) ** 2
        rows.append({"device": "cpu-test", "dtype": "float32", "batch": 1, "frames": space.frames, **shape,
                     "heads": 0, "median_ms": ms, "iqr_ms": 0.0, "min_ms": ms, "repeats": 1, "slot": slot})
    table = latency.LatencyTable(pd.DataFrame(rows), {"space_hash": space.hash, "space": space.name,
                                                       "device": "cpu-test"})
    table_path = table.save(folder / "latency-cpu.parquet")
    fvd, meta = accuracy.synthetic_fvd_table(space, 96, np.random.default_rng(0))
    predictor = accuracy.AccuracyPredictor.fit(space, fvd, folds=3, models=("ridge",), table_meta=meta)
    predictor_path = predictor.save(folder / "predictor.npz")
    return table_path, predictor_path
