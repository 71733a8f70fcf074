"""``sned fvd REAL FAKE``: FVD and KVD between two video folders or feature files.

REAL and FAKE are each a folder of videos (searched recursively) or an ``.npz`` feature file from
``--save-features``. Features come from I3D (``--i3d PATH`` or ``$SNED_I3D_WEIGHTS``); without
weights a random-init I3D is used and every output says so: its scores only compare with each other.
Nothing is downloaded. The FVD network is the Kinetics-400 I3D (TATS's ``i3d_pretrained_400.pt`` or
StyleGAN-V's ``i3d_torchscript.pt``); pytorch-i3d's ``rgb_imagenet.pt`` is a different network.
``comparable_to_published`` is true only for a file whose sha256 is listed in
``sned.predictors.fvd.PUBLISHED_I3D_WEIGHTS``, run with its published BatchNorm epsilon; any other
file is ``i3d:<sha12>`` (user-supplied weights). TATS-layout files (no ``num_batches_tracked``) run
with BatchNorm eps 1e-5 as in TATS/LVDM; ``--i3d-bn-eps 1e-3`` forces piergiaj's / TF's epsilon.

``--features DIR`` uses a domain classifier trained by ``sned features train`` instead of I3D (named
``domain:<sha12>``; for data I3D's Kinetics features do not fit, and offline, where no I3D weights
exist) and also prints the Inception Score of FAKE from its class probabilities. A video folder
with class sub-folders must have the classifier's classes (another dataset's features do not fit).

Examples::

    sned fvd data/ucf101 runs/samples --i3d i3d_pretrained_400.pt --save-features ucf_real.npz
    sned fvd ucf_real.npz runs/samples2 --i3d i3d_pretrained_400.pt --json
    sned fvd data/synth runs/samples --features runs/features --frames 8
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sned.predictors.fvd import (
    COVARIANCE_KINDS,
    FeatureSet,
    frechet_distance,
    inception_score,
    is_comparable_to_published,
    kernel_distance,
    load_features,
    save_features,
)
from sned.supernet.base.errors import UserError

SETTING_FLAGS = {"i3d": "--i3d", "features": "--features", "device": "--device"}  # this CLI's spelling of settings

RANDOM_NOTE = "FVD (random I3D features; not comparable to published FVD)"
UNPUBLISHED_NOTE = "FVD (weights not a known published FVD network; not comparable to published FVD)"
DOMAIN_NOTE = "FVD (domain classifier features; not comparable to published FVD)"
DOMAIN_PREFIX = "domain:"  # names of `sned features train` extractors (sned.predictors.features.NAME_PREFIX)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("real", help="folder of real videos, or an .npz feature file")
    parser.add_argument("fake", help="folder of generated videos, or an .npz feature file")
    parser.add_argument("--n", type=int, default=2048, help="use at most N videos per set, a random subset (default 2048)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the video subsets and KVD subsets (default 0)")
    parser.add_argument("--i3d", metavar="PATH", help="I3D weights: pytorch-i3d state dict or StyleGAN-V TorchScript "
                        "(default: $SNED_I3D_WEIGHTS, else a random-init I3D)")
    parser.add_argument("--i3d-bn-eps", type=float, metavar="EPS",
                        help="BatchNorm epsilon of a state-dict I3D (default: 1e-5 for TATS-layout files, i.e. "
                        "without num_batches_tracked, as TATS/VideoGPT/LVDM/cd-fvd run them; 1e-3 otherwise); "
                        "pass 1e-3 for piergiaj's pytorch-i3d checkpoints")
    parser.add_argument("--features", metavar="DIR",
                        help="use the domain classifier in DIR (from `sned features train`) instead of I3D; "
                        "also prints the Inception Score of FAKE")
    parser.add_argument("--is-splits", type=int, default=10, metavar="K",
                        help="Inception Score splits (default 10, at most the number of FAKE videos)")
    parser.add_argument("--device", default="auto", help="torch device for the feature network (I3D or --features): auto (cuda if present), cpu, cuda, ...")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per forward pass of the feature network (default 8)")
    parser.add_argument("--frames", type=int, help="use only the first F frames of each video (default: all)")
    parser.add_argument("--cov", choices=COVARIANCE_KINDS, default="unbiased",
                        help="covariance: unbiased (N-1; TF-GAN, clean-fid) or biased (1/N; StyleGAN-V)")
    parser.add_argument("--pca-dim", type=int, metavar="K",
                        help="FVD in the REAL set's top K principal axes (for sets of fewer videos than feature "
                        "dimensions; compares only with FVDs of the same K and REAL set, never with published ones)")
    parser.add_argument("--kvd-subsets", type=int, metavar="K",
                        help="average KVD over K random subsets (clean-fid KID style); default: full sets")
    parser.add_argument("--kvd-subset-size", type=int, default=1000, help="KVD subset size (default 1000)")
    parser.add_argument("--save-features", metavar="PATH", help="write the REAL set's features to this .npz, for reuse")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


@dataclass
class _Input:
    """One side of the comparison: a video folder (paths) or a loaded feature file."""

    label: str
    path: Path
    videos: list[Path] | None = None
    cached: FeatureSet | None = None

    @property
    def count(self) -> int:
        return len(self.videos) if self.videos is not None else len(self.cached.features)  # type: ignore[union-attr]


def _resolve(label: str, raw: str, n: int, seed: int) -> _Input:
    path = Path(raw)
    if path.is_dir():
        from sned.predictors.i3d import select_videos

        side = _Input(label, path, videos=select_videos(path, n, seed))
    elif path.is_file() and path.suffix == ".npz":
        cached = load_features(path)
        if len(cached.features) > n:
            keep = np.sort(np.random.default_rng(seed).choice(len(cached.features), size=n, replace=False))
            cached = FeatureSet(cached.features[keep], cached.extractor, cached.weights_sha256, cached.source)
        side = _Input(label, path, cached=cached)
    elif not path.exists():
        raise FileNotFoundError(f"{label}: no such folder or feature file: {path}")
    else:
        raise UserError(f"{label} must be a folder of videos or an .npz feature file; got {path}")
    if side.count < 2:
        raise UserError(f"{label} ({path}) has {side.count} video; FVD/KVD need at least 2")
    return side


def run(args: argparse.Namespace) -> int:
    if args.n < 2:
        raise UserError(f"--n must be >= 2; got {args.n}")
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be >= 1; got {args.frames}")
    if args.kvd_subsets is not None and args.kvd_subsets < 1:
        raise UserError(f"--kvd-subsets must be >= 1; got {args.kvd_subsets}")
    if args.is_splits < 1:
        raise UserError(f"--is-splits must be >= 1; got {args.is_splits}")
    if args.features is not None and (args.i3d is not None or args.i3d_bn_eps is not None):
        raise UserError("--features replaces I3D: drop --i3d / --i3d-bn-eps, or drop --features")
    real = _resolve("REAL", args.real, args.n, args.seed)
    fake = _resolve("FAKE", args.fake, args.n, args.seed)

    # 1. The extractor's identity: built when a folder needs features (or --features names it), else
    #    taken from the files.
    if args.features is not None:
        import torch

        from sned.predictors.features import DomainFeatureExtractor
        from sned.predictors.features_card import check_classes

        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        extractor = DomainFeatureExtractor(args.features, device=device, batch_size=args.batch_size)
        for side in (real, fake):
            if side.videos is not None:
                check_classes(extractor.card, side.path, where=f"the features in {args.features}")
        name, sha256 = extractor.name, extractor.weights_sha256
    elif real.videos is not None or fake.videos is not None:
        import torch

        from sned.predictors.i3d import I3DFeatureExtractor

        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        extractor = I3DFeatureExtractor(args.i3d, device=device, batch_size=args.batch_size, bn_eps=args.i3d_bn_eps)
        name, sha256 = extractor.name, extractor.weights_sha256
    else:
        extractor = None
        name, sha256 = real.cached.extractor, real.cached.weights_sha256  # type: ignore[union-attr]
        if args.i3d_bn_eps is not None:
            raise UserError(f"--i3d-bn-eps applies when I3D runs; both inputs are feature files, made by {name}: "
                            "drop the option")
    for side in (real, fake):
        if side.cached is not None:
            side.cached.check_extractor(name, sha256, label=f"{side.label} features ({side.path})")

    # 2. Features (cached or extracted); class probabilities of FAKE where the extractor has them.
    features = {}
    probabilities = None
    for side in (real, fake):
        if side.cached is not None:
            features[side.label] = side.cached.features
        elif side.label == "FAKE" and hasattr(extractor, "features_and_probabilities_from_paths"):
            features[side.label], probabilities = extractor.features_and_probabilities_from_paths(  # type: ignore[union-attr]
                side.videos, num_frames=args.frames, progress=True)
        else:
            assert extractor is not None and side.videos is not None
            features[side.label] = extractor.features_from_paths(side.videos, num_frames=args.frames, progress=True)
    if args.save_features:
        save_features(args.save_features, features["REAL"], name, sha256, source=str(real.path))

    # 3. Scores.
    fvd = frechet_distance(features["REAL"], features["FAKE"], cov=args.cov, pca_dim=args.pca_dim)
    kvd = kernel_distance(features["REAL"], features["FAKE"], subsets=args.kvd_subsets,
                          subset_size=args.kvd_subset_size, seed=args.seed)
    is_random = name.startswith("i3d-random")
    is_comparable = is_comparable_to_published(name, sha256)
    is_splits = min(args.is_splits, len(probabilities)) if probabilities is not None else None
    score = inception_score(probabilities, splits=is_splits) if probabilities is not None else None
    result = {
        "fvd": fvd,
        "kvd": kvd,
        "extractor": name,
        "weights_sha256": sha256,
        "comparable_to_published": is_comparable and args.pca_dim is None,
        "cov": args.cov,
        "pca_dim": args.pca_dim,
        "kvd_subsets": args.kvd_subsets,
        "kvd_subset_size": args.kvd_subset_size if args.kvd_subsets else None,
        "n_real": int(len(features["REAL"])),
        "n_fake": int(len(features["FAKE"])),
        "real": str(real.path),
        "fake": str(fake.path),
        "seed": args.seed,
        "inception_score": score[0] if score else None,
        "inception_score_std": score[1] if score else None,
        "inception_score_splits": is_splits,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"extractor  {name}  (weights sha256 {sha256})")
    if extractor is not None:
        print(f"           {extractor.description}")
    print(f"real       {result['n_real']} videos  {real.path}")
    print(f"fake       {result['n_fake']} videos  {fake.path}")
    label = RANDOM_NOTE if is_random else "FVD" if is_comparable else \
        DOMAIN_NOTE if name.startswith(DOMAIN_PREFIX) else UNPUBLISHED_NOTE
    if args.pca_dim is not None:
        label = f"FVD in the REAL set's top {args.pca_dim} principal axes (not comparable to published FVD)"
    print(f"{label}  {fvd:.4f}")
    kvd_how = f"mean over {args.kvd_subsets} subsets of {min(args.kvd_subset_size, result['n_real'], result['n_fake'])}" \
        if args.kvd_subsets else "full sets"
    print(f"KVD  {kvd:.6f}  (unbiased MMD^2, cubic polynomial kernel, {kvd_how})")
    if score is not None:
        print(f"IS   {score[0]:.4f} +- {score[1]:.4f}  (FAKE, {probabilities.shape[1]} classes, "  # type: ignore[union-attr]
              f"mean and std over {is_splits} splits of {len(probabilities) // is_splits}+ videos; "  # type: ignore[arg-type]
              f"compares only with {name} scores at equal split sizes)")
    if args.save_features:
        print(f"saved REAL features to {args.save_features}")
    return 0
