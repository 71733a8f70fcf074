"""Fitting the surrogates of :mod:`sned.predictors.surrogates` (scikit-learn and scipy, imported lazily).

Each fitter takes standardised features ``F`` (n, d), standardised targets ``z`` (n,) and an integer
seed, and returns a numpy model; :func:`fit_surrogate` standardises on the rows it is given, fits and
returns a :class:`~sned.predictors.surrogates.FittedSurrogate`. scikit-learn is imported only inside
the fitters: the prediction path never touches it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sned.predictors.encoding import standardiser
from sned.predictors.surrogates import (
    FittedSurrogate,
    GaussianProcessModel,
    MLPEnsembleModel,
    RidgeModel,
    TreeEnsembleModel,
    apply_transform,
    mlp_forward,
)

MODELS: tuple[str, ...] = ("ridge", "gp", "gbt", "mlp")
"""The surrogate families ``sned fit`` cross-validates (NSGANetV2 fits the same kinds)."""


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
    return gp_from_sklearn(gp)


def gp_from_sklearn(gp) -> GaussianProcessModel:
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
    return trees_from_sklearn(fitted)


def trees_from_sklearn(fitted: Sequence) -> TreeEnsembleModel:
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
        pre = mlp_forward(F, weights, biases)  # pre[0] is the input, pre[i] the i-th pre-activation
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
assert tuple(_FITTERS) == MODELS


def fit_surrogate(kind: str, transform: str, F_raw: np.ndarray, values: np.ndarray, seed: int) -> FittedSurrogate:
    """Standardise features and the transformed target on these rows, fit one surrogate of ``kind``.

    Args:
        kind: one of :data:`MODELS`.
        transform: one of :data:`~sned.predictors.surrogates.TRANSFORMS`.
        F_raw: raw features ``(n, d)`` (:func:`~sned.predictors.encoding.features`).
        values: the target column's values ``(n,)`` in target units.
        seed: seeds the model (tree subsampling, MLP initialisation, GP optimiser).

    Returns:
        The fitted surrogate with its scalers.

    Raises:
        ValueError: an unknown ``kind`` or ``transform``.
    """
    from sklearn import config_context
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    if kind not in _FITTERS:
        raise ValueError(f"model {kind!r}: expected one of {list(MODELS)}")
    t = apply_transform(values, transform)
    x_mean, x_scale = standardiser(F_raw)
    t_mean, t_std = float(t.mean()), float(t.std()) or 1.0
    F, z = (F_raw - x_mean) / x_scale, (t - t_mean) / t_std
    if not (np.isfinite(F).all() and np.isfinite(z).all()):
        raise ValueError("fit_surrogate: features and target must be finite")
    # one BLAS thread: on a few hundred rows threading costs more than it saves, and on a shared
    # machine an oversubscribed BLAS made the MLP fits 50x slower. The inputs are checked above, so
    # sklearn's per-estimator validation (a quarter of a boosted-tree fit: 240 trees) is skipped.
    with threadpool_limits(1), config_context(skip_parameter_validation=True, assume_finite=True):
        model = _FITTERS[kind](F, z, seed)
    return FittedSurrogate(model, transform, x_mean, x_scale, t_mean, t_std)


__all__ = ["MODELS", "fit_surrogate", "gp_from_sklearn", "trees_from_sklearn"]
