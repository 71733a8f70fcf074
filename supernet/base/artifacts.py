"""The names of an experiment's artifact files, in one place (torch-free, on the bottom floor).

An experiment folder (``experiments/<name>/``, or a ``sned pipeline`` output folder) holds::

    latency-<device>.parquet   a per-block latency table per device (``latency-cpu.parquet``)
    latency-parity.html        the table's validation plot
    fvd.parquet                the sampled-quality table
    predictor.npz              the accuracy predictor (``predictor*.npz`` / ``predictor*.json``: others)

The search takes its defaults from these names, the service discovers a folder's tables and
predictors by them, and the pipeline writes and bundles them; all through this module.
"""

from __future__ import annotations

import re

DEFAULT_DEVICE = "cpu"
LATENCY_PREFIX, LATENCY_SUFFIX = "latency-", ".parquet"
LATENCY_GLOB = f"{LATENCY_PREFIX}*{LATENCY_SUFFIX}"
PARITY_HTML = "latency-parity.html"
FVD_TABLE = "fvd.parquet"
PREDICTOR = "predictor.npz"  # what `sned fit` and the pipeline write
DEFAULT_PREDICTORS = (PREDICTOR, "predictor.json")  # the default predictor: the first of these that exists
PREDICTOR_GLOBS = ("predictor*.npz", "predictor*.json")  # every predictor of a folder


def latency_table_name(device: str) -> str:
    """The latency table file of a device: ``cpu`` -> ``latency-cpu.parquet``, ``cuda:1`` -> ``latency-cuda.parquet``."""
    return f"{LATENCY_PREFIX}{device.split(':')[0]}{LATENCY_SUFFIX}"


def table_device(file_name: str) -> str | None:
    """The device of a latency table file name (inverse of :func:`latency_table_name`); None for other files."""
    if file_name.startswith(LATENCY_PREFIX) and file_name.endswith(LATENCY_SUFFIX):
        return file_name[len(LATENCY_PREFIX):-len(LATENCY_SUFFIX)] or None
    return None


DEFAULT_TABLE = latency_table_name(DEFAULT_DEVICE)


def slug(text: str) -> str:
    """A lower-case, dash-separated label of free text: ``"AMD EPYC 7B13"`` -> ``"amd-epyc-7b13"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def safe_file_part(text: str) -> str:
    """``text`` usable inside a file name: characters other than letters, digits, ``.``, ``_``, ``-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)


__all__ = ["DEFAULT_DEVICE", "DEFAULT_PREDICTORS", "DEFAULT_TABLE", "FVD_TABLE", "LATENCY_GLOB", "LATENCY_PREFIX", "LATENCY_SUFFIX",
           "PARITY_HTML", "PREDICTOR", "PREDICTOR_GLOBS", "latency_table_name", "safe_file_part",
           "slug", "table_device"]
