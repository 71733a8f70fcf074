"""Where does a supernet fail a class? Per-class denoising on held-out clips, and what DDIM sees and predicts.

    python benchmarks/denoise_diagnostics.py [CHECKPOINT] --data DATA [--res 32,64] [--timesteps 300,500,700]
        [--trajectory CLASS] [--out runs/denoise-diagnostics]

1. **Per-class denoising.** For the held-out videos of the run (``split_held_out`` with the
   checkpoint's ``train.val_videos``: the clips training never saw), noised with fixed noise at each
   timestep, the largest and the smallest subnet's x0 prediction error as a fraction of the clip's
   own variance (FVU: 0 is perfect, 1 is no better than the clip's mean colour, which it is not
   given). A class whose FVU at mid/high noise stays far above the others is the one the network
   has not learnt a prior for: it can clean up a clip of it, but not imagine one.
2. **Trajectory** (``--trajectory CLASS``): a PNG per resolution of DDIM (the checkpoint's sample
   settings: steps, guidance) for the largest subnet: the top row is ``z_t`` and the bottom row the
   prediction ``x0_hat`` (frame 0), every third step. It shows at which noise level the samples of a
   class go wrong (for instance, a prediction that turns into patch-sized speckle instead of
   one coherent pattern).

CHECKPOINT defaults to the bundled tiny supernet; DATA must be the folder it was trained on. Without
``--data`` the bundled one's is rendered into ``runs/data-tiny`` (``sned data synth --out DATA --n 600
--frames 16 --size 128 --seed 0``: deterministic, about 25 s, reused by later runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sned.supernet.checkpoint import load_supernet
from sned.supernet.data import VideoClipDataset
from sned.supernet.diffusion import GaussianDiffusion
from sned.supernet.sample import class_labels, generate
from sned.supernet.train import split_held_out
from sned.supernet.validation import held_out_set


@torch.no_grad()
def per_class_fvu(net: torch.nn.Module, info: dict, data: str, res: int, timesteps: list[int]) -> dict:
    """``{subnet: {class: [FVU per timestep]}}`` on the run's held-out clips at ``res``."""
    space = net.space
    dataset = VideoClipDataset(data, frames=space.spec.frames, size=res, seed=int(info.get("seed") or 0))
    _, held = split_held_out(len(dataset), int(info["config"].get("val_videos", 24)))
    view = dataset.subset(held)
    held_out = held_out_set(view, res, seed=0, labels=bool(space.spec.classes))
    x0, labels = held_out.clips, held_out.labels
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    diffusion = GaussianDiffusion(info["config"]["prediction"])
    variance = (x0 - x0.mean(dim=(2, 3, 4), keepdim=True)).square().flatten(1).mean(1)
    names = view.class_names or ("all",)
    out = {}
    for subnet in ("largest", "smallest"):
        arch = getattr(space, subnet)(res)
        rows = []
        for t in timesteps:
            tt = torch.full((len(x0),), t)
            z = diffusion.q_sample(x0, tt, noise)
            pred = torch.cat([net(z[i: i + 8], tt[i: i + 8].float(), arch,
                                  labels=None if labels is None else labels[i: i + 8]) for i in range(0, len(z), 8)])
            x0_hat, _ = diffusion.split(pred, z, tt)
            rows.append(((x0_hat - x0).square().flatten(1).mean(1) / variance).numpy())
        fvu = np.stack(rows, axis=1)  # (clips, timesteps)
        groups = np.asarray(view.labels) if view.labels else np.zeros(len(x0), dtype=int)
        out[subnet] = {names[c]: fvu[groups == c].mean(axis=0).tolist() for c in range(len(names))}
    return out


def trajectory_png(net: torch.nn.Module, info: dict, res: int, name: str, path: Path) -> None:
    from PIL import Image

    sample = info["sample_config"]
    labels, _ = class_labels(net.space.spec.classes, info.get("class_names", []), 1, name)
    frames: list[np.ndarray] = []

    def keep(t: int, z: torch.Tensor, x0: torch.Tensor) -> None:
        frames.append(np.concatenate([z[0, :, 0].clamp(-1, 1).numpy(), x0[0, :, 0].numpy()], axis=1))  # (c, 2h, w)

    generate(net, net.space.largest(res), 1, int(sample["steps"]), seed=0, prediction=info["config"]["prediction"],
             labels=labels, guidance=float(sample.get("guidance", 1.0)), on_step=keep)
    shown = frames[::3] + ([frames[-1]] if (len(frames) - 1) % 3 else [])
    image = np.concatenate(shown, axis=2)  # (c, 2h, steps * w)
    image = ((image.transpose(1, 2, 0) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    scale = max(1, 96 // res)
    Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="?", default="tiny")
    parser.add_argument("--data", help="the folder the checkpoint was trained on (default: tiny's, rendered)")
    parser.add_argument("--res", default="32,64")
    parser.add_argument("--timesteps", default="300,500,700")
    parser.add_argument("--trajectory", metavar="CLASS", help="also write a DDIM trajectory PNG of this class")
    parser.add_argument("--out", type=Path, default=Path("runs/denoise-diagnostics"))
    args = parser.parse_args()
    torch.manual_seed(0)
    net, info = load_supernet(args.checkpoint)
    if args.data is None:
        from sned.supernet.synth import synthesize

        args.data = "runs/data-tiny"
        synthesize(args.data, n=600, frames=16, size=128, seed=0, progress=False)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    print(f"{args.checkpoint} (step {info['step']}): x0 error / clip variance on held-out clips, "
          f"t = {'/'.join(map(str, timesteps))}")
    for res in (int(r) for r in args.res.split(",")):
        for subnet, classes in per_class_fvu(net, info, args.data, res, timesteps).items():
            cells = "  ".join(f"{name} " + "/".join(f"{v:.2f}" for v in values) for name, values in classes.items())
            print(f"{res:>4} px {subnet:<8} {cells}", flush=True)
        if args.trajectory:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"trajectory-{args.trajectory}-{res}.png"
            trajectory_png(net, info, res, args.trajectory, path)
            print(f"     trajectory: {path}")


if __name__ == "__main__":
    main()
