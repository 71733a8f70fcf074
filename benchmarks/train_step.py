"""Cost of weight sharing in training: a supernet training step vs the same subnet extracted as a static net.

    python benchmarks/train_step.py [--experiment tiny] [--res 64] [--archs 5] [--repeats 3]
    python benchmarks/train_step.py --device cuda --experiment pixel-1.6b --dtype bf16 --res 128 --batch 4

For each of ``--archs`` sampled subnets, times one full training step (diffusion loss forward,
backward, gradient clipping, AdamW step) on the supernet (slicing the max weights, optimizer over
all of them) and on ``net.extract(arch)`` (plain modules, optimizer over the subnet's weights),
with the same batch, alternating the two, and prints the per-arch times (fastest of ``--repeats``:
on a shared machine interference only adds time) and the median ratio over archs (goal <= 1.10).
It also prints tokens/s (one token = one UNet input position: batch x frames x (res/patch)^2) and,
on CUDA, the model FLOPs utilisation: 3 x analytic forward FLOPs per step / time / ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch

from sned.supernet import Supernet
from sned.supernet.config import load_train_config
from sned.supernet.diffusion import GaussianDiffusion
from sned.supernet.space import arch_summary, load_space
from sned.supernet.train import batch_size_at


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Stepper:
    """One training step of ``model(z, t)`` with its own AdamW (diffusion loss, backward, clip, step)."""

    def __init__(self, model, params, x0, diffusion, autocast):
        self.model, self.params, self.x0, self.diffusion, self.autocast = model, params, x0, diffusion, autocast
        self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.diffusion.loss(self.model, self.x0, self.generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], 1.0)
        self.optimizer.step()


def time_pair(first: _Stepper, second: _Stepper, repeats: int, warmup: int, device) -> tuple[float, float]:
    """Fastest seconds per step of each, timed alternately (so load from other processes hits both alike).

    The minimum, not the mean, estimates the cost on a shared machine: interference only adds time.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(warmup + repeats):
        for k, step in enumerate((first, second)):
            _sync(device)
            began = time.perf_counter()
            step()
            _sync(device)
            if i >= warmup:
                times[k].append(time.perf_counter() - began)
    return min(times[0]), min(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--res", type=int, help="resolution (default: the middle one of the space)")
    parser.add_argument("--batch", type=int, help="clips per step (default: the experiment's batch at --res)")
    parser.add_argument("--archs", type=int, default=5, help="sampled subnets (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per subnet and variant (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast (CUDA)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the GPU for MFU (H100/H200 SXM: 989)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    space = load_space(args.experiment)
    cfg = load_train_config(args.experiment)
    res = args.res or space.resolutions[len(space.resolutions) // 2]
    batch = args.batch or batch_size_at(cfg, space, res)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    net = Supernet(space).to(device)
    diffusion = GaussianDiffusion(cfg.prediction)
    spec = space.spec
    side = spec.unet_size(res) * spec.patch_size
    x0 = torch.rand(batch, spec.unet_channels, spec.unet_frames, side, side, device=device) * 2 - 1
    tokens = batch * spec.unet_frames * spec.unet_size(res) ** 2

    def autocast():
        if args.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    print(f"{args.experiment} at {res} px, batch {batch}, {args.device} {args.dtype}, "
          f"{torch.get_num_threads()} threads; fastest of {args.repeats} alternating steps per variant")
    print(f"{'subnet':<34} {'GFLOPs/fwd':>10} {'super s':>9} {'static s':>9} {'ratio':>6} {'tokens/s':>10}"
          + ("   MFU" if device.type == "cuda" else ""))
    ratios = []
    for _ in range(args.archs):
        arch = space.sample(rng, res=res)
        static = net.extract(arch)
        super_s, static_s = time_pair(
            _Stepper(lambda z, t, a=arch: net(z, t, a), list(net.parameters()), x0, diffusion, autocast),
            _Stepper(static, list(static.parameters()), x0, diffusion, autocast), args.repeats, args.warmup, device)
        ratio = super_s / static_s
        ratios.append(ratio)
        flops = float(space.flops(arch)[0]) * batch
        line = (f"{arch_summary(arch):<34} {flops / batch / 1e9:>10.2f} {super_s:>9.4f} {static_s:>9.4f} "
                f"{ratio:>6.3f} {tokens / super_s:>10.0f}")
        if device.type == "cuda":
            line += f" {3 * flops / super_s / (args.peak_tflops * 1e12):>6.1%}"
        print(line, flush=True)
        del static
    print(f"median ratio supernet / static training step: {statistics.median(ratios):.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
