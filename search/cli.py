"""The ``sned`` command (subcommands) and ``sned-search``: thin wrappers over the Python API.

Each subcommand lives in its own module, imported only when that subcommand runs, so that
``sned-search`` never imports torch. A subcommand module provides::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...
    SETTING_FLAGS: dict[str, str]  # optional: setting name -> its flag, e.g. {"budget_ms": "--budget-ms"}

Bad input (``UserError``, ``SpaceError``, a missing or unreadable file) prints one line and exits
with code 2; set ``SNED_DEBUG=1`` to see the traceback instead. A ``SettingError`` names its
setting through the module's ``SETTING_FLAGS``, so library messages never speak in flags.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Keep sorted by pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "space": ("sned.supernet.space_cli", "show an experiment's search space (choices, size, cost ranges)"),
    "data": ("sned.supernet.data", "synthesise a procedural video dataset (sned data synth ...)"),
    "train": ("sned.supernet.train", "train the supernet (superposition over widths, depths, resolutions)"),
    "sample": ("sned.supernet.sample", "generate videos from a subnet of a checkpoint (DDIM)"),
    "latency": ("sned.predictors.latency_cli", "measure, validate and inspect per-block latency tables"),
    "features": ("sned.predictors.features", "train or inspect a domain video classifier for FVD/KVD/IS features"),
    "fvd": ("sned.predictors.fvd_cli", "FVD and KVD between two video folders or feature files"),
    "evaluate": ("sned.predictors.evaluate", "sampled FVD/KVD of subnets of a checkpoint, as Ray Tune trials"),
    "fit": ("sned.predictors.fit_cli", "fit an accuracy predictor (FVD, KVD, ...) on a sampled-quality table, nested CV vs baselines"),
    "search": ("sned.search.search_cli", "NSGA-II search for Pareto-optimal subnets under a latency budget"),
    "report": ("sned.search.report_cli", "rebuild a search run's report.html"),
    "export": ("sned.supernet.export", "export a front member as a standalone subnet (safetensors + config)"),
    "serve": ("sned.search.serve_cli", "HTTP search service (FastAPI; --ray for Ray Serve)"),
    "pipeline": ("sned.search.pipeline", "run every stage (data, train, latency, evaluate, fit, search, report), resumable"),
}


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from sned.supernet.errors import UserError
    from sned.supernet.space import SpaceError

    return (UserError, SpaceError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def run_command(module_name: str, prog: str, argv: Sequence[str], description: str = "") -> int:
    """Parse ``argv`` with the module's parser and run it, mapping bad input to exit code 2."""
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=prog, description=description or (module.__doc__ or "").split("\n")[0])
    module.add_arguments(parser)
    args = parser.parse_args(list(argv))
    try:
        return int(module.run(args) or 0)
    except _bad_input_types() as exc:
        if os.environ.get("SNED_DEBUG"):
            raise
        from sned.supernet.errors import SettingError

        text = exc.phrase(getattr(module, "SETTING_FLAGS", {})) if isinstance(exc, SettingError) else str(exc)
        message = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


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
        from importlib.metadata import version

        print(f"sned {version('sned')}")
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
