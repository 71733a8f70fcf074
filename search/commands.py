"""The command lines that reproduce a result: how ``sned search`` and ``sned export`` spell their settings.

A library module (no parsing, no printing): ``search_cli`` phrases a
:class:`~sned.supernet.base.errors.SettingError` with :data:`SETTING_FLAGS`, and the search
service (``/subnets``) answers with the commands that rebuild a front and export a member of it,
so neither the service imports the CLI nor the CLI's spelling is written twice.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from sned.supernet.base.artifacts import latency_table_name

# How `sned search` spells each SearchConfig setting.
SETTING_FLAGS = {"experiment": "--experiment", "budget_ms": "--budget-ms", "steps": "--steps", "resolutions": "--res",
                 "objectives": "--objectives", "method": "--method", "pop_size": "--pop", "generations": "--gens",
                 "patience": "--patience", "seed": "--seed", "table": "--table", "predictor": "--predictor"}


def search_command(experiment: str, request: Mapping[str, Any], out: str) -> str:
    """The ``sned search`` command line that answers the same as ``request`` (device/predictor by bundled file)."""
    flags = SETTING_FLAGS
    argv = ["sned", "search", flags["experiment"], experiment]
    for name in ("budget_ms", "steps", "method", "pop_size", "generations", "patience", "seed"):
        if request.get(name) is not None:
            argv += [flags[name], str(request[name])]
    for name in ("resolutions", "objectives"):
        if request.get(name):
            argv += [flags[name], ",".join(map(str, request[name]))]
    if request.get("analytic"):
        argv.append("--analytic")
    if request.get("device"):
        argv += [flags["table"], f"<experiment folder>/{experiment}/{latency_table_name(request['device'])}"]
    if request.get("predictor"):
        argv += [flags["predictor"], f"<experiment folder>/{experiment}/{request['predictor']}"]
    return shlex.join([*argv, "--out", out])


def export_command(arch_id: str, run: str = "RUN", checkpoint: str = "CKPT") -> str:
    """The ``sned export`` command line that writes the front member ``arch_id`` of the run folder ``run``."""
    return f"sned export {run}/pareto.json --id {arch_id} --ckpt {checkpoint} --out subnet-{arch_id}"


def serve_run_folder(arch_id: str) -> str:
    """The run folder a reproduced search of ``/subnets`` writes: ``runs/serve-<arch id>``."""
    return f"runs/serve-{arch_id}"


__all__ = ["SETTING_FLAGS", "export_command", "search_command", "serve_run_folder"]
