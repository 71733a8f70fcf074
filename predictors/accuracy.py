"""Accuracy predictors: a fitted quality predictor for one search space, its file, and ``fit``.

A predictor maps an arch (or a gene matrix) of one search space to its expected sampled quality
(FVD by default; any numeric column of the sampled-quality table, e.g. KVD or the held-out denoising
loss), with an uncertainty, so that the search can rank thousands of subnets in milliseconds instead
of sampling videos from each. Following NSGANetV2 (Lu et al., ECCV 2020), several surrogate families
are candidates; unlike it, the choice is made and judged honestly (:mod:`sned.predictors.selection`):
on the within-resolution Kendall tau, by nested cross-validation grouped by stage configuration, and
reported beside baselines (resolution only; resolution + log FLOPs; log params).

The concepts live in their own modules, re-exported here:

- :mod:`~sned.predictors.quality_table`: the sampled-quality table (read, write, synthetic).
- :mod:`~sned.predictors.encoding`: gene matrices, feature vectors, stage-configuration groups.
- :mod:`~sned.predictors.surrogates`: the numpy models and target transforms (the prediction path).
- :mod:`~sned.predictors.surrogate_fit`: fitting them (scikit-learn, scipy; lazy).
- :mod:`~sned.predictors.selection`: folds, scores, nested CV, baselines.

Notation (per row of the table): ``x`` the gene row, ``phi(x)`` its features, ``y`` the target
column's value, ``t`` the fitted quantity (``ln y`` with the ``log`` transform, else ``y``), ``z`` the
standardised ``t``, which the models predict.

**Inference is numpy only**: the saved file is an ``.npz`` (``allow_pickle=False``) with one JSON
entry for metadata, no pickle anywhere. Importing this module imports neither torch, nor sklearn, nor
scipy, nor pandas.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.predictors.encoding import feature_names, features, gene_matrix, stage_configurations
from sned.predictors.quality_table import (
    REQUIRED_COLUMNS,
    check_table_space,
    file_sha256,
    noise_floor_of,
    read_fvd_table,
    select_rows,
    synthetic_fvd_table,
    table_genes,
    target_values,
    write_fvd_table,
)
from sned.predictors.selection import BASELINES
from sned.predictors.surrogate_fit import MODELS
from sned.predictors.surrogates import MODEL_TYPES, TRANSFORMS, Surrogate, invert_transform
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import write_atomic
from sned.supernet.base.provenance import package_version
from sned.supernet.space import Arch, SearchSpace, SpaceError, parse_space_spec

if TYPE_CHECKING:  # pandas is only needed to read tables and fit, never to predict
    import pandas as pd

log = logging.getLogger(__name__)

FORMAT = "sned-accuracy-predictor"
FORMAT_VERSION = 2  # v2: "target" is the table column, "transform" how it is fitted; v1 files still load
_V1_TRANSFORMS = {"log": "log", "fvd": "identity"}  # v1's "target" was the transform of FVD
_CANDIDATE_COLUMNS = ("model", "transform", "tau_res", "rho_res", "tau", "rho", "rmse", "fit_s", "picked", "chosen")
_BASELINE_COLUMNS = ("name", "tau_res", "rho_res", "tau", "rho", "rmse")
_META_KEY = "__meta__.json"  # the one non-numeric npz entry: UTF-8 JSON as a uint8 array


class AccuracyPredictor:
    """A fitted quality predictor for one search space; numpy-only, vectorised inference.

    Build with :meth:`fit` (nested CV of the candidates and baselines, the inner-CV choice refitted
    on all rows) or :meth:`load`; use :meth:`predict`. Example::

        pred = AccuracyPredictor.load("experiments/tiny/predictor.npz")
        mean, std = pred.predict(space.sample_genes(rng, 10_000))   # target units (FVD), (n,) each

    Args:
        space: the search space the predictor belongs to.
        model: the fitted numpy model (predicts standardised ``t``).
        transform: how the target was fitted, one of :data:`TRANSFORMS` (``log`` fits ``ln y``).
        scalers: ``x_mean``, ``x_scale`` (feature standardisation), ``t_mean``, ``t_std`` (target).
        info: metadata: nested-CV metrics, candidate and baseline tables, table hash, provenance
            (saved as JSON).
        target: the table column the predictor predicts (``fvd``, ``kvd``, ``loss``, ...).
    """

    def __init__(self, space: SearchSpace, model: Surrogate, transform: str, scalers: Mapping[str, Any],
                 info: Mapping[str, Any], target: str = "fvd"):
        if transform not in TRANSFORMS:
            raise ValueError(f"transform {transform!r}: expected one of {list(TRANSFORMS)}")
        self.space = space
        self.model = model
        self.transform = transform
        self.target = target
        self.x_mean = np.asarray(scalers["x_mean"], dtype=np.float64)
        self.x_scale = np.asarray(scalers["x_scale"], dtype=np.float64)
        self.t_mean, self.t_std = float(scalers["t_mean"]), float(scalers["t_std"])
        self.info = dict(info)
        if len(self.x_mean) != len(feature_names(space)):
            raise UserError(f"predictor has {len(self.x_mean)} features; space {space.name!r} encodes "
                            f"{len(feature_names(space))}")

    # ------------------------------------------------------------------ identity

    @property
    def space_hash(self) -> str:
        """The hash of the search space this predictor was fitted on."""
        return self.space.hash

    @property
    def metrics(self) -> dict[str, Any]:
        """Nested-CV scores of the selection procedure on the outer folds, and the baseline verdict.

        ``tau_res`` and ``rho_res`` (within-resolution Kendall tau / Spearman rho, averaged over
        resolutions), ``tau`` and ``rho`` (pooled over resolutions), ``rmse`` (target units),
        ``beats_baselines`` (bool) and ``best_baseline`` (its name). Files of format v1 hold
        single-level CV numbers of the best candidate instead (optimistic) and no verdict.
        """
        return dict(self.info.get("metrics", {}))

    @property
    def beats_baselines(self) -> bool | None:
        """Whether the chosen model clearly beats the best baseline on nested ``tau_res``; None if unknown."""
        return self.metrics.get("beats_baselines")

    @property
    def kind(self) -> str:
        """The surrogate family: one of :data:`MODELS`."""
        return self.model.kind

    def candidate_table(self) -> pd.DataFrame:
        """The inner-CV table of every candidate on all rows (what chose the final model).

        Columns: ``model``, ``transform``, ``tau_res``, ``rho_res``, ``tau``, ``rho``, ``rmse``, ``fit_s``,
        ``picked`` (in how many outer folds the inner CV chose it) and ``chosen``.
        """
        return _table(self.info.get("candidates", []), _CANDIDATE_COLUMNS)

    def baseline_table(self) -> pd.DataFrame:
        """The baselines' scores on the outer folds (``name``, ``tau_res``, ``rho_res``, ``tau``, ``rho``, ``rmse``)."""
        return _table(self.info.get("baselines", []), _BASELINE_COLUMNS)

    def describe_target(self) -> str:
        """What the model fits, e.g. ``log(fvd)`` or ``kvd``."""
        return f"log({self.target})" if self.transform == "log" else self.target

    def __repr__(self) -> str:
        m = self.metrics
        return (f"AccuracyPredictor({self.kind} on {self.describe_target()}, space {self.space.name!r} "
                f"{self.space_hash}, nested CV tau_res {m.get('tau_res', float('nan')):.3f})")

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``SpaceError`` (naming both hashes) unless ``space`` is the one this predictor was fitted on."""
        if space.hash != self.space_hash:
            raise SpaceError(f"accuracy predictor belongs to space {self.space.name!r} (hash {self.space_hash}), "
                             f"not to space {space.name!r} (hash {space.hash}); fit one on an FVD table of "
                             f"that space with `sned fit`")

    # ------------------------------------------------------------------ inference (numpy only)

    def predict(self, archs: Arch | Sequence[Arch] | np.ndarray,
                space: SearchSpace | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted target value and its uncertainty for archs or a gene matrix, vectorised.

        Args:
            archs: one arch, a list of archs, or an integer gene matrix ``(n, n_genes)`` of this space.
            space: if given, first checked to be this predictor's space (:meth:`check_space`).

        Returns:
            ``(mean, std)``, float64 arrays of shape ``(n,)`` in target units (FVD for an FVD
            predictor). With the log transform the mean is ``exp`` of the predicted log and ``std`` its
            delta-method spread. ``std`` is model uncertainty (posterior / GP / ensemble spread), not
            the evaluation noise of one measurement.

        Raises:
            SpaceError: an arch of another space, a gene matrix of the wrong width or out of bounds.
        """
        if space is not None:
            self.check_space(space)
        X = gene_matrix(self.space, archs)
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        F = (features(self.space, X) - self.x_mean) / self.x_scale
        z_mean, z_std = self.model.predict(F)
        return invert_transform(z_mean * self.t_std + self.t_mean, z_std * self.t_std, self.transform)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write the predictor atomically as an ``.npz`` (arrays + one JSON metadata entry; no pickle)."""
        path = Path(path)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "target": self.target,
                "transform": self.transform,
                "space": {"name": self.space.name, "hash": self.space_hash, "spec": self.space.to_dict()},
                "encoding": {"features": feature_names(self.space),
                             "rules": "ordinal gene values; one-hot for genes with >= 3 choices; "
                                      "ln(params), ln(FLOPs); standardised with x_mean/x_scale",
                             "t_mean": self.t_mean, "t_std": self.t_std},
                **self.info}
        arrays = {f"model.{k}": np.asarray(v) for k, v in self.model.arrays().items()}
        arrays["encoding.x_mean"], arrays["encoding.x_scale"] = self.x_mean, self.x_scale
        arrays[_META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> AccuracyPredictor:
        """Load a predictor written by :meth:`save` (``allow_pickle=False``); format v1 and v2.

        Raises:
            UserError: a missing, corrupt or foreign file, or one whose space spec and hash disagree.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(f"accuracy predictor not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(arrays.pop(_META_KEY).tobytes())
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise UserError(f"{path}: not a sned accuracy predictor ({type(exc).__name__}: {exc})") from None
        version = meta.get("format_version")
        if meta.get("format") != FORMAT or version not in (1, FORMAT_VERSION):
            raise UserError(f"{path}: format {meta.get('format')!r} v{version}; "
                            f"expected {FORMAT!r} v1 or v{FORMAT_VERSION}")
        spec = meta["space"]["spec"]
        space = SearchSpace(parse_space_spec(spec, spec.get("name", meta["space"]["name"])), source=str(path))
        if space.hash != meta["space"]["hash"]:
            raise UserError(f"{path}: its space spec hashes to {space.hash}, but it records {meta['space']['hash']}")
        if meta["encoding"]["features"] != feature_names(space):
            raise UserError(f"{path}: written with another feature encoding; refit it with this sned version")
        kind = meta["kind"]
        if kind not in MODEL_TYPES:
            raise UserError(f"{path}: unknown model kind {kind!r}; valid: {list(MODEL_TYPES)}")
        if version == 1:
            if meta.get("target") not in _V1_TRANSFORMS:
                raise UserError(f"{path}: v1 target {meta.get('target')!r}; expected one of {list(_V1_TRANSFORMS)}")
            target, transform = "fvd", _V1_TRANSFORMS[meta["target"]]
        else:
            target, transform = meta["target"], meta["transform"]
            if transform not in TRANSFORMS:
                raise UserError(f"{path}: unknown transform {transform!r}; valid: {list(TRANSFORMS)}")
        model = MODEL_TYPES[kind].from_arrays({k[len("model."):]: v for k, v in arrays.items()
                                               if k.startswith("model.")})
        scalers = {"x_mean": arrays["encoding.x_mean"], "x_scale": arrays["encoding.x_scale"],
                   "t_mean": meta["encoding"]["t_mean"], "t_std": meta["encoding"]["t_std"]}
        info = {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind", "target", "transform",
                                                           "space", "encoding")}
        return cls(space, model, transform, scalers, info, target=target)

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, space: SearchSpace, table: pd.DataFrame, *, target: str = "fvd", folds: int = 5,
            inner_folds: int = 3, seed: int = 0, models: Iterable[str] = MODELS,
            transforms: Iterable[str] | None = None, checkpoint: str | None = None,
            table_meta: Mapping[str, Any] | None = None, command: str | None = None,
            progress: bool = False) -> AccuracyPredictor:
        """Choose a (model, transform) by nested grouped CV on within-resolution tau; refit the choice on all rows.

        Candidates are every (model, transform) pair. Folds group rows by stage configuration (the
        arch without ``res``), so no configuration is in train and test at different resolutions.
        Each outer fold runs the whole selection (inner CV, pick the best ``tau_res``, refit) on the
        other outer folds only; the pooled out-of-fold predictions give the reported ``metrics``.
        The baselines (resolution; resolution + log FLOPs; log params) are scored on the same outer
        folds, and ``metrics["beats_baselines"]`` says whether the procedure clearly beats the best
        of them. The final model is the selection run on all rows. Details:
        :mod:`sned.predictors.selection`.

        Args:
            space: the space the table belongs to.
            table: the sampled-quality table (see :func:`read_fvd_table`).
            target: the numeric column to predict (``fvd``, ``kvd``, ``loss``, ...).
            folds: outer CV folds (>= 2).
            inner_folds: inner CV folds (>= 2), on each outer-train part and on all rows.
            seed: seeds every split, every model and the bootstrap.
            models: candidate families, a subset of :data:`MODELS`.
            transforms: subset of :data:`TRANSFORMS`; default both when every target value is
                positive, else ``identity``. ``log`` makes errors relative, which suits FVD's
                magnitude-dependent noise; the inner CV decides.
            checkpoint: a ``checkpoint_sha256`` (or prefix) to fit on when the table holds several.
            table_meta: the table's metadata (``read_fvd_table``): space hash check, table sha256 and
                the target column's noise-floor tau are recorded.
            command: the command line to record (default: ``sys.argv``).
            progress: show a tqdm bar over the model fits.

        Raises:
            UserError: unknown models/transforms or target column, a table of another space, several
                checkpoints or extractors without a choice, archs that do not match their ``res``, too
                few subnets or stage configurations for nested CV (naming how many are needed).
        """
        import pandas as pd

        from sned.predictors import selection

        models = _check_choices(models, MODELS, "model")
        table_meta = dict(table_meta or {})
        if "space_hash" in table_meta:
            check_table_space(table_meta, space)
        df = select_rows(table, checkpoint)
        values = target_values(df, target)
        if transforms is None:
            transforms = TRANSFORMS if (values > 0).all() else ("identity",)
        transforms = _check_choices(transforms, TRANSFORMS, "transform")
        if "log" in transforms and (values <= 0).any():
            raise SettingError("transforms", "transform 'log' needs positive values; target column {target!r} has "
                               "values <= 0 (use {transforms} identity)", target=target)
        for name, value in (("folds", folds), ("inner_folds", inner_folds)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
                raise UserError(f"{name} = {value!r}: nested cross-validation needs an integer >= 2")
        X = table_genes(space, df)
        groups = stage_configurations(space, X)
        n_groups = len(np.unique(groups))
        needed = selection.minimum_groups(folds, inner_folds)
        if n_groups < needed:
            raise UserError(f"{len(df)} subnets in {n_groups} distinct stage configurations are too few for nested "
                            f"CV with {folds} outer x {inner_folds} inner folds: need at least {needed} stage "
                            f"configurations (2 per fold); evaluate more subnets or lower the folds or inner folds")
        res = df["res"].to_numpy(dtype=np.int64)
        per_res = np.unique(res, return_counts=True)[1]
        if per_res.max() < selection.MINIMUM_PER_RESOLUTION:
            raise UserError(f"no resolution has {selection.MINIMUM_PER_RESOLUTION} subnets (most: {per_res.max()}); "
                            "the within-resolution tau that selects the model needs at least that many")
        params, flops = space.costs(X)
        designs = selection.baseline_designs(res, params, flops)
        result = selection.select_and_evaluate(
            [(kind, transform) for kind in models for transform in transforms], features(space, X), values, res,
            groups, designs, folds=folds, inner_folds=inner_folds, seed=seed, progress=progress)

        metrics = {**result.scores, "beats_baselines": result.comparison["beats_baselines"],
                   "best_baseline": result.comparison["baseline"]}
        info = {
            "metrics": metrics,
            "candidates": result.candidates,
            "baselines": result.baselines,
            "comparison": result.comparison,
            "cv": result.settings,
            "table": {"sha256": table_meta.get("sha256"), "rows": len(df),
                      "archs": int(df["arch_id"].astype(str).nunique()), "stage_configurations": n_groups,
                      "resolutions": sorted(int(r) for r in np.unique(res)), "target": target,
                      "checkpoint_sha256": str(df["checkpoint_sha256"].iloc[0]),
                      "extractor": str(df["extractor"].iloc[0]),
                      "extractor_sha256": str(df["extractor_sha256"].iloc[0]),
                      "target_range": [float(values.min()), float(values.max())],
                      "noise_floor_tau": noise_floor_of(table_meta, target)[0]},  # of the target column
            "provenance": {"command": command if command is not None else " ".join(sys.argv),
                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "sned_version": package_version("sned"), "numpy": np.__version__,
                           "scikit_learn": package_version("scikit-learn"), "pandas": pd.__version__},
        }
        fitted = result.fitted
        scalers = {"x_mean": fitted.x_mean, "x_scale": fitted.x_scale, "t_mean": fitted.t_mean,
                   "t_std": fitted.t_std}
        log.info("accuracy predictor: chose %s/%s of %d candidates; nested CV tau_res %.3f (best baseline %s: "
                 "beaten %s)", *result.choice, len(result.candidates), result.scores["tau_res"],
                 result.comparison["baseline"], result.comparison["beats_baselines"])
        return cls(space, fitted.model, fitted.transform, scalers, info, target=target)


# ----------------------------------------------------------------------------- helpers


def _check_choices(values: Iterable[str], valid: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    unknown = [v for v in values if v not in valid]
    if unknown or not values:
        raise UserError(f"unknown {what}(s) {unknown or list(values)}; valid: {list(valid)}")
    return values


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Rows as a DataFrame with ``columns`` first (JSON round trips sort the keys)."""
    import pandas as pd

    table = pd.DataFrame(list(rows))
    order = [c for c in columns if c in table.columns]
    return table[order + [c for c in table.columns if c not in order]]


__all__ = ["AccuracyPredictor", "BASELINES", "MODELS", "REQUIRED_COLUMNS", "TRANSFORMS", "check_table_space",
           "feature_names", "features", "file_sha256", "read_fvd_table", "synthetic_fvd_table", "write_fvd_table"]
