"""``run_search``: Pareto-optimal subnets per resolution under a latency budget (torch-free).

For each requested resolution the engine either

* evaluates the whole space at that resolution (``exhaustive``: ``space.enumerate(res)`` scored in
  one vectorised call) and returns the exact front, or
* runs NSGA-II (pymoo) on the integer genes (``nsga2``), stopping after ``generations`` or when
  the front's hypervolume has stalled for ``patience`` generations.

``method="auto"`` picks ``exhaustive`` where ``space.count(res) <= exhaustive_limit``. Both
methods share the objective registry, the budget constraint (``steps * latency_ms <= budget_ms``)
and one normalisation box per resolution (objectives of the space's smallest and largest subnet),
so their hypervolumes can be compared.

Example (an analytic cost model, no files needed)::

    from sned.search import SearchConfig, run_search
    from sned.search.objectives import AnalyticPredictors
    from sned.supernet.space import load_space

    space = load_space("tiny")
    result = run_search(SearchConfig(budget_ms=200, resolutions=(128,)), AnalyticPredictors(space), space=space)
    result.fronts[128]  # DataFrame sorted by latency: arch_id, latency_ms, fvd_pred, fvd_std, ...

The predicted quality's columns are named after the accuracy predictor's target
(``result.target``): ``fvd_pred``/``fvd_std``, or ``loss_pred``/``loss_std`` for a predictor fit
with ``sned fit --target loss`` (searched with ``objectives=("loss", "latency")``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pandas as pd

from sned.search.objectives import (
    DEFAULT_OBJECTIVES,
    DEFAULT_PREDICTORS,
    DEFAULT_TABLE,
    OBJECTIVES,
    FilePredictors,
    Predictors,
    check_objectives,
    columns,
    decoder_ms,
    default_artifact,
    evaluate,
    parse_objectives,
    predictor_target,
    quality_columns,
)
from sned.search.pareto import hypervolume, non_dominated
from sned.supernet.base.errors import SettingError
from sned.supernet.base.settings import check_keys
from sned.supernet.space import SearchSpace, arch_id, arch_summary, load_space

Method = Literal["auto", "nsga2", "exhaustive"]
METHODS: tuple[str, ...] = ("auto", "nsga2", "exhaustive")


def front_columns(target: str = "fvd") -> tuple[str, ...]:
    """The columns of a front for predictors of ``target`` (``fvd_pred``/``fvd_std`` or ``loss_pred``/...)."""
    return ("arch_id", "res", *columns(target)[:3], "params", "gflops", "summary", "arch")


def point_columns(target: str = "fvd") -> tuple[str, ...]:
    """The columns of the evaluated points for predictors of ``target``."""
    return (*front_columns(target)[:-1], "feasible", "on_front", "generation")


FRONT_COLUMNS = front_columns()  # those of an FVD predictor
POINT_COLUMNS = point_columns()


# ----------------------------------------------------------------------------- input parsing


def parse_budget(value: Any) -> float | None:
    """A latency budget in ms: a finite number > 0, or None for no budget.

    Raises:
        SettingError: (``budget_ms``) not a number, NaN, infinite, or <= 0.
    """
    if value is None:
        return None
    try:
        budget = float(value)
    except (TypeError, ValueError):
        raise SettingError("budget_ms", "{budget_ms} {value!r} is not a number; give milliseconds, e.g. {budget_ms} 200",
                           value=value) from None
    if not math.isfinite(budget) or budget <= 0:
        raise SettingError("budget_ms", "{budget_ms} {value!r}: the budget must be a finite number of milliseconds > 0",
                           value=value)
    return budget


def parse_resolutions(value: Any) -> tuple[int, ...] | None:
    """``"128"``, ``"64,128"`` or ``"all"`` (or ints) -> a tuple of ints, or None for all.

    Raises:
        SettingError: (``resolutions``) a part that is not a positive integer.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    out: list[int] = []
    for part in parts:
        text = str(part).strip()
        if not text.isdigit() or int(text) <= 0:
            raise SettingError("resolutions",
                               "{resolutions} {value!r}: expected resolutions in pixels like 128 or 64,128, or 'all'",
                               value=value)
        if int(text) not in out:
            out.append(int(text))
    return tuple(out)


# ----------------------------------------------------------------------------- config and result


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run depends on (saved as ``settings.json``).

    Args:
        experiment: bundled experiment name (``tiny``) or a path to an experiment YAML.
        budget_ms: latency budget in ms for ``steps`` denoising steps (one UNet forward each, batch 1,
            the space's frame count); None searches without a budget.
        resolutions: pixel resolutions, one front each; None means all of the space's resolutions.
        steps: how many denoising steps the budget covers (predicted latency x steps).
        objectives: names from :data:`sned.search.objectives.OBJECTIVES`, all minimised; the quality
            objective (``fvd`` or ``loss``, at most one) must be what the accuracy predictor predicts.
        method: ``auto`` (exhaustive where the space at a resolution has at most
            ``exhaustive_limit`` archs, else NSGA-II), ``nsga2`` or ``exhaustive``.
        pop_size: NSGA-II population size.
        generations: NSGA-II generations at most (the initial population is generation 1).
        patience: stop NSGA-II when the hypervolume grew by less than ``stall_tol`` (relative)
            over this many generations.
        stall_tol: relative hypervolume gain below which the search counts as stalled.
        seed: one seed per run; resolution ``r`` uses a seed derived from ``(seed, r)``.
        table: latency table path; None means the experiment's bundled ``latency-cpu.parquet``.
        predictor: accuracy predictor path; None means the experiment's bundled ``predictor.npz``
            (or ``predictor.json``).
        exhaustive_limit: the largest per-resolution space ``auto`` evaluates entirely.
        max_points: evaluated points kept per resolution for the report (front always kept).

    Raises:
        SettingError: an invalid value (``setting`` names the field; the message, what is expected).
    """

    experiment: str = "tiny"
    budget_ms: float | None = None
    resolutions: tuple[int, ...] | None = None
    steps: int = 1
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    method: Method = "auto"
    pop_size: int = 64
    generations: int = 100
    patience: int = 10
    stall_tol: float = 1e-4
    seed: int = 0
    table: str | None = None
    predictor: str | None = None
    exhaustive_limit: int = 50_000
    max_points: int = 20_000

    def __post_init__(self) -> None:
        # Normalise, then validate (frozen: assign through object.__setattr__).
        object.__setattr__(self, "budget_ms", parse_budget(self.budget_ms))
        object.__setattr__(self, "resolutions", parse_resolutions(self.resolutions))
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        object.__setattr__(self, "experiment", str(self.experiment))
        if self.method not in METHODS:
            raise SettingError("method", "{method} {value!r}: valid: {choices}", value=self.method,
                               choices=", ".join(METHODS), valid=list(METHODS))
        for name, low in (("steps", 1), ("pop_size", 4), ("generations", 1), ("patience", 1),
                          ("exhaustive_limit", 0), ("max_points", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingError(name, "{setting} = {value!r}: expected an integer >= {low}", value=value, low=low)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolutions"] = list(self.resolutions) if self.resolutions else "all"
        d["objectives"] = list(self.objectives)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        check_keys(d, [f.name for f in fields(cls)], "settings")
        d = dict(d)
        if isinstance(d.get("objectives"), list):
            d["objectives"] = tuple(d["objectives"])
        return cls(**d)


@dataclass
class ResolutionStats:
    """How one resolution's front was found."""

    method: str  # "exhaustive" | "nsga2"
    space_count: int  # archs at this resolution
    evaluations: int  # rows scored (NSGA-II may score an arch twice)
    unique: int  # distinct archs scored
    feasible: int  # distinct archs within the budget
    fastest_ms: float  # lowest predicted latency per step seen (the smallest subnet's at least)
    hypervolume: float  # of the front, in the normalised box below
    ideal: list[float]  # normalisation box (objective order of the config)
    nadir: list[float]
    generations: int = 0  # NSGA-II generations run (0 for exhaustive)
    stopped: str = ""  # why NSGA-II stopped: "generations" | "stalled" | "exhausted"
    seed: int | None = None  # the per-resolution seed NSGA-II used
    elapsed_s: float = 0.0
    decoder_ms: float = 0.0  # a latent space's decoder, once per video (0 in pixel space)


@dataclass
class SearchResult:
    """The outcome of :func:`run_search`; all tables keyed by resolution.

    Attributes:
        fronts: the Pareto front per resolution, sorted by latency; columns
            ``front_columns(target)`` (``arch`` holds the arch dict). Empty where no subnet meets the budget.
        evaluated: scored points per resolution (:data:`POINT_COLUMNS`), at most ``max_points``.
        history: NSGA-II progress per resolution (generation, evaluations, unique, front_size,
            hypervolume); empty for exhaustive resolutions.
        stats: :class:`ResolutionStats` per resolution.
        notes: human-readable remarks (e.g. a resolution with no subnet under the budget).
        target: what the accuracy predictor predicts (``fvd``, ``loss``); names the quality columns.
    """

    config: SearchConfig
    space_name: str
    space_hash: str
    device: str
    provenance: dict
    fronts: dict[int, pd.DataFrame] = field(default_factory=dict)
    evaluated: dict[int, pd.DataFrame] = field(default_factory=dict)
    history: dict[int, pd.DataFrame] = field(default_factory=dict)
    stats: dict[int, ResolutionStats] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    target: str = "fvd"

    @property
    def methods(self) -> dict[int, str]:
        return {res: s.method for res, s in self.stats.items()}

    @property
    def method(self) -> str:
        """The method used: ``exhaustive`` or ``nsga2``, or ``mixed`` when resolutions differ."""
        used = set(self.methods.values())
        return used.pop() if len(used) == 1 else "mixed"

    def to_json(self) -> dict:
        """The ``--json`` object (also ``pareto.json``): fronts as lists of plain records."""
        pred, spread = quality_columns(self.target)
        fronts = {}
        for res, df in self.fronts.items():
            fronts[str(res)] = [{"arch_id": r["arch_id"], "arch": r["arch"], "latency_ms": float(r["latency_ms"]),
                                 pred: float(r[pred]), spread: float(r[spread]),
                                 "params": int(r["params"]), "gflops": float(r["gflops"])}
                                for r in df.to_dict("records")]
        return {"experiment": self.config.experiment, "space": self.space_name, "space_hash": self.space_hash,
                "device": self.device, "target": self.target, "budget_ms": self.config.budget_ms,
                "steps": self.config.steps,
                "objectives": list(self.config.objectives), "method": self.method,
                "methods": {str(r): m for r, m in self.methods.items()}, "fronts": fronts}


# ----------------------------------------------------------------------------- the search


def run_search(config: SearchConfig, predictors: Predictors | None = None, *, space: SearchSpace | None = None,
               progress: bool | None = None) -> SearchResult:
    """Find the Pareto front of each requested resolution.

    Args:
        config: the run's settings.
        predictors: scores populations; None loads the latency table and accuracy predictor named
            by ``config`` (or the experiment's bundled ones).
        space: the space to search; None loads ``config.experiment``.
        progress: show a tqdm bar for NSGA-II (None: only on a terminal).

    Returns:
        A :class:`SearchResult`.

    Raises:
        SettingError: a resolution outside the space (``resolutions``), a quality objective the
            predictor does not predict (``objectives``: ``loss`` with an FVD predictor), or a budget
            below the fastest subnet at every requested resolution (``budget_ms``).
        UserError: missing, corrupt or foreign files.
    """
    start = time.perf_counter()
    space = space if space is not None else load_space(config.experiment)
    resolutions = config.resolutions or space.resolutions
    for res in resolutions:
        if res not in space.resolutions:
            raise SettingError("resolutions", "resolution {res} is not in space {space!r}; valid: {choices}", res=res,
                               space=space.name, choices=", ".join(map(str, space.resolutions)),
                               valid=list(space.resolutions))
    if predictors is None:
        predictors = FilePredictors(space, config.table or default_artifact(config.experiment, DEFAULT_TABLE),
                                    config.predictor or default_artifact(config.experiment, *DEFAULT_PREDICTORS))
    target = predictor_target(predictors)
    source = (f"accuracy predictor {predictors.predictor_path}" if isinstance(predictors, FilePredictors)
              else f"the {predictors.device} cost model")
    check_objectives(config.objectives, target, source)
    provenance_fn = getattr(predictors, "provenance", None)
    result = SearchResult(config=config, space_name=space.name, space_hash=space.hash, device=str(predictors.device),
                          provenance=provenance_fn() if callable(provenance_fn) else {}, target=target)
    for res in resolutions:
        _search_resolution(space, predictors, config, res, result, progress)
    if config.budget_ms is not None and all(len(result.fronts[r]) == 0 for r in resolutions):
        fastest = ", ".join(f"{r} px {result.stats[r].fastest_ms:.1f} ms" for r in resolutions)
        per = f" x {config.steps} steps" if config.steps > 1 else ""
        decoders = [result.stats[r].decoder_ms for r in resolutions]
        if any(decoders):  # a latent space: the decoder runs once per video on top of the steps
            per += " + the decoder (" + ", ".join(f"{r} px {d:.1f} ms" for r, d in zip(resolutions, decoders,
                                                                                       strict=True)) + ")"
        raise SettingError("budget_ms", "budget {budget:g} ms is below the fastest subnet ({fastest} per step{per}); "
                           "raise {budget_ms}", budget=config.budget_ms, fastest=fastest, per=per)
    result.elapsed_s = time.perf_counter() - start
    return result


def _search_resolution(space: SearchSpace, predictors: Predictors, config: SearchConfig, res: int,
                       result: SearchResult, progress: bool | None) -> None:
    t0 = time.perf_counter()
    count = space.count(res)
    method = config.method
    if method == "auto":
        method = "exhaustive" if count <= config.exhaustive_limit else "nsga2"
    ideal, nadir, smallest_ms = _reference_box(space, predictors, config, res)
    budget_step = step_budget(config, predictors, res)
    history = pd.DataFrame(columns=["generation", "evaluations", "unique", "front_size", "hypervolume"])
    if method == "exhaustive":
        X = space.enumerate(res)  # refuses spaces above its own limit with a SpaceError
        cols = _evaluate_chunked(space, predictors, X)
        evaluations, generation = len(X), np.zeros(len(X), dtype=np.int64)
        extra: dict[str, Any] = {}
    elif budget_step is not None and smallest_ms > budget_step:
        # Nothing can be feasible: the smallest subnet is the fastest one (every block at its minimum).
        X = np.empty((0, space.n_genes), dtype=np.int64)
        cols = {name: np.empty(0) for name in columns(result.target)}
        evaluations, generation = 0, np.empty(0, dtype=np.int64)
        extra = {"stopped": "infeasible"}
    else:
        X, cols, generation, evaluations, history, extra = _run_nsga2(space, predictors, config, res, ideal, nadir,
                                                                      progress)
    feasible = np.ones(len(X), dtype=bool) if budget_step is None else cols["latency_ms"] <= budget_step
    F = _objective_matrix(cols, config.objectives)
    on_front = np.zeros(len(X), dtype=bool)
    idx = np.flatnonzero(feasible)
    on_front[idx[non_dominated(F[idx])]] = True
    fastest = float(min(smallest_ms, cols["latency_ms"].min())) if len(X) else smallest_ms
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, res, 1]))
    result.fronts[res] = _front_frame(space, X[on_front], {k: v[on_front] for k, v in cols.items()}, res,
                                      result.target)
    result.evaluated[res] = _points_frame(space, X, cols, res, feasible, on_front, generation, config.max_points, rng,
                                          result.target)
    result.history[res] = history
    result.stats[res] = ResolutionStats(
        method=method, space_count=count, evaluations=int(evaluations), unique=len(X), feasible=int(feasible.sum()),
        fastest_ms=fastest, hypervolume=hypervolume(F[on_front], ideal, nadir), ideal=ideal.tolist(),
        nadir=nadir.tolist(), elapsed_s=time.perf_counter() - t0, decoder_ms=decoder_ms(predictors, res), **extra)
    if budget_step is not None and not feasible.any():
        decoder = result.stats[res].decoder_ms
        result.notes.append(f"{res} px: no subnet meets {config.budget_ms:g} ms"
                            f"{f' over {config.steps} steps' if config.steps > 1 else ''}"
                            f"{f' plus the {decoder:.1f} ms decoder' if decoder else ''}; "
                            f"the fastest takes {fastest:.1f} ms per step")


def step_budget(config: SearchConfig, predictors: Predictors, res: int) -> float | None:
    """The per-step latency budget at ``res``: ``(budget - decoder) / steps`` (None without a budget).

    A latent space's decoder runs once per video, so it comes off the budget before the steps share it.
    """
    if config.budget_ms is None:
        return None
    return (config.budget_ms - decoder_ms(predictors, res)) / config.steps


def _objective_matrix(cols: dict[str, np.ndarray], objectives: tuple[str, ...]) -> np.ndarray:
    return np.column_stack([cols[OBJECTIVES[name][0]] for name in objectives]).astype(np.float64)


def _evaluate_chunked(space: SearchSpace, predictors: Predictors, X: np.ndarray,
                      chunk: int = 65_536) -> dict[str, np.ndarray]:
    """:func:`evaluate` in slices, so enumerating a large space never holds every block table at once."""
    parts = [evaluate(space, predictors, X[i:i + chunk]) for i in range(0, max(len(X), 1), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _reference_box(space: SearchSpace, predictors: Predictors, config: SearchConfig,
                   res: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The normalisation box of a resolution: objectives of its smallest and largest subnet.

    It depends only on the space, the predictors and the budget, never on what a method found, so
    hypervolumes of NSGA-II, exhaustive and random search (and of every generation) are comparable.
    The latency axis ends at the budget where one is set. Also returns the smallest subnet's latency.
    """
    X = space.encode([space.smallest(res), space.largest(res)])
    cols = evaluate(space, predictors, X)
    F = _objective_matrix(cols, config.objectives)
    ideal, nadir = F.min(axis=0), F.max(axis=0)
    if config.budget_ms is not None and "latency" in config.objectives:
        j = config.objectives.index("latency")
        nadir[j] = min(nadir[j], step_budget(config, predictors, res))
    nadir = np.where(nadir > ideal, nadir, ideal + np.maximum(np.abs(ideal) * 1e-6, 1e-9))
    return ideal, nadir, float(cols["latency_ms"][0])


def _run_nsga2(space: SearchSpace, predictors: Predictors, config: SearchConfig, res: int, ideal: np.ndarray,
               nadir: np.ndarray, progress: bool | None):
    """NSGA-II at one resolution; returns the distinct evaluated archs and the hypervolume history."""
    from pymoo.core.termination import NoTermination  # lazy: pymoo costs ~1 s of import
    from tqdm.auto import tqdm

    from sned.search.problem import SnedProblem, make_nsga2

    seed = int(np.random.SeedSequence([config.seed, res]).generate_state(1)[0])
    evaluated: set[bytes] = set()  # shared: duplicate elimination skips archs the problem already scored
    problem = SnedProblem(space, predictors, res, config.objectives, config.budget_ms, config.steps, evaluated,
                          fixed_ms=decoder_ms(predictors, res))
    algorithm = make_nsga2(space, config.pop_size, evaluated)
    algorithm.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    budget_step = step_budget(config, predictors, res)

    # The archive of distinct archs (first evaluation wins) and its running front, updated per batch.
    seen: dict[bytes, int] = {}
    keep_X: list[np.ndarray] = []
    keep_cols: list[dict[str, np.ndarray]] = []
    keep_gen: list[np.ndarray] = []
    front_F = np.empty((0, len(config.objectives)))
    consumed, evaluations, rows = 0, 0, []
    stopped = "generations"
    bar = tqdm(total=config.generations, desc=f"NSGA-II {res} px", unit="gen", file=sys.stderr,
               disable=(not progress) if progress is not None else None, leave=False)
    for gen in range(1, config.generations + 1):
        algorithm.next()
        for X, cols in problem.archive[consumed:]:
            evaluations += len(X)
            new = []
            for i, row in enumerate(X):
                key = row.tobytes()
                if key not in seen:
                    seen[key] = len(seen)
                    new.append(i)
            new = np.asarray(new, dtype=np.int64)
            keep_X.append(X[new])
            keep_cols.append({k: v[new] for k, v in cols.items()})
            keep_gen.append(np.full(len(new), gen, dtype=np.int64))
            F = _objective_matrix(keep_cols[-1], config.objectives) if len(new) else front_F[:0]
            if budget_step is not None and len(new):
                F = F[keep_cols[-1]["latency_ms"] <= budget_step]
            merged = np.vstack([front_F, F])
            front_F = merged[non_dominated(merged)]
        consumed = len(problem.archive)
        hv = hypervolume(front_F, ideal, nadir)
        rows.append((gen, evaluations, len(seen), len(front_F), hv))
        bar.update(1)
        bar.set_postfix(hv=f"{hv:.4f}", front=len(front_F))
        if not algorithm.has_next():  # mating found no new offspring: the space is used up
            stopped = "exhausted"
            break
        if gen > config.patience and hv - rows[-1 - config.patience][4] <= config.stall_tol * max(hv, 1e-12):
            stopped = "stalled"
            break
    bar.close()
    X = np.concatenate(keep_X) if keep_X else np.empty((0, space.n_genes), dtype=np.int64)
    cols = {k: np.concatenate([c[k] for c in keep_cols]) for k in keep_cols[0]} if keep_cols else {}
    history = pd.DataFrame(rows, columns=["generation", "evaluations", "unique", "front_size", "hypervolume"])
    extra = {"generations": len(rows), "stopped": stopped, "seed": seed}
    return X, cols, np.concatenate(keep_gen) if keep_gen else np.empty(0, np.int64), evaluations, history, extra


def _front_frame(space: SearchSpace, X: np.ndarray, cols: dict[str, np.ndarray], res: int,
                 target: str = "fvd") -> pd.DataFrame:
    archs = space.decode(X) if len(X) else []
    df = pd.DataFrame({
        "arch_id": [arch_id(a) for a in archs],
        "res": np.full(len(X), res, dtype=np.int64),
        **{k: cols[k] for k in columns(target)},
        "summary": [arch_summary(a) for a in archs],
        "arch": archs,
    }, columns=list(front_columns(target)))
    df["params"] = df["params"].astype(np.int64)
    # Ties broken by quality and id, so the order (and the golden test) never depends on evaluation order.
    return df.sort_values(["latency_ms", quality_columns(target)[0], "arch_id"], kind="stable").reset_index(drop=True)


def _points_frame(space: SearchSpace, X: np.ndarray, cols: dict[str, np.ndarray], res: int, feasible: np.ndarray,
                  on_front: np.ndarray, generation: np.ndarray, max_points: int,
                  rng: np.random.Generator, target: str = "fvd") -> pd.DataFrame:
    keep = np.arange(len(X))
    if len(X) > max_points:  # the front always, then a random sample of the rest
        rest = np.flatnonzero(~on_front)
        n_rest = max(max_points - int(on_front.sum()), 0)
        keep = np.sort(np.concatenate([np.flatnonzero(on_front), rng.choice(rest, n_rest, replace=False)]))
    archs = space.decode(X[keep]) if len(keep) else []
    df = pd.DataFrame({
        "arch_id": [arch_id(a) for a in archs],
        "res": np.full(len(keep), res, dtype=np.int64),
        **{k: cols[k][keep] for k in columns(target)},
        "summary": [arch_summary(a) for a in archs],
        "feasible": feasible[keep],
        "on_front": on_front[keep],
        "generation": generation[keep],
    }, columns=list(point_columns(target)))
    df["params"] = df["params"].astype(np.int64)
    return df


__all__ = ["FRONT_COLUMNS", "METHODS", "POINT_COLUMNS", "ResolutionStats", "SearchConfig", "SearchResult",
           "front_columns", "parse_budget", "parse_resolutions", "point_columns", "run_search", "step_budget"]
