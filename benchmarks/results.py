"""The README's Results: figures of the bundled artifacts of an experiment, read from the files.

    python benchmarks/results.py [--experiment tiny] [--png experiments/tiny/pareto.png]

Prints the provenance, the training loss curve (first/last 50 steps), the latency table's
validation, the sampled-FVD table, the predictor's cross-validation beside the noise floor, and the
fronts at the headline budget. ``--png`` also writes the fronts as a PNG (plotly + kaleido, which
needs Chromium: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from sned.predictors.accuracy import AccuracyPredictor, read_fvd_table
from sned.predictors.latency import LatencyTable
from sned.search import SearchConfig, run_search
from sned.supernet.base.artifacts import DEFAULT_TABLE, FVD_TABLE, PREDICTOR
from sned.supernet.space import load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--budget-ms", type=float, default=200.0)
    parser.add_argument("--png", default=None, help="write the fronts as a PNG here")
    args = parser.parse_args()
    space = load_space(args.experiment)
    folder = Path(str(resources.files("sned.experiments") / space.name))
    prov = json.loads((folder / "provenance.json").read_text()) if (folder / "provenance.json").exists() else {}

    print(f"== {space.name} (space {space.hash}); artifacts in {folder}")
    for name, rec in prov.items():
        if isinstance(rec, dict) and "date" in rec:
            print(f"  {name:<22} {rec.get('date')}  commit {rec.get('commit')}  device {rec.get('device')}  "
                  f"seed {rec.get('seed')}  {rec.get('seconds', '?')} s")

    metrics = folder / "train-metrics.csv"
    if metrics.exists():
        m = pd.read_csv(metrics)
        first, last = m["loss"].head(50).mean(), m["loss"].tail(50).mean()
        per_res = m.groupby("res")["seconds"].median()
        print(f"\n== training: {len(m)} steps; mean loss first 50 {first:.4f}, last 50 {last:.4f} "
              f"(ratio {last / first:.2f}); median s/step " + ", ".join(f"{r} px {s:.2f}" for r, s in per_res.items()))
        for lo in range(0, len(m), max(1, len(m) // 10)):
            chunk = m.iloc[lo: lo + max(1, len(m) // 10)]
            print(f"  steps {int(chunk['step'].iloc[0]):>5}-{int(chunk['step'].iloc[-1]):<5} mean loss "
                  f"{chunk['loss'].mean():.4f}")

    table = LatencyTable.load(folder / DEFAULT_TABLE, space)
    v = table.meta.get("validation", {})
    print(f"\n== latency table ({table.device}, {len(table.rows)} block rows, statistic {table.statistic}, "
          f"correction {table.correction})")
    for key in ("block_sum", "corrected_loo", "corrected_in_sample"):
        if key in v:
            r = v[key]
            print(f"  {key:<20} median APE {r['median_ape']:.1f} %  p90 {r['p90_ape']:.1f} %  "
                  f"max {r['max_ape']:.1f} %  Spearman {r['spearman']:.3f}  (n = {v.get('n')})")
    if "largest_ms" in v:
        print(f"  measured at {v.get('largest_smallest_res')} px: largest {v['largest_ms']:.0f} ms, "
              f"smallest {v['smallest_ms']:.0f} ms")

    fvd, meta = read_fvd_table(folder / FVD_TABLE, space)
    print(f"\n== sampled-FVD table: {len(fvd)} rows, extractor {fvd['extractor'].iloc[0]}, "
          f"{int(fvd['n_videos'].iloc[0])} videos x {int(fvd['steps'].iloc[0])} DDIM steps per subnet; "
          f"noise-floor tau {meta.get('noise_floor_tau')}")
    for res, df in fvd.groupby("res"):
        print(f"  {res:>4} px: {len(df)} subnets, FVD {df['fvd'].min():.1f}-{df['fvd'].max():.1f}, "
              f"KVD {df['kvd'].min():.3f}-{df['kvd'].max():.3f}")

    predictor = AccuracyPredictor.load(folder / PREDICTOR)
    print(f"\n== predictor: chosen {predictor.kind} on {predictor.describe_target()}; CV: "
          + ", ".join(f"{k} {v:.3f}" for k, v in predictor.metrics.items() if isinstance(v, float)))
    print(predictor.candidate_table().to_string(index=False))

    result = run_search(SearchConfig(experiment=args.experiment, budget_ms=args.budget_ms))
    print(f"\n== fronts at {args.budget_ms:g} ms per step ({result.method})")
    for res, front in result.fronts.items():
        print(f"  {res:>4} px: {len(front)} subnets; latency {front['latency_ms'].min():.0f}-"
              f"{front['latency_ms'].max():.0f} ms; predicted FVD {front['fvd_pred'].max():.1f} -> "
              f"{front['fvd_pred'].min():.1f}" if len(front) else f"  {res:>4} px: empty")

    if args.png:
        import plotly.graph_objects as go

        fig = go.Figure()
        for res, front in result.fronts.items():
            pts = result.evaluated.get(res)
            if pts is not None and len(pts):
                fig.add_trace(go.Scatter(x=pts["latency_ms"], y=pts["fvd_pred"], mode="markers", opacity=0.25,
                                         marker={"size": 4}, name=f"{res} px, all subnets"))
            fig.add_trace(go.Scatter(x=front["latency_ms"], y=front["fvd_pred"], mode="lines+markers",
                                     line={"shape": "hv"}, name=f"{res} px front",
                                     error_y={"type": "data", "array": np.asarray(front["fvd_std"])}))
        fig.add_vline(x=args.budget_ms, line_dash="dash", annotation_text=f"{args.budget_ms:g} ms budget")
        fig.update_layout(title=f"{space.name}: predicted FVD vs latency per denoising step ({table.device})",
                          xaxis_title="latency per step, ms", yaxis_title="predicted FVD",
                          width=900, height=520, template="plotly_white")
        fig.write_image(args.png)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
