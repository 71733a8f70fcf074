"""``sned pipeline EXPERIMENT``: every stage from videos to Pareto fronts, resumable, with provenance.

    sned pipeline EXPERIMENT [--stages data,features,...] [--force STAGES] [--out DIR] [--device D] [--bundle]

A thin wrapper over :func:`sned.search.pipeline.run_pipeline` (the stages, their outputs and the
resume rules are described there) and :func:`sned.search.pipeline.bundle`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sned.search.pipeline import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="bundled experiment name (tiny) or a YAML path")
    parser.add_argument("--out", default=None, help="output folder (default: runs/pipeline-<experiment>)")
    parser.add_argument("--stages", default=None, help=f"comma-separated subset of {','.join(STAGES)} (default: every "
                                                       "stage of the experiment; vae and latents are latent-only)")
    parser.add_argument("--force", default="", help="stages to redo even if done (comma-separated)")
    parser.add_argument("--device", default="cpu", help="device for training, latency and evaluation")
    parser.add_argument("--bundle", action="store_true",
                        help="afterwards, copy the latency table, FVD table and predictor into experiments/<name>/")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from sned.search.pipeline import bundle, run_pipeline

    stages = None if args.stages is None else [s.strip() for s in args.stages.split(",") if s.strip()]
    force = [s.strip() for s in args.force.split(",") if s.strip()]
    name = Path(args.experiment).stem
    out = Path(args.out or f"runs/pipeline-{name}")
    start = time.perf_counter()
    records = run_pipeline(args.experiment, out, stages, device=args.device, force=force, progress=not args.quiet,
                           log=print)
    print(f"pipeline {name}: {', '.join(records)} finished in {(time.perf_counter() - start) / 60:.1f} min; "
          f"outputs in {out}")
    if args.bundle:
        print(f"bundled artifacts into {bundle(args.experiment, out, args.device)}")
    return 0
