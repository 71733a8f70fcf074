"""Honest model selection for the accuracy predictors: grouped folds, nested CV, baselines.

What the search needs from a predictor is the ranking of the subnets *of one resolution* (it builds
one front per resolution), so every score that chooses or judges a model is the **within-resolution
Kendall tau**: Kendall's tau-b between measured and predicted values computed inside each resolution,
averaged over the resolutions (``tau_res``). The pooled tau over all resolutions is reported too, but
never chooses: a predictor that knows only the resolution gets a high pooled tau and ranks nothing.

Notation:

    K, J      outer and inner folds (``folds``, ``inner_folds``)
    S(D)      the selection procedure on rows D: J-fold grouped CV of every candidate on D, the best
              ``tau_res`` wins (ties to lower RMSE), refitted on all of D
    group     a stage configuration: the arch without its resolution (encoding.stage_configurations)

Procedure (:func:`select_and_evaluate`, after Varma & Simon, BMC Bioinformatics 2006, "Bias in error
estimation when using cross-validation for model selection"):

1. Split the rows into K folds grouped by stage configuration, so every resolution of one
   configuration is in the same fold.
2. For each outer fold k, run S on the other K - 1 folds only and predict fold k with its model. The
   pooled out-of-fold predictions score the *procedure* (``tau_res``, ``rho_res``, ``tau``, ``rho``,
   ``rmse``); no outer test row ever helped choose or fit the model that predicts it.
3. On the same outer folds, fit each baseline (least squares on resolution only; resolution + log
   FLOPs; log params) and score it the same way.
4. Compare the procedure with the best baseline by a paired bootstrap over stage configurations of
   the out-of-fold predictions; the model *beats the baselines* only if the lower 5 % bound of the
   ``tau_res`` difference is above zero (a tie within the noise is not a win).
5. Run S on all rows: its inner-CV table is the candidate table, its refit the final model.

Torch-free; scipy (rank correlations) and scikit-learn (through the fitters) are imported lazily.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sned.predictors.surrogate_fit import fit_surrogate
from sned.predictors.surrogates import FittedSurrogate

Candidate = tuple[str, str]  # (model kind, transform)
BASELINES: tuple[str, ...] = ("resolution", "resolution+log_flops", "params")
"""The baselines every fit is reported beside (DESIGN.md, "Quality signal rules")."""
SCORE_NAMES: tuple[str, ...] = ("tau_res", "rho_res", "tau", "rho", "rmse")
MINIMUM_PER_RESOLUTION = 3  # a rank correlation inside a resolution needs three subnets to mean anything
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_LEVEL = 0.05  # one-sided: "beats" needs the 5 % lower bound of the difference above zero


# ----------------------------------------------------------------------------- folds


def group_folds(groups: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index per row; all rows of one group share a fold, and fold sizes (in groups) differ by <= 1.

    Args:
        groups: ``(n,)`` group keys (any hashable values numpy can sort, e.g. stage-configuration JSON).
        folds: number of folds.
        rng: shuffles which groups go together.

    Returns:
        ``(n,)`` int64 fold indices in ``[0, folds)``.
    """
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    fold_of_group[rng.permutation(len(unique))] = np.arange(len(unique)) % folds
    return fold_of_group[inverse.reshape(-1)]


def minimum_groups(folds: int, inner_folds: int) -> int:
    """The fewest groups nested CV can run on: 2 per outer fold, and 2 per inner fold of every outer-train part.

    The largest outer test fold holds ``ceil(G / K)`` groups (:func:`group_folds` balances them), so
    the smallest outer-train part holds ``G - ceil(G / K)``, which must be at least ``2 J``.
    """
    groups = 2 * folds
    while groups - math.ceil(groups / folds) < 2 * inner_folds:
        groups += 1
    return groups


# ----------------------------------------------------------------------------- scores


def _rank_within(truth: np.ndarray, predicted: np.ndarray, res: np.ndarray, statistic: Callable) -> float:
    """Mean over resolutions (with >= 3 rows) of a rank statistic; constant predictions rank nothing: 0."""
    values = []
    for r in np.unique(res):
        at = res == r
        if at.sum() < MINIMUM_PER_RESOLUTION:
            continue
        if np.ptp(predicted[at]) == 0 or np.ptp(truth[at]) == 0:
            values.append(0.0)  # scipy says nan; for "how well does it rank", a constant ranks nothing
        else:
            values.append(float(statistic(truth[at], predicted[at]).statistic))
    return float(np.mean(values)) if values else float("nan")


def within_resolution_tau(truth: np.ndarray, predicted: np.ndarray, res: np.ndarray) -> float:
    """Kendall's tau-b inside each resolution (>= 3 rows), averaged over resolutions; nan if none has 3.

    Constant predictions inside a resolution (a resolution-only predictor) count as tau 0.
    """
    from scipy.stats import kendalltau

    return _rank_within(truth, predicted, res, kendalltau)


def scores(truth: np.ndarray, predicted: np.ndarray, res: np.ndarray, *,
           is_constant_within_resolution: bool = False) -> dict[str, float]:
    """The scores of out-of-fold predictions, in target units.

    Args:
        truth, predicted, res: ``(n,)`` each.
        is_constant_within_resolution: the predictor is constant inside a resolution by construction
            (the resolution-only baseline). Its pooled out-of-fold predictions still vary inside a
            resolution, but only because each fold's model saw other rows (a fold whose rows are high
            gets a lower training mean, a negative artefact), so its within-resolution scores are 0.

    Returns:
        ``tau_res`` and ``rho_res`` (Kendall tau, Spearman rho within each resolution, averaged: the
        ranking a per-resolution front needs; ``tau_res`` selects), ``tau`` and ``rho`` (pooled over
        every resolution, for reference only) and ``rmse``.
    """
    from scipy.stats import kendalltau, spearmanr

    def pooled(statistic: Callable) -> float:
        return 0.0 if np.ptp(predicted) == 0 else float(statistic(truth, predicted).statistic)

    ranked = np.zeros(len(truth)) if is_constant_within_resolution else predicted
    return {"tau_res": _rank_within(truth, ranked, res, kendalltau),
            "rho_res": _rank_within(truth, ranked, res, spearmanr),
            "tau": pooled(kendalltau), "rho": pooled(spearmanr),
            "rmse": float(np.sqrt(np.mean((truth - predicted) ** 2)))}


def _is_constant_within_resolution(design: np.ndarray, res: np.ndarray) -> bool:
    return all(np.ptp(design[res == r], axis=0).max() == 0 for r in np.unique(res))


def _selection_key(row: Mapping[str, Any]) -> tuple[float, float]:
    tau = row["tau_res"]
    return (round(tau, 6) if np.isfinite(tau) else -np.inf, -row["rmse"])


# ----------------------------------------------------------------------------- baselines


def baseline_designs(res: np.ndarray, params: np.ndarray, flops: np.ndarray) -> dict[str, np.ndarray]:
    """Design matrices of the :data:`BASELINES`, each with an intercept column, for least squares.

    Args:
        res: ``(n,)`` resolutions (px).
        params: ``(n,)`` analytic parameter counts (``space.params``).
        flops: ``(n,)`` FLOPs of one UNet forward (``space.flops``).

    Returns:
        ``{"resolution": [1, one-hot res], "resolution+log_flops": [1, one-hot res, ln FLOPs],
        "params": [1, ln params]}``, float64 ``(n, p)`` each.
    """
    ones = np.ones((len(res), 1))
    one_hot = (np.asarray(res)[:, None] == np.unique(res)[None]).astype(np.float64)
    log_flops = np.log(np.asarray(flops, dtype=np.float64))[:, None]
    log_params = np.log(np.asarray(params, dtype=np.float64))[:, None]
    designs = {"resolution": np.hstack([ones, one_hot]),
               "resolution+log_flops": np.hstack([ones, one_hot, log_flops]),
               "params": np.hstack([ones, log_params])}
    assert tuple(designs) == BASELINES
    return designs


def _least_squares(design: np.ndarray, values: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Fit ``values ~ design`` on ``train`` (minimum-norm least squares), predict ``test``."""
    coefficients = np.linalg.lstsq(design[train], values[train], rcond=None)[0]
    return design[test] @ coefficients


# ----------------------------------------------------------------------------- the selection procedure S


def _cross_validated(candidate: Candidate, F: np.ndarray, values: np.ndarray, fold: np.ndarray,
                     seed: int, tick: Callable[[], None]) -> np.ndarray:
    """Out-of-fold predictions (target units) of one candidate over the given folds."""
    predicted = np.empty(len(values))
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        predicted[test] = fit_surrogate(*candidate, F[train], values[train], seed + int(f)).predict(F[test])[0]
        tick()
    return predicted


def choose_candidate(candidates: Sequence[Candidate], F: np.ndarray, values: np.ndarray, res: np.ndarray,
                     groups: np.ndarray, *, folds: int, rng: np.random.Generator, seed: int,
                     tick: Callable[[], None] = lambda: None) -> tuple[Candidate, list[dict[str, Any]]]:
    """The choice of S on these rows only: grouped ``folds``-fold CV of every candidate, best ``tau_res``.

    Everything it sees is in its arguments, so nested CV can hand it the outer-train rows alone.

    Args:
        candidates: ``(model kind, transform)`` pairs.
        F: raw features ``(n, d)`` of these rows.
        values: target values ``(n,)``.
        res: resolutions ``(n,)``.
        groups: stage-configuration keys ``(n,)``.
        folds: inner CV folds.
        rng: shuffles the grouped folds.
        seed: seeds the models (``seed + fold``).
        tick: called after every model fit (progress).

    Returns:
        ``(choice, rows)``: the chosen candidate and one row per candidate (``model``, ``transform``,
        the :func:`scores` of its out-of-fold predictions, ``fit_s`` seconds per fit), in input order.
    """
    fold = group_folds(groups, folds, rng)
    rows = []
    for kind, transform in candidates:
        start = time.perf_counter()
        predicted = _cross_validated((kind, transform), F, values, fold, seed, tick)
        rows.append({"model": kind, "transform": transform, **scores(values, predicted, res),
                     "fit_s": (time.perf_counter() - start) / folds})
    best = max(range(len(rows)), key=lambda i: _selection_key(rows[i]))
    return tuple(candidates[best]), rows


# ----------------------------------------------------------------------------- nested CV


@dataclass
class NestedSelection:
    """The result of :func:`select_and_evaluate`.

    Attributes:
        outer_fold: ``(n,)`` outer fold of each row.
        predicted: ``(n,)`` out-of-fold predictions of the selection procedure (target units).
        outer_choices: the candidate S chose in each outer fold (from the outer-train rows only).
        scores: the procedure's :func:`scores` on the outer folds (the honest numbers).
        baselines: one row per baseline: ``name`` and its :func:`scores` on the same outer folds.
        baseline_predictions: ``name -> (n,)`` out-of-fold predictions of each baseline.
        comparison: the procedure against the best baseline (see :func:`compare_to_baseline`).
        choice: the candidate S chose on all rows; ``fitted`` is it refitted on all rows.
        candidates: S's inner-CV table on all rows (one row per candidate; ``picked`` counts the
            outer folds that chose it, ``chosen`` marks ``choice``).
        settings: folds, inner folds, seed, grouping and rules, for the predictor file.
    """

    outer_fold: np.ndarray
    predicted: np.ndarray
    outer_choices: list[Candidate]
    scores: dict[str, float]
    baselines: list[dict[str, Any]]
    baseline_predictions: dict[str, np.ndarray]
    comparison: dict[str, Any]
    choice: Candidate
    fitted: FittedSurrogate
    candidates: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)


def compare_to_baseline(truth: np.ndarray, predicted: np.ndarray, baseline: np.ndarray, res: np.ndarray,
                        groups: np.ndarray, rng: np.random.Generator,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, float]:
    """Paired bootstrap of ``tau_res(predicted) - tau_res(baseline)`` over groups (stage configurations).

    Both prediction vectors are out-of-fold predictions of the same rows; a resample draws groups
    with replacement and scores both on the same rows, so their difference keeps its pairing.

    Returns:
        ``difference`` (on the rows as they are), ``lower_bound`` (its :data:`BOOTSTRAP_LEVEL` quantile
        over resamples) and ``resamples``.
    """
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    inverse = inverse.reshape(-1)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    differences = []
    for _ in range(resamples):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        differences.append(within_resolution_tau(truth[rows], predicted[rows], res[rows])
                           - within_resolution_tau(truth[rows], baseline[rows], res[rows]))
    differences = np.asarray(differences)
    finite = differences[np.isfinite(differences)]
    return {"difference": within_resolution_tau(truth, predicted, res) - within_resolution_tau(truth, baseline, res),
            "lower_bound": float(np.quantile(finite, BOOTSTRAP_LEVEL)) if len(finite) else float("nan"),
            "resamples": int(resamples)}


def select_and_evaluate(candidates: Sequence[Candidate], F: np.ndarray, values: np.ndarray, res: np.ndarray,
                        groups: np.ndarray, designs: Mapping[str, np.ndarray], *, folds: int, inner_folds: int,
                        seed: int, progress: bool = False) -> NestedSelection:
    """Nested, grouped cross-validation of the selection procedure S, its baselines, and S on all rows.

    See the module docstring for the numbered steps. The caller checks that there are enough groups
    (:func:`minimum_groups`).

    Args:
        candidates: ``(model kind, transform)`` pairs S chooses from.
        F: raw features ``(n, d)``.
        values: target values ``(n,)``, target units.
        res: resolutions ``(n,)``.
        groups: stage-configuration keys ``(n,)``.
        designs: baseline design matrices (:func:`baseline_designs`).
        folds: outer folds K (>= 2).
        inner_folds: inner folds J (>= 2).
        seed: seeds every split (through one ``SeedSequence``), every model and the bootstrap.
        progress: show a tqdm bar over the model fits.

    Returns:
        The :class:`NestedSelection`.
    """
    from tqdm import tqdm

    candidates = [tuple(c) for c in candidates]
    n_candidates = len(candidates)
    inner_fits = inner_folds * n_candidates if n_candidates > 1 else 0
    bar = tqdm(total=folds * (inner_fits + 1) + inner_folds * n_candidates + 1, desc="nested CV", unit="fit",
               disable=not progress)
    outer_rng, bootstrap_rng, final_rng, *inner_rngs = (np.random.default_rng(s) for s in
                                                        np.random.SeedSequence(seed).spawn(3 + folds))
    # 1. outer folds grouped by stage configuration
    outer_fold = group_folds(groups, folds, outer_rng)
    predicted = np.empty(len(values))
    baseline_predictions = {name: np.empty(len(values)) for name in designs}
    outer_choices: list[Candidate] = []
    for k in range(folds):
        train, test = np.flatnonzero(outer_fold != k), np.flatnonzero(outer_fold == k)
        # 2. S on the outer-train rows alone (a single candidate needs no choosing), then its refit
        if n_candidates > 1:
            choice, _ = choose_candidate(candidates, F[train], values[train], res[train], groups[train],
                                         folds=inner_folds, rng=inner_rngs[k], seed=seed, tick=lambda: bar.update(1))
        else:
            choice = candidates[0]
        outer_choices.append(choice)
        predicted[test] = fit_surrogate(*choice, F[train], values[train], seed).predict(F[test])[0]
        bar.update(1)
        # 3. the baselines on the same folds
        for name, design in designs.items():
            baseline_predictions[name][test] = _least_squares(design, values, train, test)
    procedure = scores(values, predicted, res)
    constant = {name: _is_constant_within_resolution(design, res) for name, design in designs.items()}
    baselines = [{"name": name, **scores(values, p, res, is_constant_within_resolution=constant[name])}
                 for name, p in baseline_predictions.items()]
    # 4. against the best baseline, by the same within-resolution tau
    best = max(baselines, key=_selection_key) if baselines else None
    if best is None:
        comparison: dict[str, Any] = {"baseline": None, "beats_baselines": True}
    else:
        # a baseline constant within each resolution ranks nothing there (see scores): compare with a constant
        ranking = np.zeros(len(values)) if constant[best["name"]] else baseline_predictions[best["name"]]
        paired = compare_to_baseline(values, predicted, ranking, res, groups, bootstrap_rng)
        comparison = {"baseline": best["name"], **paired,
                      "beats_baselines": bool(np.isfinite(paired["lower_bound"]) and paired["lower_bound"] > 0)}
    # 5. S on every row: the candidate table and the final model
    choice, table = choose_candidate(candidates, F, values, res, groups, folds=inner_folds, rng=final_rng, seed=seed,
                                     tick=lambda: bar.update(1))
    fitted = fit_surrogate(*choice, F, values, seed)
    bar.update(1)
    bar.close()
    for row in table:
        row["picked"] = sum(c == (row["model"], row["transform"]) for c in outer_choices)
        row["chosen"] = (row["model"], row["transform"]) == choice
    settings = {"folds": folds, "inner_folds": inner_folds, "seed": seed,
                "grouped_by": "stage configuration (arch without res)",
                "selection": "max within-resolution Kendall tau (tau_res) on the inner folds; ties to lower rmse",
                "reported": "the selection procedure's scores on the outer folds (nested CV)",
                "beats_rule": f"paired bootstrap over stage configurations ({BOOTSTRAP_RESAMPLES} resamples): the "
                              f"{BOOTSTRAP_LEVEL:.0%} lower bound of tau_res(model) - tau_res(best baseline) > 0",
                "outer_choices": [f"{kind}/{transform}" for kind, transform in outer_choices]}
    return NestedSelection(outer_fold=outer_fold, predicted=predicted, outer_choices=outer_choices, scores=procedure,
                           baselines=baselines, baseline_predictions=baseline_predictions, comparison=comparison,
                           choice=choice, fitted=fitted, candidates=table, settings=settings)


__all__ = ["BASELINES", "Candidate", "NestedSelection", "SCORE_NAMES", "baseline_designs", "choose_candidate",
           "compare_to_baseline", "group_folds", "minimum_groups", "scores", "select_and_evaluate",
           "within_resolution_tau"]
