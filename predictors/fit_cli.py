"""``sned fit TABLE --out PREDICTOR``: fit an accuracy (FVD) predictor on a sampled-FVD table.

Cross-validates the candidate models (ridge, GP, gradient-boosted trees, MLP ensemble) on log(FVD)
and on FVD, prints their Kendall tau / Spearman rho / RMSE beside the table's noise-floor tau, picks
the best tau, refits it on every row and writes it as a numpy-only ``.npz`` predictor.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from sned.predictors.accuracy import MODELS, TARGETS, AccuracyPredictor, check_table_space, read_fvd_table
from sned.supernet.errors import UserError
from sned.supernet.space import load_space


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="sampled-FVD table (parquet, from sned evaluate)")
    parser.add_argument("--out", required=True, help="where to write the predictor (.npz)")
    parser.add_argument("--experiment", default=None,
                        help="bundled experiment name or YAML path (default: the table's recorded space)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (grouped by arch)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the folds and every model")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--targets", default=None,
                        help=f"comma-separated subset of {','.join(TARGETS)} (default: both if every FVD > 0)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint sha256 (or prefix) to fit on, when the table holds several")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    df, meta = read_fvd_table(args.table)
    experiment = args.experiment or meta.get("space")
    if not experiment:
        raise UserError(f"{args.table}: the table does not record its experiment; pass --experiment")
    try:
        space = load_space(experiment)
    except FileNotFoundError as exc:
        raise UserError(f"{exc}; pass --experiment with the YAML of the table's space") from None
    check_table_space(meta, space, str(args.table))
    predictor = AccuracyPredictor.fit(
        space, df, folds=args.folds, seed=args.seed, models=args.models.split(","),
        targets=args.targets.split(",") if args.targets else None, checkpoint=args.checkpoint, table_meta=meta,
        command=shlex.join(["sned", "fit", *sys.argv[2:]]) if sys.argv[1:2] == ["fit"] else shlex.join(sys.argv),
        progress=not args.quiet)
    table = predictor.info["table"]
    print(f"table {args.table}: {table['rows']} rows, {table['archs']} archs, res {table['resolutions']}, "
          f"space {space.name} ({space.hash}), extractor {table['extractor']}, "
          f"checkpoint {table['checkpoint_sha256'][:12]}")
    cv = predictor.info["cv"]
    print(f"{cv['folds']}-fold CV grouped by arch (seed {cv['seed']}); metrics on out-of-fold predictions in FVD "
          f"units; target 'log' fits log(FVD); chosen by Kendall tau")
    candidates = predictor.candidate_table()
    candidates["chosen"] = candidates["chosen"].map({True: "*", False: ""})
    print(candidates.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    floor = meta.get("noise_floor_tau")
    print(f"noise-floor tau (two evaluation seeds): {floor:.4f}" if floor is not None
          else "noise-floor tau: not recorded in the table")
    m = predictor.metrics
    print(f"chosen: {predictor.kind} on {'log(FVD)' if predictor.target == 'log' else 'FVD'}: tau {m['tau']:.4f}, "
          f"rho {m['rho']:.4f}, rmse {m['rmse']:.3f} FVD")
    path = predictor.save(args.out)
    print(f"wrote {path} (space {predictor.space_hash}, table sha256 {meta['sha256'][:16]})")
    return 0
