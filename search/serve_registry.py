"""The experiments ``sned serve`` may use, found by listing a folder, and content hashes of their files.

A request names an experiment, a device and a predictor; this registry turns those names into the
files discovered in the experiments folder (``<root>/<name>.yaml`` and ``<root>/<name>/``), so no
path from a request is ever opened.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sned.search.serve_schema import NAME_PATTERN, RequestError
from sned.supernet.base.artifacts import (
    DEFAULT_DEVICE,
    DEFAULT_PREDICTORS,
    LATENCY_GLOB,
    PREDICTOR_GLOBS,
    table_device,
)
from sned.supernet.base.files import file_sha256
from sned.supernet.space import SearchSpace, load_space


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its YAML and the artifacts found next to it, by name."""

    name: str
    yaml: Path
    tables: dict[str, Path]  # device -> latency-<device>.parquet
    predictors: dict[str, Path]  # file name -> file

    @property
    def default_device(self) -> str | None:
        return DEFAULT_DEVICE if DEFAULT_DEVICE in self.tables else next(iter(self.tables), None)

    @property
    def default_predictor(self) -> str | None:
        return next((name for name in DEFAULT_PREDICTORS if name in self.predictors), next(iter(self.predictors), None))


class Registry:
    """The experiments a server may use: ``<root>/*.yaml`` and their artifacts in ``<root>/<name>/``.

    The folder listing is kept for ``refresh_s`` seconds, so artifacts written while the server
    runs (e.g. a predictor by ``sned pipeline``) are picked up within that time without listing the
    folder on every request; spaces are cached by YAML mtime.

    Args:
        root: the experiments folder; None means the installed ``sned.experiments`` package.
        refresh_s: how long a folder listing is reused.
    """

    def __init__(self, root: str | Path | None = None, refresh_s: float = 1.0):
        self.root = Path(str(resources.files("sned.experiments"))) if root is None else Path(root)
        self.refresh_s = refresh_s
        self._listing: tuple[float, dict[str, Experiment]] | None = None
        self._spaces: dict[Path, tuple[int, SearchSpace, str]] = {}
        self._lock = threading.Lock()

    def experiments(self) -> dict[str, Experiment]:
        """Every registered experiment by name (a fresh listing at most ``refresh_s`` old)."""
        listing = self._listing
        now = time.monotonic()
        if listing is not None and now - listing[0] < self.refresh_s:
            return listing[1]
        found = self._scan()
        self._listing = (now, found)
        return found

    def _scan(self) -> dict[str, Experiment]:
        found: dict[str, Experiment] = {}
        for yaml in sorted(self.root.glob("*.yaml")):
            name = yaml.stem
            if not re.match(NAME_PATTERN, name):
                continue  # a name no request could ask for
            folder = self.root / name
            tables = {table_device(p.name): p for p in sorted(folder.glob(LATENCY_GLOB)) if p.is_file()}
            predictors = {p.name: p for pattern in PREDICTOR_GLOBS for p in sorted(folder.glob(pattern)) if p.is_file()}
            found[name] = Experiment(name, yaml, {k: v for k, v in tables.items() if re.match(NAME_PATTERN, k)},
                                     predictors)
        return found

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``.

        Raises:
            RequestError: no such experiment (names the valid ones).
        """
        experiments = self.experiments()
        if name not in experiments:
            raise RequestError(f"unknown experiment {name!r}", "experiment", sorted(experiments))
        return experiments[name]

    def space(self, experiment: Experiment) -> SearchSpace:
        """The experiment's search space (loaded once per YAML modification)."""
        return self.space_and_hash(experiment)[0]

    def space_and_hash(self, experiment: Experiment) -> tuple[SearchSpace, str]:
        """The space and its hash (``space.hash`` serialises the spec each time; this does it once)."""
        mtime = experiment.yaml.stat().st_mtime_ns
        with self._lock:
            cached = self._spaces.get(experiment.yaml)
        if cached is not None and cached[0] == mtime:
            return cached[1], cached[2]
        space = load_space(experiment.yaml)
        with self._lock:
            self._spaces[experiment.yaml] = (mtime, space, space.hash)
        return space, space.hash


class FileHashes:
    """sha256 of files, recomputed only when a file's size or mtime changes (the cache key needs them)."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> str:
        st = path.stat()
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
            return known[2]
        digest = file_sha256(path)
        with self._lock:
            self._known[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest


__all__ = ["Experiment", "FileHashes", "Registry"]
