"""Search figures: cold wall time of ``sned-search``, and how close NSGA-II gets to the exact front.

    python benchmarks/search.py [--seeds 3] [--repeats 3]

1. Cold wall time of ``sned-search --budget-ms 200 --res 128`` (a fresh Python process each time,
   run folder and report included). Goal: <= 3 s.
2. On ``tiny`` (1,296 archs per resolution, small enough to evaluate entirely), the hypervolume of
   the NSGA-II front divided by the exact front's (goal >= 0.995), and the same ratio for random
   search given exactly as many evaluations as NSGA-II used. All hypervolumes share one
   normalisation box per resolution (the space's smallest and largest subnet), so they compare.

Uses the bundled latency table and accuracy predictor of ``tiny``; where they do not exist yet,
it falls back to the analytic cost model (``--analytic``) and says so.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sned.search import SearchConfig, run_search
from sned.search.objectives import (
    DEFAULT_PREDICTORS,
    DEFAULT_TABLE,
    AnalyticPredictors,
    FilePredictors,
    default_artifact,
    evaluate,
)
from sned.search.pareto import hypervolume, non_dominated
from sned.supernet.space import load_space

BUDGET_MS = 200.0
# (label, SearchConfig overrides): the CLI defaults, then a run that sees a quarter of the space at most.
SETTINGS = (("defaults (pop 64, up to 100 generations, stop after 10 without gain)", {}),
            ("small (pop 32, 10 generations: at most 320 evaluations)", {"pop_size": 32, "generations": 10}))


def _bundled() -> tuple[Path, Path] | None:
    table, predictor = default_artifact("tiny", DEFAULT_TABLE), default_artifact("tiny", *DEFAULT_PREDICTORS)
    return (table, predictor) if table.is_file() and predictor.is_file() else None


def cold_wall_time(repeats: int, analytic: bool) -> list[float]:
    """Seconds per fresh ``sned-search --budget-ms 200 --res 128`` process (output to a temp folder)."""
    exe = Path(sys.executable).with_name("sned-search")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sned.search.cli", "search"]
    times = []
    with tempfile.TemporaryDirectory(prefix="sned-bench-") as tmp:
        for k in range(repeats):
            argv = cmd + ["--budget-ms", "200", "--res", "128", "--out", f"{tmp}/run{k}"] + (["--analytic"] * analytic)
            t0 = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"sned-search failed: {proc.stderr.strip()}")
    return times


def random_front_hv(space, predictors, res: int, n: int, seed: int, ideal, nadir) -> float:
    """Hypervolume of the front of ``n`` uniformly sampled archs (random search, ``n`` evaluations)."""
    X = space.sample_genes(np.random.default_rng(seed), n, res)
    cols = evaluate(space, predictors, X)
    F = np.column_stack([cols["fvd_pred"], cols["latency_ms"]])[cols["latency_ms"] <= BUDGET_MS]
    return hypervolume(F[non_dominated(F)], ideal, nadir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="NSGA-II / random-search seeds per resolution")
    parser.add_argument("--repeats", type=int, default=3, help="cold runs of sned-search")
    args = parser.parse_args(argv)

    files = _bundled()
    space = load_space("tiny")
    if files:
        predictors = FilePredictors(space, *files)
        source = f"bundled latency table and predictor ({files[0].name}, {files[1].name}; device {predictors.device})"
    else:
        predictors = AnalyticPredictors(space)
        source = ("ANALYTIC cost model (latency = a*GFLOPs + b, FVD = c - d*ln(params) - e*ln(GFLOPs)): "
                  "the bundled tiny latency table / predictor do not exist yet")
    print(f"objectives from the {source}")

    times = cold_wall_time(args.repeats, analytic=files is None)
    print(f"\n1. cold wall time, sned-search --budget-ms 200 --res 128{' --analytic' if files is None else ''}: "
          f"median {statistics.median(times):.2f} s, min {min(times):.2f} s over {len(times)} runs "
          f"({', '.join(f'{t:.2f}' for t in times)})  goal <= 3 s")

    print(f"\n2. tiny, budget {BUDGET_MS:g} ms, objectives fvd,latency: hypervolume / the exact front's, "
          f"{args.seeds} seeds; random search gets as many evaluations as NSGA-II used")
    worst = 1.0
    for label, settings in SETTINGS:
        print(f"\n   NSGA-II {label}")
        print(f"   {'res':>4}  {'exact front':>11}  {'NSGA-II min/mean':>16}  {'evals':>6}  {'of space':>8}  "
              f"{'random min/mean':>15}  {'NSGA-II s':>9}")
        for res in space.resolutions:
            exact = run_search(SearchConfig(budget_ms=BUDGET_MS, resolutions=(res,), method="exhaustive"),
                               predictors, space=space, progress=False)
            st = exact.stats[res]
            ratios, random_ratios, evals, secs = [], [], [], []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                nsga = run_search(SearchConfig(budget_ms=BUDGET_MS, resolutions=(res,), method="nsga2", seed=seed,
                                               **settings), predictors, space=space, progress=False)
                secs.append(time.perf_counter() - t0)
                n = nsga.stats[res].evaluations
                ratios.append(nsga.stats[res].hypervolume / st.hypervolume)
                random_ratios.append(random_front_hv(space, predictors, res, n, seed, st.ideal, st.nadir)
                                     / st.hypervolume)
                evals.append(n)
            if not settings:
                worst = min(worst, min(ratios))
            print(f"   {res:>4}  {len(exact.fronts[res]):>5} archs  {min(ratios):>7.4f}/{np.mean(ratios):.4f}"
                  f"  {np.mean(evals):>6.0f}  {np.mean(evals) / st.space_count:>8.0%}"
                  f"  {min(random_ratios):>6.4f}/{np.mean(random_ratios):.4f}  {np.mean(secs):>9.2f}")
    print(f"\n   worst NSGA-II ratio with the defaults: {worst:.4f} (goal >= 0.995)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
