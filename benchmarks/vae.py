"""Held-out reconstruction of a video autoencoder: PSNR per resolution (and class), encode/decode ms per clip.

    python benchmarks/vae.py [--vae DIR] [--data DIR] [--res 32,64] [--threads 2]

``--vae`` is anything :func:`sned.supernet.vae_load.load_autoencoder` reads (default: the bundled
``experiments/tiny-latent/vae``, when there is one). The clips are the held-out videos of a
``sned vae train`` folder (``vae.json`` lists them; ``--data`` defaults to the folder it was
trained on), each video's epoch-0 clip, whole frames, exactly as training's validation scores them;
for another autoencoder, the videos ``sned-train`` holds out (24, evenly spaced). PSNR is
10 log10(1 / MSE) on [0, 1] pixels, per clip, averaged; the decoded video is clamped.
Encode and decode times are medians over ``--repeats`` calls on one clip (batch 1) with
``--threads`` torch threads, on this machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from importlib import resources
from pathlib import Path

import torch


def _held_out(vae_dir: Path, data: Path | None, frames: int) -> tuple[object, list[int], int, str]:
    """(dataset, held-out indices, seed, where the list came from)."""
    from sned.supernet.data import VideoClipDataset
    from sned.supernet.train_plan import split_held_out

    config = {}
    if (vae_dir / "vae.json").is_file():
        config = json.loads((vae_dir / "vae.json").read_text())
    training = config.get("training", {})
    data = data or (Path(training["data"]) if "data" in training else None)
    if data is None or not data.is_dir():
        raise SystemExit(f"no data folder ({data}); pass --data DIR (e.g. the `sned data synth` folder)")
    seed = int(training.get("seed", 0))
    frames = int(training.get("frames", frames))
    dataset = VideoClipDataset(data, frames=frames, size=32, seed=seed, cache=True)
    names = training.get("held_out_videos")
    if names:
        where = {p.relative_to(dataset.root).as_posix(): i for i, p in enumerate(dataset.paths)}
        missing = [n for n in names if n not in where]
        if missing:
            raise SystemExit(f"{data} lacks {len(missing)} of the VAE's held-out videos (e.g. {missing[0]}); "
                             "pass the --data it was trained on")
        return dataset, [where[n] for n in names], seed, "the VAE's held-out videos"
    return dataset, split_held_out(len(dataset), 24)[1], seed, "the videos sned-train holds out"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bundled = Path(str(resources.files("sned.experiments"))) / "tiny-latent" / "vae"
    parser.add_argument("--vae", type=Path, help=f"autoencoder folder (default: {bundled}, if present)")
    parser.add_argument("--data", type=Path, help="video folder (default: the one the VAE was trained on)")
    parser.add_argument("--res", default="32,64", help="comma-separated resolutions (default 32,64)")
    parser.add_argument("--frames", type=int, default=8, help="clip frames for a non-sned autoencoder (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the timings (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per figure (default 10)")
    args = parser.parse_args()
    if args.vae is None:
        if not bundled.is_dir():
            print(f"benchmarks/vae.py: skipped: no --vae given and no bundled autoencoder at {bundled}; train one "
                  "with `sned vae train DATA --out DIR` and pass --vae DIR", file=sys.stderr)
            return
        args.vae = bundled

    from sned.supernet.base.errors import UserError
    from sned.supernet.threads import torch_threads
    from sned.supernet.vae import psnr
    from sned.supernet.vae_load import load_autoencoder

    try:
        ae = load_autoencoder(args.vae)
    except UserError as exc:
        raise SystemExit(f"benchmarks/vae.py: {exc}") from None
    dataset, held, seed, source = _held_out(args.vae, args.data, args.frames)
    classes = [dataset.paths[i].relative_to(dataset.root).parts[0] for i in held]
    print(f"{ae.identity}: {ae.latent_channels} latent channels, /{ae.spatial_factor} space, /{ae.temporal_factor} "
          f"time, scaling_factor {ae.scaling_factor:.4g}; {len(held)} clips of {dataset.frames} frames ({source}, "
          f"{dataset.root})")
    print(f"{'res':>4}  {'PSNR dB':>8}  {'min':>6}  {'encode ms':>9}  {'decode ms':>9}  per class (dB)")
    with torch_threads(args.threads), torch.inference_mode():
        for res in (int(r) for r in args.res.split(",")):
            view = copy.copy(dataset)  # the full index: clip starts are seeded by (seed, video index, epoch)
            view.size = res
            clips = torch.stack([view.clip(i, 0) for i in held])
            values = torch.cat([psnr(x, ae.decode(ae.encode(x))) for x in clips.split(8)]).tolist()
            by_class = {}
            for name, value in zip(classes, values, strict=True):
                by_class.setdefault(name, []).append(value)
            one = clips[:1]
            latent = ae.encode(one)
            encode_ms = _median_ms(lambda x=one: ae.encode(x), args.repeats)
            decode_ms = _median_ms(lambda z=latent: ae.decode(z), args.repeats)
            per_class = ", ".join(f"{name} {statistics.fmean(v):.1f}" for name, v in sorted(by_class.items()))
            print(f"{res:>4}  {statistics.fmean(values):>8.2f}  {min(values):>6.2f}  {encode_ms:>9.1f}  "
                  f"{decode_ms:>9.1f}  {per_class}")
    print(f"timings: batch 1, {args.threads} threads, median of {args.repeats}, torch {torch.__version__}; "
          f"seed {seed}")


if __name__ == "__main__":
    main()
