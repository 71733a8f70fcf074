"""Why factorised kernels run as 2D convolutions: ``F.conv3d`` vs sned's ``conv3d`` on tiny's shapes.

    python benchmarks/conv_paths.py [--threads 1]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from elastic_overhead import median_ms  # the sibling script (benchmarks/ is on sys.path when run)

from sned.supernet.ops.conv import conv3d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'channels':>8} {'side':>5} {'kernel':>8} {'F.conv3d ms':>12} {'sned conv3d ms':>15} {'speed-up':>9}")
    with torch.inference_mode():
        for channels, side in [(64, 32), (96, 16), (128, 8)]:
            x = torch.randn(1, channels, args.frames, side, side)
            for kernel, padding in [((1, 3, 3), (0, 1, 1)), ((3, 1, 1), (1, 0, 0))]:
                w, b = torch.randn(channels, channels, *kernel), torch.randn(channels)
                dense = median_ms(lambda: F.conv3d(x, w, b, (1, 1, 1), padding), 10)  # noqa: B023
                ours = median_ms(lambda: conv3d(x, w, b, (1, 1, 1), padding), 10)  # noqa: B023
                print(f"{channels:>8} {side:>5} {'x'.join(map(str, kernel)):>8} {dense:>12.2f} {ours:>15.2f} "
                      f"{dense / ours:>8.2f}x")


if __name__ == "__main__":
    main()
