"""``sned vae``: train sned's video VAE, or inspect any autoencoder sned can load.

    sned vae train DATA --out DIR [--steps N] [--resume] [--quiet] [--seed K] [--res 32,64]
                   [--latent-channels C] [--spatial-factor 4|8] [--temporal-factor 1|2] [--dtype bf16|fp32]
    sned vae info VAE [--json]

``train`` (:mod:`sned.supernet.vae_train`) shows a progress bar, checkpoints every 100 steps and
resumes with ``--resume`` (a finished run is left as it is); it ends with ``vae.safetensors`` and
``vae.json`` (architecture, factors, the measured latent scaling, held-out PSNR, provenance).
``info`` loads a ``sned vae train`` folder or a diffusers ``save_pretrained`` folder through
:func:`~sned.supernet.vae_load.load_autoencoder` and prints what the latent layer sees.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

ARCHITECTURES = {4: (32, 64, 64), 8: (32, 64, 64, 128)}  # spatial factor -> encoder widths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{train,info}")
    train = actions.add_parser("train", help="train sned's KL video VAE on a video folder")
    train.add_argument("data", type=Path, help="folder of training videos (e.g. from `sned data synth`)")
    train.add_argument("--out", type=Path, required=True, help="the VAE folder (new, or one to --resume)")
    from sned.supernet.vae_train import DEFAULT_STEPS

    train.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimiser steps (default {DEFAULT_STEPS})")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    train.add_argument("--seed", type=int, default=0, help="seed of weights, clips and noise (default 0)")
    train.add_argument("--res", default="32,64", help="comma-separated frame sizes the VAE serves (default 32,64)")
    train.add_argument("--frames", type=int, default=8, help="frames per training clip (default 8)")
    train.add_argument("--latent-channels", type=int, default=8, help="latent channels (default 8)")
    train.add_argument("--spatial-factor", type=int, default=4, choices=sorted(ARCHITECTURES),
                       help="spatial compression (default 4)")
    train.add_argument("--temporal-factor", type=int, default=1, choices=[1, 2], help="temporal compression (default 1)")
    train.add_argument("--batch-size", type=int, default=8, help="clips per step (default 8)")
    train.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"],
                       help="forward precision: bf16 autocast (default; fp32 weights and optimizer) or fp32")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    info = actions.add_parser("info", help="load an autoencoder folder (sned or diffusers) and print its interface")
    info.add_argument("vae", type=Path, help="a sned vae train folder or a diffusers save_pretrained folder")
    info.add_argument("--json", action="store_true", help="print JSON")


def _resolutions(text: str) -> tuple[int, ...]:
    from sned.supernet.base.errors import UserError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--res {text!r}: expected comma-separated integers such as 32,64") from None
    if not values:
        raise UserError(f"--res {text!r}: expected at least one size")
    return values


def run(args: argparse.Namespace) -> int:
    if args.action == "info":
        return _info(args)
    import sys

    from sned.supernet.vae import VAEConfig
    from sned.supernet.vae_train import VAETrainSettings, train_vae

    try:
        architecture = VAEConfig(latent_channels=args.latent_channels, widths=ARCHITECTURES[args.spatial_factor],
                                 temporal_factor=args.temporal_factor)
    except ValueError as exc:
        from sned.supernet.base.errors import UserError

        raise UserError(str(exc)) from None
    settings = VAETrainSettings(str(args.data), str(args.out), steps=args.steps, seed=args.seed, resume=args.resume,
                                architecture=architecture, resolutions=_resolutions(args.res), frames=args.frames,
                                batch_size=args.batch_size, dtype=args.dtype, device=args.device, progress=not args.quiet,
                                command=shlex.join(["sned", "vae", *sys.argv[2:]]))
    result = train_vae(settings)
    if result.config is None:
        print(f"stopped after step {result.end_step} of {settings.steps}; continue with --resume")
        return 0
    config = result.config
    scores = ", ".join(f"{res} px {v:.2f} dB" for res, v in config["held_out"]["psnr_db"].items())
    verb = "already trained" if result.is_reused else f"trained steps {result.start_step + 1}..{result.end_step}"
    print(f"{args.out}: {verb} ({config['provenance']['seconds']:.0f} s in all); held-out PSNR {scores}")
    print(f"latent: {config['latent_channels']} channels, /{config['spatial_factor']} space, "
          f"/{config['temporal_factor']} time; scaling_factor {config['scaling_factor']:.4f}, "
          f"shift_factor {config['shift_factor']:.4f}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from sned.supernet.vae_load import load_autoencoder

    description = load_autoencoder(args.vae).describe()
    if args.json:
        print(json.dumps(description, indent=2))
        return 0
    width = max(map(len, description))
    for key, value in description.items():
        print(f"{key:<{width}}  {value}")
    return 0


__all__ = ["add_arguments", "run"]
