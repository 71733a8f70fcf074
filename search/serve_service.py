"""What the routes of ``sned serve`` call: request checking, searching off the event loop, subnet lookup.

:class:`SearchService` is plain Python over the registry and the caches (no routes, no HTTP
objects but the answers' models), so it can be driven and tested without a server. A bad request
is a :class:`~sned.search.serve_schema.RequestError` naming the field; a library
:class:`~sned.supernet.base.errors.SettingError` becomes one with its ``setting`` as the field, since
the API speaks :class:`~sned.search.engine.SearchConfig`'s names.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sned.search.commands import export_command, search_command, serve_run_folder
from sned.search.serve_cache import LRU, SearchCache
from sned.search.serve_registry import Experiment, FileHashes, Registry
from sned.search.serve_schema import ExperimentInfo, Experiments, RequestError, SearchRequest, SubnetInfo
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.space import SearchSpace, SpaceError, arch_id, arch_summary

ENUMERATE_LIMIT = 100_000  # /subnets enumerates spaces up to this many archs to find an unknown id
DEFAULT_MAX_EVALUATIONS = 500_000  # per request, in evaluation units (see SearchService._check_cost)
DEFAULT_CACHE_SIZE = 256  # finished search answers kept
DEFAULT_KNOWN_ARCHS = 4096  # archs of past fronts kept for /subnets (a 64-member front per resolution: ~20 searches)
DEFAULT_SPACE_INDEXES = 4  # arch-id indexes of enumerated spaces kept (each up to ENUMERATE_LIMIT rows)
SEARCHES_PER_ARCH = 8  # requests remembered per known arch (the most recent; /subnets lists them)
PREDICTORS_KEPT = 8  # loaded FilePredictors (table + predictor pairs) kept
GENERATION_COST = 64  # an NSGA-II generation's fixed overhead, in evaluations


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
        max_evaluations: the most work one request may ask for, in evaluation units (see
            :meth:`_check_cost`); bounds what a single request can cost the server.
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
            RequestError: an unknown experiment/device/predictor, a resolution outside the space, a
                setting the search config refuses, a search over the server's evaluation limit.
        """
        from sned.search.engine import SearchConfig

        exp = self.registry.get(req.experiment)
        space, space_hash = self.registry.space_and_hash(exp)
        for res in req.resolutions or ():
            if res not in space.resolutions:
                raise RequestError(f"resolution {res} is not in space {space.name!r}", "resolutions",
                                   list(space.resolutions))
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
            config = SearchConfig(experiment=exp.name, budget_ms=req.budget_ms,
                                  resolutions=tuple(req.resolutions or ()) or None, steps=req.steps,
                                  objectives=tuple(req.objectives), method=req.method, pop_size=req.pop_size,
                                  generations=req.generations, patience=req.patience, seed=req.seed)
        except SettingError as exc:  # the model checks most of this already; the config has the last word
            raise RequestError(str(exc), exc.setting, exc.valid) from None
        self._check_cost(space, config)
        settings = config.to_dict()
        key = json.dumps({"config": settings, "space_hash": space_hash, **files}, sort_keys=True)
        return exp, space, {"config": config, "files": files}, key

    def _check_cost(self, space: SearchSpace, config) -> None:
        """Refuse a request whose search would cost more than ``max_evaluations`` evaluation units.

        Exhaustive resolutions cost their arch count; NSGA-II costs ``generations x max(pop_size,
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
            raise RequestError(f"this search costs {total:,} evaluations (generations x max(pop_size, "
                               f"{GENERATION_COST}) per NSGA-II resolution, the arch count per exhaustive one), over "
                               f"this server's limit of {self.max_evaluations:,}; lower generations or pop_size, or ask "
                               f"for fewer resolutions", "generations")

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
        except SettingError as exc:
            # From valid-looking inputs: no subnet at any resolution meets the budget (budget_ms), or a
            # quality objective the chosen predictor does not predict (objectives: loss with an FVD predictor).
            raise RequestError(str(exc), exc.setting, exc.valid) from None
        except UserError as exc:
            raise RequestError(str(exc)) from None
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
            latency[device] = self._score(errors, path.stem, lambda p=path: _table_ms(space, p, X))
        for name, path in exp.predictors.items():
            fvd[name] = self._score(errors, name, lambda p=path: _predictor_fvd(space, p, X))
        analytic = self._analytic(space)
        latency["analytic"] = float(analytic.latency_ms(X)[0])
        mean, std = analytic.fvd(X)
        fvd["analytic"] = {"mean": float(mean[0]), "std": float(std[0])}
        export = export_command(wanted)
        note = ("RUN is a sned-search run folder whose front holds this arch; CKPT the supernet checkpoint")
        if searches:
            run = serve_run_folder(wanted)
            export = f"{search_command(exp.name, searches[0], run)} && {export_command(wanted, run)}"
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


__all__ = ["DEFAULT_CACHE_SIZE", "DEFAULT_KNOWN_ARCHS", "DEFAULT_MAX_EVALUATIONS", "DEFAULT_SPACE_INDEXES",
           "ENUMERATE_LIMIT", "GENERATION_COST", "SEARCHES_PER_ARCH", "SearchService"]
