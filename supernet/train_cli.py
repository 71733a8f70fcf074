"""``sned-train`` / ``sned train``: superposition training of the elastic supernet.

    sned-train EXPERIMENT --data DIR --out RUN [--steps N] [--seed K] [--resume] [--workers N]

A thin wrapper: parse into :class:`~sned.supernet.train_plan.TrainSettings`, call
:func:`~sned.supernet.train.train`, print a summary (steps, loss, seconds per step, held-out loss).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence

from sned.supernet.base.command import run_command

# How this CLI spells the TrainSettings fields that library errors name.
SETTING_FLAGS = {"data": "--data", "out": "--out", "steps": "--steps", "seed": "--seed",
                 "resume": "--resume", "workers": "--workers", "device": "--device", "vae": "--vae",
                 "latents": "--latents"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned-train`` / ``sned train`` options."""
    parser.add_argument("experiment", help="bundled experiment name (tiny, pixel-1.6b) or a YAML path")
    parser.add_argument("--data", required=True, help="folder of training videos (e.g. from `sned data synth`)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, tb/)")
    parser.add_argument("--steps", type=int, help="total steps (default: the experiment's train.steps)")
    parser.add_argument("--seed", type=int, help="run seed (default 0; a resumed run keeps its own)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's newest checkpoint")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel ranks under Ray Train (default 1)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--vae", help="latent experiments: the video autoencoder folder (`sned vae train`, or a "
                                      "diffusers save_pretrained folder; default: the bundled experiment's vae/)")
    parser.add_argument("--latents", help="latent experiments: the latent cache folder (default: RUN/latents)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train and print a summary: steps, loss, seconds per step per resolution, the checkpoint."""
    from sned.supernet.train import TrainSettings, read_metrics, read_validation, seconds_per_step, train

    settings = TrainSettings(args.experiment, args.data, args.out, args.steps, args.seed, args.resume,
                             args.workers, args.device, progress=not args.quiet, vae=args.vae, latents=args.latents)
    result = train(settings)
    rows = [r for r in read_metrics(result.out) if r["step"] > result.start_step]
    speed = ", ".join(f"{res}px {s:.2f} s (n={n})" for res, (s, n) in seconds_per_step(rows).items())
    tail = result.losses[-50:]
    print(f"trained steps {result.start_step + 1}..{result.end_step} in {result.seconds:.1f} s; "
          f"mean loss of the last {len(tail)} steps {statistics.fmean(tail):.4f}" if tail else "no steps run")
    print(f"median seconds per step: {speed}")
    val = read_validation(result.out)
    last = max((r["step"] for r in val), default=0)
    for res in sorted({r["res"] for r in val}):
        per = {(r["subnet"], r["t"]): r["loss"] for r in val if r["res"] == res and r["step"] in (0, last)}
        cells = [f"{name} " + "/".join(f"{per[(name, t)]:.3f}" for t in sorted({t for _, t in per}) if (name, t) in per)
                 for name in ("largest", "smallest", "per_pixel", "zero") if any(k[0] == name for k in per)]
        print(f"held-out loss at {res} px, step {last} (t = 50/200/500/800): " + "; ".join(cells))
    print(f"checkpoint: {result.checkpoint}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """The ``sned-train`` console script."""
    sys.exit(run_command(__name__, "sned-train", sys.argv[1:] if argv is None else argv,
                         "train the supernet (superposition over widths, depths, resolutions)"))


if __name__ == "__main__":  # pragma: no cover
    main()
