"""``sned serve``: the subnet search as an HTTP service (FastAPI, run by uvicorn; ``--ray`` for Ray Serve).

The service answers the same questions as ``sned-search --json``, over the same
:func:`~sned.search.engine.run_search`, for clients that cannot run Python::

    sned serve                                   # http://127.0.0.1:8000/docs
    curl -s localhost:8000/experiments
    curl -s localhost:8000/search -H 'content-type: application/json' \\
         -d '{"experiment": "tiny", "budget_ms": 200, "res": [128]}'
    curl -s localhost:8000/subnets/<arch_id>
    SNED_TOKEN=secret sned serve --host 0.0.0.0  # any other address needs a token
    sned serve --ray --replicas 2                # the same app as a Ray Serve deployment

Endpoints (OpenAPI schema at ``/openapi.json``; docs at ``/docs`` (Swagger UI) and ``/redoc``, whose
scripts and styles the app serves itself from the ``fastapi-offline`` package, so they work offline):

* ``GET /health``: liveness, plus counters (searches run, cache size); never needs a token.
* ``GET /experiments``: the bundled experiments with their resolutions, latency tables (devices)
  and accuracy predictors.
* ``POST /search``: the fields of ``sned-search``; answers its ``--json`` object (no ``out`` key:
  the service writes no run folder). The header ``X-Sned-Cache`` says ``hit`` (answered from the
  cache), ``shared`` (joined an identical search in flight) or ``miss`` (searched).
* ``GET /subnets/{arch_id}``: an arch (from a search this server ran, else found by enumerating a
  small space), its predicted metrics per device and predictor, and how to export it.

Safety: requests name experiments, devices and predictors by registered name only (a name matches
:data:`NAME_PATTERN`, so ``../x`` and ``/etc/x`` are a 422 before any lookup); the files opened are
the ones discovered in the experiments folder, never a path from a request. Bad input is a 4xx
whose JSON body (:class:`ErrorBody`) names the field and the valid values; a search runs in a
worker thread, so ``/health`` answers while it runs.

Memory is bounded: finished answers, the archs of past fronts (``known_archs``), the arch-id
indexes of enumerated spaces (``space_indexes``) and loaded predictors are each an LRU cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam  # pathlib.Path keeps the plain name
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from sned.search.objectives import DEFAULT_OBJECTIVES, DEFAULT_PREDICTORS, DEFAULT_TABLE, OBJECTIVES
from sned.supernet.errors import UserError
from sned.supernet.space import SearchSpace, SpaceError, arch_id, arch_summary, load_space

# A registered name: letters, digits, '_', '-', '.', not starting with '.', no '/' or '\'. Every
# file the service opens is found by listing the experiments folder, and a request only picks
# among those names, so this pattern is the first of two fences (the second: dictionary lookup).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ARCH_ID_PATTERN = r"^[0-9a-f]{10}$"
TABLE_PREFIX, TABLE_SUFFIX = "latency-", ".parquet"  # device "cpu" -> latency-cpu.parquet
PREDICTOR_GLOBS = ("predictor*.npz", "predictor*.json")
ENUMERATE_LIMIT = 100_000  # /subnets enumerates spaces up to this many archs to find an unknown id
MAX_POP, MAX_GENS, MAX_STEPS = 512, 1000, 1000  # schema bounds; the server also caps pop x gens x res
DEFAULT_MAX_EVALUATIONS = 500_000  # per request, in evaluation units (see SearchService._check_cost)
DEFAULT_CACHE_SIZE = 256  # finished search answers kept
DEFAULT_KNOWN_ARCHS = 4096  # archs of past fronts kept for /subnets (a 64-member front per resolution: ~20 searches)
DEFAULT_SPACE_INDEXES = 4  # arch-id indexes of enumerated spaces kept (each up to ENUMERATE_LIMIT rows)
SEARCHES_PER_ARCH = 8  # requests remembered per known arch (the most recent; /subnets lists them)
PREDICTORS_KEPT = 8  # loaded FilePredictors (table + predictor pairs) kept
GENERATION_COST = 64  # an NSGA-II generation's fixed overhead, in evaluations
CACHE_HEADER = "X-Sned-Cache"
ObjectiveName = Literal[tuple(OBJECTIVES)]  # type: ignore[valid-type]  # generated from the registry


# ----------------------------------------------------------------------------- request / response models


class SearchRequest(BaseModel):
    """The body of ``POST /search``: the options of ``sned-search`` (names, never paths)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"experiment": "tiny", "budget_ms": 200, "res": [128], "analytic": True},
        {"experiment": "tiny", "budget_ms": 4000, "steps": 25, "res": [64, 128], "objectives": ["fvd", "latency"]}]})

    experiment: str = Field("tiny", pattern=NAME_PATTERN, description="a registered experiment (GET /experiments)")
    device: str | None = Field(None, pattern=NAME_PATTERN,
                               description="latency table by device name (latency-<device>.parquet); "
                                           "default: cpu, else the experiment's first table")
    predictor: str | None = Field(None, pattern=NAME_PATTERN,
                                  description="accuracy predictor by file name (e.g. predictor.npz); "
                                              "default: the experiment's bundled one")
    analytic: bool = Field(False, description="score with the closed-form stand-in cost model instead of "
                                              "a table and predictor (like sned-search --analytic)")
    budget_ms: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="latency budget of `steps` denoising steps, ms; null: none")
    res: list[Annotated[int, Field(gt=0)]] | None = Field(None, min_length=1, max_length=16,
                                                          description="resolutions in px; null: all")
    objectives: list[ObjectiveName] = Field(list(DEFAULT_OBJECTIVES), min_length=2,  # type: ignore[valid-type]
                                            max_length=len(OBJECTIVES))
    method: Literal["auto", "nsga2", "exhaustive"] = "auto"
    pop: int = Field(64, ge=4, le=MAX_POP, description="NSGA-II population size")
    gens: int = Field(100, ge=1, le=MAX_GENS, description="NSGA-II generations at most")
    patience: int = Field(10, ge=1, le=MAX_GENS, description="hypervolume-stagnation window")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    steps: int = Field(1, ge=1, le=MAX_STEPS, description="denoising steps the budget covers")


class ErrorBody(BaseModel):
    """Every 4xx answer: what was wrong, with which field, and what would be accepted."""

    error: str
    field: str | None = None
    valid: list[Any] | None = None
    errors: list[dict[str, Any]] | None = None  # every validation error, when there were several


class FrontMember(BaseModel):
    """A front member; the predicted quality is ``fvd_pred``/``fvd_std`` or, for a predictor fit on the
    held-out loss (``target`` of the answer), ``loss_pred``/``loss_std``."""

    arch_id: str
    arch: dict[str, Any]
    latency_ms: float
    fvd_pred: float | None = None
    fvd_std: float | None = None
    loss_pred: float | None = None
    loss_std: float | None = None
    params: int
    gflops: float


class SearchAnswer(BaseModel):
    """``sned-search --json`` without ``out``: fronts per resolution (keys are px as strings)."""

    experiment: str
    space: str
    space_hash: str
    device: str
    target: str = Field("fvd", description="what the accuracy predictor predicts: fvd or loss "
                                           "(names the members' <target>_pred columns)")
    budget_ms: float | None
    steps: int
    objectives: list[str]
    method: str
    methods: dict[str, str]
    fronts: dict[str, list[FrontMember]]


class Health(BaseModel):
    status: Literal["ok"]
    searches_run: int
    searches_in_flight: int
    cached: int
    known_archs: int = Field(description="archs of past fronts kept for /subnets (bounded, LRU)")
    space_indexes: int = Field(description="arch-id indexes of enumerated spaces kept (bounded, LRU)")
    uptime_s: float


class ExperimentInfo(BaseModel):
    name: str
    space: str | None = None
    space_hash: str | None = None
    resolutions: list[int] = []
    frames: int | None = None
    size: int | None = None
    devices: list[str] = []
    default_device: str | None = None
    predictors: list[str] = []
    default_predictor: str | None = None
    error: str | None = None  # an experiment whose YAML does not load is listed with the reason


class Experiments(BaseModel):
    experiments: list[ExperimentInfo]


class SubnetInfo(BaseModel):
    arch_id: str
    experiment: str
    arch: dict[str, Any]
    summary: str
    res: int
    params: int
    gflops: float
    latency_ms: dict[str, float | None] = Field(description="predicted ms of one denoising step per device")
    fvd: dict[str, dict[str, float] | None] = Field(description="predicted FVD mean/std per predictor")
    errors: dict[str, str] = Field(default_factory=dict, description="tables/predictors that could not score it")
    found_in: Literal["search", "space"]
    searches: list[dict[str, Any]] = Field(default_factory=list, description="requests whose front holds it")
    export_command: str
    note: str = ""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody, "description": "bad request"}}


class RequestError(Exception):
    """A bad request: answered with ``status`` and an :class:`ErrorBody`."""

    def __init__(self, message: str, field: str | None = None, valid: list[Any] | None = None, status: int = 422):
        super().__init__(message)
        self.field, self.valid, self.status = field, valid, status

    def response(self) -> JSONResponse:
        body = ErrorBody(error=str(self), field=self.field, valid=self.valid)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=self.status)


# ----------------------------------------------------------------------------- the experiments registry


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its YAML and the artifacts found next to it, by name."""

    name: str
    yaml: Path
    tables: dict[str, Path]  # device -> latency-<device>.parquet
    predictors: dict[str, Path]  # file name -> file

    @property
    def default_device(self) -> str | None:
        default = DEFAULT_TABLE[len(TABLE_PREFIX):-len(TABLE_SUFFIX)]
        return default if default in self.tables else next(iter(self.tables), None)

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
            tables = {p.name[len(TABLE_PREFIX):-len(TABLE_SUFFIX)]: p
                      for p in sorted(folder.glob(f"{TABLE_PREFIX}*{TABLE_SUFFIX}")) if p.is_file()}
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
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with self._lock:
            self._known[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest


# ----------------------------------------------------------------------------- the caches

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A mapping bounded to ``size`` entries: putting one more drops the least recently used.

    Not thread-safe on its own: :class:`SearchService` holds its lock around every call.

    Args:
        size: the most entries kept, >= 1.

    Raises:
        ValueError: ``size`` is not a positive integer.
    """

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"LRU size must be a positive integer, got {size!r}")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used, dropping the least recently used past ``size``."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class SearchCache:
    """Finished answers (LRU, ``size`` entries) and the searches in flight, by cache key.

    An identical request while the search runs awaits that search instead of starting another.
    All methods run on the server's event loop, so no locks are needed.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._done: OrderedDict[str, bytes] = OrderedDict()
        self._running: dict[str, asyncio.Task] = {}
        self.searches_run = 0

    def __len__(self) -> int:
        return len(self._done)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def get(self, key: str, search: Callable[[], Awaitable[bytes]]) -> tuple[bytes, str]:
        """The answer for ``key`` and where it came from: ``hit``, ``shared`` or ``miss``."""
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key], "hit"
        task = self._running.get(key)
        how = "shared"
        if task is None:
            how = "miss"
            self.searches_run += 1
            task = asyncio.ensure_future(search())
            self._running[key] = task
            task.add_done_callback(lambda t: self._finish(key, t))
        # shield: a client that disconnects cancels its own wait, not the search others wait for.
        return await asyncio.shield(task), how

    def _finish(self, key: str, task: asyncio.Task) -> None:
        self._running.pop(key, None)
        if task.cancelled() or task.exception() is not None:  # .exception() also marks it retrieved
            return
        self._done[key] = task.result()
        while len(self._done) > self.size:
            self._done.popitem(last=False)


# ----------------------------------------------------------------------------- the service


@dataclass
class _KnownArch:
    """An arch of a front this server returned, and the requests (by canonical JSON) whose front held it."""

    experiment: str
    arch: dict[str, Any]
    searches: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def add(self, key: str, request: dict[str, Any]) -> None:
        self.searches[key] = request
        self.searches.move_to_end(key)
        while len(self.searches) > SEARCHES_PER_ARCH:
            self.searches.popitem(last=False)


@dataclass(frozen=True)
class _SpaceIndex:
    """Every arch of an enumerable space (``space.enumerate()``) and each arch id's row in it."""

    X: np.ndarray  # (n, n_genes) int
    rows: dict[str, int]


class SearchService:
    """What the routes call: request resolution, searching (off the event loop), subnet lookup.

    Args:
        registry: where experiments and their artifacts are found.
        cache_size: finished answers kept.
        max_searches: searches running at once (each uses one CPU core for numpy/pymoo).
        max_evaluations: the most NSGA-II evaluations one request may ask for (``pop x gens x
            resolutions``); bounds the work a single request can cost the server.
        known_archs: archs of past fronts kept for ``/subnets`` (LRU); an evicted one is found
            again by enumerating its space, where that space is small enough.
        space_indexes: arch-id indexes of enumerated spaces kept (LRU); an evicted one is rebuilt.
    """

    def __init__(self, registry: Registry, cache_size: int = DEFAULT_CACHE_SIZE, max_searches: int = 2,
                 max_evaluations: int = DEFAULT_MAX_EVALUATIONS, known_archs: int = DEFAULT_KNOWN_ARCHS,
                 space_indexes: int = DEFAULT_SPACE_INDEXES):
        self.registry = registry
        self.cache = SearchCache(cache_size)
        self.hashes = FileHashes()
        self.max_searches = max_searches
        self.max_evaluations = max_evaluations
        self._semaphore: asyncio.Semaphore | None = None  # made on the serving loop, not at import
        self._predictors: LRU[tuple, Any] = LRU(PREDICTORS_KEPT)
        self._indexes: LRU[str, _SpaceIndex] = LRU(space_indexes)  # by space hash
        self._known: LRU[str, _KnownArch] = LRU(known_archs)  # by arch id
        self._lock = threading.Lock()
        self.started = time.monotonic()

    # -- POST /search

    def resolve(self, req: SearchRequest) -> tuple[Experiment, SearchSpace, dict[str, Any], str]:
        """Check a request against the registry; returns its experiment, space, job (config, files) and cache key.

        Raises:
            RequestError: an unknown experiment/device/predictor, a resolution outside the space.
        """
        from sned.search.engine import SearchConfig

        exp = self.registry.get(req.experiment)
        space, space_hash = self.registry.space_and_hash(exp)
        for res in req.res or ():
            if res not in space.resolutions:
                raise RequestError(f"resolution {res} is not in space {space.name!r}", "res", list(space.resolutions))
        files: dict[str, Any] = {"analytic": True}
        if not req.analytic:
            device = req.device or exp.default_device
            if device not in exp.tables:
                raise RequestError(f"no latency table for device {device!r} in experiment {exp.name!r}"
                                   + ("" if exp.tables else " (set analytic: true)"), "device", sorted(exp.tables))
            predictor = req.predictor or exp.default_predictor
            if not exp.predictors:
                raise RequestError(f"experiment {exp.name!r} has no accuracy predictor yet (run sned fit, "
                                   f"or set analytic: true)", "predictor", [])
            if predictor not in exp.predictors:
                raise RequestError(f"no accuracy predictor {predictor!r} in experiment {exp.name!r}", "predictor",
                                   sorted(exp.predictors))
            files = {"device": device, "table_sha256": self.hashes(exp.tables[device]),
                     "predictor": predictor, "predictor_sha256": self.hashes(exp.predictors[predictor])}
        try:
            config = SearchConfig(experiment=exp.name, budget_ms=req.budget_ms, resolutions=tuple(req.res or ()) or None,
                                  steps=req.steps, objectives=tuple(req.objectives), method=req.method,
                                  pop_size=req.pop, generations=req.gens, patience=req.patience, seed=req.seed)
        except UserError as exc:  # the model checks most of this already; the config has the last word
            raise RequestError(str(exc)) from None
        self._check_cost(space, config)
        settings = config.to_dict()
        key = json.dumps({"config": settings, "space_hash": space_hash, **files}, sort_keys=True)
        return exp, space, {"config": config, "files": files}, key

    def _check_cost(self, space: SearchSpace, config) -> None:
        """Refuse a request whose search would cost more than ``max_evaluations`` evaluation units.

        Exhaustive resolutions cost their arch count; NSGA-II costs ``gens x max(pop,
        GENERATION_COST)`` per resolution, because each generation has a fixed overhead (survival,
        bookkeeping) worth about that many evaluations, whatever the population.
        """
        total = 0
        for res in config.resolutions or space.resolutions:
            count = space.count(res)
            if config.method == "exhaustive" or (config.method == "auto" and count <= config.exhaustive_limit):
                if count > self.max_evaluations:
                    raise RequestError(f"an exhaustive search at {res} px evaluates {count:,} archs, over this "
                                       f"server's limit of {self.max_evaluations:,}; use method nsga2", "method",
                                       ["nsga2"])
                total += count
            else:
                total += config.generations * max(config.pop_size, GENERATION_COST)
        if total > self.max_evaluations:
            raise RequestError(f"this search costs {total:,} evaluations (gens x max(pop, {GENERATION_COST}) per "
                               f"NSGA-II resolution, the arch count per exhaustive one), over this server's limit "
                               f"of {self.max_evaluations:,}; lower gens or pop, or ask for fewer resolutions", "gens")

    async def search(self, req: SearchRequest) -> tuple[bytes, str]:
        """The JSON answer for a request (bytes) and ``hit``/``shared``/``miss``."""
        exp, space, job, key = self.resolve(req)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_searches)

        async def run() -> bytes:
            async with self._semaphore:
                # A worker thread: the loop keeps serving /health and cache hits while numpy works.
                return await asyncio.to_thread(self._run_search, exp, space, job, req)

        return await self.cache.get(key, run)

    def _run_search(self, exp: Experiment, space: SearchSpace, job: dict[str, Any], req: SearchRequest) -> bytes:
        from sned.search.engine import run_search

        config, files = job["config"], job["files"]
        predictors = self._file_predictors(exp, space, files) if not req.analytic else self._analytic(space)
        try:
            result = run_search(config, predictors, space=space, progress=False)
        except UserError as exc:
            message = str(exc)
            # The engine's UserErrors from valid inputs: no subnet at any resolution meets the budget, or a
            # quality objective the chosen predictor does not predict (loss with an FVD predictor).
            where = ("budget_ms" if message.startswith("budget")
                     else "objectives" if message.startswith("objective") else None)
            raise RequestError(message, where) from None
        answer = result.to_json()
        request = req.model_dump(exclude_defaults=True)
        request_key = json.dumps(request, sort_keys=True)
        with self._lock:
            for rows in answer["fronts"].values():
                for row in rows:
                    known = self._known.get(row["arch_id"])
                    if known is None:
                        known = _KnownArch(exp.name, row["arch"])
                        self._known.put(row["arch_id"], known)
                    known.add(request_key, request)
        return json.dumps(answer).encode()

    def _analytic(self, space: SearchSpace):
        from sned.search.objectives import AnalyticPredictors

        return AnalyticPredictors(space)

    def _file_predictors(self, exp: Experiment, space: SearchSpace, files: dict[str, Any]):
        """A FilePredictors per (space, table, predictor) content, kept for the next request (LRU)."""
        from sned.search.objectives import FilePredictors

        key = (space.hash, files["table_sha256"], files["predictor_sha256"])
        with self._lock:
            cached = self._predictors.get(key)
        if cached is not None:
            return cached
        try:
            predictors = FilePredictors(space, exp.tables[files["device"]], exp.predictors[files["predictor"]])
        except UserError as exc:  # a corrupt or foreign bundled file: the request named it
            raise RequestError(str(exc), "device", sorted(exp.tables)) from None
        with self._lock:
            self._predictors.put(key, predictors)
        return predictors

    # -- GET /experiments

    def experiments(self) -> Experiments:
        out = []
        for exp in self.registry.experiments().values():
            info = ExperimentInfo(name=exp.name, devices=sorted(exp.tables), default_device=exp.default_device,
                                  predictors=sorted(exp.predictors), default_predictor=exp.default_predictor)
            try:
                space = self.registry.space(exp)
            except (SpaceError, UserError, OSError, ValueError) as exc:
                info.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            else:
                info.space, info.space_hash, info.frames = space.name, space.hash, space.frames
                info.resolutions, info.size = list(space.resolutions), space.size
            out.append(info)
        return Experiments(experiments=out)

    # -- GET /subnets/{arch_id}

    def subnet(self, wanted: str, experiment: str | None) -> SubnetInfo:
        """Find ``wanted`` and score it with every table and predictor of its experiment.

        Raises:
            RequestError: an unknown experiment (422) or an id found nowhere (404).
        """
        experiments = self.registry.experiments()
        if experiment is not None and experiment not in experiments:
            raise RequestError(f"unknown experiment {experiment!r}", "experiment", sorted(experiments))
        with self._lock:
            known = self._known.get(wanted)
        found_in = "search"
        if known is not None and experiment in (None, known.experiment) and known.experiment in experiments:
            exp = experiments[known.experiment]
            arch, searches = known.arch, list(known.searches.values())
        else:
            found_in, searches = "space", []
            exp, arch = self._enumerated(wanted, [experiments[experiment]] if experiment else list(experiments.values()))
        space = self.registry.space(exp)
        arch = space.validate(arch)
        X = space.encode([arch])
        latency: dict[str, float | None] = {}
        fvd: dict[str, dict[str, float] | None] = {}
        errors: dict[str, str] = {}
        for device, path in exp.tables.items():
            latency[device] = self._score(errors, f"latency-{device}", lambda p=path: _table_ms(space, p, X))
        for name, path in exp.predictors.items():
            fvd[name] = self._score(errors, name, lambda p=path: _predictor_fvd(space, p, X))
        analytic = self._analytic(space)
        latency["analytic"] = float(analytic.latency_ms(X)[0])
        mean, std = analytic.fvd(X)
        fvd["analytic"] = {"mean": float(mean[0]), "std": float(std[0])}
        export = f"sned export RUN/pareto.json --id {wanted} --ckpt CKPT --out subnet-{wanted}"
        note = ("RUN is a sned-search run folder whose front holds this arch; CKPT the supernet checkpoint")
        if searches:
            run = f"runs/serve-{wanted}"
            export = f"{_search_command(exp.name, searches[0], run)} && {export.replace('RUN', run)}"
            note = "the search reproduces the front that holds this arch; CKPT is the supernet checkpoint"
        return SubnetInfo(arch_id=wanted, experiment=exp.name, arch=arch, summary=arch_summary(arch), res=arch["res"],
                          params=int(space.params(X)[0]), gflops=float(space.flops(X)[0] / 1e9), latency_ms=latency,
                          fvd=fvd, errors=errors, found_in=found_in, searches=searches, export_command=export,
                          note=note)

    def _enumerated(self, wanted: str, experiments: list[Experiment]) -> tuple[Experiment, dict[str, Any]]:
        skipped = []
        for exp in experiments:
            try:
                space = self.registry.space(exp)
            except (SpaceError, UserError, OSError, ValueError):
                continue
            if space.size > ENUMERATE_LIMIT:
                skipped.append(exp.name)
                continue
            with self._lock:
                index = self._indexes.get(space.hash)
            if index is None:  # built outside the lock: /health and other lookups go on meanwhile
                X = space.enumerate()
                index = _SpaceIndex(X, {arch_id(a): i for i, a in enumerate(space.decode(X))})
                with self._lock:
                    self._indexes.put(space.hash, index)
            row = index.rows.get(wanted)
            if row is not None:
                return exp, space.decode(index.X[row:row + 1])[0]
        hint = (f" (too large to enumerate: {', '.join(skipped)}; run a search whose front holds it first)"
                if skipped else "")
        raise RequestError(f"arch id {wanted!r} is in no search this server ran and in no enumerable space{hint}",
                           "arch_id", status=404)

    @staticmethod
    def _score(errors: dict[str, str], what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (UserError, SpaceError, OSError, ValueError, KeyError) as exc:  # a bad file, not a bad request
            errors[what] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return None


def _table_ms(space: SearchSpace, path: Path, X) -> float:
    from sned.predictors.latency import LatencyTable

    table = LatencyTable.load(path)
    table.check_space(space)
    return float(table.predict(space, X)[0])


def _predictor_fvd(space: SearchSpace, path: Path, X) -> dict[str, float]:
    from sned.predictors.accuracy import AccuracyPredictor

    predictor = AccuracyPredictor.load(path)
    predictor.check_space(space)
    mean, std = predictor.predict(X)
    return {"mean": float(mean[0]), "std": float(std[0])}


def _search_command(experiment: str, request: dict[str, Any], out: str) -> str:
    """The ``sned search`` command line that answers the same as ``request`` (device/predictor by bundled file)."""
    argv = ["sned", "search", "--experiment", experiment]
    flags = {"budget_ms": "--budget-ms", "steps": "--steps", "method": "--method", "pop": "--pop", "gens": "--gens",
             "patience": "--patience", "seed": "--seed"}
    for name, flag in flags.items():
        if request.get(name) is not None:
            argv += [flag, str(request[name])]
    if request.get("res"):
        argv += ["--res", ",".join(map(str, request["res"]))]
    if request.get("objectives"):
        argv += ["--objectives", ",".join(request["objectives"])]
    if request.get("analytic"):
        argv.append("--analytic")
    if request.get("device"):
        argv += ["--table", f"<experiment folder>/{experiment}/{TABLE_PREFIX}{request['device']}{TABLE_SUFFIX}"]
    if request.get("predictor"):
        argv += ["--predictor", f"<experiment folder>/{experiment}/{request['predictor']}"]
    return shlex.join([*argv, "--out", out])


# ----------------------------------------------------------------------------- the app


def create_app(*, root: str | Path | None = None, token: str | None = None, cache_size: int = DEFAULT_CACHE_SIZE,
               max_searches: int = 2, max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
               known_archs: int = DEFAULT_KNOWN_ARCHS, space_indexes: int = DEFAULT_SPACE_INDEXES) -> FastAPI:
    """The FastAPI app of ``sned serve`` (also what each Ray Serve replica builds).

    ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from the app itself (``fastapi-offline``'s
    bundled files under ``/static-offline-docs``), never from a CDN.

    Args:
        root: the experiments folder (``*.yaml`` + ``<name>/`` artifacts); None: the installed bundle.
        token: when set, every request but ``/health`` needs ``Authorization: Bearer <token>``.
        cache_size: finished search answers kept (LRU).
        max_searches: searches running at once; more wait their turn.
        max_evaluations: the most work one request may ask for, in evaluations (see
            :meth:`SearchService._check_cost`); a larger request is a 422 naming ``gens`` or ``method``.
        known_archs: archs of returned fronts kept for ``/subnets`` (LRU).
        space_indexes: arch-id indexes of enumerated spaces kept for ``/subnets`` (LRU).

    Returns:
        The app; ``app.state.service`` is its :class:`SearchService`.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        sned_version = version("sned")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        sned_version = "0"
    # FastAPIOffline: a plain FastAPI app whose docs pages load their assets from this server.
    # validatorUrl None: Swagger UI would otherwise offer to send the schema to an online validator.
    app = FastAPIOffline(title="sned search service", version=sned_version,
                         description="Pareto-optimal subnets of an elastic video-diffusion supernet under a latency "
                                     "budget: the HTTP form of `sned-search --json`.",
                         swagger_ui_parameters={"validatorUrl": None})
    service = SearchService(Registry(root), cache_size=cache_size, max_searches=max_searches,
                            max_evaluations=max_evaluations, known_archs=known_archs, space_indexes=space_indexes)
    app.state.service = service

    if token:
        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def require_token(request: Request, call_next):
            if request.url.path != "/health":
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):  # constant time: no guessing by timing
                    body = ErrorBody(error="missing or wrong token: send 'Authorization: Bearer <token>'",
                                     field="Authorization")
                    return JSONResponse(body.model_dump(exclude_none=True), status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    def openapi() -> dict[str, Any]:
        # The schema lists the experiments registered when it is first built, so clients (and
        # schemathesis) see the valid names; requests are still checked against the live registry.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            props = schema["components"]["schemas"]["SearchRequest"]["properties"]
            registered = service.registry.experiments()
            props["experiment"]["enum"] = sorted(registered) or ["tiny"]
            resolutions: set[int] = set()
            for exp in registered.values():
                with contextlib.suppress(SpaceError, UserError, OSError, ValueError):  # listed with its error
                    resolutions.update(service.registry.space(exp).resolutions)
            for name, values in (("device", {d for e in registered.values() for d in e.tables}),
                                 ("predictor", {p for e in registered.values() for p in e.predictors}),
                                 ("res", resolutions)):
                branch = props[name]["anyOf"][0]  # the non-null branch of "X | None"
                target = branch["items"] if name == "res" else branch
                if values:
                    target["enum"] = sorted(values)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            errors.append({"field": ".".join(loc) or None, "message": err.get("msg", ""), "type": err.get("type", "")})
        field_name = errors[0]["field"] if errors else None
        valid = _valid_values(field_name, service)
        message = f"{field_name}: {errors[0]['message']}" if errors and field_name else (
            errors[0]["message"] if errors else "invalid request")
        body = ErrorBody(error=message, field=field_name, valid=valid,
                         errors=jsonable_encoder(errors) if len(errors) > 1 else None)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(UserError)
    @app.exception_handler(SpaceError)
    async def user_error(request: Request, exc: Exception) -> JSONResponse:
        return RequestError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__).response()

    @app.get("/health", response_model=Health, summary="liveness and counters (no token needed)")
    async def health() -> Health:
        return Health(status="ok", searches_run=service.cache.searches_run, searches_in_flight=service.cache.in_flight,
                      cached=len(service.cache), known_archs=len(service._known),
                      space_indexes=len(service._indexes), uptime_s=time.monotonic() - service.started)

    @app.get("/experiments", response_model=Experiments, summary="registered experiments, devices, predictors")
    async def experiments() -> Experiments:
        return await asyncio.to_thread(service.experiments)  # loads YAMLs: keep it off the loop

    @app.post("/search", response_model=None, responses={200: {"model": SearchAnswer}, **ERROR_RESPONSES},
              summary="Pareto fronts per resolution (the JSON of sned-search --json)")
    async def search(req: SearchRequest) -> Response:
        t0 = time.perf_counter()
        body, how = await service.search(req)
        # Server-Timing: the service's own time (after parsing), to tell it from queueing in benchmarks.
        return Response(body, media_type="application/json",
                         headers={CACHE_HEADER: how, "Server-Timing": f"search;dur={(time.perf_counter() - t0) * 1e3:.3f}"})

    @app.get("/subnets/{arch_id}", response_model=SubnetInfo,
             responses={404: {"model": ErrorBody, "description": "unknown arch id"}, **ERROR_RESPONSES},
             summary="an arch, its predicted metrics per device, and how to export it")
    async def subnet(arch_id: Annotated[str, PathParam(pattern=ARCH_ID_PATTERN,
                                                       description="10 hex digits of the arch's canonical-JSON sha1")],
                     experiment: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None) -> SubnetInfo:
        return await asyncio.to_thread(service.subnet, arch_id, experiment)

    return app


def _valid_values(field_name: str | None, service: SearchService) -> list[Any] | None:
    """The accepted values of a field, for enum-like fields (generated from the registries)."""
    top = (field_name or "").split(".")[0]
    if top == "experiment":
        return sorted(service.registry.experiments())
    if top == "objectives":
        return list(OBJECTIVES)
    if top == "method":
        from sned.search.engine import METHODS

        return list(METHODS)
    return None


# ----------------------------------------------------------------------------- the CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:\n" + "\n".join(line for line in (__doc__ or "").splitlines() if "sned serve" in line)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1; any other needs --token or SNED_TOKEN)")
    parser.add_argument("--port", default=8000, type=int, help="port (default: 8000)")
    parser.add_argument("--token", default=None,
                        help="require 'Authorization: Bearer TOKEN' on every request but /health "
                             "(default: $SNED_TOKEN, preferable: a command line is visible to other users)")
    parser.add_argument("--cache-size", default=DEFAULT_CACHE_SIZE, type=int,
                        help=f"search answers kept (default: {DEFAULT_CACHE_SIZE})")
    parser.add_argument("--known-archs", default=DEFAULT_KNOWN_ARCHS, type=int,
                        help=f"archs of returned fronts kept for /subnets (default: {DEFAULT_KNOWN_ARCHS})")
    parser.add_argument("--space-indexes", default=DEFAULT_SPACE_INDEXES, type=int,
                        help=f"arch-id indexes of enumerated spaces kept for /subnets (default: {DEFAULT_SPACE_INDEXES})")
    parser.add_argument("--max-searches", default=2, type=int, help="searches running at once (default: 2)")
    parser.add_argument("--max-evaluations", default=DEFAULT_MAX_EVALUATIONS, type=int,
                        help=f"the most work one request may ask for, in evaluations: the arch count per "
                             f"exhaustive resolution, gens x max(pop, {GENERATION_COST}) per NSGA-II one "
                             f"(default: {DEFAULT_MAX_EVALUATIONS:,})")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    ray = parser.add_argument_group("Ray Serve")
    ray.add_argument("--ray", action="store_true", help="deploy with Ray Serve instead of a single uvicorn process")
    ray.add_argument("--address", default=None, help="Ray cluster address (default: start Ray locally)")
    ray.add_argument("--replicas", default=1, type=int, help="Ray Serve replicas (default: 1)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("SNED_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise UserError(f"--host {args.host}: binding a non-loopback address needs a token "
                        f"(--token TOKEN or SNED_TOKEN); clients then send 'Authorization: Bearer TOKEN'")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0-65535")
    for name in ("cache_size", "known_archs", "space_indexes", "max_searches", "max_evaluations", "replicas"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer >= 1")
    Registry().experiments()  # fail early (exit 2) if the bundle is missing, before binding a port
    if args.ray:
        import importlib.util

        if importlib.util.find_spec("grpc_reflection") is None or importlib.util.find_spec("ray.serve") is None:
            raise UserError("--ray needs Ray Serve's dependencies: pip install 'sned[cluster]' (or 'ray[serve]')")
        from sned.search.serve_ray import deploy

        deploy(host=args.host, port=args.port, token=token, address=args.address, replicas=args.replicas,
               cache_size=args.cache_size, max_searches=args.max_searches, max_evaluations=args.max_evaluations,
               known_archs=args.known_archs, space_indexes=args.space_indexes)
        return 0
    import uvicorn

    uvicorn.run(create_app(token=token, cache_size=args.cache_size, max_searches=args.max_searches,
                           max_evaluations=args.max_evaluations, known_archs=args.known_archs,
                           space_indexes=args.space_indexes),
                host=args.host, port=args.port, log_level=args.log_level)
    return 0


__all__ = ["LRU", "ErrorBody", "Experiment", "Registry", "SearchAnswer", "SearchCache", "SearchRequest", "SearchService",
           "SubnetInfo", "add_arguments", "create_app", "is_loopback", "run"]
