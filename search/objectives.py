"""What the search optimises: the objective registry and the predictors that score a population.

The search never runs a network. It scores gene matrices through a small protocol,
:class:`Predictors` (``latency_ms(X)``, ``quality(X)`` and the ``target`` it predicts), so that any
cost model can be injected:

* :class:`FilePredictors`: the real thing, a measured latency table
  (``sned.predictors.latency.LatencyTable``) and a fitted accuracy predictor
  (``sned.predictors.accuracy.AccuracyPredictor``), both torch-free. Its ``target`` is the table
  column the predictor was fitted on (``sned fit --target``): ``fvd`` or the held-out ``loss``.
* :class:`AnalyticPredictors`: latency and FVD as closed-form functions of the space's analytic
  FLOPs and parameter counts. It is a stand-in cost model for tests and benchmarks where no
  measured table exists; every result it produces says ``device="analytic"``.

The predicted quality's columns are named after the target: ``fvd_pred``/``fvd_std`` for an FVD
predictor, ``loss_pred``/``loss_std`` for a loss predictor (:func:`quality_columns`). The quality
objective named in ``--objectives`` must be the predictor's target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from sned.supernet.base.artifacts import DEFAULT_PREDICTORS, DEFAULT_TABLE
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.space import SearchSpace, experiment_path

# name -> (column of the evaluation table, description). ``--objectives`` picks from these keys.
OBJECTIVES: dict[str, tuple[str, str]] = {
    "fvd": ("fvd_pred", "predicted FVD (mean of the accuracy predictor)"),
    "latency": ("latency_ms", "predicted latency of one denoising step (one UNet forward, batch 1), ms"),
    "params": ("params", "parameters of the extracted subnet"),
    "gflops": ("gflops", "GFLOPs of one UNet forward, batch 1"),
    "loss": ("loss_pred", "predicted held-out denoising loss (v units, mean over t; a predictor fit with "
                          "--target loss)"),
}
# Objectives that are the accuracy predictor's target (all minimised); at most one per search.
QUALITY_OBJECTIVES: tuple[str, ...] = ("fvd", "loss")
QUALITY_LABELS: dict[str, str] = {"fvd": "FVD", "loss": "held-out loss"}  # for tables and plots
DEFAULT_OBJECTIVES = ("fvd", "latency")
DEFAULT_TARGET = "fvd"


def quality_columns(target: str = DEFAULT_TARGET) -> tuple[str, str]:
    """The predicted quality's mean and std columns for a predictor of ``target``: ``fvd_pred``, ``fvd_std``."""
    return f"{target}_pred", f"{target}_std"


def columns(target: str = DEFAULT_TARGET) -> tuple[str, ...]:
    """What :func:`evaluate` returns for predictors of ``target``."""
    return ("latency_ms", *quality_columns(target), "params", "gflops")


COLUMNS = columns()  # those of an FVD predictor


def parse_objectives(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"fvd,latency,params"`` (or a sequence) -> validated tuple of objective names.

    Raises:
        SettingError: (``objectives``) an unknown or repeated name, or fewer than two objectives.
    """
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    names = [n for n in names if n]
    listed = ",".join(names)
    for name in names:
        if name not in OBJECTIVES:
            raise SettingError("objectives", "unknown objective {name!r}; valid: {choices}", name=name,
                               choices=", ".join(OBJECTIVES), valid=list(OBJECTIVES))
    if len(set(names)) != len(names):
        raise SettingError("objectives", "objectives {listed}: each objective may appear once", listed=listed)
    if len(names) < 2:
        raise SettingError("objectives", "objectives {listed}: a Pareto front needs at least two, e.g. {example}",
                           listed=listed or "(none)", example=",".join(DEFAULT_OBJECTIVES))
    quality = [n for n in names if n in QUALITY_OBJECTIVES]
    if len(quality) > 1:
        raise SettingError("objectives", "objectives {listed}: {both} both need the accuracy predictor, which "
                           "predicts one of them; choose one", listed=listed, both=" and ".join(quality))
    return tuple(names)


def predictor_target(predictors: Predictors) -> str:
    """The table column ``predictors`` predict (``target``; ``fvd`` for predictors that do not say)."""
    return str(getattr(predictors, "target", DEFAULT_TARGET))


def check_objectives(objectives: tuple[str, ...], target: str, source: str = "the accuracy predictor") -> None:
    """Refuse a quality objective that is not what the predictor predicts.

    Raises:
        SettingError: (``objectives``) e.g. ``fvd,...`` with a predictor fit on ``loss``; the message
            names both fixes (other objectives, another ``predictor``).
    """
    for name in objectives:
        if name in QUALITY_OBJECTIVES and name != target:
            swapped = ",".join(target if n == name else n for n in objectives)
            hint = ("pass {objectives} {swapped}" if target in QUALITY_OBJECTIVES
                    else "its target {target!r} is not an objective the search can minimise")
            raise SettingError("objectives", "objective {name!r}: {source} predicts {target!r}, not {name!r}; "
                               + hint + ", or a {predictor} fit with `sned fit --target {name}`",
                               name=name, source=source, target=target, swapped=swapped)


@runtime_checkable
class Predictors(Protocol):
    """Scores a whole population of gene matrices (rows of ``space.encode``), vectorised.

    Required:
        device: the latency's device name (e.g. ``"cpu-<model>"``, ``"h200"``, ``"analytic"``).
        latency_ms(X): ``(n,)`` predicted ms of one UNet forward at batch 1 (one denoising step).
        quality(X): ``((n,), (n,))`` predicted quality mean and its uncertainty (standard
            deviation), in the units of ``target``. Predictors written before ``quality`` existed
            define ``fvd(X)`` instead, which is used when ``quality`` is missing.

    Optional:
        target: the quality's table column, ``"fvd"`` (the default when absent) or ``"loss"``.
        provenance(): a JSON-able dict saved into the run's ``settings.json``.
        decoder_ms(res): ms of a latent space's decoder, once per video (see :func:`decoder_ms`).
    """

    device: str

    def latency_ms(self, X: np.ndarray) -> np.ndarray: ...

    def quality(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def decoder_ms(predictors: Predictors, res: int) -> float:
    """The fixed ms a video adds to its steps at ``res`` (a latent space's decoder); 0 where none is known."""
    fn = getattr(predictors, "decoder_ms", None)
    return float(fn(res)) if callable(fn) else 0.0


def evaluate(space: SearchSpace, predictors: Predictors, X: np.ndarray) -> dict[str, np.ndarray]:
    """Score a population: every column of ``columns(predictor_target(predictors))``, each ``(n,)``.

    Raises:
        UserError: a predictor returned the wrong shape or non-finite values (a broken file).
    """
    X = np.asarray(X, dtype=np.int64)
    n = len(X)
    latency = np.asarray(predictors.latency_ms(X), dtype=np.float64).reshape(-1)
    score = getattr(predictors, "quality", None)
    mean, std = score(X) if callable(score) else predictors.fvd(X)  # type: ignore[attr-defined]
    params, flops = space.costs(X)
    pred, spread = quality_columns(predictor_target(predictors))
    cols = {
        "latency_ms": latency,
        pred: np.asarray(mean, dtype=np.float64).reshape(-1),
        spread: np.asarray(std, dtype=np.float64).reshape(-1),
        "params": params.astype(np.int64),
        "gflops": flops / 1e9,
    }
    for name in ("latency_ms", pred, spread):
        if cols[name].shape != (n,):
            raise UserError(f"predictor returned {cols[name].shape[0]} values of {name} for {n} archs")
        bad = ~np.isfinite(cols[name])
        if bad.any():
            raise UserError(f"predictor returned non-finite {name} for {int(bad.sum())} of {n} archs "
                            f"(device {predictors.device}); is the table or predictor file complete?")
    return cols


# ----------------------------------------------------------------------------- analytic stand-in


@dataclass(frozen=True)
class AnalyticPredictors:
    """Closed-form latency and FVD from the space's analytic cost (no files, no measurements).

    ``latency_ms = fixed_ms + ms_per_gflop * GFLOPs`` and
    ``fvd = fvd_at_unit - params_slope * ln(params / 1e6) - gflops_slope * ln(GFLOPs)``, with an
    uncertainty of ``relative_std * fvd``. The defaults put ``tiny`` at 128 px between ~45 and
    ~300 ms, like a 2-core CPU, so a 200 ms budget splits the space as the real table does.
    Capacity (params) and compute (GFLOPs) pull FVD down separately, so the front is a real
    trade-off rather than one line.
    """

    space: SearchSpace
    fixed_ms: float = 5.0
    ms_per_gflop: float = 16.0
    fvd_at_unit: float = 900.0
    params_slope: float = 60.0
    gflops_slope: float = 40.0
    relative_std: float = 0.05
    device: str = "analytic"
    target: ClassVar[str] = "fvd"  # it models FVD only

    def latency_ms(self, X: np.ndarray) -> np.ndarray:
        return self.fixed_ms + self.ms_per_gflop * self.space.flops(X) / 1e9

    def fvd(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params, flops = self.space.costs(X)
        params, gflops = params.astype(np.float64), flops / 1e9
        mean = self.fvd_at_unit - self.params_slope * np.log(params / 1e6) - self.gflops_slope * np.log(gflops)
        return mean, self.relative_std * mean

    def quality(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fvd(X)

    def provenance(self) -> dict:
        return {"kind": "analytic", "note": "closed-form stand-in cost model, not a measurement",
                "latency": f"{self.fixed_ms} + {self.ms_per_gflop} * GFLOPs ms",
                "fvd": f"{self.fvd_at_unit} - {self.params_slope} ln(params/1e6) - {self.gflops_slope} ln(GFLOPs)"}


# ----------------------------------------------------------------------------- the real files


def default_artifact(experiment: str | Path, *filenames: str) -> Path:
    """Where an experiment keeps a bundled artifact: ``<yaml dir>/<experiment>/<filename>``.

    For the bundled ``tiny`` this is ``sned/experiments/tiny/<filename>`` (package data). With
    several candidate names, the first that exists (else the first).
    """
    folder = experiment_path(experiment).with_suffix("")
    for name in filenames:
        if (folder / name).is_file():
            return folder / name
    return folder / filenames[0]


class FilePredictors:
    """A latency table and an accuracy predictor loaded from files, checked against the space.

    Args:
        space: the space being searched; both files must have been made for it (same hash).
        table_path: a latency table (``sned.predictors.latency.LatencyTable``).
        predictor_path: an accuracy predictor (``sned.predictors.accuracy.AccuracyPredictor``).

    Raises:
        SettingError: (``table`` or ``predictor``) a file is missing or not a file.
        UserError: a file is unreadable, corrupt, or belongs to another space.
    """

    def __init__(self, space: SearchSpace, table_path: str | Path, predictor_path: str | Path):
        self.space = space
        self.table_path = Path(table_path)
        self.predictor_path = Path(predictor_path)
        _check_file(self.table_path, "latency table", "table")
        _check_file(self.predictor_path, "accuracy predictor", "predictor")
        # Imported here, not at module level: the prediction side is torch-free, but only this
        # path needs pandas/pyarrow for the table.
        from sned.predictors.accuracy import AccuracyPredictor
        from sned.predictors.latency import LatencyTable

        self.table = _load(LatencyTable.load, self.table_path, "latency table")
        self.predictor = _load(AccuracyPredictor.load, self.predictor_path, "accuracy predictor")
        for what, obj, path in (("latency table", self.table, self.table_path),
                                ("accuracy predictor", self.predictor, self.predictor_path)):
            check = getattr(obj, "check_space", None)
            if callable(check):  # their messages name both spaces and how to make a matching file
                try:
                    check(space)
                except ValueError as exc:  # SpaceError is a ValueError
                    raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
            if getattr(obj, "space_hash", None) != space.hash:
                raise UserError(f"{what} {path} was made for another space (hash {obj.space_hash}); "
                                f"space {space.name!r} has hash {space.hash}")
        self.device = str(self.table.device)
        self.target = str(getattr(self.predictor, "target", DEFAULT_TARGET))
        if space.spec.latent is not None and self.table.decoder is None:
            raise UserError(f"latency table {self.table_path} has no decoder entry, so a latent video's latency would "
                            f"leave out its decoding; measure it with sned latency measure {space.name} --out TABLE")

    def decoder_ms(self, res: int) -> float:
        """The table's measured decoder pass at ``res`` (0 for a pixel space)."""
        return self.table.decoder_ms(res)

    def latency_ms(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.table.predict(self.space, X), dtype=np.float64)

    def quality(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predictor's mean and std of :attr:`target` (FVD, or the held-out loss)."""
        mean, std = self.predictor.predict(X)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def fvd(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`quality` of an FVD predictor (kept for callers from before ``quality``).

        Raises:
            UserError: the predictor predicts another column.
        """
        if self.target != "fvd":
            raise UserError(f"accuracy predictor {self.predictor_path} predicts {self.target!r}, not FVD")
        return self.quality(X)

    def provenance(self) -> dict:
        return {"kind": "files",
                "table": {"path": str(self.table_path), "device": self.device,
                          "meta": _jsonable(getattr(self.table, "meta", {}))},
                "predictor": {"path": str(self.predictor_path),
                              "kind": str(getattr(self.predictor, "kind", "?")), "target": self.target,
                              "metrics": _jsonable(getattr(self.predictor, "metrics", {}))}}


def _check_file(path: Path, what: str, setting: str) -> None:
    if not path.exists():
        raise SettingError(setting, "{what} not found: {path} (pass {setting} PATH)", what=what, path=path)
    if not path.is_file():
        raise SettingError(setting, "{what} {path} is not a file (pass {setting} PATH)", what=what, path=path)


def _load(loader, path: Path, what: str):
    try:
        return loader(path)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:  # ArrowInvalid, JSONDecodeError are ValueErrors
        # Loaders should raise UserError themselves; anything else from a bad file is still bad input.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {what} {path}: {first}") from exc


def _jsonable(value):
    """Best-effort JSON-able copy of provenance metadata (numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


__all__ = ["COLUMNS", "DEFAULT_OBJECTIVES", "DEFAULT_PREDICTORS", "DEFAULT_TABLE", "DEFAULT_TARGET", "OBJECTIVES",
           "QUALITY_LABELS", "QUALITY_OBJECTIVES", "AnalyticPredictors", "FilePredictors", "Predictors",
           "check_objectives", "columns", "decoder_ms", "default_artifact", "evaluate", "parse_objectives", "predictor_target",
           "quality_columns"]
