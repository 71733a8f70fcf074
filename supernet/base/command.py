"""How every ``sned`` command runs: parse, call, and turn bad input into one line and exit code 2.

Torch-free, on the bottom floor, so that a console script of any room (``sned-train`` in
``sned.supernet``, ``sned`` and ``sned-search`` in ``sned.search``) runs its command the same way
without importing a room above its own. A command module provides::

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

from sned.supernet.base.errors import SettingError, SpaceError, UserError

BAD_INPUT: tuple[type[BaseException], ...] = (UserError, SpaceError, FileNotFoundError, PermissionError,
                                              IsADirectoryError, NotADirectoryError)


def error_line(exc: BaseException, flags: dict[str, str] | None = None) -> str:
    """The one line a command prints for bad input: the message's first line (a setting spelled by ``flags``)."""
    text = exc.phrase(flags or {}) if isinstance(exc, SettingError) else str(exc)
    message = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
        message = f"{message}: {exc.filename}"
    return message


def run_command(module_name: str, prog: str, argv: Sequence[str], description: str = "") -> int:
    """Parse ``argv`` with the module's parser and run it, mapping bad input to exit code 2."""
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=prog, description=description or (module.__doc__ or "").split("\n")[0])
    module.add_arguments(parser)
    args = parser.parse_args(list(argv))
    try:
        return int(module.run(args) or 0)
    except BAD_INPUT as exc:
        if os.environ.get("SNED_DEBUG"):
            raise
        print(f"{prog}: error: {error_line(exc, getattr(module, 'SETTING_FLAGS', {}))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


__all__ = ["BAD_INPUT", "error_line", "run_command"]
