"""``sned features``: train or inspect a domain video classifier whose features score FVD, KVD and IS.

    sned features train DATA --out DIR [--frames 8] [--size 32] [--epochs E] [--seed 0]
        [--val-fraction 0.2] [--widths 16,32,64,128] [--batch-size 16] [--device auto] [--quiet]
    sned features show DIR [--data DATA] [--json]

A thin wrapper over :func:`sned.predictors.features_training.train_features` and
:class:`sned.predictors.features.DomainFeatureExtractor` (the method is described there).
"""

from __future__ import annotations

import argparse
import json
import os

from sned.predictors.features_card import (
    DEFAULT_FRAMES,
    DEFAULT_SIZE,
    DEFAULT_WIDTHS,
    GROUPS,
    NAME_PREFIX,
    FeatureCard,
    check_classes,
)
from sned.supernet.base.errors import UserError

# How this CLI spells the FeatureTrainingConfig fields that library errors name.
SETTING_FLAGS = {"out": "--out", "frames": "--frames", "size": "--size", "epochs": "--epochs", "seed": "--seed",
                 "val_fraction": "--val-fraction", "widths": "--widths", "batch_size": "--batch-size",
                 "learning_rate": "--lr", "weight_decay": "--weight-decay", "device": "--device", "workers": "--workers"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned features {train,show}`` options."""
    from sned.predictors.features_training import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_EPOCHS,
        DEFAULT_LEARNING_RATE,
        DEFAULT_VAL_FRACTION,
        DEFAULT_WEIGHT_DECAY,
    )

    sub = parser.add_subparsers(dest="action", required=True, metavar="{train,show}")
    t = sub.add_parser("train", help="train a domain classifier on a folder of class sub-folders (resumable)")
    t.add_argument("data", help="video folder in UCF-101 layout: DATA/<class>/<video>")
    t.add_argument("--out", required=True, metavar="DIR", help="features folder to write (resumed if partial)")
    t.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"clip length (default {DEFAULT_FRAMES})")
    t.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help=f"frame size the network sees; inputs are resized to it (default {DEFAULT_SIZE})")
    t.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})")
    t.add_argument("--seed", type=int, default=0, help="split, weights and augmentation seed (default 0)")
    t.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help=f"share of each class held out for the accuracy (default {DEFAULT_VAL_FRACTION})")
    t.add_argument("--widths", default=",".join(map(str, DEFAULT_WIDTHS)),
                   help=f"stem and stage channels, multiples of {GROUPS}; the last is the feature dimension "
                        f"(default {','.join(map(str, DEFAULT_WIDTHS))})")
    t.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"clips per step (default {DEFAULT_BATCH_SIZE})")
    t.add_argument("--lr", type=float, default=DEFAULT_LEARNING_RATE,
                   help=f"AdamW peak learning rate (default {DEFAULT_LEARNING_RATE:g})")
    t.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY,
                   help=f"AdamW weight decay (default {DEFAULT_WEIGHT_DECAY:g})")
    t.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers reading clips (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("show", help="print a features folder's card and check its weights")
    s.add_argument("dir", metavar="DIR", help="a folder written by `sned features train`")
    s.add_argument("--data", help="also check that this video folder's classes are the card's")
    s.add_argument("--json", action="store_true", help="print the card as JSON")


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        widths = ()
    if not widths:
        raise UserError(f"--widths {text!r}: expected comma-separated integers like 16,32,64,128")
    return widths


def _summary(card: FeatureCard, name: str) -> str:
    accuracy = "no held-out videos" if card.heldout_accuracy is None else \
        f"held-out accuracy {card.heldout_accuracy:.3f} ({card.heldout_videos} videos)"
    return (f"{name}: {card.num_classes} classes, {card.feature_dim}-d features, {card.frames} frames at "
            f"{card.size} px; {accuracy}, train accuracy {card.train_accuracy:.3f}; {card.epochs} epochs in "
            f"{card.seconds:.1f} s")


def run(args: argparse.Namespace) -> int:
    """Run ``sned features train`` or ``sned features show``."""
    from sned.predictors.features import DomainFeatureExtractor

    if args.action == "show":
        extractor = DomainFeatureExtractor(args.dir)  # checks the weights against the card
        if args.data:
            check_classes(extractor.card, args.data, where=f"the features in {args.dir}")
        if args.json:
            print(json.dumps({"name": extractor.name, **extractor.card.to_dict()}, indent=2))
        else:
            print(_summary(extractor.card, f"{args.dir} ({extractor.name})"))
            print(f"classes: {', '.join(extractor.classes)}")
            print(f"data {extractor.card.data} (hash {extractor.card.data_hash[:12]}); made by: {extractor.card.command}")
        return 0
    from sned.predictors.features_training import FeatureTrainingConfig, train_features

    cfg = FeatureTrainingConfig(
        data=args.data, out=args.out, frames=args.frames, size=args.size, epochs=args.epochs, seed=args.seed,
        val_fraction=args.val_fraction, widths=_parse_widths(args.widths), batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=args.weight_decay, device=args.device, workers=args.workers,
        progress=not args.quiet and os.environ.get("TQDM_DISABLE") not in ("1", "true"))
    result = train_features(cfg)
    name = f"{NAME_PREFIX}:{result.card.weights_sha256[:12]}"
    how = " (already trained with these settings)" if result.is_reused else \
        f" (resumed after epoch {result.resumed_from_epoch})" if result.resumed_from_epoch else ""
    print(_summary(result.card, f"{result.out} ({name})") + how)
    return 0
