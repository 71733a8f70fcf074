"""``sned data synth``: write the procedural video dataset (:mod:`sned.supernet.synth`).

    sned data synth --out DIR [--n N] [--frames T] [--size S] [--seed K] [--fps F]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

# How this CLI spells the settings that sned.supernet.synth's errors name.
SETTING_FLAGS = {"out": "--out", "n": "--n", "frames": "--frames", "size": "--size", "seed": "--seed", "fps": "--fps"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned data synth ...`` options."""
    parser.add_argument("action", choices=["synth"], help="synth: write a procedural video dataset")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (new, empty, or one to resume)")
    parser.add_argument("--n", type=int, default=240, help="number of videos (default 240, 40 per class)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate stored in the files (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``sned data synth`` and print a one-line summary."""
    from sned.supernet.synth import CLASS_NAMES, write_dataset

    began = time.perf_counter()
    paths, written = write_dataset(args.out, args.n, args.frames, args.size, args.seed, args.fps, not args.quiet)
    print(f"{args.out}: {len(paths)} videos in {min(len(paths), len(CLASS_NAMES))} classes, "
          f"{args.frames} frames of {args.size}x{args.size} ({written} written, {len(paths) - written} already there)"
          f" in {time.perf_counter() - began:.1f} s")
    return 0
