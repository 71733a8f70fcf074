"""Are the bundled supernet's samples recognisable? The domain classifier's verdict per subnet and resolution.

    python benchmarks/samples.py [--ckpt tiny] [--features experiments/tiny/features] [--n 24] [--steps 25]
                                 [--guidance W] [--res 32,64]

For the largest and the smallest subnet at every resolution, generates ``--n`` videos exactly as
``sned sample CKPT --largest|--smallest --res R --n N --steps S --seed 0`` does (DDIM, EMA weights),
and classifies them with the bundled domain classifier (``sned features train`` on the synthetic
classes; 100 % held-out accuracy on real clips, see its card). Prints, per (subnet, resolution):
how many videos each class got, how many classes are represented, the mean top-class probability
(how confident the classifier is that a sample shows one class), and the Inception Score (exp of
the mean KL between per-video and marginal class probabilities; its maximum is the number of
classes, 6). The same figures for unseen real clips (rendered with a new seed) are the reference.
**scale** is a check of structure that needs no classifier: per class, the power-weighted mean
spatial frequency of the videos in cycles per frame width (grey level, each frame's mean removed),
so speckle finer than the class's pattern reads as a number well above the real clips'.
For a class-conditional supernet the videos take the classes in turn (as ``sned sample`` does, with
the checkpoint's ``sample.guidance`` unless ``--guidance`` is given) and the line also shows
**asked**: the share of videos the classifier puts in the class they were generated for.
A classifier is no substitute for looking: the GIF grids are in ``experiments/tiny/samples/``.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from sned.predictors.features import DomainFeatureExtractor
from sned.predictors.fvd import inception_score
from sned.supernet.checkpoint import load_supernet
from sned.supernet.sample import class_labels, generate
from sned.supernet.synth import CLASS_NAMES, render_clips


def _line(name: str, probabilities: np.ndarray, classes: list[str], asked: list[str] | None = None) -> str:
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(classes))
    is_mean, _ = inception_score(probabilities, splits=1)
    cells = " ".join(f"{c[:8]}={k}" for c, k in zip(classes, counts, strict=True))
    hit = "" if asked is None else f"  asked {np.mean([classes[p] == a for p, a in zip(predicted, asked, strict=True)]):.2f}"
    return (f"  {name:<22} classes {int((counts > 0).sum())}/{len(classes)}  top-prob "
            f"{probabilities.max(axis=1).mean():.2f}  IS {is_mean:.2f}{hit}  [{cells}]")


def mean_frequency(videos: torch.Tensor) -> np.ndarray:
    """Per video ``(b, c, f, h, w)``: the power-weighted mean radial spatial frequency, cycles per frame width."""
    grey = videos.double().mean(dim=1)  # (b, f, h, w)
    grey = grey - grey.mean(dim=(2, 3), keepdim=True)
    power = (torch.fft.fft2(grey).abs() ** 2).mean(dim=1)  # (b, h, w)
    h, w = power.shape[-2:]
    radius = torch.hypot(torch.fft.fftfreq(h, dtype=torch.float64)[:, None] * h,
                         torch.fft.fftfreq(w, dtype=torch.float64)[None, :] * w)
    return ((power * radius).sum(dim=(1, 2)) / power.sum(dim=(1, 2)).clamp_min(1e-12)).numpy()


def _scale_line(name: str, videos: torch.Tensor, names: list[str], classes: list[str]) -> str:
    frequency = mean_frequency(videos)
    cells = " ".join(f"{c[:8]}={frequency[[n == c for n in names]].mean():.1f}" for c in classes
                     if c in names)
    return f"  {name:<22} scale (cycles/frame) [{cells}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bundled = Path(str(resources.files("sned.experiments") / "tiny" / "features"))
    parser.add_argument("--ckpt", default="tiny", help="supernet: a run, a checkpoint or a bundled name")
    parser.add_argument("--features", default=str(bundled), help="a `sned features train` folder")
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, help="classifier-free guidance (default: the checkpoint's)")
    parser.add_argument("--res", help="comma-separated resolutions (default: all of the space's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, info = load_supernet(args.ckpt)
    extractor = DomainFeatureExtractor(args.features, device="cpu")
    classes = list(extractor.card.classes)
    prediction = info["config"].get("prediction", "v")
    guidance = float(info["sample_config"].get("guidance", 1.0)) if args.guidance is None else args.guidance
    labels, asked = class_labels(net.space.spec.classes, info["class_names"], args.n)
    print(f"== {info['path']} (step {info['step']}, {prediction} prediction"
          f"{f', guidance {guidance:g}' if labels else ''}); classifier {extractor.name}; "
          f"{args.n} videos per row, {args.steps} DDIM steps, seed 0")
    for res in [int(r) for r in args.res.split(",")] if args.res else net.space.resolutions:
        print(f"-- {res} px")
        real = render_clips(args.n, net.space.frames, res, seed=1, first_index=1000)  # as the bundled real grids
        real_videos = torch.from_numpy(real).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        real_names = [CLASS_NAMES[i % len(CLASS_NAMES)] for i in range(args.n)]  # the classes in turn
        print(_line("real clips", extractor.probabilities(real_videos), classes))
        print(_scale_line("real clips", real_videos, real_names, classes))
        for which in ("largest", "smallest"):
            arch = getattr(net.space, which)(res)
            videos = generate(net, arch, args.n, args.steps, seed=0, prediction=prediction, labels=labels,
                              guidance=guidance if labels else 1.0)
            print(_line(f"{which} subnet", extractor.probabilities(videos), classes, asked or None), flush=True)
            if asked:
                print(_scale_line(f"{which} subnet", videos, asked, classes), flush=True)


if __name__ == "__main__":
    main()
