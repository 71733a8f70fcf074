"""The ``sned`` command (subcommands) and ``sned-search``: thin wrappers over the Python API.

Each subcommand lives in its own ``*_cli`` module, imported only when that subcommand runs, so that
``sned-search`` never imports torch. Every subcommand runs through the floor's
:func:`~sned.supernet.base.command.run_command` (its module contract, one-line errors, exit code 2),
the same runner the ``sned-train`` console script uses.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sned.supernet.base.command import run_command

# name -> (module, one-line help). Keep sorted by pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "space": ("sned.supernet.space_cli", "show an experiment's search space (choices, size, cost ranges)"),
    "data": ("sned.supernet.data_cli", "synthesise a procedural video dataset (sned data synth ...)"),
    "vae": ("sned.supernet.vae_cli", "train a video autoencoder for latent spaces, or inspect one (sned or diffusers)"),
    "train": ("sned.supernet.train_cli", "train the supernet (superposition over widths, depths, resolutions)"),
    "sample": ("sned.supernet.sample_cli", "generate videos from a subnet of a checkpoint (DDIM)"),
    "latency": ("sned.predictors.latency_cli", "measure, validate and inspect per-block latency tables"),
    "features": ("sned.predictors.features_cli", "train or inspect a domain video classifier for FVD/KVD/IS features"),
    "fvd": ("sned.predictors.fvd_cli", "FVD and KVD between two video folders or feature files"),
    "evaluate": ("sned.predictors.evaluate_cli", "sampled FVD/KVD of subnets of a checkpoint, as Ray Tune trials"),
    "fit": ("sned.predictors.fit_cli", "fit an accuracy predictor (FVD, KVD, ...) on a sampled-quality table, nested CV vs baselines"),
    "search": ("sned.search.search_cli", "NSGA-II search for Pareto-optimal subnets under a latency budget"),
    "report": ("sned.search.report_cli", "rebuild a search run's report.html"),
    "export": ("sned.supernet.export_cli", "export a front member as a standalone subnet (safetensors + config)"),
    "serve": ("sned.search.serve_cli", "HTTP search service (FastAPI; --ray for Ray Serve)"),
    "pipeline": ("sned.search.pipeline_cli", "run every stage (data, train, latency, evaluate, fit, search, report), resumable"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: sned COMMAND [options]   (sned COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from sned.supernet.base.provenance import package_version

        print(f"sned {package_version('sned')}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"sned: error: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, help_ = COMMANDS[name]
    return run_command(module_name, f"sned {name}", argv[1:], help_)


def search_main(argv: Sequence[str] | None = None) -> int:
    """``sned-search``: the same as ``sned search``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    module_name, help_ = COMMANDS["search"]
    return run_command(module_name, "sned-search", argv, help_)


def _entry() -> None:  # pragma: no cover - console-script shims
    sys.exit(main())


def _search_entry() -> None:  # pragma: no cover
    sys.exit(search_main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
