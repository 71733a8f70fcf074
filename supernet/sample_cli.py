"""``sned sample``: DDIM videos from any subnet of a trained supernet, at any resolution of its space.

    sned sample CKPT (--arch JSON | --largest | --smallest) --res R --n N --steps S --out DIR [--eta 0] [--seed K]

``CKPT`` is a run folder (its newest checkpoint), a checkpoint folder, a ``sned export`` folder, or
a bundled experiment's name (``tiny``: ``experiments/tiny/supernet``, trained EMA weights). Writes
``sample-000.mp4`` and ``sample-000.gif`` per video, ``grid.gif`` (all of them tiled) and
``samples.json`` (:func:`sned.supernet.sample.write_samples`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sned.supernet.base.errors import UserError

SETTING_FLAGS = {"label": "--class", "ema": "without --raw"}  # how this CLI spells the settings library errors name


def _parse_arch(text: str) -> Any:
    path = Path(text)
    try:
        return json.loads(path.read_text() if path.suffix == ".json" and path.is_file() else text)
    except ValueError as exc:
        raise UserError(f"--arch: not a JSON arch or a .json file ({exc})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned sample`` options."""
    parser.add_argument("checkpoint", help="run folder (newest checkpoint), checkpoint folder, a `sned export` folder, "
                        "or a bundled experiment's name (tiny: its trained supernet)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--arch", help="the subnet as JSON (or a .json file); its res is overridden by --res")
    which.add_argument("--largest", action="store_true", help="the largest subnet at --res")
    which.add_argument("--smallest", action="store_true", help="the smallest subnet at --res")
    parser.add_argument("--res", type=int, help="resolution (default: the arch's, else the space's largest)")
    parser.add_argument("--n", type=int, help="number of videos (default: the experiment's sample.n)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the experiment's sample.steps)")
    parser.add_argument("--eta", type=float, help="DDIM eta (default: sample.eta, usually 0)")
    parser.add_argument("--class", dest="label", metavar="NAME",
                        help="class-conditional checkpoints: sample only this class (default: every class in turn)")
    parser.add_argument("--guidance", type=float,
                        help="classifier-free guidance scale (default: sample.guidance; 1: none)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (common random numbers; default 0)")
    parser.add_argument("--batch-size", type=int, help="videos per forward (default: sample.batch_size)")
    parser.add_argument("--out", required=True, help="output folder for the videos")
    parser.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--vae", help="latent checkpoints: the autoencoder folder, where it moved since training "
                                      "(its weights must be the ones trained with)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def run(args: argparse.Namespace) -> int:
    """Sample videos and print where they went."""
    import torch

    from sned.supernet.checkpoint import load_supernet
    from sned.supernet.config import SampleConfig, sample_config_from_dict
    from sned.supernet.export import is_export, load_exported
    from sned.supernet.latent import autoencoder_for
    from sned.supernet.sample import class_labels, generate, write_samples
    from sned.supernet.space import arch_id, arch_summary

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device == "auto":
        device = "cpu"
    if is_export(args.checkpoint):  # a standalone subnet from `sned export`: its own arch only
        net, config = load_exported(args.checkpoint, device=device)
        info = {"path": str(args.checkpoint), "sha256": config["checkpoint"]["sha256"],
                "step": config["checkpoint"]["step"], "experiment": config["experiment"],
                "ema": config["checkpoint"]["ema"], "config": {"prediction": config["prediction"]},
                "sample_config": config.get("sample"), "class_names": config.get("class_names", []),
                "vae": config.get("vae")}
        if not (args.arch or args.largest or args.smallest):
            args.arch = json.dumps(net.arch)
    else:
        if not (args.arch or args.largest or args.smallest):
            raise UserError("which subnet? pass --arch JSON, --largest or --smallest")
        net, info = load_supernet(args.checkpoint, ema=not args.raw, device=device)
    space = net.space
    defaults: SampleConfig = sample_config_from_dict(info.get("sample_config"))
    res = args.res
    if args.arch:
        arch = _parse_arch(args.arch)
        if isinstance(arch, dict) and res is not None:
            arch = {**arch, "res": res}
        arch = space.validate(arch)
    else:
        res = max(space.resolutions) if res is None else res
        arch = space.largest(res) if args.largest else space.smallest(res)
    n = args.n or defaults.n
    steps = args.steps or defaults.steps
    eta = defaults.eta if args.eta is None else args.eta
    for name, value in (("--n", n), ("--steps", steps), ("--batch-size", args.batch_size or 1)):
        if value < 1:
            raise UserError(f"{name} {value}: expected >= 1")
    if eta < 0:
        raise UserError(f"--eta {eta}: expected >= 0")
    guidance = defaults.guidance if args.guidance is None else args.guidance
    labels, names = class_labels(space.spec.classes, info.get("class_names") or [], n, args.label)
    if not space.spec.classes and args.guidance is not None:
        raise UserError("--guidance: this checkpoint is unconditional (space.classes = 0)")
    prediction = info["config"].get("prediction", "v")
    decoder = autoencoder_for(info, args.vae, device=device)  # latent networks: decode to video
    videos = generate(net, arch, n, steps, args.seed, eta=eta, batch_size=args.batch_size or defaults.batch_size,
                      device=device, prediction=prediction, labels=labels, guidance=guidance, decoder=decoder)
    meta = {"checkpoint": info["path"], "checkpoint_sha256": info["sha256"], "step": info["step"],
            "experiment": info["experiment"], "ema": info["ema"], "arch": arch, "arch_id": arch_id(arch),
            "seed": args.seed, "steps": steps, "eta": eta, "n": n,
            **({"guidance": guidance, "classes": names} if space.spec.classes else {}),
            **({"vae": decoder.identity} if decoder is not None else {})}
    paths = write_samples(videos, args.out, fps=defaults.fps, meta=meta)
    print(f"{len(paths)} videos of {arch_summary(arch)} (arch {arch_id(arch)}, {steps} DDIM steps) -> {args.out}")
    return 0


