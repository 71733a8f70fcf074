"""How repeatable is an end-to-end latency measurement here, and how far is the table from each pass?

Validates the same random subnets twice and prints (1) the run-to-run difference of the measured
latencies, the noise floor any table's error sits on, and (2) the table's error on each pass.

    python benchmarks/latency_noise.py [--experiment tiny] [--n 20] [--repeats 15]
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np

from sned.predictors.latency import LatencyTable
from sned.predictors.latency_validate import validate_table
from sned.supernet.base.artifacts import DEFAULT_TABLE
from sned.supernet.space import load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--table", default=None, help="default: the experiment's bundled latency-cpu.parquet")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    space = load_space(args.experiment)
    path = args.table or Path(str(resources.files("sned.experiments") / space.name / DEFAULT_TABLE))
    table = LatencyTable.load(path, space)
    threads = int(table.meta.get("threads") or 1)
    passes = [validate_table(space, table, n=args.n, seed=args.seed, threads=threads, repeats=args.repeats,
                             progress=False) for _ in range(2)]
    diff = 100 * np.abs(passes[0].measured - passes[1].measured) / passes[1].measured
    print(f"{space.name}, {args.n} subnets measured twice ({args.repeats} rounds each, {threads} thread(s)):")
    print(f"  run-to-run difference of the measurements: median {np.median(diff):.1f} %, "
          f"p90 {np.percentile(diff, 90):.1f} %")
    for i, v in enumerate(passes, 1):
        ape = 100 * np.abs(v.table_pred - v.measured) / v.measured
        print(f"  table vs pass {i}: median {np.median(ape):.1f} %, p90 {np.percentile(ape, 90):.1f} %")


if __name__ == "__main__":
    main()
