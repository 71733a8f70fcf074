"""Supernet forward vs extracted static forward: the cost of slicing weights on the fly.

Prints, over random subnets of an experiment at one resolution, the median ratio of
``net(x, t, arch)`` time to ``net.extract(arch)(x, t)`` time (goal <= 1.05).

    python benchmarks/elastic_overhead.py --experiment tiny --res 128 --n 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sned.supernet import Supernet
from sned.supernet.space import arch_summary, load_space


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--n", type=int, default=10, help="random subnets")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    space = load_space(args.experiment)
    net = Supernet(space).eval()
    rng = np.random.default_rng(args.seed)
    spec = space.spec
    side = spec.unet_size(args.res) * spec.patch_size
    x = torch.randn(1, spec.unet_channels, spec.unet_frames, side, side)
    t = torch.tensor([500.0])
    ratios = []
    with torch.inference_mode():
        for _ in range(args.n):
            arch = space.sample(rng, res=args.res)
            static = net.extract(arch)
            # interleave the two so that load from other processes hits both alike
            elastic_ms, static_ms = [], []
            for _ in range(args.repeats):
                elastic_ms.append(median_ms(lambda a=arch: net(x, t, a), 1))
                static_ms.append(median_ms(lambda s=static: s(x, t), 1))
            e, s = statistics.median(elastic_ms), statistics.median(static_ms)
            ratios.append(e / s)
            print(f"{arch_summary(arch):<32} supernet {e:8.1f} ms  static {s:8.1f} ms  ratio {e / s:.3f}")
    print(f"median supernet/static forward ratio over {args.n} subnets of {args.experiment} at {args.res}: "
          f"{statistics.median(ratios):.3f}  (threads {args.threads}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
