"""Videos per second of I3D feature extraction (the cost side of every sampled-FVD trial).

    python benchmarks/fvd_throughput.py                       # 8 videos x 16 frames on CPU
    python benchmarks/fvd_throughput.py --device cuda --n 64 --batch-size 16

Videos are random ``(b, 3, frames, size, size)`` tensors in [-1, 1], resized to 224 x 224 inside
the extractor as in a real run; one warm-up batch is excluded from the timing.
"""

from __future__ import annotations

import argparse
import time

import torch

from sned.predictors.i3d import I3DFeatureExtractor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--n", type=int, default=8, help="videos to time (default 8)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=64, help="frame size before the 224 x 224 resize (default 64)")
    parser.add_argument("--batch-size", type=int, default=4, help="videos per forward pass (default 4)")
    parser.add_argument("--i3d", metavar="PATH", help="I3D weights (default: $SNED_I3D_WEIGHTS, else random init)")
    args = parser.parse_args()

    extractor = I3DFeatureExtractor(args.i3d, device=args.device, batch_size=args.batch_size)
    generator = torch.Generator().manual_seed(0)
    videos = torch.rand(args.n, 3, args.frames, args.size, args.size, generator=generator) * 2 - 1
    extractor.features(videos[: args.batch_size])  # warm-up: allocator, oneDNN / cuDNN kernel choice
    if extractor.device.type == "cuda":
        torch.cuda.synchronize(extractor.device)
    start = time.perf_counter()
    extractor.features(videos)  # returns numpy, so the device work has finished when it returns
    seconds = time.perf_counter() - start
    print(
        f"I3D features ({extractor.name}) on {extractor.device}: {args.n} videos x {args.frames} frames "
        f"({args.size}x{args.size} -> 224x224), batch {args.batch_size}, torch threads {torch.get_num_threads()}: "
        f"{args.n / seconds:.2f} videos/s ({seconds / args.n:.2f} s/video)"
    )


if __name__ == "__main__":
    main()
