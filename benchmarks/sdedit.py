"""SDEdit probe: can a supernet bring back real clips from partial noise?

Held-out clips of the periodic classes (ExpandingRipples, RotatingPinwheel, SlidingStripes) are noised
to t0 and denoised with the checkpoint's own DDIM schedule (25 steps, the steps at or below t0) and its
guidance. A network that uses the clip's global structure returns the pattern; a local one returns it
covered in speckle, or loses it. Writes one PNG: the real clips' 4th frame in the first row, then one
row per t0.

    python benchmarks/sdedit.py experiments/tiny/supernet --data runs/pipeline-tiny/data --res 64 --out sdedit.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sned.supernet.checkpoint import load_supernet
from sned.supernet.data import VideoClipDataset
from sned.supernet.diffusion import GaussianDiffusion
from sned.supernet.train import split_held_out
from sned.supernet.validation import held_out_set

CLASSES = ("ExpandingRipples", "RotatingPinwheel", "SlidingStripes")


@torch.no_grad()
def sdedit(net: torch.nn.Module, info: dict, x0: torch.Tensor, labels: torch.Tensor, t0: int, res: int,
           steps: int = 25, guidance: float = 2.0, seed: int = 1) -> torch.Tensor:
    """DDIM (eta 0) from ``x0`` noised to the last schedule step at or below ``t0``."""
    diffusion = GaussianDiffusion(info["config"]["prediction"])
    arch, null = net.space.largest(res), net.space.spec.classes
    ts = [t for t in diffusion.ddim_timesteps(steps) if t <= t0]
    z = diffusion.q_sample(x0, torch.full((len(x0),), ts[0]), torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)))
    for i, t in enumerate(ts):
        tb = torch.full((len(z),), t)
        both = net(torch.cat([z, z]), torch.cat([tb, tb]).float(), arch, labels=torch.cat([labels, torch.full_like(labels, null)]))
        cond, uncond = both.chunk(2)
        x0_hat, _ = diffusion.split(uncond + guidance * (cond - uncond), z, tb)
        x0_hat = x0_hat.clamp(-1, 1)
        ab = float(diffusion.alpha_bar[t])
        eps = (z - ab**0.5 * x0_hat) / (1 - ab) ** 0.5
        ab_prev = float(diffusion.alpha_bar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        z = ab_prev**0.5 * x0_hat + (1 - ab_prev) ** 0.5 * eps
    return z.clamp(-1, 1)


def main() -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a class-conditional run, checkpoint or bundled supernet folder")
    parser.add_argument("--data", required=True, help="the run's data folder (its held-out clips are used)")
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--t0", default="500,700,850,950", help="comma-separated start timesteps")
    parser.add_argument("--out", type=Path, default=Path("sdedit.png"))
    args = parser.parse_args()
    net, info = load_supernet(args.checkpoint)
    if not net.space.spec.classes:
        raise SystemExit("sdedit.py needs a class-conditional checkpoint (space.classes > 0)")
    dataset = VideoClipDataset(args.data, frames=net.space.spec.frames, size=args.res, seed=int(info.get("seed") or 0))
    _, held = split_held_out(len(dataset), int(info["config"].get("val_videos", 24)))
    view = dataset.subset(held)
    held_out = held_out_set(view, args.res, seed=0, labels=True)
    pick = [i for i, c in enumerate(view.labels) if view.class_names[c] in CLASSES][:6]
    x0, labels = held_out.clips[pick], held_out.labels[pick]
    guidance = float((info.get("sample_config") or {}).get("guidance", 2.0))
    rows = [x0] + [sdedit(net, info, x0, labels, int(t0), args.res, guidance=guidance) for t0 in args.t0.split(",")]
    image = torch.cat([torch.cat(list(r[:, :, 3]), dim=2) for r in rows], dim=1)  # (c, rows*h, n*w), frame 4
    pixels = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).resize((pixels.shape[1] * 2, pixels.shape[0] * 2), Image.NEAREST).save(args.out)
    print(f"rows: real, then t0 = {args.t0} -> {args.out}")


if __name__ == "__main__":
    main()
