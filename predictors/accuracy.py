"""Accuracy (FVD) predictors: encodings, candidate models, cross-validated fitting, numpy-only inference.

A predictor maps an arch (or a gene matrix) of one search space to its expected sampled FVD, with an
uncertainty, so that the search can rank thousands of subnets in milliseconds instead of sampling
videos from each. Following NSGANetV2 (Lu et al., ECCV 2020), several surrogate families are fitted
and the one with the best cross-validated Kendall tau (rank correlation, what the search needs) wins.

Notation (per row of the sampled-FVD table):

    x   the arch's gene row (``space.encode``), one integer choice index per gene
    phi(x) the feature vector: ordinal gene values, one-hot genes with >= 3 choices, log params,
        log FLOPs (resolution is gene 0, so one predictor serves every resolution)
    t   the fitted target: ``log(FVD)`` ("log") or ``FVD`` ("fvd"); both are candidates and CV picks
    z   the target standardised over the training rows, ``(t - t_mean) / t_std``; models predict z

Fitting (:meth:`AccuracyPredictor.fit`) uses scikit-learn and scipy; **inference is numpy only**:
every fitted model is exported to plain arrays (ridge weights and covariance, the GP's training
features and inverse kernel matrix, padded tree arrays, MLP weight stacks) and evaluated here with
vectorised numpy. The saved file is an ``.npz`` (``allow_pickle=False``) with one JSON entry for
metadata: no pickle anywhere. Importing this module imports neither torch, nor sklearn, nor pandas.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sned.supernet.errors import UserError
from sned.supernet.files import file_sha256
from sned.supernet.space import Arch, SearchSpace, SpaceError, arch_id, canonical_json, parse_space_spec

if TYPE_CHECKING:  # pandas is only needed to read tables and fit, never to predict
    import pandas as pd

log = logging.getLogger(__name__)

FORMAT = "sned-accuracy-predictor"
FORMAT_VERSION = 1
MODELS: tuple[str, ...] = ("ridge", "gp", "gbt", "mlp")
TARGETS: tuple[str, ...] = ("log", "fvd")
REQUIRED_COLUMNS: tuple[str, ...] = ("arch_id", "arch", "res", "fvd", "kvd", "n_videos", "extractor",
                                     "extractor_sha256", "checkpoint_sha256", "seed", "steps")
_CANDIDATE_COLUMNS = ("model", "target", "tau", "rho", "rmse", "tau_res", "fit_s", "chosen")
_META_KEY = "__meta__.json"  # the one non-numeric npz entry: UTF-8 JSON as a uint8 array


# ----------------------------------------------------------------------------- the sampled-FVD table


def check_table_space(meta: Mapping[str, Any], space: SearchSpace, where: str = "FVD table") -> None:
    """Refuse a table whose recorded ``space_hash`` is not ``space.hash`` (naming both hashes)."""
    if meta.get("space_hash") != space.hash:
        raise UserError(f"{where} belongs to space {meta.get('space')!r} (hash {meta.get('space_hash')}), "
                        f"not to space {space.name!r} (hash {space.hash}); pass the matching --experiment")


def read_fvd_table(path: str | Path, space: SearchSpace | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a sampled-FVD table (parquet, written by ``sned evaluate``) and its ``sned`` metadata.

    Args:
        path: the parquet file.
        space: if given, the table's ``space_hash`` must be this space's hash.

    Returns:
        ``(df, meta)``: one row per (arch id, resolution, checkpoint) with at least
        :data:`REQUIRED_COLUMNS`; ``meta`` is the JSON under the parquet key ``sned`` (``space_hash``,
        ``space``, optionally ``noise_floor_tau``) plus ``sha256``, the hash of the file's bytes.

    Raises:
        UserError: a missing or corrupt file, missing metadata or columns (named), an empty table,
            non-finite FVDs, or (with ``space``) a table of another space.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserError(f"FVD table not found: {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    raw_meta = (table.schema.metadata or {}).get(b"sned")
    if raw_meta is None:
        raise UserError(f"{path}: no 'sned' metadata (space_hash, space); was it written by sned evaluate?")
    try:
        meta = json.loads(raw_meta)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: the 'sned' metadata is not valid JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("space_hash"), str):
        raise UserError(f"{path}: the 'sned' metadata has no space_hash")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"{path}: missing columns {missing}; a sampled-FVD table needs {list(REQUIRED_COLUMNS)}")
    if table.num_rows == 0:
        raise UserError(f"{path}: the table is empty (no evaluated archs)")
    df = table.to_pandas()
    for col in ("res", "fvd", "kvd", "n_videos", "seed", "steps"):
        if not np.issubdtype(df[col].dtype, np.number):
            raise UserError(f"{path}: column {col!r} has dtype {df[col].dtype}; expected numbers")
    bad = ~np.isfinite(df["fvd"].to_numpy(dtype=np.float64))
    if bad.any():
        ids = df.loc[bad, "arch_id"].astype(str).tolist()[:3]
        raise UserError(f"{path}: {int(bad.sum())} rows have a non-finite fvd (e.g. arch ids {ids}); "
                        "re-evaluate or drop them")
    meta["sha256"] = file_sha256(path)
    if space is not None:
        check_table_space(meta, space, str(path))
    return df, meta


def write_fvd_table(df: pd.DataFrame, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write a sampled-FVD table atomically, with ``meta`` as JSON under the parquet key ``sned``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"cannot write {path}: missing columns {missing}")
    table = pa.Table.from_pandas(df, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"sned"] = json.dumps(dict(meta), sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def synthetic_fvd_table(space: SearchSpace, n: int, rng: np.random.Generator, noise: float = 2.0,
                        res: int | None = None) -> tuple[pd.DataFrame, dict]:
    """A clearly labelled synthetic sampled-FVD table with a known smooth FVD (tests, benchmarks, demos).

    ``fvd = 300 - 40 ln(params / 1e5) + 10 log2(res / min_res) + N(0, noise^2)`` over ``n`` distinct
    archs sampled uniformly from ``space`` (at ``res``, or over all resolutions). A second noise draw
    (another "seed") gives the table's ``noise_floor_tau``: the Kendall tau between the two passes.
    ``extractor`` is ``"synthetic"`` so that no one mistakes it for a measured table.
    """
    import pandas as pd
    from scipy.stats import kendalltau

    limit = space.count(res)
    if not 2 <= n <= limit:
        raise UserError(f"synthetic table: n = {n} must be between 2 and the {limit:,} archs of the space")
    X = np.zeros((0, space.n_genes), dtype=np.int64)
    while len(X) < n:  # distinct archs: resample until enough unique rows
        X = np.unique(np.concatenate([X, space.sample_genes(rng, 2 * n, res)]), axis=0)
    X = X[rng.permutation(len(X))[:n]]
    archs = space.decode(X)
    resolutions = space.values(X)[:, 0]
    clean = (300.0 - 40.0 * np.log(space.params(X) / 1e5)
             + 10.0 * np.log2(resolutions / min(space.resolutions)))
    fvd = clean + rng.normal(0.0, noise, n)
    second = clean + rng.normal(0.0, noise, n)
    df = pd.DataFrame({
        "arch_id": [arch_id(a) for a in archs],
        "arch": [canonical_json(a) for a in archs],
        "res": resolutions.astype(np.int64),
        "fvd": fvd,
        "kvd": fvd / 1000.0,  # synthetic: KVD is not modelled, only kept proportional
        "n_videos": np.full(n, 64, dtype=np.int64),
        "extractor": "synthetic",
        "extractor_sha256": "",
        "checkpoint_sha256": "synthetic",
        "seed": np.zeros(n, dtype=np.int64),
        "steps": np.zeros(n, dtype=np.int64),
    })
    meta = {"space_hash": space.hash, "space": space.name, "synthetic": True,
            "formula": f"300 - 40 ln(params/1e5) + 10 log2(res/{min(space.resolutions)}) + N(0, {noise}^2)",
            "noise_floor_tau": float(kendalltau(fvd, second).statistic)}
    return df, meta


# ----------------------------------------------------------------------------- encoding


def _gene_matrix(space: SearchSpace, archs: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
    """Archs or a gene matrix -> a validated, canonical gene matrix of ``space`` (SpaceError otherwise)."""
    if isinstance(archs, np.ndarray):
        X = np.asarray(archs)
        if X.ndim == 1:
            X = X[None]
        if X.ndim != 2 or X.shape[1] != space.n_genes:
            raise SpaceError(f"gene matrix has shape {X.shape}; space {space.name!r} (hash {space.hash}) "
                             f"has {space.n_genes} genes per row")
        if not np.issubdtype(X.dtype, np.integer):
            if not np.array_equal(X, np.round(X)):
                raise SpaceError("gene matrix holds non-integer values; genes are choice indices")
        X = X.astype(np.int64)
        if (X < 0).any() or (X > space.upper).any():
            raise SpaceError(f"gene matrix out of bounds for space {space.name!r} (hash {space.hash}): "
                             f"expected 0 <= gene <= {space.upper.tolist()}")
        return space.canonical(X)
    if isinstance(archs, Mapping):
        archs = [archs]
    archs = list(archs)
    for i, arch in enumerate(archs):
        try:
            space.validate(arch)
        except SpaceError as exc:
            raise SpaceError(f"arch {i} is not an arch of space {space.name!r} (hash {space.hash}): {exc}") from None
    if not archs:
        return np.zeros((0, space.n_genes), dtype=np.int64)
    return space.encode(archs)


def feature_names(space: SearchSpace) -> list[str]:
    """Names of the columns :func:`features` returns, in order."""
    names = [f"ord:{g.label}" for g in space.genes]
    for g in space.genes:
        if len(g.choices) >= 3:
            names += [f"onehot:{g.label}={c}" for c in g.choices]
    return names + ["log_params", "log_flops"]


def features(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """The raw (unstandardised) feature matrix ``(n, d)`` of a canonical gene matrix, float64.

    Ordinal gene values (resolution included, so one predictor serves every resolution), one-hot
    columns for genes with three or more choices (a binary gene's one-hot is its ordinal column
    again), and the log of the analytic parameter count and FLOPs, which carry most of the signal
    (bigger subnets sample better videos) in one smooth column each.
    """
    V = space.values(X).astype(np.float64)
    cols = [V]
    for i, g in enumerate(space.genes):
        if len(g.choices) >= 3:
            cols.append((X[:, i, None] == np.arange(len(g.choices))[None]).astype(np.float64))
    params, flops = space.costs(X)
    cost = np.stack([np.log(params.astype(np.float64)), np.log(flops)], axis=1)
    return np.concatenate([*cols, cost], axis=1)


def _standardiser(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = F.mean(axis=0)
    scale = F.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)  # constant columns (e.g. one resolution) stay 0


# ----------------------------------------------------------------------------- numpy models


class _Model:
    """A fitted surrogate as plain arrays; ``predict`` maps standardised features to standardised z.

    Subclasses set ``kind`` and implement ``predict(F) -> (mean, std)`` (both ``(n,)``, in z units;
    ``std`` is the model's own uncertainty: posterior, GP or ensemble spread), ``arrays()`` and
    ``from_arrays(arrays)`` for the npz round trip.
    """

    kind: ClassVar[str]

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> _Model:
        raise NotImplementedError


class RidgeModel(_Model):
    """Linear ridge regression with its Bayesian posterior covariance for an uncertainty."""

    kind = "ridge"

    def __init__(self, weights: np.ndarray, bias: float, x_mean: np.ndarray, covariance: np.ndarray,
                 bias_var: float):
        self.weights, self.bias, self.x_mean = weights, float(bias), x_mean
        self.covariance, self.bias_var = covariance, float(bias_var)

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = F @ self.weights + self.bias
        C = F - self.x_mean
        var = ((C @ self.covariance) * C).sum(axis=1) + self.bias_var
        return mean, np.sqrt(np.maximum(var, 0.0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "bias": np.array(self.bias), "x_mean": self.x_mean,
                "covariance": self.covariance, "bias_var": np.array(self.bias_var)}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> RidgeModel:
        return cls(a["weights"], float(a["bias"]), a["x_mean"], a["covariance"], float(a["bias_var"]))


class GaussianProcessModel(_Model):
    """A GP with an ARD squared-exponential kernel: ``k(a, b) = s^2 exp(-|(a - b) / l|^2 / 2)``.

    ``std`` is the posterior std of the latent function (the fitted white noise is left out: it is
    the evaluation noise of one FVD measurement, not uncertainty about the arch's expected FVD).
    """

    kind = "gp"

    def __init__(self, x_train: np.ndarray, alpha: np.ndarray, k_inv: np.ndarray, length_scale: np.ndarray,
                 amplitude: float):
        self.x_train, self.alpha, self.k_inv = x_train, alpha, k_inv
        self.length_scale, self.amplitude = length_scale, float(amplitude)
        self._scaled_train = x_train / length_scale
        self._train_sq = (self._scaled_train**2).sum(axis=1)

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        A = F / self.length_scale
        sq = (A**2).sum(axis=1)[:, None] + self._train_sq[None] - 2.0 * A @ self._scaled_train.T
        K = self.amplitude * np.exp(-0.5 * np.maximum(sq, 0.0))  # (n, n_train)
        mean = K @ self.alpha
        var = self.amplitude - np.einsum("nt,nt->n", K @ self.k_inv, K)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"x_train": self.x_train, "alpha": self.alpha, "k_inv": self.k_inv,
                "length_scale": self.length_scale, "amplitude": np.array(self.amplitude)}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> GaussianProcessModel:
        return cls(a["x_train"], a["alpha"], a["k_inv"], a["length_scale"], float(a["amplitude"]))


class TreeEnsembleModel(_Model):
    """An ensemble of gradient-boosted regression-tree models, as complete binary trees in heap order.

    Every tree is padded to a complete tree of depth ``D`` (a leaf above depth ``D`` becomes a node
    with threshold ``+inf`` whose subtree repeats its value), so traversal needs no child lookups:
    ``node <- 2 node + 1 + [x[feature[node]] > threshold[node]]``, ``D`` times, for every tree and row
    at once. ``feature``, ``threshold``: ``(members, trees, 2^D - 1)``; ``value``: ``(members, trees,
    2^D)``. Member ``m`` predicts ``init[m] + learning_rate * sum_t value[m, t, leaf]``; ``std`` is the
    spread over members.
    """

    kind = "gbt"
    _CHUNK = 2048  # rows per traversal batch: bounds the (members * trees, rows) index arrays

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, value: np.ndarray, init: np.ndarray,
                 learning_rate: float):
        self.feature, self.threshold, self.value = feature, threshold, value
        self.init, self.learning_rate = init, float(learning_rate)
        self.depth = int(np.log2(value.shape[-1]))

    def _members(self, F: np.ndarray) -> np.ndarray:
        # sklearn compares float32 features with float64 thresholds; do the same to land in the same leaf
        F = F.astype(np.float32).astype(np.float64)
        M, T, internal = self.feature.shape
        feature, threshold = self.feature.reshape(-1), self.threshold.reshape(-1)
        value = self.value.reshape(-1)
        tree_node = (np.arange(M * T) * internal)[:, None]  # flat offset of each tree's node 0
        tree_leaf = (np.arange(M * T) * (internal + 1))[:, None]
        out = np.empty((M, len(F)))
        for start in range(0, len(F), self._CHUNK):
            block = F[start:start + self._CHUNK]
            row = (np.arange(len(block)) * F.shape[1])[None]  # flat offset of each row's feature 0
            flat_block = block.reshape(-1)
            node = np.zeros((M * T, len(block)), dtype=np.int64)
            for _ in range(self.depth):  # every tree and row descends one level per step
                at = tree_node + node
                node = 2 * node + 1 + (flat_block[row + feature[at]] > threshold[at])
            leaves = value[tree_leaf + node - internal].reshape(M, T, len(block))
            out[:, start:start + len(block)] = self.init[:, None] + self.learning_rate * leaves.sum(axis=1)
        return out

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = self._members(F)
        return members.mean(axis=0), members.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(len(F))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"feature": self.feature, "threshold": self.threshold, "value": self.value, "init": self.init,
                "learning_rate": np.array(self.learning_rate)}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> TreeEnsembleModel:
        return cls(a["feature"], a["threshold"], a["value"], a["init"], float(a["learning_rate"]))


class MLPEnsembleModel(_Model):
    """An ensemble of small ReLU MLPs (same shape, different seeds) as stacked weights.

    ``weights[i]`` has shape ``(members, d_in, d_out)``, ``biases[i]`` ``(members, d_out)``; the last
    layer is linear with one output. ``std`` is the spread over members.
    """

    kind = "mlp"

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray]):
        self.weights, self.biases = weights, biases

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = _mlp_forward(F, self.weights, self.biases)[-1][..., 0]
        return members.mean(axis=0), members.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(len(F))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"w{i}": w for i, w in enumerate(self.weights)}
        out.update({f"b{i}": b for i, b in enumerate(self.biases)})
        return out

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> MLPEnsembleModel:
        n = sum(1 for k in a if k.startswith("w"))
        return cls([a[f"w{i}"] for i in range(n)], [a[f"b{i}"] for i in range(n)])


def _mlp_forward(F: np.ndarray, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Activations of every layer of stacked MLPs, ``[(m, n, d_0), (m, n, d_1), ...]`` (last one linear)."""
    m, d, h = weights[0].shape
    # first layer as one 2D GEMM (members side by side): a stacked matmul on a broadcast input is slow
    H = (F @ weights[0].transpose(1, 0, 2).reshape(d, m * h)).reshape(len(F), m, h).transpose(1, 0, 2)
    acts = [np.broadcast_to(F, (m, *F.shape)), H + biases[0][:, None, :]]
    for W, b in zip(weights[1:], biases[1:], strict=True):
        acts.append(np.ascontiguousarray(np.maximum(acts[-1], 0.0)) @ W + b[:, None, :])
    return acts  # acts[i] for i >= 1 is pre-activation; hidden layers apply ReLU when read


_MODEL_TYPES: dict[str, type[_Model]] = {m.kind: m for m in
                                         (RidgeModel, GaussianProcessModel, TreeEnsembleModel, MLPEnsembleModel)}


# ----------------------------------------------------------------------------- fitting (sklearn, lazy)
# Each fitter takes standardised features F (n, d), standardised targets z (n,) and a seed, and
# returns a numpy model. scikit-learn is imported here only: the prediction path never touches it.


def _fit_ridge(F: np.ndarray, z: np.ndarray, seed: int) -> RidgeModel:
    from sklearn.linear_model import RidgeCV

    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(F, z)  # efficient leave-one-out over alpha
    alpha = float(ridge.alpha_)
    x_mean = F.mean(axis=0)
    C = F - x_mean
    A_inv = np.linalg.inv(C.T @ C + alpha * np.eye(F.shape[1]))
    residual = z - ridge.predict(F)
    dof = float(np.trace(C @ A_inv @ C.T))  # effective number of parameters
    noise = float(residual @ residual) / max(len(z) - dof - 1.0, 1.0)
    return RidgeModel(ridge.coef_.astype(np.float64), float(ridge.intercept_), x_mean, noise * A_inv, noise / len(z))


def _fit_gp(F: np.ndarray, z: np.ndarray, seed: int) -> GaussianProcessModel:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    # One length scale over standardised features: an ARD kernel (one per feature, 20+ here) cost ~10x
    # the fit time on 200 rows and did not raise CV tau on synthetic tables. Predict supports both.
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(3.0, (1e-1, 1e3)) + WhiteKernel(1e-2, (1e-6, 1.0))
    gp = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=0, random_state=seed)
    with warnings.catch_warnings():  # a length scale at its bound just means "this feature is irrelevant"
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(F, z)
    return _gp_from_sklearn(gp)


def _gp_from_sklearn(gp) -> GaussianProcessModel:
    """Export a fitted ``GaussianProcessRegressor`` with kernel ``C * RBF + White`` (normalize_y=False)."""
    k = gp.kernel_
    x_train = np.asarray(gp.X_train_, dtype=np.float64)
    L_inv = np.linalg.inv(gp.L_)  # K + noise I = L L^T
    return GaussianProcessModel(x_train, gp.alpha_.astype(np.float64).ravel(), L_inv.T @ L_inv,
                                np.atleast_1d(k.k1.k2.length_scale).astype(np.float64) * np.ones(x_train.shape[1]),
                                float(k.k1.k1.constant_value))


def _fit_gbt(F: np.ndarray, z: np.ndarray, seed: int, members: int = 3, trees: int = 80, depth: int = 3,
             learning_rate: float = 0.1) -> TreeEnsembleModel:
    from sklearn.ensemble import GradientBoostingRegressor

    fitted = [GradientBoostingRegressor(n_estimators=trees, max_depth=depth, learning_rate=learning_rate,
                                        subsample=0.8, random_state=seed + m).fit(F, z) for m in range(members)]
    return _trees_from_sklearn(fitted)


def _trees_from_sklearn(fitted: Sequence) -> TreeEnsembleModel:
    """Export fitted ``GradientBoostingRegressor``s (same n_estimators and learning rate) as padded arrays."""
    members, trees = len(fitted), fitted[0].n_estimators_
    learning_rate = float(fitted[0].learning_rate)
    if any(g.n_estimators_ != trees or g.learning_rate != learning_rate for g in fitted):
        raise ValueError("tree ensemble members must share n_estimators and learning_rate")
    depth = max(est.tree_.max_depth for g in fitted for est in g.estimators_[:, 0])
    internal = 2**depth - 1
    feature = np.zeros((members, trees, internal), dtype=np.int64)
    threshold = np.full((members, trees, internal), np.inf)  # padding nodes always go left
    value = np.zeros((members, trees, internal + 1))
    for m, g in enumerate(fitted):
        for t, est in enumerate(g.estimators_[:, 0]):
            tree = est.tree_
            stack = [(0, 0, 0)]  # (sklearn node, heap position, level)
            while stack:
                node, pos, level = stack.pop()
                if level == depth:
                    value[m, t, pos - internal] = tree.value[node, 0, 0]
                    continue
                left, right = tree.children_left[node], tree.children_right[node]
                if left < 0:  # a leaf above the bottom level: both heap children repeat it
                    stack += [(node, 2 * pos + 1, level + 1), (node, 2 * pos + 2, level + 1)]
                else:
                    feature[m, t, pos], threshold[m, t, pos] = tree.feature[node], tree.threshold[node]
                    stack += [(left, 2 * pos + 1, level + 1), (right, 2 * pos + 2, level + 1)]
    init = np.array([float(np.ravel(g.init_.constant_)[0]) for g in fitted])
    return TreeEnsembleModel(feature, threshold, value, init, learning_rate)


def _fit_mlp(F: np.ndarray, z: np.ndarray, seed: int, members: int = 5, hidden: tuple[int, ...] = (32, 32),
             weight_decay: float = 1e-2, max_iter: int = 200) -> MLPEnsembleModel:
    """Train ``members`` ReLU MLPs jointly: one full-batch L-BFGS over their stacked weights.

    Written in numpy + scipy rather than with sklearn's ``MLPRegressor``: the loss is a sum over
    members, so the gradients are independent, and one optimiser over the stack costs about as much
    as one sklearn net (whose per-iteration overhead dominates on a few hundred rows). Loss per member:
    ``mean((f(x) - z)^2) / 2 + weight_decay / (2 n) * |W|^2`` (sklearn's convention), Glorot init.
    """
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    n, sizes = len(F), [F.shape[1], *hidden, 1]
    shapes = [(members, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    theta0 = []
    for _, a, b in shapes:
        limit = np.sqrt(6.0 / (a + b))
        theta0 += [rng.uniform(-limit, limit, (members, a, b)).ravel(), rng.uniform(-limit, limit, (members, b)).ravel()]
    theta0 = np.concatenate(theta0)

    def unpack(theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        weights, biases, i = [], [], 0
        for m, a, b in shapes:
            weights.append(theta[i:i + m * a * b].reshape(m, a, b))
            i += m * a * b
            biases.append(theta[i:i + m * b].reshape(m, b))
            i += m * b
        return weights, biases

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, biases = unpack(theta)
        pre = _mlp_forward(F, weights, biases)  # pre[0] is the input, pre[i] the i-th pre-activation
        acts = [pre[0], *(np.maximum(a, 0.0) for a in pre[1:-1])]  # inputs of each layer
        err = pre[-1][..., 0] - z[None]  # (members, n)
        value = 0.5 * float((err**2).sum()) / n + 0.5 * weight_decay / n * sum(float((W**2).sum()) for W in weights)
        grads: list[np.ndarray] = []
        delta = err[..., None] / n  # d loss / d output, (members, n, 1)
        for i in reversed(range(len(weights))):
            if i == 0:  # the input is shared by every member: one 2D GEMM
                m_, n_, h_ = delta.shape
                grad_w = (F.T @ delta.transpose(1, 0, 2).reshape(n_, m_ * h_)).reshape(-1, m_, h_).transpose(1, 0, 2)
            else:
                grad_w = acts[i].transpose(0, 2, 1) @ delta
            grad_w = grad_w + weight_decay / n * weights[i]
            grads = [grad_w.ravel(), delta.sum(axis=1).ravel(), *grads]
            if i:
                delta = (delta @ weights[i].transpose(0, 2, 1)) * (pre[i] > 0)
        return value, np.concatenate(grads)

    result = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    weights, biases = unpack(result.x)
    return MLPEnsembleModel([w.copy() for w in weights], [b.copy() for b in biases])


_FITTERS = {"ridge": _fit_ridge, "gp": _fit_gp, "gbt": _fit_gbt, "mlp": _fit_mlp}


def _to_target(fvd: np.ndarray, target: str) -> np.ndarray:
    return np.log(fvd) if target == "log" else fvd


def _from_target(mean: np.ndarray, std: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    if target == "log":
        # exp of the predicted log-FVD (the median of a log-normal); std by the delta method
        fvd = np.exp(mean)
        return fvd, fvd * std
    return mean, std


def _fit_model(kind: str, F_raw: np.ndarray, t: np.ndarray, seed: int) -> tuple[_Model, np.ndarray, np.ndarray,
                                                                                  float, float]:
    """Standardise features and target on these rows, fit; return the model and its scalers."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    x_mean, x_scale = _standardiser(F_raw)
    t_mean, t_std = float(t.mean()), float(t.std()) or 1.0
    # one BLAS thread: on a few hundred rows threading costs more than it saves, and on a shared
    # machine an oversubscribed BLAS made the MLP fits 50x slower
    with threadpool_limits(1):
        model = _FITTERS[kind]((F_raw - x_mean) / x_scale, (t - t_mean) / t_std, seed)
    return model, x_mean, x_scale, t_mean, t_std


def _metrics(fvd: np.ndarray, predicted: np.ndarray, res: np.ndarray) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    within = [kendalltau(fvd[res == r], predicted[res == r]).statistic for r in np.unique(res)
              if (res == r).sum() >= 3]
    return {"tau": float(kendalltau(fvd, predicted).statistic),
            "rho": float(spearmanr(fvd, predicted).statistic),
            "rmse": float(np.sqrt(np.mean((fvd - predicted) ** 2))),
            "tau_res": float(np.nanmean(within)) if within else float("nan")}


def _group_folds(groups: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index per row; all rows of one group (arch) share a fold, so no arch is in train and test."""
    unique, inverse = np.unique(groups, return_inverse=True)
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    fold_of_group[rng.permutation(len(unique))] = np.arange(len(unique)) % folds
    return fold_of_group[inverse]


# ----------------------------------------------------------------------------- the predictor


class AccuracyPredictor:
    """A fitted FVD predictor for one search space; numpy-only, vectorised inference.

    Build with :meth:`fit` (cross-validates the candidates, refits the best on all rows) or
    :meth:`load`; use :meth:`predict`. Example::

        pred = AccuracyPredictor.load("experiments/tiny/predictor.npz")
        mean, std = pred.predict(space.sample_genes(rng, 10_000))   # FVD units, (n,) each

    Args:
        space: the search space the predictor belongs to.
        model: the fitted numpy model (predicts standardised targets).
        target: ``"log"`` (the model fits log FVD) or ``"fvd"``.
        scalers: ``x_mean``, ``x_scale`` (feature standardisation), ``t_mean``, ``t_std`` (target).
        info: metadata: CV metrics, candidate table, table hash, provenance (saved as JSON).
    """

    def __init__(self, space: SearchSpace, model: _Model, target: str, scalers: Mapping[str, Any],
                 info: Mapping[str, Any]):
        if target not in TARGETS:
            raise ValueError(f"target {target!r}: expected one of {list(TARGETS)}")
        self.space = space
        self.model = model
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
    def metrics(self) -> dict[str, float]:
        """Cross-validated metrics of the chosen model: ``tau``, ``rho``, ``rmse`` (FVD), ``tau_res``."""
        return dict(self.info.get("metrics", {}))

    @property
    def kind(self) -> str:
        return self.model.kind

    def candidate_table(self) -> pd.DataFrame:
        """The CV table of every candidate (model, target, tau, rho, rmse, tau_res, fit_s)."""
        import pandas as pd

        table = pd.DataFrame(self.info.get("candidates", []))
        order = [c for c in _CANDIDATE_COLUMNS if c in table.columns]  # JSON round trips sort the keys
        return table[order + [c for c in table.columns if c not in order]]

    def __repr__(self) -> str:
        m = self.metrics
        return (f"AccuracyPredictor({self.kind} on {'log(FVD)' if self.target == 'log' else 'FVD'}, space "
                f"{self.space.name!r} {self.space_hash}, CV tau {m.get('tau', float('nan')):.3f})")

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``SpaceError`` (naming both hashes) unless ``space`` is the one this predictor was fitted on."""
        if space.hash != self.space_hash:
            raise SpaceError(f"accuracy predictor belongs to space {self.space.name!r} (hash {self.space_hash}), "
                             f"not to space {space.name!r} (hash {space.hash}); fit one on an FVD table of "
                             f"that space with `sned fit`")

    # ------------------------------------------------------------------ inference (numpy only)

    def predict(self, archs: Arch | Sequence[Arch] | np.ndarray,
                space: SearchSpace | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted FVD and its uncertainty for archs or a gene matrix, vectorised.

        Args:
            archs: one arch, a list of archs, or an integer gene matrix ``(n, n_genes)`` of this space.
            space: if given, first checked to be this predictor's space (:meth:`check_space`).

        Returns:
            ``(mean, std)``, float64 arrays of shape ``(n,)`` in FVD units. With a log target the mean
            is ``exp`` of the predicted log-FVD and ``std`` its delta-method spread. ``std`` is model
            uncertainty (posterior / GP / ensemble spread), not the evaluation noise of one FVD.

        Raises:
            SpaceError: an arch of another space, a gene matrix of the wrong width or out of bounds.
        """
        if space is not None:
            self.check_space(space)
        X = _gene_matrix(self.space, archs)
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        F = (features(self.space, X) - self.x_mean) / self.x_scale
        z_mean, z_std = self.model.predict(F)
        return _from_target(z_mean * self.t_std + self.t_mean, z_std * self.t_std, self.target)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write the predictor atomically as an ``.npz`` (arrays + one JSON metadata entry; no pickle)."""
        path = Path(path)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "target": self.target,
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
        with _atomic_path(path) as tmp:
            Path(tmp).write_bytes(buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> AccuracyPredictor:
        """Load a predictor written by :meth:`save` (``allow_pickle=False``).

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
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{path}: format {meta.get('format')!r} v{meta.get('format_version')}; "
                            f"expected {FORMAT!r} v{FORMAT_VERSION}")
        spec = meta["space"]["spec"]
        space = SearchSpace(parse_space_spec(spec, spec.get("name", meta["space"]["name"])), source=str(path))
        if space.hash != meta["space"]["hash"]:
            raise UserError(f"{path}: its space spec hashes to {space.hash}, but it records {meta['space']['hash']}")
        if meta["encoding"]["features"] != feature_names(space):
            raise UserError(f"{path}: written with another feature encoding; refit it with this sned version")
        kind = meta["kind"]
        if kind not in _MODEL_TYPES:
            raise UserError(f"{path}: unknown model kind {kind!r}; valid: {list(_MODEL_TYPES)}")
        model = _MODEL_TYPES[kind].from_arrays({k[len("model."):]: v for k, v in arrays.items()
                                                if k.startswith("model.")})
        scalers = {"x_mean": arrays["encoding.x_mean"], "x_scale": arrays["encoding.x_scale"],
                   "t_mean": meta["encoding"]["t_mean"], "t_std": meta["encoding"]["t_std"]}
        info = {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind", "target", "space",
                                                           "encoding")}
        return cls(space, model, meta["target"], scalers, info)

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, space: SearchSpace, table: pd.DataFrame, *, folds: int = 5, seed: int = 0,
            models: Iterable[str] = MODELS, targets: Iterable[str] | None = None,
            checkpoint: str | None = None, table_meta: Mapping[str, Any] | None = None,
            command: str | None = None, progress: bool = False) -> AccuracyPredictor:
        """Cross-validate every (model, target) candidate, pick the best Kendall tau, refit it on all rows.

        Folds are grouped by arch id (repeated evaluations of one arch never straddle train and test)
        and seeded. Metrics are computed on the pooled out-of-fold predictions in FVD units: ``tau``
        (Kendall), ``rho`` (Spearman), ``rmse``, and ``tau_res`` (mean Kendall tau within each
        resolution, the ranking one per-resolution search front needs). Ties in tau go to lower RMSE.

        Args:
            space: the space the table belongs to.
            table: the sampled-FVD table (see :func:`read_fvd_table`).
            folds: number of CV folds (>= 2).
            seed: seeds the fold split and every model.
            models: candidate families, a subset of :data:`MODELS`.
            targets: subset of :data:`TARGETS`; default both when every FVD is positive, else ``fvd``.
                ``log`` makes errors relative, which suits FVD's magnitude-dependent noise; CV decides.
            checkpoint: a ``checkpoint_sha256`` (or prefix) to fit on when the table holds several.
            table_meta: the table's metadata (``read_fvd_table``): space hash check, table sha256 and
                noise-floor tau are recorded.
            command: the command line to record (default: ``sys.argv``).
            progress: show a tqdm bar over the CV fits.

        Raises:
            UserError: unknown models/targets, a table of another space, several checkpoints or
                extractors without a choice, archs that do not match their ``res``, too few archs.
        """
        import pandas as pd

        models, targets = _check_choices(models, MODELS, "model"), targets
        table_meta = dict(table_meta or {})
        if "space_hash" in table_meta:
            check_table_space(table_meta, space)
        df = _select_rows(table, checkpoint)
        fvd = df["fvd"].to_numpy(dtype=np.float64)
        if targets is None:
            targets = TARGETS if (fvd > 0).all() else ("fvd",)
        targets = _check_choices(targets, TARGETS, "target")
        if "log" in targets and (fvd <= 0).any():
            raise UserError("target 'log' needs positive FVDs; the table has FVD <= 0 (use --targets fvd)")
        X = _table_genes(space, df)
        groups = df["arch_id"].astype(str).to_numpy()
        n_groups = len(np.unique(groups))
        if folds < 2 or n_groups < folds or n_groups < 2 * folds:
            raise UserError(f"{n_groups} distinct archs are too few for {folds}-fold CV (need >= 2 per fold "
                            f"and folds >= 2)")
        F_raw = features(space, X)
        res = df["res"].to_numpy(dtype=np.int64)
        fold = _group_folds(groups, folds, np.random.default_rng(seed))

        # 1. cross-validate every candidate on the same folds
        rows = []
        jobs = [(k, t) for k in models for t in targets]
        bar = _progress(len(jobs) * folds, progress)
        for kind, target in jobs:
            t_all = _to_target(fvd, target)
            predicted = np.empty(len(fvd))
            start = time.perf_counter()
            for f in range(folds):
                train, test = fold != f, fold == f
                model, x_mean, x_scale, t_mean, t_std = _fit_model(kind, F_raw[train], t_all[train], seed + f)
                z, z_std = model.predict((F_raw[test] - x_mean) / x_scale)
                predicted[test] = _from_target(z * t_std + t_mean, z_std * t_std, target)[0]
                bar.update(1)
            rows.append({"model": kind, "target": target, **_metrics(fvd, predicted, res),
                         "fit_s": (time.perf_counter() - start) / folds})
        bar.close()
        # 2. pick by tau (NSGANetV2), ties to lower RMSE; 3. refit it on every row
        best = max(rows, key=lambda r: (round(r["tau"], 6), -r["rmse"]))
        for r in rows:
            r["chosen"] = r is best
        model, x_mean, x_scale, t_mean, t_std = _fit_model(best["model"], F_raw, _to_target(fvd, best["target"]),
                                                           seed)
        info = {
            "metrics": {k: best[k] for k in ("tau", "rho", "rmse", "tau_res")},
            "candidates": rows,
            "cv": {"folds": folds, "seed": seed, "grouped_by": "arch_id", "selection": "max Kendall tau"},
            "table": {"sha256": table_meta.get("sha256"), "rows": len(df), "archs": n_groups,
                      "resolutions": sorted(int(r) for r in np.unique(res)),
                      "checkpoint_sha256": str(df["checkpoint_sha256"].iloc[0]),
                      "extractor": str(df["extractor"].iloc[0]),
                      "extractor_sha256": str(df["extractor_sha256"].iloc[0]),
                      "fvd_range": [float(fvd.min()), float(fvd.max())],
                      "noise_floor_tau": table_meta.get("noise_floor_tau")},
            "provenance": {"command": command if command is not None else " ".join(sys.argv),
                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "sned_version": _version("sned"), "numpy": np.__version__,
                           "scikit_learn": _version("scikit-learn"), "pandas": pd.__version__},
        }
        scalers = {"x_mean": x_mean, "x_scale": x_scale, "t_mean": t_mean, "t_std": t_std}
        log.info("accuracy predictor: chose %s on %s (CV tau %.3f) of %d candidates", best["model"],
                 best["target"], best["tau"], len(rows))
        return cls(space, model, best["target"], scalers, info)


# ----------------------------------------------------------------------------- helpers


def _check_choices(values: Iterable[str], valid: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    unknown = [v for v in values if v not in valid]
    if unknown or not values:
        raise UserError(f"unknown {what}(s) {unknown or list(values)}; valid: {list(valid)}")
    return values


def _select_rows(table: pd.DataFrame, checkpoint: str | None) -> pd.DataFrame:
    """The rows of one checkpoint and one feature extractor (FVDs of different ones do not compare)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"FVD table: missing columns {missing}")
    df = table
    checkpoints = sorted(df["checkpoint_sha256"].astype(str).unique())
    if checkpoint is not None:
        df = df[df["checkpoint_sha256"].astype(str).str.startswith(checkpoint)]
        if df.empty:
            raise UserError(f"no rows for checkpoint {checkpoint!r}; the table has {[c[:12] for c in checkpoints]}")
    elif len(checkpoints) > 1:
        raise UserError(f"the table mixes {len(checkpoints)} checkpoints {[c[:12] for c in checkpoints]}; "
                        "choose one with --checkpoint")
    extractors = sorted(df["extractor"].astype(str).unique())
    if len(extractors) > 1:
        raise UserError(f"the table mixes feature extractors {extractors}; FVDs of different extractors do not "
                        "compare")
    if df.empty:
        raise UserError("FVD table: no rows to fit")
    return df.reset_index(drop=True)


def _table_genes(space: SearchSpace, df: pd.DataFrame) -> np.ndarray:
    archs = []
    for i, (text, res) in enumerate(zip(df["arch"], df["res"], strict=True)):
        try:
            arch = json.loads(text)
            space.validate(arch)
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"FVD table row {i}: arch is not valid JSON ({exc})") from None
        except SpaceError as exc:
            raise UserError(f"FVD table row {i}: arch is not in space {space.name!r} (hash {space.hash}): "
                            f"{exc}") from None
        if int(arch["res"]) != int(res):
            raise UserError(f"FVD table row {i}: res column {int(res)} != the arch's res {arch['res']}")
        archs.append(arch)
    return space.encode(archs)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="cross-validating", unit="fit", disable=not enabled, file=sys.stderr)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


class _atomic_path:
    """``with _atomic_path(p) as tmp``: write ``tmp`` (same folder), then ``os.replace`` it onto ``p``."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> str:
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)  # mkstemp makes 0600; a shared artifact should be readable
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.unlink(self.tmp)


__all__ = ["AccuracyPredictor", "MODELS", "REQUIRED_COLUMNS", "TARGETS", "check_table_space", "feature_names",
           "features", "file_sha256", "read_fvd_table", "synthetic_fvd_table", "write_fvd_table"]

