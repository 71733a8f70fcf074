"""Fitted surrogate models as plain numpy arrays: ridge, Gaussian process, boosted trees, MLP ensemble.

Each model maps standardised features ``F`` (see :mod:`sned.predictors.encoding`) to a standardised
target ``z`` with an uncertainty, and round-trips through plain arrays (``arrays`` / ``from_arrays``)
so that a predictor file is an ``.npz`` without pickle. The fitting side (scikit-learn, scipy) lives in
:mod:`sned.predictors.surrogate_fit`; this module is numpy only, the search imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


class Surrogate:
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
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Surrogate:
        raise NotImplementedError


class RidgeModel(Surrogate):
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


class GaussianProcessModel(Surrogate):
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


class TreeEnsembleModel(Surrogate):
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


class MLPEnsembleModel(Surrogate):
    """An ensemble of small ReLU MLPs (same shape, different seeds) as stacked weights.

    ``weights[i]`` has shape ``(members, d_in, d_out)``, ``biases[i]`` ``(members, d_out)``; the last
    layer is linear with one output. ``std`` is the spread over members.
    """

    kind = "mlp"

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray]):
        self.weights, self.biases = weights, biases

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = mlp_forward(F, self.weights, self.biases)[-1][..., 0]
        return members.mean(axis=0), members.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(len(F))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"w{i}": w for i, w in enumerate(self.weights)}
        out.update({f"b{i}": b for i, b in enumerate(self.biases)})
        return out

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> MLPEnsembleModel:
        n = sum(1 for k in a if k.startswith("w"))
        return cls([a[f"w{i}"] for i in range(n)], [a[f"b{i}"] for i in range(n)])


def mlp_forward(F: np.ndarray, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Activations of every layer of stacked MLPs, ``[(m, n, d_0), (m, n, d_1), ...]`` (last one linear)."""
    m, d, h = weights[0].shape
    # first layer as one 2D GEMM (members side by side): a stacked matmul on a broadcast input is slow
    H = (F @ weights[0].transpose(1, 0, 2).reshape(d, m * h)).reshape(len(F), m, h).transpose(1, 0, 2)
    acts = [np.broadcast_to(F, (m, *F.shape)), H + biases[0][:, None, :]]
    for W, b in zip(weights[1:], biases[1:], strict=True):
        acts.append(np.ascontiguousarray(np.maximum(acts[-1], 0.0)) @ W + b[:, None, :])
    return acts  # acts[i] for i >= 1 is pre-activation; hidden layers apply ReLU when read


MODEL_TYPES: dict[str, type[Surrogate]] = {m.kind: m for m in
                                         (RidgeModel, GaussianProcessModel, TreeEnsembleModel, MLPEnsembleModel)}



# ----------------------------------------------------------------------------- targets and their transforms

TRANSFORMS: tuple[str, ...] = ("log", "identity")
"""How a target column is fitted: ``log`` fits ``ln(y)`` (relative errors, which suit FVD's
magnitude-dependent noise; needs ``y > 0``), ``identity`` fits ``y`` itself. Both are candidates."""


def apply_transform(values: np.ndarray, transform: str) -> np.ndarray:
    """The fitted quantity ``t`` of target values ``y`` (``ln y`` or ``y``); see :data:`TRANSFORMS`."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform {transform!r}: expected one of {list(TRANSFORMS)}")
    return np.log(values) if transform == "log" else values


def invert_transform(mean: np.ndarray, std: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ``t`` (mean, std) back to target units; with ``log`` the std by the delta method."""
    if transform == "log":
        value = np.exp(mean)  # exp of the predicted log (the median of a log-normal)
        return value, value * std
    return mean, std


@dataclass(frozen=True)
class FittedSurrogate:
    """A surrogate with the scalers of the rows it was fitted on: raw features in, target units out.

    Attributes:
        model: the numpy model (standardised features -> standardised ``t``).
        transform: one of :data:`TRANSFORMS`.
        x_mean, x_scale: feature standardisation, ``(d,)`` each.
        t_mean, t_std: standardisation of the transformed target.
    """

    model: Surrogate
    transform: str
    x_mean: np.ndarray
    x_scale: np.ndarray
    t_mean: float
    t_std: float

    def predict(self, F_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``, ``(n,)`` each, in target units, for raw (unstandardised) features ``(n, d)``."""
        z_mean, z_std = self.model.predict((F_raw - self.x_mean) / self.x_scale)
        return invert_transform(z_mean * self.t_std + self.t_mean, z_std * self.t_std, self.transform)


__all__ = ["FittedSurrogate", "GaussianProcessModel", "MLPEnsembleModel", "MODEL_TYPES", "RidgeModel", "Surrogate",
           "TRANSFORMS", "TreeEnsembleModel", "apply_transform", "invert_transform", "mlp_forward"]
