"""``sned space show EXPERIMENT [--json]``: the search space summary (torch-free)."""

from __future__ import annotations

import argparse
import json

from sned.supernet.space import load_space


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show"], help="what to do with the space")
    parser.add_argument("experiment", nargs="?", default="tiny", help="bundled name (tiny) or a YAML path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    space = load_space(args.experiment)
    summary = space.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"space {summary['name']}  (hash {summary['hash']}, {summary['size']:,} archs; {summary['source']})")
    spec = space.spec
    print(f"  frames {spec.frames}, channels {spec.channels}, patch {spec.patch_size}, head_dim {spec.head_dim}"
          + (f", pixel path {spec.pixel_channels} ch" if spec.pixel_channels else "")
          + (f", latent {spec.latent.channels}ch /{spec.latent.spatial_factor}x /{spec.latent.temporal_factor}t"
             if spec.latent else ""))
    for s, st in enumerate(spec.stages):
        print(f"  stage {s}: widths {list(st.widths)}  depths {list(st.depths)}"
              f"  attention {'per block' if st.attention else 'none'}")
    print(f"  genes ({space.n_genes}): " + ", ".join(f"{g['label']}{g['choices']}" for g in summary["genes"]))
    print(f"  {'res':>5} {'archs':>10} {'params (M)':>17} {'GFLOPs':>17}  unet input (c, f, h, w)")
    for res, r in summary["resolutions"].items():
        print(f"  {res:>5} {r['archs']:>10,} {r['params_min'] / 1e6:>8.2f}-{r['params_max'] / 1e6:<8.2f}"
              f" {r['gflops_min']:>8.2f}-{r['gflops_max']:<8.2f}  {tuple(r['unet_input'])}")
    return 0
