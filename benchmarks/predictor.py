"""Accuracy-predictor figures: fit time, CV metrics on a synthetic table, predict time for 10,000 archs.

    python benchmarks/predictor.py [--experiment tiny] [--rows 200] [--folds 5] [--seed 0]

The table is synthetic (``sned.predictors.accuracy.synthetic_fvd_table``: a known smooth function
of log params and resolution plus N(0, noise^2)), so the figures measure the fitting machinery and
inference speed, not how well FVD of real subnets can be predicted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sned.predictors.accuracy import MODELS, AccuracyPredictor, synthetic_fvd_table
from sned.supernet.space import load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--rows", type=int, default=200, help="archs in the synthetic table")
    parser.add_argument("--noise", type=float, default=2.0, help="FVD noise std of the synthetic table")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predict-n", type=int, default=10_000, help="archs per timed prediction")
    parser.add_argument("--repeats", type=int, default=5, help="timed predictions per model (median reported)")
    args = parser.parse_args()

    space = load_space(args.experiment)
    df, meta = synthetic_fvd_table(space, args.rows, np.random.default_rng(args.seed), noise=args.noise)
    print(f"space {space.name} ({space.hash}); synthetic table: {len(df)} archs, {meta['formula']}")
    print(f"noise-floor tau (two noise draws): {meta['noise_floor_tau']:.4f}")

    start = time.perf_counter()
    best = AccuracyPredictor.fit(space, df, folds=args.folds, seed=args.seed, table_meta=meta, progress=True)
    print(f"\nfit (nested CV of {len(MODELS)} models x 2 transforms, {args.folds} outer x 3 inner folds, + refit): "
          f"{time.perf_counter() - start:.1f} s")
    print(best.candidate_table().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(best.baseline_table().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"chosen: {best!r}")

    # prediction time per model family: refit each alone (1 transform, 2 folds) so every kind is timed
    X = space.sample_genes(np.random.default_rng(args.seed + 1), args.predict_n)
    archs = space.decode(X[:1000])
    print(f"\npredict {args.predict_n:,} archs (gene matrix, median of {args.repeats}); 1,000 arch dicts")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in MODELS:
            pred = AccuracyPredictor.fit(space, df, models=[kind], transforms=[best.transform], folds=2,
                                         seed=args.seed)
            loaded = AccuracyPredictor.load(pred.save(Path(tmp) / f"{kind}.npz"))
            loaded.predict(X[:10])
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                loaded.predict(X)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded.predict(archs)
            dict_s = time.perf_counter() - t0
            size_kb = (Path(tmp) / f"{kind}.npz").stat().st_size / 1024
            print(f"  {kind:<6} {np.median(times) * 1e3:8.1f} ms   ({dict_s * 1e3:.1f} ms for 1,000 dicts; "
                  f"file {size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()
