"""Which stem lets every subnet denoise at full resolution? Equal-wall-time probes at 32 px.

    python benchmarks/stem_probe.py [--seconds 200] [--variants patch4,patch4+pixel32,patch2+pixel32]

Each variant is tiny's space at one resolution with another ``patch_size`` / ``pixel_channels``.
It trains the supernet (dynamic-cost sampling, lr 1e-3, batch 16, EMA) for the same wall time,
then prints the EMA weights' held-out loss of the largest and the smallest subnet at fixed
timesteps beside the predict-zero and per-pixel reference levels (:mod:`sned.supernet.validation`),
and writes a PNG of DDIM samples (frames 0, 3, 7 of 12 videos per subnet, real clips on the right)
to ``--out``. Measured on a noisy 2-core VM: compare variants within one run of this script.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from sned.supernet.diffusion import GaussianDiffusion
from sned.supernet.model import Supernet
from sned.supernet.sample import video_generators
from sned.supernet.sampler import make_sampler
from sned.supernet.space import SearchSpace, load_experiment, parse_space_spec
from sned.supernet.synth import render_clips
from sned.supernet.validation import format_losses, held_out_loss, make_held_out, reference_losses


def _clips(n: int, res: int, frames: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(render_clips(n, frames, res, seed)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (n, c, f, h, w)


def _space(variant: str, res: int) -> SearchSpace:
    section = dict(load_experiment("tiny")[0]["space"])
    section["resolutions"] = [res]
    section["patch_size"], section["pixel_channels"] = 4, 0
    for part in variant.split("+"):
        if part.startswith("patch"):
            section["patch_size"] = int(part[5:])
        elif part.startswith("pixel"):
            section["pixel_channels"] = int(part[5:])
        else:
            raise SystemExit(f"unknown variant part {part!r}: use patchN and pixelN joined by '+'")
    return SearchSpace(parse_space_spec(section, "probe"))


def probe(variant: str, args: argparse.Namespace, train_clips: torch.Tensor, held: torch.Tensor) -> dict:
    space = _space(variant, args.res)
    torch.manual_seed(0)
    net = Supernet(space)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr)
    sampler = make_sampler(space, 0, "dynamic", cost="flops", buckets=8, warmup_steps=100)
    diffusion = GaussianDiffusion("v")
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    began, step, losses = time.perf_counter(), 0, []
    while time.perf_counter() - began < args.seconds:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        x0 = train_clips[rng.integers(0, len(train_clips), args.batch)]
        arch = sampler.sample(step, args.res)[0]
        loss = diffusion.loss(lambda z, t, a=arch: net(z, t, a), x0, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 if step < 50 else 1 - args.ema)
        losses.append(float(loss))
        step += 1
    fixed = make_held_out(held, args.res, seed=0)
    result = {"variant": variant, "steps": step, "train_loss": float(np.mean(losses[-100:]))}
    tiles = []
    for which in ("largest", "smallest"):
        arch = getattr(space, which)(args.res)
        result[which] = held_out_loss(lambda z, t, a=arch: ema(z, t, a), fixed, diffusion)
        videos = diffusion.ddim_sample(lambda z, t, a=arch: ema(z, t, a), held.shape[1:], 25, video_generators(7, 12))
        tiles.append(videos)
    tiles.append(held[:12])
    columns = []
    for videos in tiles:  # 12 rows of frames 0, 3, 7
        frames = ((videos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        columns.append(torch.cat([torch.cat([v[:, f] for f in (0, 3, 7)], dim=2) for v in frames], dim=1))
    sheet = torch.cat([torch.nn.functional.pad(c, (0, 4)) for c in columns], dim=2).permute(1, 2, 0).numpy()
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(
        args.out / f"{variant}.png")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=200.0, help="training wall time per variant")
    parser.add_argument("--variants", default="patch4,patch4+pixel32,patch2+pixel32")
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/stem-probe"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = int(load_experiment("tiny")[0]["space"]["frames"])
    train_clips, held = _clips(600, args.res, frames, seed=0), _clips(48, args.res, frames, seed=1)
    refs = reference_losses(make_held_out(held, args.res, seed=0), GaussianDiffusion("v"))
    print(f"held-out v-loss at {args.res} px, 48 clips, after {args.seconds:.0f} s of training each (t = 50/200/500/800)")
    print(f"  predict-zero         {format_losses(refs['zero'])}")
    print(f"  per-pixel (no context) {format_losses(refs['per_pixel'])}")
    for variant in args.variants.split(","):
        r = probe(variant, args, train_clips, held)
        print(f"  {variant:<16} {r['steps']:>5} steps  largest {format_losses(r['largest'])}")
        print(f"  {'':<16} {'':>5}        smallest {format_losses(r['smallest'])}", flush=True)
    print(f"sample sheets: {args.out}/<variant>.png")


if __name__ == "__main__":
    main()
