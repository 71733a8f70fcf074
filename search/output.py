"""The run folder of a search: what ``sned-search`` writes and ``sned report`` reads back.

Layout (every file written atomically: :func:`sned.supernet.base.files.write_atomic`)::

    runs/search-<timestamp>/
        pareto.csv      the fronts, one row per subnet (arch as canonical JSON), sorted by res, latency
        pareto.json     the same object ``sned-search --json`` prints
        settings.json   config, space, device, provenance of the table/predictor, per-resolution stats
        points.csv      every evaluated point kept for the report (faded cloud)
        history.csv     NSGA-II hypervolume per generation
        report.html     built from the files above (``sned.search.report``)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from sned.search.engine import SearchConfig, SearchResult
from sned.supernet.base.errors import UserError
from sned.supernet.base.files import write_atomic
from sned.supernet.base.provenance import package_version
from sned.supernet.space import canonical_json

RUN_FILES = ("pareto.csv", "pareto.json", "settings.json", "points.csv", "history.csv")


def default_out_dir(root: str | Path = "runs", now: datetime | None = None) -> Path:
    """``runs/search-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``... if that folder already exists)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"search-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def prepare_out_dir(path: str | Path) -> Path:
    """Create the output folder and prove it is writable, before any search work is done.

    Raises:
        UserError: the folder cannot be created or written (names the folder and the reason).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to output folder {path}: {exc.strerror or exc}") from None
    return path


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(),
            **{dist: package_version(dist, "not installed") for dist in ("sned", "pymoo", "numpy", "pandas", "plotly")}}


def write_run(result: SearchResult, out_dir: str | Path, command: list[str] | None = None) -> dict[str, Path]:
    """Write the data files of a run folder (not the report; see ``sned.search.report.write_report``).

    Args:
        result: what :func:`sned.search.run_search` returned.
        out_dir: the folder (created if needed).
        command: the command line, saved into ``settings.json``.

    Returns:
        File name -> path of each file written.
    """
    out = prepare_out_dir(out_dir)
    paths = {name: out / name for name in RUN_FILES}
    fronts = [df.assign(arch=df["arch"].map(canonical_json)) for df in result.fronts.values()]
    front_table = pd.concat(fronts, ignore_index=True) if fronts else pd.DataFrame()
    write_atomic(paths["pareto.csv"], front_table.to_csv(index=False))
    write_atomic(paths["pareto.json"], json.dumps(result.to_json(), indent=1))
    settings = {
        "config": result.config.to_dict(),
        "space": {"name": result.space_name, "hash": result.space_hash},
        "device": result.device,
        "target": result.target,
        "provenance": result.provenance,
        "stats": {str(res): asdict(s) for res, s in result.stats.items()},
        "notes": result.notes,
        "elapsed_s": result.elapsed_s,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "versions": _versions(),
    }
    write_atomic(paths["settings.json"], json.dumps(settings, indent=1))
    points = [df for df in result.evaluated.values()]
    write_atomic(paths["points.csv"], (pd.concat(points, ignore_index=True) if points else pd.DataFrame())
                 .to_csv(index=False))
    history = [df.assign(res=res) for res, df in result.history.items() if len(df)]
    write_atomic(paths["history.csv"], (pd.concat(history, ignore_index=True) if history else
                                        pd.DataFrame(columns=["generation", "evaluations", "unique", "front_size",
                                                              "hypervolume", "res"])).to_csv(index=False))
    return paths


@dataclass
class RunFiles:
    """A run folder read back: what the report is built from."""

    path: Path
    settings: dict
    pareto: dict  # pareto.json
    fronts: pd.DataFrame  # pareto.csv
    points: pd.DataFrame  # points.csv
    history: pd.DataFrame  # history.csv
    verify: pd.DataFrame | None = None  # verify.csv (sned-search --verify), when present

    @property
    def config(self) -> SearchConfig:
        return SearchConfig.from_dict(self.settings["config"])

    @property
    def target(self) -> str:
        """What the run's accuracy predictor predicted (``fvd``, ``loss``): the ``<target>_pred`` columns.

        Runs written before the target was recorded predicted FVD (``fvd_pred``).
        """
        return str(self.settings.get("target") or "fvd")


def read_run(run_dir: str | Path) -> RunFiles:
    """Read a run folder written by :func:`write_run`.

    Raises:
        UserError: not a run folder, or a file missing or unreadable.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"not a search run folder: {path} (expected a folder written by sned-search)")
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path} is not a complete search run folder: missing {', '.join(missing)}")
    try:
        settings = json.loads((path / "settings.json").read_text())
        pareto = json.loads((path / "pareto.json").read_text())
        frames = [_read_csv(path / name) for name in ("pareto.csv", "points.csv", "history.csv")]
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read run folder {path}: {str(exc).splitlines()[0]}") from None
    for key in ("config", "stats"):
        if key not in settings:
            raise UserError(f"{path / 'settings.json'}: missing {key!r}; was it written by sned-search?")
    verify = _read_csv(path / "verify.csv") if (path / "verify.csv").is_file() else None
    return RunFiles(path, settings, pareto, *frames, verify=verify)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a run with no front at all writes an empty file
        return pd.DataFrame()


__all__ = ["RUN_FILES", "RunFiles", "default_out_dir", "prepare_out_dir", "read_run", "write_run"]
