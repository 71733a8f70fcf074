"""How fast the latency table predicts a population: load the bundled table, predict 10,000 archs.

    python benchmarks/latency_predict.py [--experiment tiny] [--table PATH] [--n 10000]

Prints the load time, the prediction time (median of 5 runs, whole population, torch-free) and
the predicted latency range. The search evaluates every generation this way.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sned.predictors.latency import LatencyTable
from sned.supernet.base.artifacts import DEFAULT_TABLE
from sned.supernet.space import experiment_path, load_space


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--table", default=None, help="default: the experiment's bundled latency-cpu.parquet")
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args(argv)
    space = load_space(args.experiment)
    path = args.table or experiment_path(args.experiment).with_suffix("") / DEFAULT_TABLE
    t0 = time.perf_counter()
    table = LatencyTable.load(path, space)
    load_s = time.perf_counter() - t0
    X = space.sample_genes(np.random.default_rng(0), args.n)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ms = table.predict(space, X)
        times.append(time.perf_counter() - t0)
    print(f"table {path} ({table.device}, {len(table)} rows): loaded in {load_s * 1e3:.0f} ms")
    print(f"predicted {args.n:,} archs of {space.name} in {np.median(times) * 1e3:.1f} ms "
          f"(median of 5; {np.median(times) / args.n * 1e6:.2f} us per arch)")
    print(f"predicted latency: {ms.min():.1f} - {ms.max():.1f} ms (median {np.median(ms):.1f} ms)")
    print(f"torch imported: {'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
