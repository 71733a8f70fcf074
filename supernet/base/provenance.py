"""Where an artifact came from: the sned commit and package versions (torch-free, on the bottom floor).

Tables, predictors, feature cards and pipeline markers record these beside their settings, so that
a result can be traced to the code that made it.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


def git_commit(short: bool = True) -> str | None:
    """The commit of the sned checkout (``git rev-parse [--short] HEAD``); None outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"],
                              cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def package_version(dist: str, missing: str = "unknown") -> str:
    """The installed version of the distribution ``dist`` (e.g. ``"sned"``), or ``missing``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return missing


__all__ = ["git_commit", "package_version"]
