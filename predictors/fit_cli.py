"""``sned fit TABLE --out PREDICTOR``: fit an accuracy predictor on a sampled-quality table, honestly.

Candidates (ridge, GP, gradient-boosted trees, MLP ensemble, each on the target and on its log) are
chosen on the within-resolution Kendall tau by an inner CV; nested CV grouped by stage configuration
scores that whole selection on outer folds it never saw, beside the baselines (resolution only;
resolution + log FLOPs; log params) on the same folds. Prints both tables, says whether the chosen
model beats the best baseline, refits the choice on every row and writes a numpy-only ``.npz``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from sned.predictors.accuracy import MODELS, TRANSFORMS, AccuracyPredictor, check_table_space, read_fvd_table
from sned.predictors.quality_table import noise_floor_of
from sned.supernet.base.errors import UserError
from sned.supernet.space import load_space

SETTING_FLAGS = {"checkpoint": "--checkpoint", "transforms": "--transforms"}  # how this CLI spells library settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="sampled-quality table (parquet, from sned evaluate)")
    parser.add_argument("--out", required=True, help="where to write the predictor (.npz)")
    parser.add_argument("--experiment", default=None,
                        help="bundled experiment name or YAML path (default: the table's recorded space)")
    parser.add_argument("--target", default="fvd",
                        help="the column to predict: fvd (default), kvd, loss, or any numeric column of the table")
    parser.add_argument("--folds", type=int, default=5,
                        help="outer cross-validation folds (grouped by stage configuration); they only score")
    parser.add_argument("--inner-folds", type=int, default=3,
                        help="inner cross-validation folds, which choose the model (on each outer-train part)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the folds, every model and the bootstrap")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--transforms", default=None,
                        help=f"comma-separated subset of {','.join(TRANSFORMS)} (default: both if every target "
                             "value > 0)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint sha256 (or prefix) to fit on, when the table holds several")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    df, meta = read_fvd_table(args.table, target=args.target)
    experiment = args.experiment or meta.get("space")
    if not experiment:
        raise UserError(f"{args.table}: the table does not record its experiment; pass --experiment")
    try:
        space = load_space(experiment)
    except FileNotFoundError as exc:
        raise UserError(f"{exc}; pass --experiment with the YAML of the table's space") from None
    check_table_space(meta, space, str(args.table))
    predictor = AccuracyPredictor.fit(
        space, df, target=args.target, folds=args.folds, inner_folds=args.inner_folds, seed=args.seed,
        models=args.models.split(","), transforms=args.transforms.split(",") if args.transforms else None,
        checkpoint=args.checkpoint, table_meta=meta,
        command=shlex.join(["sned", "fit", *sys.argv[2:]]) if sys.argv[1:2] == ["fit"] else shlex.join(sys.argv),
        progress=not args.quiet)
    print(report(predictor, str(args.table), meta))
    path = predictor.save(args.out)
    print(f"wrote {path} (space {predictor.space_hash}, table sha256 {meta['sha256'][:16]})")
    return 0


def report(predictor: AccuracyPredictor, table_name: str, meta: dict) -> str:
    """The text ``sned fit`` prints for a fitted predictor (everything but the final "wrote" line)."""
    import pandas as pd

    def number(value: float) -> str:
        return f"{value:.4f}"

    info, m = predictor.info, predictor.metrics
    table, cv, comparison = info["table"], info["cv"], info["comparison"]
    space = predictor.space
    lines = [f"table {table_name}: {table['rows']} rows, {table['archs']} archs in {table['stage_configurations']} "
             f"stage configurations, res {table['resolutions']}, space {space.name} ({space.hash}), extractor "
             f"{table['extractor']}, checkpoint {table['checkpoint_sha256'][:12]}",
             f"target {predictor.target} ({table['target_range'][0]:.4g} to {table['target_range'][1]:.4g}); "
             f"metrics in {predictor.target} units; tau_res / rho_res: Kendall / Spearman within each resolution, "
             f"averaged; tau / rho: pooled over resolutions (never used to choose)",
             "",
             f"candidates: {cv['inner_folds']}-fold inner CV on all rows (chooses the final model by tau_res); "
             f"picked: outer folds whose inner CV chose it"]
    candidates = predictor.candidate_table()
    candidates["chosen"] = candidates["chosen"].map({True: "*", False: ""})
    lines.append(candidates.to_string(index=False, float_format=number))
    lines += ["",
              f"nested CV: {cv['folds']} outer folds grouped by stage configuration (seed {cv['seed']}); each outer "
              f"fold is predicted by a model chosen and fitted without it"]
    rows = [{"name": "selection procedure", **{k: m[k] for k in ("tau_res", "rho_res", "tau", "rho", "rmse")}}]
    rows += [{**row, "name": f"baseline: {row['name']}"} for row in info["baselines"]]
    lines.append(pd.DataFrame(rows).to_string(index=False, float_format=number))
    floor, per_res = noise_floor_of(meta, predictor.target)
    lines.append(f"noise-floor tau of {predictor.target} (two independent evaluation passes): "
                 + (f"{floor:.4f}" if floor is not None else "not recorded")
                 + (f" (per res: {', '.join(f'{r}: {t:.3f}' for r, t in per_res.items())})" if per_res else ""))
    lines.append(f"chosen: {predictor.kind} on {predictor.describe_target()} (inner CV on all rows), refitted on all "
                 f"rows; the procedure that chose it scores nested tau_res {m['tau_res']:.4f}, rho_res "
                 f"{m['rho_res']:.4f}, rmse {m['rmse']:.4g} (pooled tau {m['tau']:.4f}); outer-fold choices: "
                 f"{', '.join(cv['outer_choices'])}")
    if comparison.get("baseline") is not None:
        best = next(row for row in info["baselines"] if row["name"] == comparison["baseline"])
        verdict = "beats" if m["beats_baselines"] else "does NOT beat"
        lines.append(f"the selection procedure {verdict} the best baseline ({best['name']}, tau_res {best['tau_res']:.4f}): "
                     f"tau_res difference {comparison['difference']:+.4f}, bootstrap 5% lower bound "
                     f"{comparison['lower_bound']:+.4f} over {comparison['resamples']} resamples")
        if not m["beats_baselines"]:
            lines.append(f"warning: on this table the predictor ranks subnets of one resolution no better than the "
                         f"{best['name']} baseline; recorded as beats_baselines: false")
    return "\n".join(lines)
