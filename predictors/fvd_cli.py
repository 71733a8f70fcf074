"""``sned fvd REAL FAKE``: FVD and KVD between two video folders or feature files.

REAL and FAKE are each a folder of videos (searched recursively) or an ``.npz`` feature file from
``--save-features``. Features come from I3D (``--i3d PATH`` or ``$SNED_I3D_WEIGHTS``); without
weights a random-init I3D is used and every output says so: its scores only compare with each other.
Nothing is downloaded. The FVD network is the Kinetics-400 I3D (TATS's ``i3d_pretrained_400.pt`` or
StyleGAN-V's ``i3d_torchscript.pt``); pytorch-i3d's ``rgb_imagenet.pt`` is a different network.

Examples::

    sned fvd data/ucf101 runs/samples --i3d i3d_pretrained_400.pt --save-features ucf_real.npz
    sned fvd ucf_real.npz runs/samples2 --i3d i3d_pretrained_400.pt --json
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
    kernel_distance,
    load_features,
    save_features,
)
from sned.supernet.errors import UserError

RANDOM_NOTE = "FVD (random I3D features; not comparable to published FVD)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("real", help="folder of real videos, or an .npz feature file")
    parser.add_argument("fake", help="folder of generated videos, or an .npz feature file")
    parser.add_argument("--n", type=int, default=2048, help="use at most N videos per set, a random subset (default 2048)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the video subsets and KVD subsets (default 0)")
    parser.add_argument("--i3d", metavar="PATH", help="I3D weights: pytorch-i3d state dict or StyleGAN-V TorchScript "
                        "(default: $SNED_I3D_WEIGHTS, else a random-init I3D)")
    parser.add_argument("--device", default="auto", help="torch device for I3D: auto (cuda if present), cpu, cuda, ...")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per I3D forward pass (default 8)")
    parser.add_argument("--frames", type=int, help="use only the first F frames of each video (default: all)")
    parser.add_argument("--cov", choices=COVARIANCE_KINDS, default="unbiased",
                        help="covariance: unbiased (N-1; TF-GAN, clean-fid) or biased (1/N; StyleGAN-V)")
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
    real = _resolve("REAL", args.real, args.n, args.seed)
    fake = _resolve("FAKE", args.fake, args.n, args.seed)

    # 1. The extractor's identity: built when a folder needs features, else taken from the files.
    if real.videos is not None or fake.videos is not None:
        import torch

        from sned.predictors.i3d import I3DFeatureExtractor

        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        extractor = I3DFeatureExtractor(args.i3d, device=device, batch_size=args.batch_size)
        name, sha256 = extractor.name, extractor.weights_sha256
    else:
        extractor = None
        name, sha256 = real.cached.extractor, real.cached.weights_sha256  # type: ignore[union-attr]
    for side in (real, fake):
        if side.cached is not None:
            side.cached.check_extractor(name, sha256, label=f"{side.label} features ({side.path})")

    # 2. Features (cached or extracted).
    features = {}
    for side in (real, fake):
        if side.cached is not None:
            features[side.label] = side.cached.features
        else:
            assert extractor is not None and side.videos is not None
            features[side.label] = extractor.features_from_paths(side.videos, num_frames=args.frames, progress=True)
    if args.save_features:
        save_features(args.save_features, features["REAL"], name, sha256, source=str(real.path))

    # 3. Scores.
    fvd = frechet_distance(features["REAL"], features["FAKE"], cov=args.cov)
    kvd = kernel_distance(features["REAL"], features["FAKE"], subsets=args.kvd_subsets,
                          subset_size=args.kvd_subset_size, seed=args.seed)
    is_random = name == "i3d-random"
    result = {
        "fvd": fvd,
        "kvd": kvd,
        "extractor": name,
        "weights_sha256": sha256,
        "comparable_to_published": not is_random,
        "cov": args.cov,
        "kvd_subsets": args.kvd_subsets,
        "kvd_subset_size": args.kvd_subset_size if args.kvd_subsets else None,
        "n_real": int(len(features["REAL"])),
        "n_fake": int(len(features["FAKE"])),
        "real": str(real.path),
        "fake": str(fake.path),
        "seed": args.seed,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"extractor  {name}  (weights sha256 {sha256})")
    print(f"real       {result['n_real']} videos  {real.path}")
    print(f"fake       {result['n_fake']} videos  {fake.path}")
    print(f"{RANDOM_NOTE if is_random else 'FVD'}  {fvd:.4f}")
    kvd_how = f"mean over {args.kvd_subsets} subsets of {min(args.kvd_subset_size, result['n_real'], result['n_fake'])}" \
        if args.kvd_subsets else "full sets"
    print(f"KVD  {kvd:.6f}  (unbiased MMD^2, cubic polynomial kernel, {kvd_how})")
    if args.save_features:
        print(f"saved REAL features to {args.save_features}")
    return 0
