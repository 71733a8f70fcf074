"""Training figures of a supernet run: throughput per resolution and the held-out loss curve.

    python benchmarks/training.py [--run experiments/tiny]   # the bundled run (default)
    python benchmarks/training.py --run runs/pipeline-tiny/train

Reads ``metrics.csv`` (or the bundled ``train-metrics.csv``) and ``validation.csv``. Prints clips/s
per resolution and stage (batch / step seconds, median over steps; the step includes data loading
and the optimizer), then the held-out loss of the largest and the smallest subnet at every
validation step, per resolution, beside the predict-zero and per-pixel reference levels. The
times come from the machine that trained the run (the bundled run: a noisy 2-core VM).
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(str(resources.files("sned.experiments") / "tiny"))
    parser.add_argument("--run", type=Path, default=default, help="a run folder or a bundled experiment folder")
    args = parser.parse_args()
    metrics = next((p for p in (args.run / "metrics.csv", args.run / "train-metrics.csv") if p.exists()), None)
    if metrics is None:
        raise SystemExit(f"no metrics.csv or train-metrics.csv in {args.run}")
    m = pd.read_csv(metrics)
    m["clips_per_s"] = m["batch"] / m["seconds"]
    print(f"== {metrics}: {len(m)} steps, {m['seconds'].sum() / 60:.1f} min of steps")
    table = m.iloc[1:].groupby(["stage", "res"]).agg(steps=("step", "size"), batch=("batch", "median"),
                                                     s_per_step=("seconds", "median"),
                                                     clips_per_s=("clips_per_s", "median"))
    print(table.round(3).to_string())

    validation = args.run / "validation.csv"
    if not validation.exists():
        print(f"(no {validation})")
        return
    v = pd.read_csv(validation)
    print(f"\n== held-out loss ({validation}); columns: t")
    for res, part in v.groupby("res"):
        print(f"-- {res} px")
        refs = part[part["step"] == 0].pivot(index="subnet", columns="t", values="loss")
        print(refs.rename(index=lambda s: f"reference {s}").round(4).to_string(header=True))
        runs = part[part["step"] > 0].pivot_table(index=["step", "subnet"], columns="t", values="loss")
        if runs.empty:
            print("   (no validation step yet)")
            continue
        print(runs.round(4).to_string())
        last = runs.index.get_level_values("step").max()
        for subnet in ("largest", "smallest"):
            if (last, subnet) in runs.index:
                ratio = runs.loc[(last, subnet)] / refs.loc["per_pixel"]
                print(f"   step {last} {subnet}: loss / per-pixel at t = "
                      + ", ".join(f"{t}: {r:.2f}" for t, r in ratio.items()))


if __name__ == "__main__":
    main()
