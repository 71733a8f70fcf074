"""``sned evaluate``: sampled FVD/KVD of subnets of a supernet checkpoint, run as Ray Tune trials.

    sned evaluate EXPERIMENT --ckpt RUN --data REAL_DIR --out TABLE.parquet [--res 32,64|all]
        [--n-subnets K] [--videos V] [--steps S] [--seed K] [--i3d PATH | --features DIR] [--address ADDR]
        [--gpus-per-trial G] [--cpus-per-trial C] [--concurrency N] [--noise-floor M|all]
        [--held-out N] [--resume]

A thin wrapper: parse into :class:`~sned.predictors.evaluate.EvaluateConfig`, call
:func:`~sned.predictors.evaluate.evaluate` (the method is described there), print the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from sned.predictors.evaluate_select import DEFAULT_SUBNETS, parse_noise_floor
from sned.predictors.evaluate_table import NOISE_COLUMNS
from sned.predictors.evaluate_trials import DEFAULT_HELD_OUT, peak_concurrency
from sned.supernet.base.errors import UserError
from sned.supernet.space import arch_summary

if TYPE_CHECKING:
    from sned.predictors.evaluate import EvaluateResult

# How this CLI spells the EvaluateConfig fields that library errors name.
SETTING_FLAGS = {"checkpoint": "--ckpt", "data": "--data", "out": "--out", "resolutions": "--res",
                 "n_subnets": "--n-subnets", "videos": "--videos", "real_videos": "--real-videos", "steps": "--steps",
                 "eta": "--eta", "batch_size": "--batch-size", "seed": "--seed", "i3d": "--i3d", "features": "--features",
                 "address": "--address", "gpus_per_trial": "--gpus-per-trial", "cpus_per_trial": "--cpus-per-trial",
                 "concurrency": "--concurrency", "noise_floor": "--noise-floor", "held_out": "--held-out",
                 "pca_dim": "--pca-dim", "resume": "--resume"}


def _parse_resolutions(text: str | None) -> tuple[int, ...] | None:
    if text is None or text.strip().lower() == "all":
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--res {text!r}: expected comma-separated resolutions like 32,64 or 'all'") from None
    if not values:
        raise UserError(f"--res {text!r}: expected comma-separated resolutions like 32,64 or 'all'")
    return tuple(dict.fromkeys(values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned evaluate`` options."""
    parser.add_argument("experiment", help="experiment name (tiny, latent, ...) or YAML path")
    parser.add_argument("--ckpt", required=True, help="run folder (its newest checkpoint) or checkpoint folder")
    parser.add_argument("--data", required=True, help="folder of real videos (searched recursively)")
    parser.add_argument("--out", required=True, help="the sampled-FVD table to write (.parquet)")
    parser.add_argument("--res", help="resolutions, e.g. 32,64, or 'all' (default all)")
    parser.add_argument("--n-subnets", type=int, default=DEFAULT_SUBNETS,
                        help=f"subnets per resolution, largest and smallest included (default {DEFAULT_SUBNETS})")
    parser.add_argument("--videos", type=int, help="generated videos per trial (default: the experiment's sample.n)")
    parser.add_argument("--real-videos", type=int, help="real clips per resolution (default: --videos)")
    parser.add_argument("--pca-dim", type=int, help="FVD in the real features' top-k principal directions "
                        "(k < --videos; default: every feature dimension)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the experiment's sample.steps)")
    parser.add_argument("--eta", type=float, help="DDIM eta (default: sample.eta, usually 0)")
    parser.add_argument("--batch-size", type=int, help="videos per forward, generation and I3D (default: "
                        "sample.batch_size)")
    parser.add_argument("--seed", type=int, default=0, help="generation, clip and selection seed (default 0)")
    parser.add_argument("--i3d", metavar="PATH", help="I3D weights (default: $SNED_I3D_WEIGHTS, else a random-init "
                        "I3D, whose FVDs only compare with each other)")
    parser.add_argument("--features", metavar="DIR", help="domain classifier from `sned features train` instead of "
                        "I3D (features domain:<sha12>; also fills the inception_score column)")
    parser.add_argument("--address", help="Ray cluster address (auto, ray://host:10001); default: local Ray")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default 0: CPU)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    parser.add_argument("--concurrency", type=int, help="most trials at a time (default: as resources allow)")
    parser.add_argument("--noise-floor", default="0", metavar="M|all",
                        help="evaluate every subnet ('all') or M per resolution a second time, independently "
                             "(seed+1, another real subset and held-out set); Kendall tau -> metadata (default 0)")
    parser.add_argument("--held-out", type=int, default=DEFAULT_HELD_OUT, metavar="N",
                        help=f"real clips per resolution for the held-out loss column (default {DEFAULT_HELD_OUT}, "
                             "at most the folder's videos)")
    parser.add_argument("--resume", action="store_true", help="continue an existing table; finished trials are "
                        "skipped")


def _print_summary(result: EvaluateResult) -> None:
    from sned.predictors.quality_table import read_fvd_table

    s = result.settings
    print(f"table {result.table}: {s['extractor']} features ({'random-init, FVDs only compare with each other' if s['extractor'].startswith('i3d-random') else s['extractor_sha256'][:12]}), "
          f"{s['videos']} videos x {s['steps']} DDIM steps, seed {s['seed']}")
    print(f"trials: {result.planned} run, {result.skipped} already done, {len(result.failed)} failed")
    if not result.rows.empty:
        df = result.rows.sort_values(["res", "gflops"])
        df = df.assign(subnet=[arch_summary(json.loads(a)) for a in df["arch"]])
        scores = ["fvd", "kvd"] + [c for c in ("inception_score", "loss")
                                   if df.get(c) is not None and df[c].notna().any()]
        print(df[["arch_id", "subnet", "gflops", *scores, "seconds"]].to_string(
            index=False, float_format=lambda v: f"{v:.4g}"))
        everything = result.all_rows if not result.all_rows.empty else df
        loss_time = (f", held-out loss {df['loss_seconds'].mean():.1f} s" if "loss_seconds" in df
                     and df["loss_seconds"].notna().any() else "")
        print(f"time per trial: mean {df['seconds'].mean():.1f} s (generate {df['generate_seconds'].mean():.1f} s, "
              f"I3D + FVD {df['features_seconds'].mean():.1f} s{loss_time}); at most "
              f"{peak_concurrency(everything['started_at'], everything['seconds'])} trials at a time on "
              f"{everything['worker'].nunique()} workers; wall {result.wall_seconds:.1f} s")
    if result.table.is_file():
        table, meta = read_fvd_table(result.table)
        print(f"table rows: {len(table)}")
        columns = (meta.get("noise_floor") or {}).get("columns", {})
        for column in NOISE_COLUMNS:
            entry = columns.get(column) or {}
            if entry.get("tau") is None:
                continue
            print(f"noise-floor tau of {column} (two independent passes: seed {s['seed']} vs {s['noise_seed']}, "
                  f"other real clips): {entry['tau']:.3f} "
                  f"(per res: {', '.join(f'{r}: {t:.3f}' for r, t in entry['tau_res'].items())})")
    for failure in result.failed:
        print(f"failed: {failure}", file=sys.stderr)
    if result.failed:
        print("rerun with --resume to retry the failed trials", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``sned evaluate``; exit 1 when some trials failed (the table holds the rest)."""
    from sned.predictors.evaluate import EvaluateConfig, evaluate

    cfg = EvaluateConfig(
        experiment=args.experiment, checkpoint=args.ckpt, data=args.data, out=args.out,
        resolutions=_parse_resolutions(args.res), n_subnets=args.n_subnets, videos=args.videos,
        real_videos=args.real_videos, steps=args.steps, eta=args.eta, batch_size=args.batch_size, seed=args.seed,
        i3d=args.i3d, features=args.features, address=args.address, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        concurrency=args.concurrency, noise_floor=parse_noise_floor(args.noise_floor), held_out=args.held_out,
        pca_dim=args.pca_dim, resume=args.resume,
        progress=os.environ.get("TQDM_DISABLE") not in ("1", "true"))
    result = evaluate(cfg)
    _print_summary(result)
    return 1 if result.failed else 0
