"""``sned export``: a standalone subnet (safetensors + config.json) from a search run and a checkpoint.

    sned export RUN/pareto.json --id ARCH_ID --ckpt CKPT --out DIR

A thin wrapper over :func:`sned.supernet.export.find_front_member` and
:func:`sned.supernet.export.export_subnet`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETTING_FLAGS = {"ema": "without --raw"}  # how this CLI spells the settings library errors name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pareto", help="a search run's pareto.json (or the run folder)")
    parser.add_argument("--id", required=True, dest="arch_id", help="arch id from the front")
    parser.add_argument("--ckpt", required=True, help="supernet checkpoint: run folder, checkpoint folder, or a bundled "
                        "experiment's name (tiny: experiments/tiny/supernet)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA weights")


def run(args: argparse.Namespace) -> int:
    from sned.supernet.export import CONFIG, export_subnet, find_front_member

    arch, row = find_front_member(args.pareto, args.arch_id)
    predicted = {k: row[k] for k in ("latency_ms", "fvd_pred", "fvd_std", "loss_pred", "loss_std", "params", "gflops") if k in row}
    out = export_subnet(args.ckpt, arch, args.out, ema=not args.raw,
                        extra={"search_run": str(Path(args.pareto).resolve()), "predicted": predicted})
    config = json.loads((out / CONFIG).read_text())
    print(f"exported {config['arch_id']} ({config['params'] / 1e6:.2f} M params, {arch['res']} px) to {out}; "
          f"sample with: sned sample {out} --n 4 --out {out}/samples")
    return 0
