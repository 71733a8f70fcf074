"""Encodings of archs for the accuracy predictors: gene matrices, feature vectors, fold groups.

Notation (per row of the sampled-quality table):

    x       the arch's gene row (``space.encode``), one integer choice index per gene
    phi(x)  the feature vector: ordinal gene values, one-hot genes with >= 3 choices, log params,
            log FLOPs (resolution is gene 0, so one predictor serves every resolution)

numpy only: the search imports this on its prediction path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sned.supernet.space import Arch, SearchSpace, SpaceError, canonical_json


def gene_matrix(space: SearchSpace, archs: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
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


def standardiser(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales of ``F``; constant columns (e.g. one resolution) get scale 1 and stay 0."""
    mean = F.mean(axis=0)
    scale = F.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def stage_configurations(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """The stage configuration of each row of a canonical gene matrix: its arch's canonical JSON without ``res``.

    Cross-validation groups rows by this key, so one stage configuration measured at several
    resolutions sits wholly in train or wholly in test: otherwise a model could learn a configuration
    at 64 px and be scored on it at 128 px.

    Returns:
        An object array ``(n,)`` of strings; equal strings mean the same stages.
    """
    keys = [canonical_json({k: v for k, v in arch.items() if k != "res"}) for arch in space.decode(X)]
    return np.asarray(keys, dtype=object)


__all__ = ["feature_names", "features", "gene_matrix", "stage_configurations", "standardiser"]
